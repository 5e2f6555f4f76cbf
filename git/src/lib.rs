//! Reading definitions out of git repositories with libgit2, one implementation for the server
//! and for `tl`, so both give every commit the same identity hashes.
//!
//! - [`definitions_source`]: the [`test_looper_core::definitions::DefinitionsSource`] over
//!   repos found by name through a [`RepoOpener`] (the server's repo store, `tl`'s checkout),
//!   with caches that can be shared across scans.
//! - [`files`]: reading trees and files at a commit, the definitions-file lookup, "last
//!   commit touching a path" (git's history simplification: at a merge, follow any parent
//!   whose entry is unchanged).
//! - [`GitError`]: why a git operation failed.

pub mod definitions_source;
mod error;
pub mod files;

pub use definitions_source::{DefinitionsCaches, GitDefinitionsSource, RepoOpener};
pub use error::GitError;
