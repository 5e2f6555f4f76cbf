//! The contract between the UI/API and the scheduler's live state: plain-data views of what
//! the scheduler knows (branch flags, per-commit test counters, runs, machines, the queue), the
//! user actions it accepts, and the change feed that makes pages live.
//!
//! Git facts (repos, branches, commit metadata, definitions) are read by [`super::git_reads`];
//! everything counted or decided by the scheduler comes through [`StateReads`] and
//! [`StateActions`]. [`Unwired`] is the implementation used until a scheduler is attached: it
//! knows nothing, so pages show git facts with every cell "not enabled" and actions answer 503.

use futures_util::future::BoxFuture;
use serde::Serialize;
use std::collections::HashMap;
use test_looper_core::protocol::{MachineInfo, Millis, RunResult, TestCaseResult};
pub use test_looper_core::scheduling::StatePart;

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
    pub state: RunStatus,
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

/// Where a run is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Assigned,
    Running,
    Passed,
    Failed,
    TimedOut,
    Cancelled,
    Lost,
}

impl RunStatus {
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Assigned | RunStatus::Running)
    }
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Assigned => "assigned",
            RunStatus::Running => "running",
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed out",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Lost => "lost",
        }
    }
}

/// A worker machine and what it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MachineView {
    pub info: MachineInfo,
    pub registered: Millis,
    pub last_heartbeat: Millis,
    /// The run (or deployment) it is busy with.
    pub busy_with: Option<String>,
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
}

/// A definition waiting to run, in queue order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueEntry {
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

/// Reads of the scheduler's live state.
pub trait StateReads: Send + Sync {
    /// Whether a scheduler is attached (pages say so when not).
    fn wired(&self) -> bool;
    /// Changes whenever the state these reads return may have changed; a view computed
    /// after reading version `v` reflects at least the state of `v`.
    fn version(&self) -> u64;
    /// Whether any of `parts` may have changed after version `since`: what was computed
    /// from those parts alone at `since` is still current when not. Unknown means changed.
    fn changed_since(&self, _parts: &[StatePart], _since: u64) -> bool {
        true
    }
    fn branches(
        &self,
        repo: &str,
    ) -> BoxFuture<'_, Result<HashMap<String, BranchState>, ReadError>>;
    /// States of the given commits; commits the scheduler does not know are absent.
    fn commits<'a>(
        &'a self,
        repo: &'a str,
        hashes: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, CommitState>, ReadError>>;
    /// Every run of one definition, newest first (cleared runs included, flagged).
    fn runs_of<'a>(&'a self, test_hash: &'a str) -> BoxFuture<'a, Result<Vec<RunView>, ReadError>>;
    /// [`StateReads::runs_of`] of several definitions in one read (for commit pages).
    fn runs_of_many<'a>(
        &'a self,
        test_hashes: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, Vec<RunView>>, ReadError>> {
        Box::pin(async move {
            let mut runs = HashMap::with_capacity(test_hashes.len());
            for hash in test_hashes {
                runs.insert(hash.clone(), self.runs_of(hash).await?);
            }
            Ok(runs)
        })
    }
    fn run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<RunView>, ReadError>>;
    fn machines(&self) -> BoxFuture<'_, Result<Vec<MachineView>, ReadError>>;
    fn queue(&self) -> BoxFuture<'_, Result<Vec<QueueEntry>, ReadError>>;
    /// Deployments still alive, oldest first.
    fn deployments(&self) -> BoxFuture<'_, Result<Vec<DeploymentView>, ReadError>>;
    /// One deployment, alive or ended (`None` when unknown).
    fn deployment<'a>(
        &'a self,
        deployment_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<DeploymentView>, ReadError>>;
    /// The change feed; `None` when the state cannot publish changes.
    fn subscribe(&self) -> Option<ChangeStream>;
}

/// The user actions the scheduler accepts.
pub trait StateActions: Send + Sync {
    fn set_branch_under_test<'a>(
        &'a self,
        repo: &'a str,
        branch: &'a str,
        under_test: bool,
    ) -> BoxFuture<'a, Result<(), ActionError>>;
    /// 0 disables the commit; higher values run first.
    fn set_commit_priority<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
        priority: u32,
    ) -> BoxFuture<'a, Result<(), ActionError>>;
    fn set_runs_desired<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
        test_name: &'a str,
        runs: u32,
    ) -> BoxFuture<'a, Result<(), ActionError>>;
    fn cancel_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), ActionError>>;
    /// Clears the finished runs of a test so that it runs again.
    fn restart_test<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
        test_name: &'a str,
    ) -> BoxFuture<'a, Result<(), ActionError>>;
    /// Boots a deployment of a definition (by identity hash); returns its id.
    fn boot_deployment<'a>(
        &'a self,
        test_hash: &'a str,
    ) -> BoxFuture<'a, Result<String, ActionError>>;
    /// Shuts a deployment down (a no-op when it already ended).
    fn shutdown_deployment<'a>(
        &'a self,
        deployment_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ActionError>>;
}

/// Live run logs: the bytes so far from an offset, and a wake-up when more arrive.
pub trait LogFeed: Send + Sync {
    /// Bytes of the run's log from `offset`, and whether the log is complete.
    fn read_from<'a>(
        &'a self,
        run_id: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<LogChunk, ReadError>>;
    /// Resolves when the run's log may have grown (or after an implementation-chosen timeout).
    fn wait_for_more<'a>(&'a self, run_id: &'a str, offset: u64) -> BoxFuture<'a, ()>;
}

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

/// The files a run stored, and their downloads.
pub trait ArtifactFiles: Send + Sync {
    /// Every stored file of one run, sorted by name (empty when none or no store).
    fn list<'a>(
        &'a self,
        test_hash: &'a str,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredFile>, ReadError>>;
    fn open<'a>(
        &'a self,
        test_hash: &'a str,
        run_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ArtifactDownload, ReadError>>;
}

/// The state used until a scheduler is attached: knows no flags or counters, refuses actions.
pub struct Unwired;

const UNWIRED: &str = "the scheduler is not attached to this server";

impl StateReads for Unwired {
    fn wired(&self) -> bool {
        false
    }
    fn version(&self) -> u64 {
        0
    }
    fn branches(&self, _: &str) -> BoxFuture<'_, Result<HashMap<String, BranchState>, ReadError>> {
        Box::pin(async { Ok(HashMap::new()) })
    }
    fn commits<'a>(
        &'a self,
        _: &'a str,
        _: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, CommitState>, ReadError>> {
        Box::pin(async { Ok(HashMap::new()) })
    }
    fn runs_of<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<RunView>, ReadError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn run<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<RunView>, ReadError>> {
        Box::pin(async { Ok(None) })
    }
    fn machines(&self) -> BoxFuture<'_, Result<Vec<MachineView>, ReadError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn queue(&self) -> BoxFuture<'_, Result<Vec<QueueEntry>, ReadError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn deployments(&self) -> BoxFuture<'_, Result<Vec<DeploymentView>, ReadError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn deployment<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<DeploymentView>, ReadError>> {
        Box::pin(async { Ok(None) })
    }
    fn subscribe(&self) -> Option<ChangeStream> {
        None
    }
}

impl StateActions for Unwired {
    fn set_branch_under_test<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: bool,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async { Err(ActionError::Unavailable(UNWIRED.into())) })
    }
    fn set_commit_priority<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u32,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async { Err(ActionError::Unavailable(UNWIRED.into())) })
    }
    fn set_runs_desired<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: u32,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async { Err(ActionError::Unavailable(UNWIRED.into())) })
    }
    fn cancel_run<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async { Err(ActionError::Unavailable(UNWIRED.into())) })
    }
    fn restart_test<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async { Err(ActionError::Unavailable(UNWIRED.into())) })
    }
    fn boot_deployment<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<String, ActionError>> {
        Box::pin(async { Err(ActionError::Unavailable(UNWIRED.into())) })
    }
    fn shutdown_deployment<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async { Err(ActionError::Unavailable(UNWIRED.into())) })
    }
}

impl LogFeed for Unwired {
    fn read_from<'a>(
        &'a self,
        run_id: &'a str,
        _: u64,
    ) -> BoxFuture<'a, Result<LogChunk, ReadError>> {
        Box::pin(async move { Err(ReadError::NotFound(format!("log of run {run_id}"))) })
    }
    fn wait_for_more<'a>(&'a self, _: &'a str, _: u64) -> BoxFuture<'a, ()> {
        Box::pin(tokio::time::sleep(std::time::Duration::from_secs(1)))
    }
}

impl ArtifactFiles for Unwired {
    fn list<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredFile>, ReadError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn open<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ArtifactDownload, ReadError>> {
        Box::pin(async move { Err(ReadError::NotFound(format!("artifact {name}"))) })
    }
}
