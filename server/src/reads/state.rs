//! The scheduler's live state for the UI, reads and actions: every read is one
//! [`Scheduler::read`] of the engine's views, translated into the UI's plain view types
//! (a `TestView`'s `TestState` becomes a [`WaitReason`]); every action is the scheduler's
//! own action method, its refusals mapped onto [`ActionError`].

use crate::reads::model::{
    ActionError, BranchState, ChangeStream, CommitState, DeploymentView, MachineView, ReadError,
    RunView, StatePart, TestStatus, WaitReason, WaitingTest,
};
use crate::reads::{action_error, changes, deployments};
use crate::AppContext;
use std::collections::HashMap;
use std::sync::Arc;
use test_looper_core::scheduling::{
    Engine, RunRecord, TestState, TestView, WaitingEntry, WaitingLimits,
};

/// What the queue lists: 500 runnable entries, 200 of each other group (blocked, no
/// hardware, priority zero), blocked work found within 5,000 commits of the branch heads.
const WAITING_LIMITS: WaitingLimits = WaitingLimits {
    runnable: 500,
    walk: 5_000,
    group: 200,
};

/// The scheduler's live state for the UI.
pub struct SchedulerState {
    pub(super) context: Arc<AppContext>,
}

impl SchedulerState {
    pub fn new(context: Arc<AppContext>) -> Self {
        SchedulerState { context }
    }
}

/// Why a definition is (not) running, from its scheduling state and calculated priority.
pub fn wait_reason(state: &TestState, priority: u32) -> WaitReason {
    match state {
        TestState::Unprioritized => WaitReason::NotWanted,
        TestState::NoMoreTests => WaitReason::Done,
        TestState::WaitingToRetry { until } => WaitReason::RetryWait { until: *until },
        TestState::DependencyFailed { reason } => WaitReason::DependencyFailed {
            reason: reason.clone(),
        },
        TestState::WaitingOnBuilds { waiting_for } => WaitReason::BlockedOnBuild {
            build: waiting_for.join(", "),
        },
        TestState::UnresolvedDependencies { missing } => WaitReason::UnresolvedDependencies {
            missing: missing
                .iter()
                .map(|hash| hash.get(..12).unwrap_or(hash))
                .collect::<Vec<_>>()
                .join(", "),
        },
        TestState::NoViableHardware { needs } => WaitReason::NoHardware {
            detail: needs.clone(),
        },
        TestState::FirstBuild | TestState::FirstTest | TestState::WantsMoreTests => {
            WaitReason::Queued { priority }
        }
    }
}

/// The counters and wait reason of one definition.
pub fn test_status(view: &TestView) -> TestStatus {
    TestStatus {
        runs: view.counts.runs,
        failures: view.counts.failures,
        active: u32::try_from(view.counts.running).unwrap_or(u32::MAX),
        runs_desired: view.runs_desired,
        wait: wait_reason(&view.state, view.priority),
        quarantined: view.quarantined,
    }
}

/// A run with the name and source commit of its definition.
pub fn run_view(engine: &Engine, run: &RunRecord) -> RunView {
    let record = engine.test_record(&run.test_hash);
    RunView {
        run_id: run.run_id.clone(),
        test_hash: run.test_hash.clone(),
        test_name: record
            .map(|r| r.definition.name.clone())
            .unwrap_or_default(),
        machine_id: run.machine_id.clone(),
        attempt: run.attempt,
        state: run.state,
        started: run.started,
        ended: run.ended,
        result: run.result.clone(),
        reason: run.reason.clone(),
        cleared: run.cleared,
        counted: run.counted(),
        artifacts: run.artifacts.clone(),
        test_cases: run.test_cases.clone(),
        repo: record.map(|r| r.source.repo.clone()).unwrap_or_default(),
        commit: record.map(|r| r.source.commit.clone()).unwrap_or_default(),
    }
}

/// What the scheduler knows about one commit (`None` when it does not know the commit).
pub fn commit_state(engine: &Engine, repo: &str, hash: &str) -> Option<CommitState> {
    let (settings, _, views) = engine.commit_tests(repo, hash)?;
    let tests = views
        .into_iter()
        .map(|view| {
            let status = test_status(&view);
            (view.hash, status)
        })
        .collect();
    Some(CommitState {
        user_priority: settings.user_priority,
        tests,
    })
}

/// Every run of a definition, newest first.
fn runs_newest_first(engine: &Engine, test_hash: &str) -> Vec<RunView> {
    let mut runs: Vec<RunView> = engine
        .runs_of(test_hash)
        .into_iter()
        .map(|run| run_view(engine, run))
        .collect();
    runs.sort_by_key(|run| std::cmp::Reverse(run.started));
    runs
}

/// [`commit_state`] of several commits, keyed by hash (unknown commits are absent).
pub fn commit_states(
    engine: &Engine,
    repo: &str,
    hashes: &[String],
) -> HashMap<String, CommitState> {
    hashes
        .iter()
        .filter_map(|hash| commit_state(engine, repo, hash).map(|state| (hash.clone(), state)))
        .collect()
}

fn queue_entry(entry: WaitingEntry) -> WaitingTest {
    let status = test_status(&entry.test);
    WaitingTest {
        test_hash: entry.test.hash,
        test_name: entry.test.name,
        repo: entry.repo,
        commit: entry.commit,
        priority: entry.test.priority,
        runs: status.runs,
        active: status.active,
        runs_desired: status.runs_desired,
        wait: status.wait,
    }
}

/// What waits and why ([`Engine::waiting`]).
pub fn queue(engine: &Engine) -> Vec<WaitingTest> {
    engine
        .waiting(WAITING_LIMITS)
        .into_iter()
        .map(queue_entry)
        .collect()
}

impl SchedulerState {
    pub fn wired(&self) -> bool {
        self.context.scheduler.get().is_some()
    }

    pub fn version(&self) -> u64 {
        // Attaching the scheduler changes everything: never reuse views from before it.
        self.context
            .scheduler
            .get()
            .map_or(0, |scheduler| scheduler.state_version() + 1)
    }

    pub fn changed_since(&self, parts: &[StatePart], since: u64) -> bool {
        match (self.context.scheduler.get(), since.checked_sub(1)) {
            (Some(scheduler), Some(since)) => scheduler.changed_since(parts, since),
            // Computed before the scheduler was attached.
            _ => true,
        }
    }

    pub async fn branches(&self, repo: &str) -> Result<HashMap<String, BranchState>, ReadError> {
        let repo = repo.to_string();
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(HashMap::new());
        };
        Ok(scheduler
            .read(|engine| {
                engine
                    .branches(Some(&repo))
                    .into_iter()
                    .map(|b| {
                        (
                            b.name,
                            BranchState {
                                under_test: b.under_test,
                                default_runs_desired: b.default_runs_desired,
                            },
                        )
                    })
                    .collect()
            })
            .await)
    }

    pub async fn commits(
        &self,
        repo: &str,
        hashes: &[String],
    ) -> Result<HashMap<String, CommitState>, ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(HashMap::new());
        };
        Ok(scheduler
            .read(|engine| commit_states(engine, repo, hashes))
            .await)
    }

    pub async fn runs_of(&self, test_hash: &str) -> Result<Vec<RunView>, ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(Vec::new());
        };
        Ok(scheduler
            .read(|engine| runs_newest_first(engine, test_hash))
            .await)
    }

    pub async fn runs_of_many(
        &self,
        test_hashes: &[String],
    ) -> Result<HashMap<String, Vec<RunView>>, ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(HashMap::new());
        };
        Ok(scheduler
            .read(|engine| {
                test_hashes
                    .iter()
                    .map(|hash| (hash.clone(), runs_newest_first(engine, hash)))
                    .collect()
            })
            .await)
    }

    pub async fn run(&self, run_id: &str) -> Result<Option<RunView>, ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(None);
        };
        Ok(scheduler
            .read(|engine| engine.run(run_id).map(|run| run_view(engine, run)))
            .await)
    }

    pub async fn machines(&self) -> Result<Vec<MachineView>, ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(Vec::new());
        };
        let mut machines: Vec<MachineView> = scheduler
            .read(|engine| {
                engine
                    .machines()
                    .into_iter()
                    .map(|m| MachineView {
                        info: m.info,
                        registered: m.registered,
                        last_heartbeat: m.last_heartbeat,
                        holds: m.holds,
                    })
                    .collect()
            })
            .await;
        machines.sort_by(|a, b| a.info.machine_id.cmp(&b.info.machine_id));
        Ok(machines)
    }

    pub async fn queue(&self) -> Result<Vec<WaitingTest>, ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(Vec::new());
        };
        Ok(scheduler.read(queue).await)
    }

    pub async fn deployments(&self) -> Result<Vec<DeploymentView>, ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(Vec::new());
        };
        let hub = &self.context.deployments;
        Ok(scheduler
            .read(|engine| deployments::alive_deployments(engine, hub))
            .await)
    }

    pub async fn deployment(
        &self,
        deployment_id: &str,
    ) -> Result<Option<DeploymentView>, ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(None);
        };
        let hub = &self.context.deployments;
        Ok(scheduler
            .read(|engine| {
                engine
                    .deployment(deployment_id)
                    .map(|record| deployments::deployment_view(engine, hub, record))
            })
            .await)
    }

    pub fn subscribe(&self) -> Option<ChangeStream> {
        Some(changes::subscribe(self.context.clone()))
    }
}

impl SchedulerState {
    pub async fn set_branch_under_test(
        &self,
        repo: &str,
        branch: &str,
        under_test: bool,
    ) -> Result<(), ActionError> {
        self.context
            .running_scheduler()?
            .set_branch_under_test(repo, branch, under_test)
            .await
            .map_err(action_error)
    }

    pub async fn set_commit_priority(
        &self,
        repo: &str,
        commit: &str,
        priority: u32,
    ) -> Result<(), ActionError> {
        self.context
            .running_scheduler()?
            .set_commit_priority(repo, commit, priority)
            .await
            .map_err(action_error)
    }

    pub async fn set_runs_desired(
        &self,
        repo: &str,
        commit: &str,
        test_name: &str,
        runs: u32,
    ) -> Result<(), ActionError> {
        self.context
            .running_scheduler()?
            .set_runs_desired(repo, commit, test_name, runs)
            .await
            .map_err(action_error)
    }

    pub async fn cancel_run(&self, run_id: &str) -> Result<(), ActionError> {
        let cancelled = self
            .context
            .running_scheduler()?
            .cancel_run(run_id, "cancelled by a user")
            .await
            .map_err(action_error)?;
        if cancelled {
            Ok(())
        } else {
            Err(ActionError::Conflict(format!(
                "run {run_id} has already finished"
            )))
        }
    }

    pub async fn restart_test(
        &self,
        repo: &str,
        commit: &str,
        test_name: &str,
    ) -> Result<(), ActionError> {
        let scheduler = self.context.running_scheduler()?;
        let hash = scheduler
            .read(|engine| {
                let (record, _, _) = engine
                    .commit_record(repo, commit)
                    .ok_or_else(|| ActionError::NotFound(format!("commit {repo}/{commit}")))?;
                record.tests.get(test_name).cloned().ok_or_else(|| {
                    ActionError::NotFound(format!("test {test_name} of commit {commit}"))
                })
            })
            .await?;
        scheduler.restart_test(&hash).await.map_err(action_error)
    }

    pub async fn boot_deployment(
        &self,
        test_hash: &str,
        booted_by: Option<test_looper_core::scheduling::DeploymentOwner>,
    ) -> Result<String, ActionError> {
        deployments::boot(&self.context, test_hash, booted_by).await
    }

    pub async fn shutdown_deployment(&self, deployment_id: &str) -> Result<(), ActionError> {
        deployments::shutdown(&self.context, deployment_id).await
    }
}
