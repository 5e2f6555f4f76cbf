//! The plain data the UI/API reads from the scheduler's live state: what the scheduler knows
//! (branch flags, per-commit test counters, runs, machines, the queue), why reads and actions
//! fail, and the change feed that makes pages live.
//!
//! Git facts (repos, branches, commit metadata, definitions) are read by [`crate::reads::git`];
//! everything counted or decided by the scheduler is read through
//! [`crate::reads::state::SchedulerState`]. Until the scheduler has started, reads return
//! nothing (pages show git facts with every cell "not enabled") and actions answer 503.

use serde::Serialize;
use std::collections::HashMap;
use test_looper_core::protocol::{MachineInfo, Millis, RunResult, TestCaseResult};
pub use test_looper_core::scheduling::{RunState, StatePart};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0} not found")]
    NotFound(String),
    /// The live state is not reachable (Redis down, scheduler not attached).
    #[error("state unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why an action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The action is valid but not possible in the current state (e.g. cancel a finished run).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("state unavailable: {0}")]
    Unavailable(String),
    /// The caller may not do this to this object (someone else's deployment).
    #[error("{0}")]
    Denied(String),
}

/// A git failure as a read failure (unknown repos and commits are "not found").
impl From<crate::git::GitError> for ReadError {
    fn from(err: crate::git::GitError) -> Self {
        use crate::git::GitError;
        match err {
            GitError::UnknownRepo(repo) => ReadError::NotFound(format!("repo {repo}")),
            GitError::UnknownCommit { repo, commit } => {
                ReadError::NotFound(format!("commit {commit} of repo {repo}"))
            }
            other => ReadError::Internal(other.to_string()),
        }
    }
}

impl From<crate::context::NotStarted> for ReadError {
    fn from(err: crate::context::NotStarted) -> Self {
        ReadError::Unavailable(err.to_string())
    }
}

impl From<crate::context::NotStarted> for ActionError {
    fn from(err: crate::context::NotStarted) -> Self {
        ActionError::Unavailable(err.to_string())
    }
}

/// What the scheduler stores per branch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BranchState {
    pub under_test: bool,
    pub default_runs_desired: u32,
}

/// Why a test is not running right now (the queue's "what waits and why").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitReason {
    /// No enabled commit wants it (priority zero).
    NotWanted,
    /// Waiting for a machine; `priority` orders the queue.
    Queued { priority: u32 },
    /// A build it depends on has not finished yet.
    BlockedOnBuild { build: String },
    /// A build it depends on failed for good (or is itself blocked); says which and why.
    DependencyFailed { reason: String },
    /// It needs a build whose definition is not known yet (another repo not scanned).
    UnresolvedDependencies { missing: String },
    /// No machine the pool can boot satisfies its hardware requirements.
    NoHardware { detail: String },
    /// A failed build waits before its next retry.
    RetryWait { until: Millis },
    /// It has all the runs it wants.
    Done,
}

/// Counters of one definition (by identity hash) as the scheduler sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestStatus {
    /// Finished runs that count (passed, failed, timed out; not cancelled or cleared).
    pub runs: u64,
    /// Of those, failed or timed out.
    pub failures: u64,
    /// Assigned or running now.
    pub active: u32,
    pub runs_desired: u32,
    pub wait: WaitReason,
    /// In quarantine: it runs, but its failures do not count against the commit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
}

/// What the scheduler knows about one commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommitState {
    /// 0 = not enabled.
    pub user_priority: u32,
    /// Definition identity hash → status.
    pub tests: HashMap<String, TestStatus>,
}

/// One run as listed on commit, test and machine pages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunView {
    pub run_id: String,
    pub test_hash: String,
    pub test_name: String,
    pub machine_id: String,
    pub attempt: u32,
    pub state: RunState,
    pub started: Millis,
    pub ended: Millis,
    pub result: Option<RunResult>,
    /// Why it was cancelled or lost.
    pub reason: String,
    pub cleared: bool,
    /// Counted in the definition's failure rate (the scheduler's own rule: finished with a
    /// result, and not cleared).
    #[serde(skip)]
    pub counted: bool,
    pub artifacts: Vec<String>,
    pub test_cases: Vec<TestCaseResult>,
    /// Where the run's definition comes from.
    pub repo: String,
    pub commit: String,
}

/// A worker machine and what it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MachineView {
    pub info: MachineInfo,
    pub registered: Millis,
    pub last_heartbeat: Millis,
    /// The runs (or the deployment) it holds, with their shares of the machine.
    pub holds: Vec<test_looper_core::scheduling::Held>,
}

/// An interactive deployment of a definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeploymentView {
    pub deployment_id: String,
    pub test_hash: String,
    pub test_name: String,
    /// The commit that declared the definition.
    pub repo: String,
    pub commit: String,
    /// The machine running it; `None` while it waits for hardware.
    pub machine_id: Option<String>,
    /// When it was booted.
    pub created: Millis,
    pub alive: bool,
    /// Browser terminals attached now.
    pub clients: usize,
    /// Who booted it (absent when nobody was authenticated).
    pub booted_by: Option<test_looper_core::scheduling::DeploymentOwner>,
}

/// A definition waiting to run, in queue order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WaitingTest {
    pub test_hash: String,
    pub test_name: String,
    pub repo: String,
    pub commit: String,
    pub priority: u32,
    pub runs: u64,
    pub active: u32,
    pub runs_desired: u32,
    pub wait: WaitReason,
}

/// Something changed in the live state; pages refetch what the event names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Counters of this repo's commits changed (run started/finished, priority changed);
    /// `commits` names them when known (empty: any commit of the repo).
    Commits { repo: String, commits: Vec<String> },
    /// Branch heads or flags of this repo changed.
    Branches { repo: String },
    /// Machines changed (registered, gone, busy or idle).
    Machines,
    /// Deployments were booted, assigned or shut down.
    Deployments,
    /// Changes were missed: every live page refreshes.
    Everything,
}

/// The live change feed of one subscriber.
pub type ChangeStream = futures_util::stream::BoxStream<'static, Change>;

/// A slice of a run's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogChunk {
    pub offset: u64,
    pub bytes: Vec<u8>,
    /// No more bytes will ever be appended.
    pub complete: bool,
}

/// A stored artifact opened for download.
pub struct ArtifactDownload {
    pub size: Option<u64>,
    pub reader: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
}

/// One stored file of a run (declared artifacts as tarballs, kept output files, the log,
/// individual test logs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredFile {
    /// Relative to the run (may contain `/`).
    pub name: String,
    pub size: u64,
}
