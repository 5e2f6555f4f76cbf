//! What the worker is doing, kept across reconnects so it can be replayed to the server:
//! the current run, its log so far, the artifacts reported, and an outcome not yet
//! acknowledged.

use test_looper_core::protocol::{Assignment, RunOutcome, WorkerToServer};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// The run in progress (or finished but unacknowledged).
pub struct CurrentRun {
    pub assignment: Assignment,
    pub log: String,
    pub artifacts: Vec<String>,
    pub outcome: Option<RunOutcome>,
    pub cancel: CancellationToken,
}

/// The worker's state.
#[derive(Default)]
pub struct WorkerState {
    pub current: Option<CurrentRun>,
    /// The live session's outgoing queue (replaced at every reconnect).
    pub outbox: Option<UnboundedSender<WorkerToServer>>,
}

impl WorkerState {
    pub fn run_id(&self) -> Option<String> {
        self.current.as_ref().map(|r| r.assignment.run_id.clone())
    }

    /// Queues `message` on the live session, if any (the state is replayed on reconnect).
    pub fn send(&self, message: WorkerToServer) {
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(message);
        }
    }
}
