//! The glue between the UI's read model ([`super::read_model`]) and the real services:
//!
//! - [`state::SchedulerState`]: reads and actions over the scheduler
//!   ([`crate::scheduler::Scheduler::read`] and its action methods);
//! - [`changes`]: the scheduler's change feed as the UI's [`super::read_model::Change`]s;
//! - [`logs::RedisLogs`]: live logs over the worker channel's live log intake in Redis
//!   (with the run's `test_looper_log.txt` artifact once Redis has let the log expire);
//! - [`artifacts::StoredArtifacts`]: a run's stored files over the artifact store.
//!
//! Each adapter reads the services from the [`AppContext`] when called: the web UI starts
//! before [`crate::services::start`] has opened the scheduler and the store (they retry
//! until Redis answers), and until then pages show git facts only and actions answer 503.

pub mod artifacts;
pub mod changes;
pub mod deployments;
pub mod logs;
pub mod state;

use super::read_model::{ActionError, ReadError};
use super::Attachments;
use crate::scheduler::{Scheduler, SchedulerError};
use crate::AppContext;
use std::sync::Arc;
use test_looper_core::scheduling::SchedulingError;

impl Attachments {
    /// The real services of `context` (scheduler, live logs, artifact store).
    pub fn live(context: &Arc<AppContext>) -> Self {
        let state = Arc::new(state::SchedulerState::new(context.clone()));
        Attachments {
            state,
            logs: Arc::new(logs::RedisLogs::new(context.clone())),
            artifacts: Arc::new(artifacts::StoredArtifacts::new(context.clone())),
        }
    }
}

const NOT_STARTED: &str = "the scheduler has not started yet (is Redis reachable?)";

/// The scheduler, once the services have started.
fn scheduler_for_reads(context: &AppContext) -> Result<&Arc<Scheduler>, ReadError> {
    context
        .scheduler
        .get()
        .ok_or_else(|| ReadError::Unavailable(NOT_STARTED.into()))
}

fn scheduler_for_actions(context: &AppContext) -> Result<&Arc<Scheduler>, ActionError> {
    context
        .scheduler
        .get()
        .ok_or_else(|| ActionError::Unavailable(NOT_STARTED.into()))
}

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
