//! Wire types between the scheduler (server) and workers: what a worker is told to run and
//! what it reports back. Plain serde data; the transport (websocket frames, HTTP) is not here.
//!
//! # Run lifecycle as seen by a worker
//!
//! 1. The worker registers its [`MachineInfo`] (id, cores, RAM, OS) and asks for work. The
//!    scheduler answers with [`Work::Run`] (an [`Assignment`]), [`Work::Deployment`], or
//!    nothing; when nothing is runnable the worker waits for a `WorkAvailable` change-feed
//!    event (or [`ServerToWorker::WorkAvailable`]) instead of polling hard.
//! 2. The run is *assigned*. The worker sends a [`Heartbeat`] at least every
//!    [`HEARTBEAT_INTERVAL_SECONDS`]; the first one moves the run to *running*. A run whose
//!    last heartbeat is older than [`HEARTBEAT_TIMEOUT_SECONDS`] is declared *lost* and the
//!    test is offered again. The reply to every heartbeat is a [`HeartbeatReply`]: `Cancel`
//!    means "stop the container tree and return to idle" (priority dropped to zero, the user
//!    cancelled, or the run was already declared lost).
//! 3. Each artifact is reported with [`ArtifactUploaded`] as soon as it is stored, in the
//!    order of [`Assignment::artifacts`]; dependents may start on it immediately. An
//!    out-of-order or unknown name is rejected ([`ArtifactAck::Rejected`]), nothing recorded.
//! 4. The worker reports a [`Completion`] (run id + [`RunOutcome`]). Completion is
//!    idempotent: resending it (after a reconnect) is answered `AlreadyRecorded` and counts
//!    nothing twice. The worker keeps its outcome until it gets a [`CompletionAck`].
//! 5. Cancellation notices also arrive unsolicited as [`ServerToWorker::Cancel`].
//!
//! # Deployment lifecycle
//!
//! A deployment is an interactive environment for one definition (a build, test or
//! deployment), booted by a user and kept until it is shut down.
//!
//! 1. The worker gets [`Work::Deployment`], prepares the environment like a run (image,
//!    sources, dependency artifacts) and starts the definition's command (or a shell) in a
//!    container with a TTY. Progress and the TTY's output are reported as
//!    [`WorkerToServer::TerminalOutput`] chunks: `data` is base64 of raw bytes starting at
//!    byte `offset` of the deployment's output stream (resends after a reconnect overlap;
//!    the server keeps only the unseen suffix).
//! 2. While it is up the worker sends a [`Heartbeat`] with `run_id` = the deployment id;
//!    `Cancel` means the deployment was shut down (or is unknown): stop it.
//! 3. Browser keystrokes and resizes arrive as [`ServerToWorker::TerminalInput`].
//! 4. When the container's command ends the worker reports
//!    [`WorkerToServer::DeploymentExited`]; the server ends the deployment. A user shutdown
//!    arrives as [`ServerToWorker::ShutdownDeployment`]. Either way the container is removed
//!    and the machine returns to idle.
//!
//! Timestamps are milliseconds since the Unix epoch ([`Millis`]).

use serde::{Deserialize, Serialize};

use crate::definitions::{
    DefinitionKind, Image, Platform, ResolvedDefinition, ResolvedEnvironment,
};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// A worker sends a heartbeat at least this often while running something.
pub const HEARTBEAT_INTERVAL_SECONDS: u64 = 10;
/// A run without a heartbeat for this long is declared lost (and retried).
pub const HEARTBEAT_TIMEOUT_SECONDS: u64 = 60;

/// The kind of machine a definition needs and a worker offers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OsConfig {
    /// Linux host running jobs in Docker.
    LinuxDocker,
    /// Windows host running jobs in Docker.
    WindowsDocker,
    /// A one-shot Linux VM booted from `ami`.
    LinuxVm { ami: String },
    /// A one-shot Windows VM booted from `ami`.
    WindowsVm { ami: String },
}

impl OsConfig {
    /// The OS configuration an environment needs.
    pub fn for_environment(environment: &ResolvedEnvironment) -> OsConfig {
        match (&environment.platform, &environment.image) {
            (Platform::Linux, Image::Docker { .. }) => OsConfig::LinuxDocker,
            (Platform::Windows, Image::Docker { .. }) => OsConfig::WindowsDocker,
            (Platform::Linux, Image::Ami { base_ami, .. }) => OsConfig::LinuxVm {
                ami: base_ami.clone(),
            },
            (Platform::Windows, Image::Ami { base_ami, .. }) => OsConfig::WindowsVm {
                ami: base_ami.clone(),
            },
        }
    }

    /// VM machines run exactly one job and are then terminated.
    pub fn is_one_shot(&self) -> bool {
        matches!(self, OsConfig::LinuxVm { .. } | OsConfig::WindowsVm { .. })
    }
}

/// What a worker machine offers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MachineInfo {
    /// Stable id (cloud instance id or `worker_<hex>` for local workers).
    pub machine_id: String,
    pub cores: u32,
    pub ram_gb: u32,
    pub os: OsConfig,
    /// Runs several items at once, each on the cores it asks for (`min_cores`) and a
    /// matching share of the RAM, while they fit; otherwise one item at a time on the whole
    /// machine. A deployment always has the machine to itself.
    #[serde(default)]
    pub shares_cores: bool,
}

/// Where a definition's source comes from: the commit whose definitions declared it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceCommit {
    pub repo: String,
    pub commit: String,
}

/// "Run this build or test": everything the worker needs, nothing to re-parse.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Assignment {
    pub run_id: String,
    /// Identity hash of the definition (build artifacts are stored under it).
    pub test_hash: String,
    /// 1-based attempt number of this definition (builds retry; tests repeat).
    pub attempt: u32,
    /// A commit that declares the definition (repo + commit hash).
    pub source: SourceCommit,
    /// The resolved definition: stages, environment, variables, dependencies
    /// (`definition.all_dependencies()`), timeout per command.
    pub definition: ResolvedDefinition,
    /// Artifact names the run must report, in order (`definition.artifact_names()`).
    pub artifacts: Vec<String>,
    /// Seconds for the whole run; 0 = the worker's default.
    pub timeout_seconds: u64,
    /// Cores and RAM granted on the machine.
    pub cores: u32,
    pub ram_gb: u32,
}

/// "Start this deployment": an interactive environment for a definition.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeploymentAssignment {
    pub deployment_id: String,
    pub test_hash: String,
    pub source: SourceCommit,
    pub definition: ResolvedDefinition,
    pub cores: u32,
    pub ram_gb: u32,
}

/// The answer to "next work for this machine".
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    Run(Box<Assignment>),
    Deployment(Box<DeploymentAssignment>),
}

/// Liveness of a run (or of an idle machine when `run_id` is `None`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Heartbeat {
    pub machine_id: String,
    pub run_id: Option<String>,
}

/// What the scheduler answers to a heartbeat.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HeartbeatReply {
    /// Keep going.
    Continue,
    /// Stop this run and return to idle; nothing more about it will be counted.
    Cancel { run_id: String, reason: String },
    /// The machine is unknown (never registered or declared dead): register again.
    UnknownMachine,
}

/// One artifact of a run is stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArtifactUploaded {
    pub run_id: String,
    pub artifact: String,
}

/// What the scheduler answers to [`ArtifactUploaded`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArtifactAck {
    Recorded,
    /// Already recorded (a resend): nothing changed.
    AlreadyRecorded,
    /// Out of order or not declared: nothing recorded.
    Rejected {
        reason: String,
    },
    /// The run is unknown, finished or cancelled.
    UnknownRun,
}

/// Why a run failed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The test command ran and reported failure.
    TestFailure,
    /// The run exceeded its timeout.
    Timeout,
    /// The environment (image, dependencies) could not be prepared.
    EnvironmentError,
    /// A build stage failed.
    BuildError,
    /// The worker's own machinery failed (disk, Docker daemon, storage).
    Infrastructure,
    /// The server stopped hearing from the run (set by the scheduler, never by a worker).
    Lost,
}

/// Pass/fail of a whole run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunResult {
    Passed,
    Failed {
        reason: FailureReason,
        /// Short human-readable explanation ("exit code 2 in stage 1").
        message: String,
    },
}

impl RunResult {
    pub fn passed(&self) -> bool {
        matches!(self, RunResult::Passed)
    }
}

/// One individual test case reported by the run (`testSummary.json`, JUnit).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestCaseResult {
    pub name: String,
    pub passed: bool,
    /// Whether individual logs were uploaded for this case.
    pub has_logs: bool,
}

/// The full report of a finished run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunOutcome {
    pub result: RunResult,
    /// Individual test cases, any order (the scheduler sorts by name).
    #[serde(default)]
    pub test_cases: Vec<TestCaseResult>,
    /// Every artifact uploaded, in order (cumulative; must extend what was reported).
    #[serde(default)]
    pub artifacts: Vec<String>,
}

/// A finished run's report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Completion {
    pub run_id: String,
    pub outcome: RunOutcome,
}

/// What the scheduler answers to a [`Completion`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CompletionAck {
    /// Counted now.
    Recorded,
    /// Counted before (duplicate delivery): nothing changed.
    AlreadyRecorded,
    /// The run was cancelled or lost before the completion arrived: not counted.
    Discarded { reason: String },
    /// No such run.
    UnknownRun,
}

/// Messages a worker sends (one JSON document per frame).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerToServer {
    Register {
        machine: MachineInfo,
    },
    /// "Give me work": sent when the machine has room (idle, or sharing its cores with
    /// cores to spare). `holding` lists the runs it still holds (going, or finished and not
    /// acknowledged); a run the server has on this machine that is not listed was dropped
    /// (a worker restart) and is lost at once. At most one request is out at a time.
    RequestWork {
        machine_id: String,
        #[serde(default)]
        holding: Vec<String>,
    },
    Heartbeat(Heartbeat),
    ArtifactUploaded(ArtifactUploaded),
    Completed(Completion),
    /// Output of a run: `text` starts at byte `offset` of the run's log. Resent chunks (after
    /// a reconnect) overlap what the server has; it keeps only the unseen suffix.
    Log {
        run_id: String,
        offset: u64,
        text: String,
    },
    /// Output of a deployment's terminal: `data` is base64 of the raw bytes starting at byte
    /// `offset` of the deployment's output stream.
    TerminalOutput {
        deployment_id: String,
        offset: u64,
        data: String,
    },
    /// The deployment's process ended.
    DeploymentExited {
        deployment_id: String,
    },
}

/// What a browser terminal sends to a deployment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TerminalInput {
    /// Keystrokes or pasted text, as the terminal emulator produced it (UTF-8).
    Keys { data: String },
    /// The terminal's new size in character cells.
    Resize { cols: u16, rows: u16 },
}

/// Messages the server sends.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerToWorker {
    Assign(Work),
    /// Nothing to do now; wait for `WorkAvailable`.
    NoWork,
    /// New runnable work may exist: ask again.
    WorkAvailable,
    HeartbeatReply(HeartbeatReply),
    ArtifactAck {
        run_id: String,
        ack: ArtifactAck,
    },
    CompletionAck {
        run_id: String,
        ack: CompletionAck,
    },
    /// Stop this run (unsolicited form of [`HeartbeatReply::Cancel`]).
    Cancel {
        run_id: String,
        reason: String,
    },
    ShutdownDeployment {
        deployment_id: String,
    },
    /// Input for a running deployment's terminal.
    TerminalInput {
        deployment_id: String,
        input: TerminalInput,
    },
}

/// The kind of a definition, re-exported for convenience of worker code.
pub type Kind = DefinitionKind;
