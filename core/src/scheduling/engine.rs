//! The scheduler's in-memory state ([`Engine`]): commits, branches, definitions by identity
//! hash, runs, machines and deployments, with the indices the scheduler needs. Events are
//! methods on the engine (`ingest.rs`, `inputs.rs`, `lifecycle.rs`); each records what it
//! touched in [`Changes`] and leaves every derived value settled (`settle.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::changes::Changes;
use super::hardware::{HardwareConfig, Requirements};
use super::model::{
    BranchRecord, CommitRecord, CommitSettings, DeploymentRecord, MachineRecord, RunRecord,
    Snapshot, TestRecord,
};
use super::state::{TestCounts, TestState};
use crate::definitions::{DefinitionKind, ResolvedDependency};
use crate::protocol::{Millis, OsConfig, HEARTBEAT_TIMEOUT_SECONDS};

pub(crate) type CommitIdx = usize;
pub(crate) type TestIdx = usize;

/// Fixed parameters of a scheduler.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SchedulerConfig {
    /// Machine shapes the pools can provide. Empty = only registered machines count.
    pub hardware: Vec<HardwareConfig>,
    /// OS configurations the pools can provide (empty = any).
    pub os_configs: Vec<OsConfig>,
    /// A pool boots one-shot Linux VMs from any AMI an environment names (`base_ami`).
    #[serde(default)]
    pub boots_linux_vms: bool,
    /// A run without heartbeat for this long is lost.
    pub heartbeat_timeout_ms: Millis,
    /// When an enabled branch moves, at most this many new commits are enabled.
    pub max_new_commits_enabled_per_push: usize,
    /// Prefix of run and deployment ids (unique per server start, so ids never collide
    /// with runs of a previous life that were never recorded).
    pub id_prefix: String,
    /// Caps on live deployments (none by default).
    #[serde(default)]
    pub deployment_limits: super::inputs::DeploymentLimits,
    /// When tests enter and leave quarantine on their own (off by default).
    #[serde(default)]
    pub quarantine: super::quarantine::QuarantinePolicy,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            hardware: Vec::new(),
            os_configs: Vec::new(),
            boots_linux_vms: false,
            heartbeat_timeout_ms: HEARTBEAT_TIMEOUT_SECONDS * 1000,
            max_new_commits_enabled_per_push: 100,
            id_prefix: "r".into(),
            deployment_limits: Default::default(),
            quarantine: Default::default(),
        }
    }
}

pub(crate) struct Commit {
    pub(crate) record: CommitRecord,
    pub(crate) settings: CommitSettings,
    pub(crate) parents: Vec<CommitIdx>,
    pub(crate) tests: Vec<TestIdx>,
    /// Alphabetically first branch whose history contains the commit; `None` = orphaned.
    pub(crate) reached_by: Option<String>,
    /// Largest default runs-desired among branches reaching the commit.
    pub(crate) branch_default_runs: u32,
    pub(crate) calc_priority: u32,
}

pub(crate) struct Test {
    pub(crate) hash: String,
    pub(crate) record: Option<Arc<TestRecord>>,
    pub(crate) requirements: Option<Requirements>,
    pub(crate) artifacts: Vec<String>,
    /// (dependency, artifact name).
    pub(crate) deps: Vec<(TestIdx, String)>,
    pub(crate) dependents: Vec<TestIdx>,
    pub(crate) commits: Vec<CommitIdx>,
    pub(crate) runs: Vec<String>,
    pub(crate) counts: TestCounts,
    pub(crate) last_end: Millis,
    pub(crate) available: HashSet<String>,
    pub(crate) calc_priority: u32,
    pub(crate) runs_desired: u32,
    pub(crate) state: TestState,
    pub(crate) queue_key: Option<QueueKey>,
}

impl Test {
    fn empty(hash: String) -> Test {
        Test {
            hash,
            record: None,
            requirements: None,
            artifacts: Vec::new(),
            deps: Vec::new(),
            dependents: Vec::new(),
            commits: Vec::new(),
            runs: Vec::new(),
            counts: TestCounts::default(),
            last_end: 0,
            available: HashSet::new(),
            calc_priority: 0,
            runs_desired: 1,
            state: TestState::Unprioritized,
            queue_key: None,
        }
    }

    pub(crate) fn kind(&self) -> Option<DefinitionKind> {
        self.record.as_ref().map(|record| record.definition.kind)
    }

    pub(crate) fn name(&self) -> &str {
        self.record
            .as_ref()
            .map(|record| record.definition.name.as_str())
            .unwrap_or("")
    }
}

/// Order of runnable work: class (builds, first runs, repeats), priority (higher first),
/// runs started so far (fewest first: repeats spread across commits), then age.
pub(crate) type QueueKey = (u8, std::cmp::Reverse<u32>, u64, TestIdx);

/// The scheduler's state and indices. See the module docs.
pub struct Engine {
    pub(crate) config: SchedulerConfig,
    pub(crate) commits: Vec<Commit>,
    pub(crate) commit_index: HashMap<(String, String), CommitIdx>,
    pub(crate) repo_commits: HashMap<String, Vec<CommitIdx>>,
    pub(crate) branches: BTreeMap<(String, String), BranchRecord>,
    pub(crate) tests: Vec<Test>,
    pub(crate) test_index: HashMap<String, TestIdx>,
    pub(crate) runs: HashMap<String, RunRecord>,
    pub(crate) active_runs: BTreeSet<String>,
    pub(crate) machines: BTreeMap<String, MachineRecord>,
    pub(crate) deployments: BTreeMap<String, DeploymentRecord>,
    pub(crate) queue: BTreeSet<QueueKey>,
    pub(crate) waiting_retry: BTreeSet<TestIdx>,
    pub(crate) next_id: u64,
    pub(crate) changes: Changes,
    pub(crate) priority_dirty: VecDeque<TestIdx>,
    pub(crate) in_priority_dirty: Vec<bool>,
    pub(crate) state_dirty: VecDeque<TestIdx>,
    pub(crate) in_state_dirty: Vec<bool>,
    pub(crate) now: Millis,
    /// Flake hunts by id (see `hunts.rs`).
    pub(crate) hunts: BTreeMap<String, super::hunts::HuntRecord>,
    pub(crate) hunt_index: super::hunts::HuntIndex,
    /// Tests in quarantine and the log (see `quarantine.rs`).
    pub(crate) quarantine: super::quarantine::Quarantine,
}

impl Engine {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig) -> Engine {
        Engine {
            config,
            commits: Vec::new(),
            commit_index: HashMap::new(),
            repo_commits: HashMap::new(),
            branches: BTreeMap::new(),
            tests: Vec::new(),
            test_index: HashMap::new(),
            runs: HashMap::new(),
            active_runs: BTreeSet::new(),
            machines: BTreeMap::new(),
            deployments: BTreeMap::new(),
            queue: BTreeSet::new(),
            waiting_retry: BTreeSet::new(),
            next_id: 1,
            changes: Changes::default(),
            priority_dirty: VecDeque::new(),
            in_priority_dirty: Vec::new(),
            state_dirty: VecDeque::new(),
            in_state_dirty: Vec::new(),
            now: 0,
            hunts: BTreeMap::new(),
            hunt_index: Default::default(),
            quarantine: Default::default(),
        }
    }

    /// Rebuilds the engine from stored facts and settles every derived value. Runs that
    /// were in flight get a fresh heartbeat deadline from `now` (their workers may
    /// reconnect); the ones that stay silent are then lost and retried.
    pub fn from_snapshot(config: SchedulerConfig, snapshot: Snapshot, now: Millis) -> Engine {
        let mut engine = Engine::new(config);
        engine.now = now;
        engine.next_id = snapshot.next_id.max(1);
        for test in snapshot.tests {
            engine.add_test_record(test);
        }
        for commit in snapshot.commits {
            engine.load_commit_record(commit);
        }
        for ((repo, hash), settings) in snapshot.commit_settings {
            let idx = engine.commit_slot(&repo, &hash);
            engine.commits[idx].settings = settings;
        }
        let mut repos = BTreeSet::new();
        for branch in snapshot.branches {
            repos.insert(branch.repo.clone());
            engine
                .branches
                .insert((branch.repo.clone(), branch.name.clone()), branch);
        }
        for mut run in snapshot.runs {
            if run.state.is_active() {
                run.last_heartbeat = now;
            }
            engine.load_run(run);
        }
        for mut machine in snapshot.machines {
            // Like its runs, a machine of a previous server life gets a fresh deadline.
            machine.last_heartbeat = now;
            // An older server's record names its one item without a share: the whole machine.
            for held in &mut machine.holds {
                if held.cores == 0 {
                    held.cores = machine.info.cores;
                    held.ram_gb = machine.info.ram_gb;
                }
            }
            engine
                .machines
                .insert(machine.info.machine_id.clone(), machine);
        }
        for deployment in snapshot.deployments {
            engine
                .deployments
                .insert(deployment.deployment_id.clone(), deployment);
        }
        for hunt in snapshot.hunts {
            engine.load_hunt(hunt);
        }
        engine.load_quarantine(snapshot.quarantine, snapshot.quarantine_log);
        repos.extend(engine.repo_commits.keys().cloned());
        for repo in repos {
            engine.recompute_reachability(&repo);
        }
        engine.refresh_hunt_index();
        for idx in 0..engine.tests.len() {
            engine.mark_priority(idx);
            engine.mark_state(idx);
        }
        engine.settle();
        engine.changes = Changes::default();
        engine
    }

    /// Everything touched since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// A change set naming every stored fact: what rewriting the whole state into an empty
    /// store must write (the store lost its state while the engine kept running).
    pub fn everything(&self) -> Changes {
        let mut changes = Changes::default();
        for commit in &self.commits {
            let key = (commit.record.repo.clone(), commit.record.hash.clone());
            if !matches!(commit.record.parse, super::model::ParseRecord::NotLoaded) {
                changes.commits.insert(key.clone());
            }
            if commit.settings != CommitSettings::default() {
                changes.commit_settings.insert(key.clone());
            }
            changes.commit_priorities.insert(key);
        }
        changes.branches = self.branches.keys().cloned().collect();
        changes.new_tests = self
            .tests
            .iter()
            .filter(|test| test.record.is_some())
            .map(|test| test.hash.clone())
            .collect();
        changes.runs = self.runs.keys().cloned().collect();
        changes.machines = self.machines.keys().cloned().collect();
        changes.deployments = self.deployments.keys().cloned().collect();
        changes.hunts = self.hunts.keys().cloned().collect();
        changes.quarantine = self.quarantine.entries.keys().cloned().collect();
        changes.quarantine_events = self.quarantine.log.iter().cloned().collect();
        changes.settings = true;
        changes
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub(crate) fn fresh_id(&mut self, kind: &str) -> String {
        let id = format!("{}-{kind}{}", self.config.id_prefix, self.next_id);
        self.next_id += 1;
        id
    }

    /// The next id sequence number (persisted so ids stay unique).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    pub(crate) fn test_slot(&mut self, hash: &str) -> TestIdx {
        if let Some(idx) = self.test_index.get(hash) {
            return *idx;
        }
        let idx = self.tests.len();
        self.tests.push(Test::empty(hash.to_string()));
        self.in_priority_dirty.push(false);
        self.in_state_dirty.push(false);
        self.test_index.insert(hash.to_string(), idx);
        idx
    }

    pub(crate) fn commit_slot(&mut self, repo: &str, hash: &str) -> CommitIdx {
        let key = (repo.to_string(), hash.to_string());
        if let Some(idx) = self.commit_index.get(&key) {
            return *idx;
        }
        let idx = self.commits.len();
        self.commits.push(Commit {
            record: CommitRecord {
                repo: repo.to_string(),
                hash: hash.to_string(),
                parents: Vec::new(),
                author: String::new(),
                timestamp: 0,
                subject: String::new(),
                parse: Default::default(),
                tests: Default::default(),
            },
            settings: CommitSettings::default(),
            parents: Vec::new(),
            tests: Vec::new(),
            reached_by: None,
            branch_default_runs: 0,
            calc_priority: 0,
        });
        self.commit_index.insert(key, idx);
        self.repo_commits
            .entry(repo.to_string())
            .or_default()
            .push(idx);
        idx
    }

    /// Registers a definition by hash (no-op when already known) and links its build
    /// dependencies, creating placeholder slots for dependencies not known yet.
    pub(crate) fn add_test_record(&mut self, record: TestRecord) -> TestIdx {
        let idx = self.test_slot(&record.hash);
        if self.tests[idx].record.is_some() {
            return idx;
        }
        let definition = &record.definition;
        let requirements = Requirements {
            os: OsConfig::for_environment(&definition.environment),
            min_cores: clamp_u32(definition.min_cores),
            max_cores: clamp_u32(definition.max_cores),
            min_ram_gb: clamp_u32(definition.min_ram_gb),
            min_disk_gb: clamp_u32(definition.min_disk_gb),
        };
        let artifacts: Vec<String> = definition
            .artifact_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let dep_keys: Vec<(String, String)> = definition
            .all_dependencies()
            .values()
            .filter_map(|dep| match dep {
                ResolvedDependency::Build { hash, artifact, .. } => {
                    Some((hash.clone(), artifact.clone()))
                }
                ResolvedDependency::Source { .. } => None,
            })
            .collect();
        let mut deps = Vec::with_capacity(dep_keys.len());
        for (hash, artifact) in dep_keys {
            let dep = self.test_slot(&hash);
            if dep != idx {
                self.tests[dep].dependents.push(idx);
                deps.push((dep, artifact));
            }
        }
        let test = &mut self.tests[idx];
        test.requirements = Some(requirements);
        test.artifacts = artifacts;
        test.deps = deps;
        test.record = Some(Arc::new(record));
        // Dependents that waited for this definition can now resolve.
        let dependents = test.dependents.clone();
        self.changes.new_tests.insert(self.tests[idx].hash.clone());
        self.mark_priority(idx);
        self.mark_state(idx);
        for dependent in dependents {
            self.mark_priority(dependent);
            self.mark_state(dependent);
        }
        idx
    }

    /// Installs a stored commit record (used when loading).
    fn load_commit_record(&mut self, record: CommitRecord) {
        let idx = self.commit_slot(&record.repo, &record.hash);
        let parents: Vec<CommitIdx> = record
            .parents
            .iter()
            .map(|parent| self.commit_slot(&record.repo, parent))
            .collect();
        let tests: Vec<TestIdx> = record
            .tests
            .values()
            .map(|hash| self.test_slot(hash))
            .collect();
        for test in &tests {
            self.tests[*test].commits.push(idx);
        }
        let commit = &mut self.commits[idx];
        commit.parents = parents;
        commit.tests = tests;
        commit.record = record;
    }

    /// Installs a run record and folds it into its test's counters.
    pub(crate) fn load_run(&mut self, run: RunRecord) {
        let test = self.test_slot(&run.test_hash);
        self.tests[test].runs.push(run.run_id.clone());
        if run.state.is_active() {
            self.active_runs.insert(run.run_id.clone());
        }
        if run.state != RunState::Cancelled {
            for artifact in &run.artifacts {
                self.tests[test].available.insert(artifact.clone());
            }
        }
        if let Some(seq) = id_sequence(&run.run_id) {
            self.next_id = self.next_id.max(seq + 1);
        }
        self.runs.insert(run.run_id.clone(), run);
        self.recount(test);
    }

    /// Recomputes a test's counters from its runs.
    ///
    /// An infrastructure failure (the machine, Docker or storage broke, not the test) is not
    /// counted, so the test is offered again: up to [`MAX_INFRASTRUCTURE_RETRIES`] of them per
    /// test. Past that they count as failures, so a broken machine cannot loop forever.
    pub(crate) fn recount(&mut self, test: TestIdx) {
        let mut counts = TestCounts::default();
        let mut last_end = 0;
        let mut infrastructure_retries = 0;
        for run_id in &self.tests[test].runs {
            let Some(run) = self.runs.get(run_id) else {
                continue;
            };
            if run.counted()
                && run.infrastructure_failure()
                && infrastructure_retries < MAX_INFRASTRUCTURE_RETRIES
            {
                infrastructure_retries += 1;
                continue;
            }
            if run.state.is_active() {
                counts.running += 1;
            } else if run.counted() {
                counts.runs += 1;
                if run.failed() {
                    counts.failures += 1;
                }
                counts.cases += run.test_cases.len() as u64;
                counts.failed_cases += run.test_cases.iter().filter(|c| !c.passed).count() as u64;
                last_end = last_end.max(run.ended);
            }
        }
        let slot = &mut self.tests[test];
        if slot.counts != counts || slot.last_end != last_end {
            let finished_changed =
                slot.counts.runs != counts.runs || slot.counts.failures != counts.failures;
            slot.counts = counts;
            slot.last_end = last_end;
            self.changes.test_states.insert(slot.hash.clone());
            self.hunt_watch_touched(test);
            if finished_changed {
                self.check_quarantine(test);
                // Dependents read this test's successes and failures.
                for dependent in self.tests[test].dependents.clone() {
                    self.mark_state(dependent);
                }
            }
        }
        self.mark_state(test);
    }

    /// Recomputes which branches reach which commits of `repo`, and the commits'
    /// calculated priorities and default runs-desired.
    pub(crate) fn recompute_reachability(&mut self, repo: &str) {
        let Some(indices) = self.repo_commits.get(repo).cloned() else {
            return;
        };
        let mut reached: HashMap<CommitIdx, (String, u32)> = HashMap::new();
        let heads: Vec<(String, String, u32)> = self
            .branches
            .range((repo.to_string(), String::new())..)
            .take_while(|((r, _), _)| r == repo)
            .filter_map(|((_, name), branch)| {
                branch
                    .head
                    .clone()
                    .map(|head| (name.clone(), head, branch.default_runs_desired.max(1)))
            })
            .collect();
        for (branch, head, default_runs) in heads {
            let Some(start) = self.commit_index.get(&(repo.to_string(), head)).copied() else {
                continue;
            };
            let mut stack = vec![start];
            while let Some(idx) = stack.pop() {
                match reached.get_mut(&idx) {
                    Some((_, runs)) if *runs >= default_runs => continue,
                    Some((_, runs)) => *runs = default_runs,
                    None => {
                        reached.insert(idx, (branch.clone(), default_runs));
                    }
                }
                stack.extend(self.commits[idx].parents.iter().copied());
            }
        }
        for idx in indices {
            let (by, runs) = match reached.remove(&idx) {
                Some((by, runs)) => (Some(by), runs),
                None => (None, 0),
            };
            let commit = &mut self.commits[idx];
            let calc = if by.is_some() {
                commit.settings.user_priority
            } else {
                0
            };
            let runs_changed = commit.branch_default_runs != runs;
            commit.reached_by = by;
            commit.branch_default_runs = runs;
            if calc != commit.calc_priority || runs_changed {
                self.set_calc_priority(idx, calc);
            }
        }
    }

    /// Sets a commit's calculated priority and queues its tests.
    pub(crate) fn set_calc_priority(&mut self, idx: CommitIdx, calc: u32) {
        let commit = &mut self.commits[idx];
        if commit.calc_priority != calc {
            commit.calc_priority = calc;
            self.changes
                .commit_priorities
                .insert((commit.record.repo.clone(), commit.record.hash.clone()));
        }
        let tests = self.commits[idx].tests.clone();
        for test in tests {
            self.mark_priority(test);
        }
    }

    pub(crate) fn refresh_commit_priority(&mut self, idx: CommitIdx) {
        let commit = &self.commits[idx];
        let calc = if commit.reached_by.is_some() {
            commit.settings.user_priority
        } else {
            0
        };
        self.set_calc_priority(idx, calc);
    }

    pub(crate) fn mark_priority(&mut self, test: TestIdx) {
        if !self.in_priority_dirty[test] {
            self.in_priority_dirty[test] = true;
            self.priority_dirty.push_back(test);
        }
    }

    pub(crate) fn mark_state(&mut self, test: TestIdx) {
        if !self.in_state_dirty[test] {
            self.in_state_dirty[test] = true;
            self.state_dirty.push_back(test);
        }
    }
}

use super::model::RunState;

/// Infrastructure failures of one test that are retried instead of counted.
pub const MAX_INFRASTRUCTURE_RETRIES: u32 = 3;

fn clamp_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// The sequence number at the end of an id like `r-run42` (`None` for foreign ids).
pub(crate) fn id_sequence(id: &str) -> Option<u64> {
    let digits: String = id
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}
