//! The server's view of git: which repos exist, their branches and history, files at any
//! commit, source tarballs, and the scanner service that turns pushes into plain-data events.
//!
//! - [`store`]: the repo store (local repos read in place, remote repos mirrored under
//!   `data_dir/git/` and fetched with the `git` command line).
//! - [`history`]: branches, commit metadata, walks from branch tops.
//! - [`files`], [`definitions_source`]: re-exported from [`test_looper_git`] (shared with
//!   `tl`): reading trees and files at a commit, "last commit touching a path", and the
//!   [`test_looper_core::definitions::DefinitionsSource`] over the store (a
//!   [`test_looper_git::RepoOpener`]), with caches shared across scans.
//! - [`tarball`]: deterministic source tarballs cached by (commit, path).
//! - [`scanner`]: one rescan of one repo (new commits, deleted branches, orphans).
//! - [`pins`]: auto-updating floating pins (docs/definitions.md#branch-pins).
//! - [`pin_refs`]: a commit's repo references and pin states for the UI; manual pin updates.
//! - [`service`]: the background thread that fetches and scans on push and on timers and
//!   broadcasts [`scanner::RepoScanned`] events.

pub mod credentials;
pub mod discovery;
pub mod history;
pub mod pin_refs;
pub mod pins;
pub mod scanner;
pub mod service;
pub mod store;
pub mod tarball;

pub use scanner::{CommitInfo, ParseOutcome, RepoScanned};
pub use service::GitService;
pub use store::RepoStore;
pub use test_looper_git::{definitions_source, files, GitError};
