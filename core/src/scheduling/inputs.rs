//! User inputs: enable/disable branches and commits, bump priorities, runs desired (per test
//! per commit, with a per-branch default), cancel a run, restart a test, deployments; and
//! the durable [`UserSettings`] document that carries them across an empty Redis.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::engine::Engine;
use super::model::{
    BranchSettings, CommitSettings, DeploymentOwner, DeploymentRecord, RunState, UserSettings,
};
use crate::protocol::Millis;

/// Largest runs-desired a user may ask for.
pub const MAX_RUNS_DESIRED: u32 = 1000;

/// Caps on live deployments (M6); 0 means no cap.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeploymentLimits {
    /// Live deployments on the whole install.
    pub max_live: u32,
    /// Live deployments of one definition.
    pub max_live_per_test: u32,
}

/// Why an event or input was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SchedulingError {
    #[error("unknown branch {repo}/{branch}")]
    UnknownBranch { repo: String, branch: String },
    #[error("unknown commit {repo}/{commit}")]
    UnknownCommit { repo: String, commit: String },
    #[error("unknown test {0}")]
    UnknownTest(String),
    #[error("unknown run {0}")]
    UnknownRun(String),
    #[error("unknown machine {0}")]
    UnknownMachine(String),
    #[error("unknown deployment {0}")]
    UnknownDeployment(String),
    /// A configured cap (e.g. live deployments) is reached: try again once something ended.
    #[error("{0}")]
    LimitReached(String),
    #[error("{0}")]
    Invalid(String),
}

impl Engine {
    pub(crate) fn commit_idx(&self, repo: &str, commit: &str) -> Result<usize, SchedulingError> {
        self.commit_index
            .get(&(repo.to_string(), commit.to_string()))
            .copied()
            .ok_or_else(|| SchedulingError::UnknownCommit {
                repo: repo.into(),
                commit: commit.into(),
            })
    }

    /// Turns "test this branch's top and every new commit" on or off. On: the current head
    /// is enabled. Off: the head is disabled too (other commits keep their settings).
    pub fn set_branch_under_test(
        &mut self,
        repo: &str,
        branch: &str,
        on: bool,
        now: Millis,
    ) -> Result<(), SchedulingError> {
        self.now = now;
        let key = (repo.to_string(), branch.to_string());
        let record = self
            .branches
            .get_mut(&key)
            .ok_or_else(|| unknown_branch(repo, branch))?;
        if record.under_test != on {
            record.under_test = on;
            self.changes.branches.insert(key);
            self.changes.settings = true;
        }
        if let Some(head) = record.head.clone() {
            let idx = self.commit_slot(repo, &head);
            if on {
                self.raise_user_priority(idx, 1);
            } else {
                self.set_user_priority_idx(idx, 0);
            }
        }
        self.settle();
        Ok(())
    }

    /// Sets a commit's user priority: 0 disables it, 1 enables it, higher runs earlier.
    pub fn set_commit_priority(
        &mut self,
        repo: &str,
        commit: &str,
        priority: u32,
        now: Millis,
    ) -> Result<(), SchedulingError> {
        self.now = now;
        let idx = self.commit_idx(repo, commit)?;
        self.set_user_priority_idx(idx, priority);
        self.settle();
        Ok(())
    }

    /// Sets the user priority of the branch head and up to `depth` of its ancestors.
    /// Returns how many commits were visited.
    pub fn prioritize_branch_history(
        &mut self,
        repo: &str,
        branch: &str,
        priority: u32,
        depth: usize,
        now: Millis,
    ) -> Result<usize, SchedulingError> {
        self.now = now;
        let head = self
            .branches
            .get(&(repo.to_string(), branch.to_string()))
            .and_then(|record| record.head.clone())
            .ok_or_else(|| unknown_branch(repo, branch))?;
        let start = self.commit_idx(repo, &head)?;
        let mut seen = std::collections::HashSet::from([start]);
        let mut frontier = std::collections::VecDeque::from([start]);
        let mut visited = Vec::new();
        while let Some(idx) = frontier.pop_front() {
            if visited.len() >= depth {
                break;
            }
            visited.push(idx);
            for parent in self.commits[idx].parents.clone() {
                if seen.insert(parent) {
                    frontier.push_back(parent);
                }
            }
        }
        for idx in &visited {
            self.set_user_priority_idx(*idx, priority);
        }
        self.settle();
        Ok(visited.len())
    }

    /// Runs desired for one test of one commit (1..=1000).
    pub fn set_runs_desired(
        &mut self,
        repo: &str,
        commit: &str,
        test_name: &str,
        runs: u32,
        now: Millis,
    ) -> Result<(), SchedulingError> {
        self.now = now;
        let idx = self.commit_idx(repo, commit)?;
        let Some(test_hash) = self.commits[idx].record.tests.get(test_name).cloned() else {
            return Err(SchedulingError::UnknownTest(format!(
                "{repo}/{commit}/{test_name}"
            )));
        };
        let runs = runs.clamp(1, MAX_RUNS_DESIRED);
        let commit_record = &mut self.commits[idx];
        if commit_record.settings.runs_desired.get(test_name) != Some(&runs) {
            commit_record
                .settings
                .runs_desired
                .insert(test_name.to_string(), runs);
            self.changes
                .commit_settings
                .insert((repo.to_string(), commit.to_string()));
            self.changes.settings = true;
        }
        if let Some(test) = self.test_index.get(&test_hash).copied() {
            self.mark_priority(test);
        }
        self.settle();
        Ok(())
    }

    /// "Run these tests `runs` times on the last `last_commits` commits of this branch":
    /// along the head's first parents, each commit is enabled (its user priority raised to
    /// at least 1) and every test whose name matches one of `patterns` (globs: `*`, `?`,
    /// `[a-z]`) gets `runs` desired (never lowered below what a user asked before).
    /// Returns (commits visited, (commit, test) pairs set). Nothing matching is an error.
    pub fn repeat_on_branch(
        &mut self,
        repo: &str,
        branch: &str,
        patterns: &[String],
        runs: u32,
        last_commits: usize,
        now: Millis,
    ) -> Result<(usize, usize), SchedulingError> {
        self.now = now;
        let patterns = patterns
            .iter()
            .map(|text| {
                glob::Pattern::new(text).map_err(|err| {
                    SchedulingError::Invalid(format!("test pattern {text:?}: {err}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if patterns.is_empty() || last_commits == 0 {
            return Err(SchedulingError::Invalid(
                "give at least one test pattern and one commit".into(),
            ));
        }
        let runs = runs.clamp(1, MAX_RUNS_DESIRED);
        let head = self
            .branches
            .get(&(repo.to_string(), branch.to_string()))
            .and_then(|record| record.head.clone())
            .ok_or_else(|| unknown_branch(repo, branch))?;
        let mut idx = Some(self.commit_idx(repo, &head)?);
        let mut commits = Vec::new();
        while let Some(current) = idx.filter(|_| commits.len() < last_commits) {
            commits.push(current);
            idx = self.commits[current].parents.first().copied();
        }
        let mut pairs = 0;
        for idx in &commits {
            let names: Vec<String> = self.commits[*idx]
                .record
                .tests
                .keys()
                .filter(|name| patterns.iter().any(|pattern| pattern.matches(name)))
                .cloned()
                .collect();
            if names.is_empty() {
                continue;
            }
            let commit = &mut self.commits[*idx];
            for name in names {
                let wanted = commit.settings.runs_desired.entry(name).or_insert(0);
                *wanted = (*wanted).max(runs);
                pairs += 1;
            }
            let key = (commit.record.repo.clone(), commit.record.hash.clone());
            self.changes.commit_settings.insert(key);
            self.changes.settings = true;
            self.raise_user_priority(*idx, 1);
            for test in self.commits[*idx].tests.clone() {
                self.mark_priority(test);
            }
        }
        if pairs == 0 {
            return Err(SchedulingError::UnknownTest(format!(
                "no test of the last {} commits of {repo}/{branch} matches {:?}",
                commits.len(),
                patterns.iter().map(|p| p.as_str()).collect::<Vec<_>>()
            )));
        }
        self.settle();
        Ok((commits.len(), pairs))
    }

    /// The runs desired for every test of the branch's commits (unless a commit overrides).
    pub fn set_branch_default_runs(
        &mut self,
        repo: &str,
        branch: &str,
        runs: u32,
        now: Millis,
    ) -> Result<(), SchedulingError> {
        self.now = now;
        let key = (repo.to_string(), branch.to_string());
        let record = self
            .branches
            .get_mut(&key)
            .ok_or_else(|| unknown_branch(repo, branch))?;
        let runs = runs.clamp(1, MAX_RUNS_DESIRED);
        if record.default_runs_desired != runs {
            record.default_runs_desired = runs;
            self.changes.branches.insert(key);
            self.changes.settings = true;
            self.recompute_reachability(repo);
        }
        self.settle();
        Ok(())
    }

    /// Cancels an active run (the worker is told to stop). `Ok(false)` when it had already
    /// ended.
    pub fn cancel_run(
        &mut self,
        run_id: &str,
        reason: &str,
        now: Millis,
    ) -> Result<bool, SchedulingError> {
        self.now = now;
        let run = self
            .runs
            .get(run_id)
            .ok_or_else(|| SchedulingError::UnknownRun(run_id.into()))?;
        if !run.state.is_active() {
            return Ok(false);
        }
        self.end_active_run(run_id, RunState::Cancelled, reason, true);
        self.settle();
        Ok(true)
    }

    /// Restarts a definition: its finished runs stop counting (kept as history, marked
    /// cleared) and its active runs are cancelled, so it is scheduled afresh. Dependents
    /// blocked by its failure are unblocked.
    pub fn restart_test(&mut self, test_hash: &str, now: Millis) -> Result<(), SchedulingError> {
        self.now = now;
        let test = *self
            .test_index
            .get(test_hash)
            .ok_or_else(|| SchedulingError::UnknownTest(test_hash.into()))?;
        for run_id in self.tests[test].runs.clone() {
            let Some(state) = self.runs.get(&run_id).map(|run| run.state) else {
                continue;
            };
            if state.is_active() {
                self.end_active_run(&run_id, RunState::Cancelled, "test restarted", true);
            } else if let Some(run) = self.runs.get_mut(&run_id).filter(|run| run.counted()) {
                run.cleared = true;
                self.changes.runs.insert(run_id.clone());
                self.changes.result_records.insert(run_id);
            }
        }
        self.recount(test);
        self.settle();
        Ok(())
    }

    /// Creates a deployment of a definition; the next fitting idle machine receives it
    /// before any other work.
    pub fn create_deployment(
        &mut self,
        test_hash: &str,
        now: Millis,
    ) -> Result<String, SchedulingError> {
        self.create_deployment_by(test_hash, None, now)
    }

    /// [`Engine::create_deployment`], recording who booted it.
    pub fn create_deployment_by(
        &mut self,
        test_hash: &str,
        booted_by: Option<DeploymentOwner>,
        now: Millis,
    ) -> Result<String, SchedulingError> {
        self.now = now;
        let test = *self
            .test_index
            .get(test_hash)
            .ok_or_else(|| SchedulingError::UnknownTest(test_hash.into()))?;
        if self.tests[test].record.is_none() {
            return Err(SchedulingError::UnknownTest(test_hash.into()));
        }
        if !self.hardware_viable(test) {
            return Err(SchedulingError::Invalid(format!(
                "no machine can provide the hardware {test_hash} needs"
            )));
        }
        let one_shot = self.tests[test]
            .requirements
            .as_ref()
            .is_some_and(|requirements| requirements.os.is_one_shot());
        if one_shot {
            return Err(SchedulingError::Invalid(
                "deployments of naked-AMI environments are not served: a one-shot machine \
                 runs one build or test"
                    .into(),
            ));
        }
        self.check_deployment_limits(test_hash)?;
        let id = self.fresh_id("dep");
        self.deployments.insert(
            id.clone(),
            DeploymentRecord {
                deployment_id: id.clone(),
                test_hash: test_hash.into(),
                created: now,
                machine_id: None,
                alive: true,
                booted_by,
            },
        );
        self.changes.deployments.insert(id.clone());
        self.changes.work_available = true;
        Ok(id)
    }

    /// Refuses one more live deployment (of `test_hash`) past the configured caps.
    fn check_deployment_limits(&self, test_hash: &str) -> Result<(), SchedulingError> {
        let limits = self.config.deployment_limits;
        let alive = self.deployments.values().filter(|d| d.alive);
        let (total, of_test) = alive.fold((0u32, 0u32), |(total, of_test), d| {
            (total + 1, of_test + u32::from(d.test_hash == test_hash))
        });
        if limits.max_live > 0 && total >= limits.max_live {
            return Err(SchedulingError::LimitReached(format!(
                "{total} deployments are live, the most this install allows \
                 (deployments.max_live = {}): shut one down first",
                limits.max_live
            )));
        }
        if limits.max_live_per_test > 0 && of_test >= limits.max_live_per_test {
            return Err(SchedulingError::LimitReached(format!(
                "{of_test} deployments of this definition are live, the most allowed \
                 (deployments.max_live_per_test = {}): shut one down first",
                limits.max_live_per_test
            )));
        }
        Ok(())
    }

    /// Ends a deployment (user shutdown or the worker reported its exit).
    pub fn shutdown_deployment(
        &mut self,
        deployment_id: &str,
        now: Millis,
    ) -> Result<(), SchedulingError> {
        self.now = now;
        let deployment = self
            .deployments
            .get_mut(deployment_id)
            .ok_or_else(|| SchedulingError::UnknownDeployment(deployment_id.into()))?;
        if !deployment.alive {
            return Ok(());
        }
        deployment.alive = false;
        let machine_id = deployment.machine_id.clone();
        self.changes.deployments.insert(deployment_id.into());
        if let Some(machine_id) = machine_id {
            self.release_machine(&machine_id, deployment_id, now);
        }
        Ok(())
    }

    /// The user settings document (branches under test, default runs, commit priorities and
    /// runs desired), for durable storage.
    pub fn user_settings(&self) -> UserSettings {
        let mut settings = UserSettings::default();
        for ((repo, name), branch) in &self.branches {
            if branch.under_test || branch.default_runs_desired != 1 {
                settings.branches.entry(repo.clone()).or_default().insert(
                    name.clone(),
                    BranchSettings {
                        under_test: branch.under_test,
                        default_runs_desired: branch.default_runs_desired,
                    },
                );
            }
        }
        for commit in &self.commits {
            if commit.settings != CommitSettings::default() {
                settings
                    .commits
                    .entry(commit.record.repo.clone())
                    .or_default()
                    .insert(commit.record.hash.clone(), commit.settings.clone());
            }
        }
        settings.hunts = self.hunts.clone();
        settings.quarantine = self.quarantine.entries.values().cloned().collect();
        settings.quarantine_log = self.quarantine.log.iter().cloned().collect();
        settings
    }

    /// Re-applies a stored settings document (rebuild on an empty Redis). Branches that do
    /// not exist yet are created without a head so a later scan finds the flag set.
    pub fn apply_user_settings(&mut self, settings: &UserSettings, now: Millis) {
        self.now = now;
        let mut repos = std::collections::BTreeSet::new();
        for (repo, branches) in &settings.branches {
            for (name, branch) in branches {
                let key = (repo.clone(), name.clone());
                let record = self.branches.entry(key.clone()).or_insert_with(|| {
                    super::model::BranchRecord {
                        repo: repo.clone(),
                        name: name.clone(),
                        head: None,
                        under_test: false,
                        default_runs_desired: 1,
                    }
                });
                record.under_test = branch.under_test;
                record.default_runs_desired = branch.default_runs_desired.max(1);
                self.changes.branches.insert(key);
                repos.insert(repo.clone());
            }
        }
        for (repo, commits) in &settings.commits {
            for (hash, commit_settings) in commits {
                let idx = self.commit_slot(repo, hash);
                self.commits[idx].settings = commit_settings.clone();
                self.changes
                    .commit_settings
                    .insert((repo.clone(), hash.clone()));
                repos.insert(repo.clone());
            }
        }
        for hunt in settings.hunts.values() {
            if self.hunts.get(&hunt.hunt_id) != Some(hunt) {
                self.changes.hunts.insert(hunt.hunt_id.clone());
            }
            self.load_hunt(hunt.clone());
        }
        if !settings.quarantine.is_empty() || !settings.quarantine_log.is_empty() {
            self.load_quarantine(settings.quarantine.clone(), settings.quarantine_log.clone());
            self.changes.quarantine = self.quarantine.entries.keys().cloned().collect();
            self.changes.quarantine_events = self.quarantine.log.iter().cloned().collect();
        }
        self.refresh_hunt_index();
        for repo in repos {
            self.recompute_reachability(&repo);
            // Priorities of commits whose reachability did not change still need a refresh.
            for idx in self.repo_commits.get(&repo).cloned().unwrap_or_default() {
                self.refresh_commit_priority(idx);
            }
        }
        self.settle();
    }
}

fn unknown_branch(repo: &str, branch: &str) -> SchedulingError {
    SchedulingError::UnknownBranch {
        repo: repo.into(),
        branch: branch.into(),
    }
}
