//! What the worker is doing, kept across reconnects so it can be replayed to the server:
//! the current run (its log so far, the artifacts reported, an outcome not yet
//! acknowledged) or the current deployment (the tail of its terminal output), and the last
//! deployment that exited (its exit is reported again after a reconnect, as it has no ack).

use super::terminal_tail::TerminalTail;
use test_looper_core::protocol::{
    Assignment, DeploymentAssignment, RunOutcome, TerminalInput, WorkerToServer,
};
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

/// The deployment being served.
pub struct CurrentDeployment {
    pub assignment: DeploymentAssignment,
    /// The last part of its terminal output, for a resend after a reconnect.
    pub output: TerminalTail,
    /// Keystrokes and resizes for its terminal.
    pub controls: UnboundedSender<TerminalInput>,
    /// Fires to stop it (user shutdown, or the server cancelled it).
    pub shutdown: CancellationToken,
}

/// The worker's state.
#[derive(Default)]
pub struct WorkerState {
    pub current: Option<CurrentRun>,
    pub deployment: Option<CurrentDeployment>,
    /// A deployment whose exit was reported; reported again after a reconnect until new
    /// work arrives.
    pub exited_deployment: Option<String>,
    /// The live session's outgoing queue (replaced at every reconnect).
    pub outbox: Option<UnboundedSender<WorkerToServer>>,
    /// A request for work was sent on the live session and not answered yet. At most one is
    /// out at a time: a second one would reach the server while the first one's assignment
    /// is on its way, and the server reads it as the machine having dropped that run.
    pub work_requested: bool,
}

impl WorkerState {
    pub fn run_id(&self) -> Option<String> {
        self.current.as_ref().map(|r| r.assignment.run_id.clone())
    }

    /// Busy with a run or a deployment (and so not asking for work).
    pub fn is_busy(&self) -> bool {
        self.current.is_some() || self.deployment.is_some()
    }

    /// The id to heartbeat: a run still going, or the deployment being served.
    pub fn heartbeat_id(&self) -> Option<String> {
        match (&self.current, &self.deployment) {
            (Some(run), _) => run.outcome.is_none().then(|| run.assignment.run_id.clone()),
            (None, Some(deployment)) => Some(deployment.assignment.deployment_id.clone()),
            (None, None) => None,
        }
    }

    /// The deployment `deployment_id`, if it is the one being served.
    pub fn deployment(&self, deployment_id: &str) -> Option<&CurrentDeployment> {
        self.deployment
            .as_ref()
            .filter(|d| d.assignment.deployment_id == deployment_id)
    }

    /// Asks the server for work, unless busy or already asking.
    pub fn request_work(&mut self, machine_id: &str) {
        if self.is_busy() || self.work_requested {
            return;
        }
        self.work_requested = true;
        self.send(WorkerToServer::RequestWork {
            machine_id: machine_id.to_string(),
        });
    }

    /// The server answered the request for work (an assignment, or none).
    pub fn work_answered(&mut self) {
        self.work_requested = false;
    }

    /// Queues `message` on the live session, if any (the state is replayed on reconnect).
    pub fn send(&self, message: WorkerToServer) {
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(message);
        }
    }
}
