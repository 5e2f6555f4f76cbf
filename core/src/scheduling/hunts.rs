//! Flake hunts: "find the commit that made this test flaky" as a scheduler input.
//!
//! A hunt freezes a stretch of a branch's first-parent history (newest = the branch head or
//! `to`, oldest = `from` or [`MAX_HUNT_COMMITS`] back) and spends a budget of runs of one
//! test there. Commits that declare the same identity hash share their runs (see
//! [`super::TestCounts`]), so the hunt works on *positions*: maximal stretches of
//! consecutive commits with one hash, named by the oldest commit of the stretch (the one
//! that introduced the hash). Each batch, the planner of [`crate::stats::hunt`] picks the
//! positions whose runs tell the most about where the failure rate changed; the engine turns
//! that into extra runs wanted of those definitions (at the hunt's priority), without
//! enabling the commits: only the hunted test and the builds it needs run. The next batch is
//! planned when the previous one has finished.
//!
//! A hunt ends when one position holds the target share of the change-point posterior
//! (`found`), when the posterior says "no change" with that probability (`no_change`), when
//! its budget is spent (`budget_spent`) or when a user cancels it. Hunts are part of the
//! durable [`super::UserSettings`] and of the Redis state, so they survive restarts.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::engine::{CommitIdx, Engine, TestIdx};
use super::inputs::SchedulingError;
use super::model::ParseRecord;
use super::state::TestState;
use crate::definitions::ResolvedDependency;
use crate::protocol::Millis;
use crate::stats::change_point::{change_posterior, ChangeModel, MissingReason, Position};
use crate::stats::hunt::{next_step, HuntOutcome, HuntSettings, HuntStep};
use crate::stats::posterior::RatePosterior;

/// Longest stretch of history one hunt covers.
pub const MAX_HUNT_COMMITS: usize = 2000;
/// Largest budget of one hunt.
pub const MAX_HUNT_BUDGET: u32 = 100_000;
/// Runs started at once by a hunt unless it says otherwise.
pub const DEFAULT_HUNT_BATCH_RUNS: u32 = 8;
/// Share of the posterior one commit must hold to be named the culprit, by default.
pub const DEFAULT_HUNT_TARGET: f64 = 0.95;

/// What a user asks for when starting a hunt.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HuntSpec {
    pub repo: String,
    pub branch: String,
    /// Definition name.
    pub test: String,
    /// One test case of the definition (its failures instead of the whole run's).
    #[serde(default)]
    pub case: Option<String>,
    pub budget_runs: u32,
    /// Oldest commit to consider (an ancestor of `to` along first parents).
    #[serde(default)]
    pub from: Option<String>,
    /// Newest commit to consider (default: the branch head).
    #[serde(default)]
    pub to: Option<String>,
    /// Scheduling priority of the hunt's runs (like a commit's user priority; default 1).
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Runs started per batch.
    #[serde(default = "default_batch_runs")]
    pub batch_runs: u32,
    /// Posterior share that names the culprit.
    #[serde(default = "default_target")]
    pub target_probability: f64,
}

fn default_priority() -> u32 {
    1
}
fn default_batch_runs() -> u32 {
    DEFAULT_HUNT_BATCH_RUNS
}
fn default_target() -> f64 {
    DEFAULT_HUNT_TARGET
}

/// Where a hunt stands.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HuntState {
    Running,
    /// One commit holds at least the target share of the posterior.
    Found,
    /// "The rate did not change in this range" holds at least the target probability.
    NoChange,
    /// The budget is spent without a confident answer.
    BudgetSpent,
    Cancelled,
}

impl HuntState {
    pub fn name(self) -> &'static str {
        match self {
            HuntState::Running => "running",
            HuntState::Found => "found",
            HuntState::NoChange => "no_change",
            HuntState::BudgetSpent => "budget_spent",
            HuntState::Cancelled => "cancelled",
        }
    }
}

/// The commit a hunt named, with the posterior probability that the rate changed there.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Culprit {
    pub commit: String,
    pub probability: f64,
    /// Older commits the change may equally have come in with: commits just before
    /// `commit` where the test could not run (absent, untestable, its build failed), so no
    /// run can tell them apart. Usually empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub could_also_be: Vec<String>,
}

/// A hunt as stored (durable, in the settings document and in Redis).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HuntRecord {
    pub hunt_id: String,
    pub spec: HuntSpec,
    /// First-parent history, oldest first, frozen when the hunt started.
    pub commits: Vec<String>,
    pub state: HuntState,
    /// Runs the hunt asked for so far (never above the budget).
    pub runs_used: u32,
    /// Batches planned so far.
    pub batches: u32,
    /// Commit (the first of its position) → finished-or-running runs of its definition the
    /// hunt wants.
    pub targets: BTreeMap<String, u64>,
    #[serde(default)]
    pub culprit: Option<Culprit>,
    /// What the user should know about the outcome (e.g. more than one change likely).
    #[serde(default)]
    pub note: Option<String>,
    pub created: Millis,
    /// 0 while running.
    #[serde(default)]
    pub ended: Millis,
}

/// One position of a hunt: a stretch of consecutive commits that share the test's identity
/// hash (or share why it has none), and what was observed there.
#[derive(Clone, Debug, PartialEq)]
pub struct HuntPosition {
    /// Commits of the stretch, oldest first; the first one introduced the hash.
    pub commits: Vec<String>,
    pub test_hash: Option<String>,
    pub observation: Position,
}

impl HuntPosition {
    pub fn first_commit(&self) -> &str {
        &self.commits[0]
    }
}

/// A hunt with what its runs say now (see [`Engine::hunt_report`]).
#[derive(Clone, Debug)]
pub struct HuntReport {
    pub record: HuntRecord,
    /// Oldest first.
    pub positions: Vec<HuntPosition>,
    /// P(position k is the first with the new rate), one per position.
    pub posterior: Vec<f64>,
    /// P(the rate never changed in the range).
    pub no_change: f64,
    /// The rate before and after the most probable change (`None` without any runs).
    pub rate_before: Option<RatePosterior>,
    pub rate_after: Option<RatePosterior>,
    /// The check for more than one change (see [`crate::stats::change_point`]).
    pub more_than_one_change: f64,
    /// Pinned repos whose commit changed at the culprit: the change came in through a pin
    /// bump when not empty.
    pub pin_changes: Vec<PinChange>,
}

/// A pinned repo whose commit differs between two definitions.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PinChange {
    pub repo: String,
    pub before: String,
    pub after: String,
}

/// Commits of positions `first..last` and the first commit of `last`: where the change
/// may have come in when the positions before `last` cannot run.
fn range_commits(positions: &[HuntPosition], first: usize, last: usize) -> Vec<String> {
    positions[first..last]
        .iter()
        .flat_map(|position| position.commits.iter().cloned())
        .collect()
}

/// The hunts' derived state inside the engine: what their runs add to each definition and
/// which definitions they watch.
#[derive(Default)]
pub(crate) struct HuntIndex {
    /// Definition → (priority, runs wanted) asked by running hunts.
    pub(crate) demand: HashMap<TestIdx, (u32, u32)>,
    /// Definitions at any position of a running hunt.
    pub(crate) watched: HashSet<TestIdx>,
    /// A watched definition changed: running hunts must be looked at again.
    pub(crate) dirty: bool,
}

impl Engine {
    /// Starts a hunt; returns its id. The history is frozen now.
    pub fn start_hunt(&mut self, spec: HuntSpec, now: Millis) -> Result<String, SchedulingError> {
        self.now = now;
        if spec.budget_runs == 0 || spec.budget_runs > MAX_HUNT_BUDGET {
            return Err(SchedulingError::Invalid(format!(
                "budget_runs must be between 1 and {MAX_HUNT_BUDGET}"
            )));
        }
        if !(0.5..1.0).contains(&spec.target_probability) {
            return Err(SchedulingError::Invalid(
                "target_probability must be at least 0.5 and below 1".into(),
            ));
        }
        if spec.batch_runs == 0 {
            return Err(SchedulingError::Invalid(
                "batch_runs must be at least 1".into(),
            ));
        }
        if spec.priority == 0 {
            return Err(SchedulingError::Invalid(
                "priority must be at least 1 (0 would never run)".into(),
            ));
        }
        let commits = self.first_parent_range(&spec)?;
        let declared = commits.iter().any(|idx| {
            self.commits[*idx]
                .record
                .tests
                .contains_key(spec.test.as_str())
        });
        if !declared {
            return Err(SchedulingError::UnknownTest(format!(
                "{} is not declared by any commit of {}/{} in this range",
                spec.test, spec.repo, spec.branch
            )));
        }
        let hunt_id = self.fresh_id("hunt");
        let record = HuntRecord {
            hunt_id: hunt_id.clone(),
            spec,
            commits: commits
                .iter()
                .map(|idx| self.commits[*idx].record.hash.clone())
                .collect(),
            state: HuntState::Running,
            runs_used: 0,
            batches: 0,
            targets: BTreeMap::new(),
            culprit: None,
            note: None,
            created: now,
            ended: 0,
        };
        self.hunts.insert(hunt_id.clone(), record);
        self.hunt_changed(&hunt_id);
        self.hunt_index.dirty = true;
        self.refresh_hunt_index();
        self.settle();
        Ok(hunt_id)
    }

    /// Cancels a running hunt (its queued runs are no longer wanted). Cancelling an ended
    /// hunt changes nothing.
    pub fn cancel_hunt(&mut self, hunt_id: &str, now: Millis) -> Result<(), SchedulingError> {
        self.now = now;
        let hunt = self
            .hunts
            .get_mut(hunt_id)
            .ok_or_else(|| SchedulingError::Invalid(format!("unknown hunt {hunt_id}")))?;
        if hunt.state == HuntState::Running {
            hunt.state = HuntState::Cancelled;
            hunt.ended = now;
            self.hunt_changed(hunt_id);
            self.refresh_hunt_index();
            self.settle();
        }
        Ok(())
    }

    /// A hunt by id.
    pub fn hunt(&self, hunt_id: &str) -> Option<&HuntRecord> {
        self.hunts.get(hunt_id)
    }

    /// Every hunt, or those of one branch, newest first.
    pub fn hunts(&self, repo: Option<&str>, branch: Option<&str>) -> Vec<&HuntRecord> {
        let mut hunts: Vec<&HuntRecord> = self
            .hunts
            .values()
            .filter(|hunt| repo.is_none_or(|repo| hunt.spec.repo == repo))
            .filter(|hunt| branch.is_none_or(|branch| hunt.spec.branch == branch))
            .collect();
        hunts.sort_by(|a, b| b.created.cmp(&a.created).then(b.hunt_id.cmp(&a.hunt_id)));
        hunts
    }

    /// The positions of a hunt with what has been observed at each, oldest first.
    pub fn hunt_positions(&self, hunt_id: &str) -> Option<Vec<HuntPosition>> {
        let hunt = self.hunts.get(hunt_id)?;
        Some(self.positions_of(hunt))
    }

    /// A hunt with its positions and the change-point posterior over them, for pages and
    /// the API.
    pub fn hunt_report(&self, hunt_id: &str) -> Option<HuntReport> {
        let hunt = self.hunts.get(hunt_id)?;
        let positions = self.positions_of(hunt);
        let observations: Vec<Position> = positions.iter().map(|p| p.observation).collect();
        let posterior = change_posterior(&observations, &ChangeModel::default()).ok();
        let (posterior, no_change, rate_before, rate_after, more_than_one_change) = match posterior
        {
            Some(posterior) => (
                posterior.first_bad,
                posterior.no_change,
                Some(posterior.rate_before),
                Some(posterior.rate_after),
                posterior.more_than_one_change,
            ),
            None => (vec![0.0; positions.len()], 1.0, None, None, 0.0),
        };
        let culprit_position = match &hunt.culprit {
            Some(culprit) => positions
                .iter()
                .position(|p| p.first_commit() == culprit.commit),
            None => None,
        };
        let pin_changes = culprit_position
            .map(|at| self.pin_changes_at(hunt, &positions, at))
            .unwrap_or_default();
        Some(HuntReport {
            record: hunt.clone(),
            pin_changes,
            positions,
            posterior,
            no_change,
            rate_before,
            rate_after,
            more_than_one_change,
        })
    }

    /// Other repos whose pinned commit differs between the definition at position `at`
    /// and the one at the closest older position that has a definition: the change came in
    /// through a pin bump when this is not empty.
    fn pin_changes_at(
        &self,
        hunt: &HuntRecord,
        positions: &[HuntPosition],
        at: usize,
    ) -> Vec<PinChange> {
        let pins_of = |hash: &str| -> BTreeMap<String, String> {
            let Some(record) = self.test_record(hash) else {
                return BTreeMap::new();
            };
            record
                .definition
                .all_dependencies()
                .values()
                .map(|dep| match dep {
                    ResolvedDependency::Source { repo, commit, .. } => {
                        (repo.clone(), commit.clone())
                    }
                    ResolvedDependency::Build { defined_in, .. } => {
                        (defined_in.repo.clone(), defined_in.commit.clone())
                    }
                })
                .filter(|(repo, _)| *repo != hunt.spec.repo)
                .collect()
        };
        let Some(after) = positions[at].test_hash.as_deref() else {
            return Vec::new();
        };
        let Some(before) = positions[..at]
            .iter()
            .rev()
            .find_map(|p| p.test_hash.as_deref())
        else {
            return Vec::new();
        };
        let (before, after) = (pins_of(before), pins_of(after));
        after
            .iter()
            .filter_map(|(repo, commit)| {
                let old = before.get(repo)?;
                (old != commit).then(|| PinChange {
                    repo: repo.clone(),
                    before: old.clone(),
                    after: commit.clone(),
                })
            })
            .collect()
    }

    pub(crate) fn load_hunt(&mut self, record: HuntRecord) {
        if let Some(seq) = super::engine::id_sequence(&record.hunt_id) {
            self.next_id = self.next_id.max(seq + 1);
        }
        self.hunts.insert(record.hunt_id.clone(), record);
        self.hunt_index.dirty = true;
    }

    fn hunt_changed(&mut self, hunt_id: &str) {
        self.changes.hunts.insert(hunt_id.to_string());
        self.changes.settings = true;
    }

    /// `spec.to` (or the branch head) and its first-parent ancestors down to `spec.from`,
    /// oldest first.
    fn first_parent_range(&self, spec: &HuntSpec) -> Result<Vec<CommitIdx>, SchedulingError> {
        let branch = self
            .branches
            .get(&(spec.repo.clone(), spec.branch.clone()))
            .ok_or_else(|| SchedulingError::UnknownBranch {
                repo: spec.repo.clone(),
                branch: spec.branch.clone(),
            })?;
        let newest = match &spec.to {
            Some(to) => to.clone(),
            None => branch.head.clone().ok_or_else(|| {
                SchedulingError::Invalid(format!(
                    "{}/{} has not been scanned yet",
                    spec.repo, spec.branch
                ))
            })?,
        };
        let start = self.commit_idx(&spec.repo, &newest)?;
        if let Some(from) = &spec.from {
            self.commit_idx(&spec.repo, from)?;
        }
        let mut range = vec![start];
        let mut reached_from = spec.from.as_deref() == Some(newest.as_str());
        while !reached_from && range.len() < MAX_HUNT_COMMITS {
            let last = *range.last().expect("not empty");
            let Some(parent) = self.commits[last].parents.first().copied() else {
                break;
            };
            if matches!(self.commits[parent].record.parse, ParseRecord::NotLoaded) {
                break;
            }
            range.push(parent);
            reached_from = spec.from.as_deref() == Some(self.commits[parent].record.hash.as_str());
        }
        if let Some(from) = &spec.from {
            if !reached_from {
                return Err(SchedulingError::Invalid(format!(
                    "{from} is not a first-parent ancestor of {newest} within \
                     {MAX_HUNT_COMMITS} commits"
                )));
            }
        }
        if range.len() < 2 {
            return Err(SchedulingError::Invalid(
                "a hunt needs at least two commits of history".into(),
            ));
        }
        range.reverse();
        Ok(range)
    }

    /// The definition a hunt runs at one commit, or why there is none.
    fn hunted_test_at(
        &self,
        hunt: &HuntRecord,
        commit: &str,
    ) -> Result<(String, Option<TestIdx>), MissingReason> {
        let Some(idx) = self
            .commit_index
            .get(&(hunt.spec.repo.clone(), commit.to_string()))
        else {
            return Err(MissingReason::Absent);
        };
        let record = &self.commits[*idx].record;
        match &record.parse {
            ParseRecord::Ok => {}
            ParseRecord::Untestable { .. } => return Err(MissingReason::Untestable),
            ParseRecord::NotLoaded | ParseRecord::Pending { .. } => {
                return Err(MissingReason::Untestable)
            }
            ParseRecord::NoTests => return Err(MissingReason::Absent),
        }
        let hash = record
            .tests
            .get(hunt.spec.test.as_str())
            .ok_or(MissingReason::Absent)?;
        Ok((hash.clone(), self.test_index.get(hash).copied()))
    }

    fn positions_of(&self, hunt: &HuntRecord) -> Vec<HuntPosition> {
        let mut positions: Vec<HuntPosition> = Vec::new();
        let mut previous_key: Option<Result<String, MissingReason>> = None;
        for commit in &hunt.commits {
            let at = self.hunted_test_at(hunt, commit);
            let key = at.as_ref().map(|(hash, _)| hash.clone()).map_err(|r| *r);
            if previous_key.as_ref() == Some(&key) {
                positions
                    .last_mut()
                    .expect("a previous key means a previous position")
                    .commits
                    .push(commit.clone());
                continue;
            }
            let observation = match &at {
                Err(reason) => Position::Missing(*reason),
                Ok((_, test)) => self.observe(*test, hunt.spec.case.as_deref()),
            };
            positions.push(HuntPosition {
                commits: vec![commit.clone()],
                test_hash: key.clone().ok(),
                observation,
            });
            previous_key = Some(key);
        }
        positions
    }

    /// What the runs of one definition say (for a test case: the runs that reported it).
    fn observe(&self, test: Option<TestIdx>, case: Option<&str>) -> Position {
        let Some(test) = test else {
            return Position::Missing(MissingReason::NotRun);
        };
        if let Some(reason) = self.blocked(test) {
            return Position::Missing(reason);
        }
        let slot = &self.tests[test];
        let (failures, runs) = match case {
            None => (slot.counts.failures, slot.counts.runs),
            Some(case) => self.case_counts(test, case),
        };
        if runs == 0 {
            if case.is_some() && slot.counts.runs > 0 {
                // The definition ran but never reported this case: it is not there.
                return Position::Missing(MissingReason::Absent);
            }
            return Position::Missing(MissingReason::NotRun);
        }
        Position::Observed { failures, runs }
    }

    /// (failures, runs) of one test case over a definition's counted runs.
    fn case_counts(&self, test: TestIdx, case: &str) -> (u64, u64) {
        let mut counts = (0, 0);
        for run_id in &self.tests[test].runs {
            let Some(run) = self.runs.get(run_id).filter(|run| run.counted()) else {
                continue;
            };
            if let Ok(at) = run
                .test_cases
                .binary_search_by(|c| c.name.as_str().cmp(case))
            {
                counts.1 += 1;
                counts.0 += u64::from(!run.test_cases[at].passed);
            }
        }
        counts
    }

    /// Whether every commit of the hunt's history is known with its parse outcome.
    fn history_loaded(&self, hunt: &HuntRecord) -> bool {
        hunt.commits.iter().all(|commit| {
            self.commit_index
                .get(&(hunt.spec.repo.clone(), commit.clone()))
                .is_some_and(|idx| {
                    !matches!(self.commits[*idx].record.parse, ParseRecord::NotLoaded)
                })
        })
    }

    /// Runs of `test` still to finish for a hunt that wants `target` of them, counting only
    /// definitions that can run at all.
    fn outstanding(&self, test: Option<TestIdx>, target: u64) -> u64 {
        match test {
            Some(test) if self.blocked(test).is_none() => {
                target.saturating_sub(self.tests[test].counts.runs)
            }
            _ => 0,
        }
    }

    /// Why a definition cannot run at all, if it cannot. A blocked position is never
    /// given runs and never waited for (one rule for both, so a hunt cannot wait forever
    /// or plan in a loop).
    fn blocked(&self, test: TestIdx) -> Option<MissingReason> {
        let slot = &self.tests[test];
        if slot.record.is_none() {
            return Some(MissingReason::Untestable);
        }
        match slot.state {
            TestState::DependencyFailed { .. } | TestState::UnresolvedDependencies { .. } => {
                Some(MissingReason::BuildFailed)
            }
            TestState::NoViableHardware { .. } => Some(MissingReason::Untestable),
            _ => None,
        }
    }

    /// Plans the next batch of every running hunt whose previous batch has finished, ends
    /// hunts that reached an answer, and refreshes what they ask of the scheduler. Called
    /// by `settle` when a watched definition changed.
    pub(crate) fn advance_hunts(&mut self) {
        self.hunt_index.dirty = false;
        let running: Vec<String> = self
            .hunts
            .values()
            .filter(|hunt| hunt.state == HuntState::Running)
            .map(|hunt| hunt.hunt_id.clone())
            .collect();
        for hunt_id in running {
            self.advance_hunt(&hunt_id);
        }
        // Always, not only after a new batch: commits ingested since (a rebuild brings them
        // back after the hunts) resolve positions that were missing.
        self.refresh_hunt_index();
    }

    fn advance_hunt(&mut self, hunt_id: &str) {
        let hunt = &self.hunts[hunt_id];
        let outstanding: u64 = hunt
            .targets
            .iter()
            .map(|(commit, target)| {
                let test = self.hunted_test_at(hunt, commit).ok().and_then(|(_, t)| t);
                self.outstanding(test, *target)
            })
            .sum();
        if outstanding > 0 || !self.history_loaded(hunt) {
            // Wait for the batch, or for the commits (a rebuild brings them back with the
            // next scan, after the hunts).
            return;
        }
        let positions = self.positions_of(hunt);
        let observations: Vec<Position> = positions.iter().map(|p| p.observation).collect();
        let remaining = hunt.spec.budget_runs.saturating_sub(hunt.runs_used);
        let settings = HuntSettings {
            target: hunt.spec.target_probability,
            ..HuntSettings::default()
        };
        let batch = u64::from(hunt.spec.batch_runs.min(remaining).max(1));
        let step = match next_step(&observations, u64::from(remaining), batch, &settings) {
            Ok(step) => step,
            Err(err) => {
                // Settings are validated at start; a failure here is a bug: end the hunt
                // with the reason instead of looping.
                let hunt = self.hunts.get_mut(hunt_id).expect("running hunt");
                hunt.state = HuntState::BudgetSpent;
                hunt.ended = self.now;
                hunt.note = Some(format!("the planner failed: {err}"));
                self.hunt_changed(hunt_id);
                return;
            }
        };
        let now = self.now;
        match step {
            HuntStep::Run(batch) if !batch.is_empty() && remaining > 0 => {
                let mut new_targets = Vec::new();
                let mut asked = 0u64;
                for (position, runs) in batch {
                    let Some(position) = positions.get(position) else {
                        continue;
                    };
                    let commit = position.first_commit().to_string();
                    let started = position
                        .test_hash
                        .as_ref()
                        .and_then(|hash| self.test_index.get(hash))
                        .map(|test| {
                            let counts = self.tests[*test].counts;
                            counts.runs + counts.running
                        })
                        .unwrap_or(0);
                    let runs = runs.min(u64::from(remaining) - asked);
                    if runs == 0 {
                        continue;
                    }
                    asked += runs;
                    new_targets.push((commit, started, runs));
                }
                let hunt = self.hunts.get_mut(hunt_id).expect("running hunt");
                for (commit, started, runs) in new_targets {
                    let target = hunt.targets.entry(commit).or_insert(0);
                    *target = (*target).max(started) + runs;
                }
                hunt.runs_used += u32::try_from(asked).unwrap_or(u32::MAX);
                hunt.batches += 1;
            }
            HuntStep::Run(_) => {
                let hunt = self.hunts.get_mut(hunt_id).expect("running hunt");
                hunt.state = HuntState::BudgetSpent;
                hunt.ended = now;
            }
            HuntStep::Done(outcome) => {
                let hunt = self.hunts.get_mut(hunt_id).expect("running hunt");
                hunt.ended = now;
                match outcome {
                    HuntOutcome::Found {
                        culprit_range,
                        probability,
                        more_than_one_change,
                        ..
                    } => {
                        hunt.state = HuntState::Found;
                        hunt.culprit = Some(Culprit {
                            commit: positions[culprit_range.last].first_commit().to_string(),
                            probability,
                            could_also_be: range_commits(
                                &positions,
                                culprit_range.first,
                                culprit_range.last,
                            ),
                        });
                        if more_than_one_change >= 0.5 {
                            hunt.note = Some(format!(
                                "the history may hold more than one change \
                                 (P = {more_than_one_change:.2}): the rate may have changed \
                                 again elsewhere"
                            ));
                        }
                    }
                    HuntOutcome::NoChange { .. } => hunt.state = HuntState::NoChange,
                    HuntOutcome::BudgetSpent { .. } => hunt.state = HuntState::BudgetSpent,
                    HuntOutcome::NotIdentifiable => {
                        hunt.state = HuntState::BudgetSpent;
                        hunt.note = Some(
                            "fewer than two commits of this range can run the test: \
                             no change can be located"
                                .into(),
                        );
                    }
                }
            }
        }
        self.hunt_changed(hunt_id);
    }

    /// Recomputes what running hunts ask of each definition and which ones they watch;
    /// marks the definitions whose demand changed.
    pub(crate) fn refresh_hunt_index(&mut self) {
        let mut demand: HashMap<TestIdx, (u32, u32)> = HashMap::new();
        let mut watched = HashSet::new();
        for hunt in self.hunts.values() {
            if hunt.state != HuntState::Running {
                continue;
            }
            for commit in &hunt.commits {
                if let Ok((_, Some(test))) = self.hunted_test_at(hunt, commit) {
                    watched.insert(test);
                }
            }
            for (commit, target) in &hunt.targets {
                if let Ok((_, Some(test))) = self.hunted_test_at(hunt, commit) {
                    let entry = demand.entry(test).or_insert((0, 0));
                    entry.0 = entry.0.max(hunt.spec.priority);
                    entry.1 = entry.1.max(u32::try_from(*target).unwrap_or(u32::MAX));
                }
            }
        }
        let old = std::mem::take(&mut self.hunt_index.demand);
        for test in old.keys().chain(demand.keys()) {
            if old.get(test) != demand.get(test) {
                self.mark_priority(*test);
            }
        }
        self.hunt_index.demand = demand;
        self.hunt_index.watched = watched;
    }

    /// Commits arrived: running hunts may resolve positions that were missing.
    pub(crate) fn hunts_recheck(&mut self) {
        if self
            .hunts
            .values()
            .any(|hunt| hunt.state == HuntState::Running)
        {
            self.hunt_index.dirty = true;
        }
    }

    /// A definition's counters or state changed: hunts watching it must look again.
    pub(crate) fn hunt_watch_touched(&mut self, test: TestIdx) {
        if self.hunt_index.watched.contains(&test) {
            self.hunt_index.dirty = true;
        }
    }
}
