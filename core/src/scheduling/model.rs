//! Persistable records of the scheduler's facts (what the server stores in Redis and in the
//! durable result records) and the plain-data inputs it accepts from git ingestion.
//! Derived values (calculated priorities, test states, counters) are not here: they are
//! recomputed from these facts.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::definitions::{ResolvedCommit, ResolvedDefinition};
use crate::protocol::{MachineInfo, Millis, RunResult, SourceCommit, TestCaseResult};

/// The outcome of parsing one commit's definitions, as delivered by git ingestion.
#[derive(Clone, Debug, PartialEq)]
pub enum ParseOutcome {
    /// The commit has no definitions file.
    NoTests,
    /// A referenced repo or commit is not known yet; ingestion re-delivers it later.
    Pending(String),
    /// The definitions are broken: the commit is untestable, with the message to show.
    Untestable(String),
    /// Resolved successfully.
    Ok(Box<ResolvedCommit>),
}

/// One commit as discovered by a branch scan.
#[derive(Clone, Debug, PartialEq)]
pub struct CommitInfo {
    pub hash: String,
    pub parents: Vec<String>,
    pub author: String,
    /// Committer time, seconds since the epoch.
    pub timestamp: i64,
    pub subject: String,
    pub parse: ParseOutcome,
}

/// Stored parse state of a commit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ParseRecord {
    /// Seen only as a parent so far.
    #[default]
    NotLoaded,
    NoTests,
    Pending {
        reason: String,
    },
    Untestable {
        message: String,
    },
    /// Tests are in [`CommitRecord::tests`].
    Ok,
}

/// Commit metadata and its definitions (name → identity hash). User inputs are separate
/// ([`CommitSettings`]) so that enabling 10,000 commits rewrites small values only.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommitRecord {
    pub repo: String,
    pub hash: String,
    pub parents: Vec<String>,
    pub author: String,
    pub timestamp: i64,
    pub subject: String,
    pub parse: ParseRecord,
    /// Definition name → identity hash, in declaration order.
    pub tests: IndexMap<String, String>,
}

/// What users set on a commit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct CommitSettings {
    /// 0 = not wanted; higher runs first. No ceiling.
    pub user_priority: u32,
    /// Runs desired per test name (overrides the branch default).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runs_desired: BTreeMap<String, u32>,
}

/// A branch of a repo.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BranchRecord {
    pub repo: String,
    pub name: String,
    pub head: Option<String>,
    /// "Test the top of this branch and every new commit pushed to it."
    pub under_test: bool,
    /// Runs desired for each test of the branch's commits unless a commit overrides it.
    pub default_runs_desired: u32,
}

/// A definition known by identity hash (immutable once created).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TestRecord {
    pub hash: String,
    /// The first commit seen declaring it.
    pub source: SourceCommit,
    pub definition: ResolvedDefinition,
}

/// Where a run is in its lifecycle.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Assigned,
    Running,
    Passed,
    Failed,
    /// Failed because the run exceeded its timeout (counts as a failure).
    TimedOut,
    Cancelled,
    /// Heartbeats stopped; not counted, the test is offered again.
    Lost,
}

impl RunState {
    /// Assigned or running.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Assigned | RunState::Running)
    }

    /// Finished with a result that counts (passed, failed, timed out).
    pub fn counts(self) -> bool {
        matches!(
            self,
            RunState::Passed | RunState::Failed | RunState::TimedOut
        )
    }
}

/// One execution attempt of a definition on one machine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: String,
    pub test_hash: String,
    pub machine_id: String,
    pub attempt: u32,
    pub state: RunState,
    pub started: Millis,
    pub last_heartbeat: Millis,
    /// 0 while active.
    pub ended: Millis,
    /// Artifacts reported so far, in order.
    pub artifacts: Vec<String>,
    pub result: Option<RunResult>,
    /// Individual cases, sorted by name.
    #[serde(default)]
    pub test_cases: Vec<TestCaseResult>,
    /// Why it was cancelled or lost.
    #[serde(default)]
    pub reason: String,
    /// A user restarted the test: the run is kept for history but no longer counts.
    #[serde(default)]
    pub cleared: bool,
}

impl RunRecord {
    /// Counted in the test's totals.
    pub fn counted(&self) -> bool {
        self.state.counts() && !self.cleared
    }

    pub fn failed(&self) -> bool {
        matches!(self.state, RunState::Failed | RunState::TimedOut)
    }

    /// Failed because the machine, Docker or storage broke rather than the test.
    pub fn infrastructure_failure(&self) -> bool {
        matches!(
            self.result,
            Some(crate::protocol::RunResult::Failed {
                reason: crate::protocol::FailureReason::Infrastructure,
                ..
            })
        )
    }
}

/// A registered worker machine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MachineRecord {
    pub info: MachineInfo,
    pub registered: Millis,
    pub last_heartbeat: Millis,
    /// The runs and the deployment it holds, each with its share of the machine: at most
    /// one item unless the machine shares its cores (`MachineInfo::shares_cores`). Records
    /// of older servers (`busy_with`: one id or null) read as one item holding the machine.
    #[serde(alias = "busy_with", deserialize_with = "held_items", default)]
    pub holds: Vec<Held>,
    /// A one-shot VM that finished its job (must not get more work).
    #[serde(default)]
    pub retired: bool,
}

impl MachineRecord {
    /// Whether it holds nothing.
    pub fn is_idle(&self) -> bool {
        self.holds.is_empty()
    }

    /// Whether it holds `id` (a run or a deployment).
    pub fn holds_item(&self, id: &str) -> bool {
        self.holds.iter().any(|held| held.id == id)
    }

    /// Cores and GB of RAM not granted to what it holds.
    pub fn free(&self) -> (u32, u32) {
        let (cores, ram_gb) = Held::granted(&self.holds);
        (
            self.info.cores.saturating_sub(cores),
            self.info.ram_gb.saturating_sub(ram_gb),
        )
    }
}

/// A run or deployment on a machine and the cores and RAM granted to it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Held {
    pub id: String,
    pub cores: u32,
    pub ram_gb: u32,
}

impl Held {
    /// Cores and GB of RAM granted to `holds` together.
    pub fn granted(holds: &[Held]) -> (u32, u32) {
        holds.iter().fold((0u32, 0u32), |(cores, ram_gb), held| {
            (
                cores.saturating_add(held.cores),
                ram_gb.saturating_add(held.ram_gb),
            )
        })
    }
}

/// Reads `holds`, or an older record's `busy_with` (one id or null; its share is filled in
/// as the whole machine when the snapshot is loaded).
fn held_items<'de, D>(deserializer: D) -> Result<Vec<Held>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Many(Vec<Held>),
        One(Option<String>),
    }
    Ok(match Wire::deserialize(deserializer)? {
        Wire::Many(held) => held,
        Wire::One(id) => id
            .into_iter()
            .map(|id| Held {
                id,
                cores: 0,
                ram_gb: 0,
            })
            .collect(),
    })
}

/// An interactive deployment of a definition.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub deployment_id: String,
    pub test_hash: String,
    pub created: Millis,
    pub machine_id: Option<String>,
    pub alive: bool,
    /// Who booted it (absent when nobody was authenticated); only they or an admin may
    /// attach to it or shut it down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_by: Option<DeploymentOwner>,
}

/// The person (or token) that booted a deployment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeploymentOwner {
    /// `provider:subject` of a person, `static:<name>` of a static token.
    pub who: String,
    /// The login, to show.
    pub login: String,
}

/// The durable record written to artifact storage for every finished run: enough to
/// rebuild every count on an empty Redis.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResultRecord {
    pub run: RunRecord,
    /// Definition name and a commit that declared it, for humans browsing storage.
    pub test_name: String,
    pub source: SourceCommit,
}

/// User inputs that must survive an empty Redis (written next to the result records).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct UserSettings {
    /// `repo` → `branch` → (under test, default runs desired).
    pub branches: BTreeMap<String, BTreeMap<String, BranchSettings>>,
    /// `repo` → `commit` → settings (only commits with non-default settings).
    pub commits: BTreeMap<String, BTreeMap<String, CommitSettings>>,
    /// Flake hunts by id, running or ended.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hunts: BTreeMap<String, super::hunts::HuntRecord>,
    /// Tests in quarantine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantine: Vec<super::quarantine::QuarantineEntry>,
    /// Entries into and exits from quarantine, oldest first (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantine_log: Vec<super::quarantine::QuarantineEvent>,
}

/// What users set on a branch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BranchSettings {
    pub under_test: bool,
    pub default_runs_desired: u32,
}

/// Everything needed to rebuild the engine (from Redis, or from storage + re-ingestion).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub commits: Vec<CommitRecord>,
    pub commit_settings: Vec<((String, String), CommitSettings)>,
    pub branches: Vec<BranchRecord>,
    pub tests: Vec<TestRecord>,
    pub runs: Vec<RunRecord>,
    pub machines: Vec<MachineRecord>,
    pub deployments: Vec<DeploymentRecord>,
    pub hunts: Vec<super::hunts::HuntRecord>,
    pub quarantine: Vec<super::quarantine::QuarantineEntry>,
    pub quarantine_log: Vec<super::quarantine::QuarantineEvent>,
    /// Next sequence number for run and deployment ids.
    pub next_id: u64,
}
