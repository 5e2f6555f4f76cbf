//! [`StateReads`] and [`StateActions`] over the scheduler: every read is one
//! [`Scheduler::read`] of the engine's views, translated into the UI's plain view types
//! (a `TestView`'s `TestState` becomes a [`WaitReason`]); every action is the scheduler's
//! own action method, its refusals mapped onto [`ActionError`].

use super::super::read_model::{
    ActionError, BranchState, ChangeStream, CommitState, DeploymentView, MachineView, QueueEntry,
    ReadError, RunStatus, RunView, StateActions, StatePart, StateReads, TestStatus, WaitReason,
};
use super::{action_error, changes, deployments, scheduler_for_actions};
use crate::AppContext;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use test_looper_core::scheduling::{
    Engine, RunRecord, RunState, TestState, TestView, WaitingEntry, WaitingLimits,
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
    context: Arc<AppContext>,
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
    }
}

fn run_status(state: RunState) -> RunStatus {
    match state {
        RunState::Assigned => RunStatus::Assigned,
        RunState::Running => RunStatus::Running,
        RunState::Passed => RunStatus::Passed,
        RunState::Failed => RunStatus::Failed,
        RunState::TimedOut => RunStatus::TimedOut,
        RunState::Cancelled => RunStatus::Cancelled,
        RunState::Lost => RunStatus::Lost,
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
        state: run_status(run.state),
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

fn queue_entry(entry: WaitingEntry) -> QueueEntry {
    let status = test_status(&entry.test);
    QueueEntry {
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
pub fn queue(engine: &Engine) -> Vec<QueueEntry> {
    engine
        .waiting(WAITING_LIMITS)
        .into_iter()
        .map(queue_entry)
        .collect()
}

impl StateReads for SchedulerState {
    fn wired(&self) -> bool {
        self.context.scheduler.get().is_some()
    }

    fn version(&self) -> u64 {
        // Attaching the scheduler changes everything: never reuse views from before it.
        self.context
            .scheduler
            .get()
            .map_or(0, |scheduler| scheduler.state_version() + 1)
    }

    fn changed_since(&self, parts: &[StatePart], since: u64) -> bool {
        match (self.context.scheduler.get(), since.checked_sub(1)) {
            (Some(scheduler), Some(since)) => scheduler.changed_since(parts, since),
            // Computed before the scheduler was attached.
            _ => true,
        }
    }

    fn branches(
        &self,
        repo: &str,
    ) -> BoxFuture<'_, Result<HashMap<String, BranchState>, ReadError>> {
        let repo = repo.to_string();
        Box::pin(async move {
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
        })
    }

    fn commits<'a>(
        &'a self,
        repo: &'a str,
        hashes: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, CommitState>, ReadError>> {
        Box::pin(async move {
            let Some(scheduler) = self.context.scheduler.get() else {
                return Ok(HashMap::new());
            };
            Ok(scheduler
                .read(|engine| commit_states(engine, repo, hashes))
                .await)
        })
    }

    fn runs_of<'a>(&'a self, test_hash: &'a str) -> BoxFuture<'a, Result<Vec<RunView>, ReadError>> {
        Box::pin(async move {
            let Some(scheduler) = self.context.scheduler.get() else {
                return Ok(Vec::new());
            };
            Ok(scheduler
                .read(|engine| runs_newest_first(engine, test_hash))
                .await)
        })
    }

    fn runs_of_many<'a>(
        &'a self,
        test_hashes: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, Vec<RunView>>, ReadError>> {
        Box::pin(async move {
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
        })
    }

    fn run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<RunView>, ReadError>> {
        Box::pin(async move {
            let Some(scheduler) = self.context.scheduler.get() else {
                return Ok(None);
            };
            Ok(scheduler
                .read(|engine| engine.run(run_id).map(|run| run_view(engine, run)))
                .await)
        })
    }

    fn machines(&self) -> BoxFuture<'_, Result<Vec<MachineView>, ReadError>> {
        Box::pin(async move {
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
                            busy_with: m.busy_with,
                        })
                        .collect()
                })
                .await;
            machines.sort_by(|a, b| a.info.machine_id.cmp(&b.info.machine_id));
            Ok(machines)
        })
    }

    fn queue(&self) -> BoxFuture<'_, Result<Vec<QueueEntry>, ReadError>> {
        Box::pin(async move {
            let Some(scheduler) = self.context.scheduler.get() else {
                return Ok(Vec::new());
            };
            Ok(scheduler.read(queue).await)
        })
    }

    fn deployments(&self) -> BoxFuture<'_, Result<Vec<DeploymentView>, ReadError>> {
        Box::pin(async move {
            let Some(scheduler) = self.context.scheduler.get() else {
                return Ok(Vec::new());
            };
            let hub = &self.context.deployments;
            Ok(scheduler
                .read(|engine| deployments::alive_deployments(engine, hub))
                .await)
        })
    }

    fn deployment<'a>(
        &'a self,
        deployment_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<DeploymentView>, ReadError>> {
        Box::pin(async move {
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
        })
    }

    fn subscribe(&self) -> Option<ChangeStream> {
        Some(changes::subscribe(self.context.clone()))
    }
}

impl StateActions for SchedulerState {
    fn set_branch_under_test<'a>(
        &'a self,
        repo: &'a str,
        branch: &'a str,
        under_test: bool,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            scheduler_for_actions(&self.context)?
                .set_branch_under_test(repo, branch, under_test)
                .await
                .map_err(action_error)
        })
    }

    fn set_commit_priority<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
        priority: u32,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            scheduler_for_actions(&self.context)?
                .set_commit_priority(repo, commit, priority)
                .await
                .map_err(action_error)
        })
    }

    fn set_runs_desired<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
        test_name: &'a str,
        runs: u32,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            scheduler_for_actions(&self.context)?
                .set_runs_desired(repo, commit, test_name, runs)
                .await
                .map_err(action_error)
        })
    }

    fn cancel_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            let cancelled = scheduler_for_actions(&self.context)?
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
        })
    }

    fn restart_test<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
        test_name: &'a str,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            let scheduler = scheduler_for_actions(&self.context)?;
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
        })
    }

    fn boot_deployment<'a>(
        &'a self,
        test_hash: &'a str,
    ) -> BoxFuture<'a, Result<String, ActionError>> {
        Box::pin(deployments::boot(&self.context, test_hash))
    }

    fn shutdown_deployment<'a>(
        &'a self,
        deployment_id: &'a str,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(deployments::shutdown(&self.context, deployment_id))
    }
}
