//! What the worker is doing, kept across reconnects so it can be replayed to the server:
//! its runs (each with the tail of its log and how far it was sent, the artifacts reported,
//! an outcome not yet acknowledged; several at once on a machine that shares its cores) or
//! the current deployment (the tail of its terminal output), and the last deployment that
//! exited (its exit is reported again after a reconnect, as it has no ack).

use super::run_log::RunLog;
use super::terminal_tail::TerminalTail;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use test_looper_core::protocol::{
    Assignment, DeploymentAssignment, RunOutcome, TerminalInput, WorkerToServer,
};
use tokio::sync::mpsc::{error::TrySendError, Sender, UnboundedSender};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Messages queued for the live session at most. Log text does not go through the queue
/// (the session pulls it from [`RunLog`]) and terminal output waits for room, so only
/// small control messages can fill it; if they do, the session is restarted and the state
/// replayed, which loses nothing.
pub const OUTBOX_CAPACITY: usize = 256;
/// Heartbeats awaiting their reply that are remembered (see [`WorkerState::beats`]).
const MAX_BEATS_REMEMBERED: usize = 64;

/// The run in progress (or finished but unacknowledged).
pub struct CurrentRun {
    pub assignment: Assignment,
    pub log: RunLog,
    pub artifacts: Vec<String>,
    pub outcome: Option<RunOutcome>,
    /// When the completion was last sent on this session (resent every heartbeat interval
    /// until acknowledged: the server does not answer one it could not store, M3).
    pub completion_sent: Option<Instant>,
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
    /// Cores the machine offers and whether it shares them (several runs at once).
    pub cores: u32,
    pub shares_cores: bool,
    /// Runs in progress or finished and not acknowledged, by run id.
    pub runs: BTreeMap<String, CurrentRun>,
    pub deployment: Option<CurrentDeployment>,
    /// A deployment whose exit was reported; reported again after a reconnect until new
    /// work arrives.
    pub exited_deployment: Option<String>,
    /// The live session's outgoing queue (replaced at every reconnect).
    pub outbox: Option<Sender<WorkerToServer>>,
    /// The outgoing queue was full: the session must restart (and replay).
    pub outbox_overflowed: bool,
    /// Wakes the session: log text, an outcome or an overflow to handle.
    pub wake: Arc<Notify>,
    /// Heartbeats written on this session, oldest first, with the run they named and the
    /// log offset sent before them: a reply confirms that offset.
    pub beats: VecDeque<(Option<String>, u64)>,
    /// More beats were unanswered than remembered: replies can no longer be matched to
    /// beats on this session, so none confirms anything.
    pub beats_untracked: bool,
    /// A request for work was sent on the live session and not answered yet. At most one is
    /// out at a time: a second one would reach the server while the first one's assignment
    /// is on its way, and the server reads it as the machine having dropped that run.
    pub work_requested: bool,
}

impl WorkerState {
    /// The state of a machine offering `cores`, shared between runs or not.
    pub fn new(cores: u32, shares_cores: bool) -> WorkerState {
        WorkerState {
            cores,
            shares_cores,
            ..WorkerState::default()
        }
    }

    /// Busy with a run or a deployment.
    pub fn is_busy(&self) -> bool {
        !self.runs.is_empty() || self.deployment.is_some()
    }

    /// Room for another run: idle, or sharing its cores with some not granted to a run
    /// (the server decides whether a queued item fits).
    pub fn has_room(&self) -> bool {
        if self.deployment.is_some() {
            return false;
        }
        if !self.shares_cores {
            return self.runs.is_empty();
        }
        let granted: u32 = self.runs.values().map(|run| run.assignment.cores).sum();
        granted < self.cores
    }

    /// The ids to heartbeat: each run (going, or finished and not acknowledged yet: its
    /// heartbeat keeps the server from declaring it lost while the completion is resent),
    /// or the deployment being served; none when idle.
    pub fn heartbeat_ids(&self) -> Vec<String> {
        match &self.deployment {
            Some(deployment) => vec![deployment.assignment.deployment_id.clone()],
            None => self.runs.keys().cloned().collect(),
        }
    }

    /// The deployment `deployment_id`, if it is the one being served.
    pub fn deployment(&self, deployment_id: &str) -> Option<&CurrentDeployment> {
        self.deployment
            .as_ref()
            .filter(|d| d.assignment.deployment_id == deployment_id)
    }

    /// Asks the server for work, unless without room or already asking.
    pub fn request_work(&mut self, machine_id: &str) {
        if !self.has_room() || self.work_requested {
            return;
        }
        self.work_requested = true;
        self.send(WorkerToServer::RequestWork {
            machine_id: machine_id.to_string(),
            holding: self.runs.keys().cloned().collect(),
        });
    }

    /// The server answered the request for work (an assignment, or none).
    pub fn work_answered(&mut self) {
        self.work_requested = false;
    }

    /// Queues `message` on the live session, if any (the state is replayed on reconnect).
    /// A full queue restarts the session.
    pub fn send(&mut self, message: WorkerToServer) {
        if let Some(outbox) = &self.outbox {
            if let Err(TrySendError::Full(_)) = outbox.try_send(message) {
                if !self.outbox_overflowed {
                    tracing::warn!("the server link is too slow: reconnecting");
                }
                self.outbox_overflowed = true;
                self.wake.notify_one();
            }
        }
    }

    /// A heartbeat naming `run_id` is being written to the link.
    pub fn beat_sent(&mut self, run_id: Option<&str>) {
        if self.beats_untracked {
            return;
        }
        if self.beats.len() >= MAX_BEATS_REMEMBERED {
            self.beats.clear();
            self.beats_untracked = true;
            return;
        }
        let offset = run_id
            .and_then(|run_id| self.runs.get(run_id))
            .map_or(0, |run| run.log.sent());
        self.beats.push_back((run_id.map(str::to_string), offset));
    }

    /// A heartbeat was answered: the server has handled the log frames sent before it. (A
    /// heartbeat it did not answer only makes this confirm less than it could.)
    pub fn beat_answered(&mut self) {
        if self.beats_untracked {
            return;
        }
        let Some((Some(run_id), offset)) = self.beats.pop_front() else {
            return;
        };
        if let Some(run) = self.runs.get_mut(&run_id) {
            run.log.confirm(offset);
        }
    }
}
