//! The read side: what the UI and the API read, as plain data, and the user actions they send.
//!
//! - [`git`] (+ [`repo_pool`]): git facts (repos, branches, history pages, definitions) with
//!   their caches.
//! - [`model`]: the plain data read from the scheduler's live state, and why reads fail.
//! - [`state::SchedulerState`]: reads and actions over the scheduler
//!   ([`crate::scheduler::Scheduler::read`] and its action methods);
//! - [`changes`]: the scheduler's change feed as the UI's [`crate::reads::model::Change`]s;
//! - [`deployments`]: deployments as the UI lists them, booting and shutting them down;
//! - [`hunts`]: flake hunts and branch-wide repeats (reads and actions);
//! - [`artifacts::StoredArtifacts`]: a run's stored files over the artifact store.
//!
//! Live run logs are read by [`crate::logs::feed`]. Each reader takes the services from the
//! [`crate::AppContext`] when called: the web UI starts before [`crate::services::start`] has opened
//! the scheduler and the store (they retry until Redis answers), and until then pages show
//! git facts only and actions answer 503.

pub mod artifacts;
pub mod changes;
pub mod deployments;
pub mod git;
pub mod hunts;
pub mod model;
pub mod repo_pool;
pub mod state;

use crate::reads::model::ActionError;
use crate::scheduler::SchedulerError;
use test_looper_core::scheduling::SchedulingError;

/// A refused scheduler call as the UI reports it.
fn action_error(err: SchedulerError) -> ActionError {
    match err {
        SchedulerError::Scheduling(err) => match err {
            SchedulingError::Invalid(message) => ActionError::Invalid(message),
            other => ActionError::NotFound(strip_unknown(&other.to_string())),
        },
        other => ActionError::Unavailable(other.to_string()),
    }
}

/// "unknown commit app/abc" → "commit app/abc" (the UI adds "not found").
fn strip_unknown(message: &str) -> String {
    message
        .strip_prefix("unknown ")
        .unwrap_or(message)
        .to_string()
}
