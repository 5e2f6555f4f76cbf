//! Read models: what the UI shows (per-commit and per-test counts with failure rates, the
//! queue, machines, work no machine can run) and the records the server persists.

use serde::{Deserialize, Serialize};

use super::engine::{Engine, TestIdx};
use super::model::{
    BranchRecord, CommitRecord, CommitSettings, DeploymentRecord, MachineRecord, RunRecord,
    TestRecord,
};
use super::state::{TestCounts, TestState};
use super::stats::FailureRate;
use crate::definitions::DefinitionKind;

/// One definition's standing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TestView {
    pub hash: String,
    pub name: String,
    pub kind: Option<DefinitionKind>,
    pub state: TestState,
    pub priority: u32,
    pub runs_desired: u32,
    pub counts: TestCounts,
    pub failure_rate: FailureRate,
    /// In quarantine in the repo of the commit it is viewed from (see `quarantine.rs`):
    /// its failures do not count against the commit's status.
    #[serde(default)]
    pub quarantined: bool,
}

/// One commit with its tests.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CommitView {
    pub record: CommitRecord,
    pub settings: CommitSettings,
    pub priority: u32,
    /// A branch whose history contains it; `None` = orphaned.
    pub reached_by: Option<String>,
    pub tests: Vec<TestView>,
}

/// One entry of the runnable queue, in scheduling order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QueueEntry {
    pub test: TestView,
    pub source_repo: String,
    pub source_commit: String,
}

impl Engine {
    pub(crate) fn test_view_idx(&self, idx: TestIdx) -> TestView {
        let slot = &self.tests[idx];
        TestView {
            hash: slot.hash.clone(),
            name: slot.name().to_string(),
            kind: slot.kind(),
            state: slot.state.clone(),
            priority: slot.calc_priority,
            runs_desired: slot.runs_desired,
            counts: slot.counts,
            failure_rate: slot.counts.failure_rate(),
            quarantined: false,
        }
    }

    /// A commit with every test it declares.
    pub fn commit_view(&self, repo: &str, hash: &str) -> Option<CommitView> {
        let idx = *self
            .commit_index
            .get(&(repo.to_string(), hash.to_string()))?;
        let commit = &self.commits[idx];
        Some(CommitView {
            record: commit.record.clone(),
            settings: commit.settings.clone(),
            priority: commit.calc_priority,
            reached_by: commit.reached_by.clone(),
            tests: commit
                .tests
                .iter()
                .map(|test| {
                    let mut view = self.test_view_idx(*test);
                    view.quarantined = self.is_quarantined(repo, &view.name);
                    view
                })
                .collect(),
        })
    }

    /// Branches of a repo (all repos when `repo` is `None`).
    pub fn branches(&self, repo: Option<&str>) -> Vec<BranchRecord> {
        self.branches
            .values()
            .filter(|branch| repo.is_none_or(|repo| branch.repo == repo))
            .cloned()
            .collect()
    }

    /// The first `limit` runnable items in the order machines will get them.
    pub fn queue(&self, limit: usize) -> Vec<QueueEntry> {
        self.queue
            .iter()
            .take(limit)
            .map(|(_, _, _, idx)| {
                let source = self.tests[*idx]
                    .record
                    .as_ref()
                    .map(|record| record.source.clone());
                QueueEntry {
                    test: self.test_view_idx(*idx),
                    source_repo: source.as_ref().map(|s| s.repo.clone()).unwrap_or_default(),
                    source_commit: source.map(|s| s.commit).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Number of runnable items.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Enabled work that no configured or registered machine can run.
    pub fn unrunnable(&self) -> Vec<TestView> {
        (0..self.tests.len())
            .filter(|idx| {
                matches!(self.tests[*idx].state, TestState::NoViableHardware { .. })
                    && self.tests[*idx].calc_priority > 0
            })
            .map(|idx| self.test_view_idx(idx))
            .collect()
    }

    pub fn machines(&self) -> Vec<MachineRecord> {
        self.machines.values().cloned().collect()
    }

    pub fn machine(&self, machine_id: &str) -> Option<&MachineRecord> {
        self.machines.get(machine_id)
    }

    pub fn run(&self, run_id: &str) -> Option<&RunRecord> {
        self.runs.get(run_id)
    }

    /// Every run of a definition, oldest first.
    pub fn runs_of(&self, test_hash: &str) -> Vec<&RunRecord> {
        self.test_index
            .get(test_hash)
            .map(|idx| {
                self.tests[*idx]
                    .runs
                    .iter()
                    .filter_map(|run_id| self.runs.get(run_id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ids of runs assigned or running now.
    pub fn active_runs(&self) -> impl Iterator<Item = &RunRecord> {
        self.active_runs
            .iter()
            .filter_map(|run_id| self.runs.get(run_id))
    }

    /// Every run known, any order.
    pub fn all_runs(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs.values()
    }

    pub fn test_record(&self, hash: &str) -> Option<&TestRecord> {
        self.test_index
            .get(hash)
            .and_then(|idx| self.tests[*idx].record.as_deref())
    }

    pub fn commit_record(
        &self,
        repo: &str,
        hash: &str,
    ) -> Option<(&CommitRecord, &CommitSettings, u32)> {
        self.commit_index
            .get(&(repo.to_string(), hash.to_string()))
            .map(|idx| {
                let commit = &self.commits[*idx];
                (&commit.record, &commit.settings, commit.calc_priority)
            })
    }

    /// The views of every test a commit declares, in declaration order, with the commit's
    /// settings and calculated priority: the commit's own test slots are read, without
    /// looking each test up by hash.
    pub fn commit_tests(
        &self,
        repo: &str,
        hash: &str,
    ) -> Option<(&CommitSettings, u32, Vec<TestView>)> {
        let idx = *self
            .commit_index
            .get(&(repo.to_string(), hash.to_string()))?;
        let commit = &self.commits[idx];
        Some((
            &commit.settings,
            commit.calc_priority,
            commit
                .tests
                .iter()
                .map(|test| self.test_view_idx(*test))
                .collect(),
        ))
    }

    pub fn branch(&self, repo: &str, name: &str) -> Option<&BranchRecord> {
        self.branches.get(&(repo.to_string(), name.to_string()))
    }

    pub fn deployment(&self, deployment_id: &str) -> Option<&DeploymentRecord> {
        self.deployments.get(deployment_id)
    }

    pub fn deployments(&self) -> Vec<DeploymentRecord> {
        self.deployments.values().cloned().collect()
    }

    /// Number of known commits and definitions (for logs and benches).
    pub fn sizes(&self) -> (usize, usize) {
        (self.commits.len(), self.tests.len())
    }
}
