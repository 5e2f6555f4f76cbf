//! Flake hunts and branch-wide repeats over the scheduler: the hunts of a branch, one hunt
//! with its posterior ([`test_looper_core::scheduling::HuntReport`]), the quarantine, and
//! the actions that start and cancel hunts, quarantine tests and repeat tests along a
//! branch.

use crate::reads::action_error;
use crate::reads::model::{ActionError, ReadError};
use crate::reads::state::SchedulerState;
use test_looper_core::scheduling::{
    HuntRecord, HuntReport, HuntSpec, QuarantineEntry, QuarantineEvent,
};

impl SchedulerState {
    /// Hunts of a repo and branch (or all), newest first. Empty before the scheduler runs.
    pub async fn hunts(
        &self,
        repo: Option<&str>,
        branch: Option<&str>,
    ) -> Result<Vec<HuntRecord>, ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(Vec::new());
        };
        Ok(scheduler
            .read(|engine| engine.hunts(repo, branch).into_iter().cloned().collect())
            .await)
    }

    /// One hunt with its positions and posterior.
    pub async fn hunt_report(&self, hunt_id: &str) -> Result<Option<HuntReport>, ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok(None);
        };
        Ok(scheduler.read(|engine| engine.hunt_report(hunt_id)).await)
    }

    pub async fn start_hunt(&self, spec: HuntSpec) -> Result<String, ActionError> {
        self.context
            .running_scheduler()?
            .start_hunt(spec)
            .await
            .map_err(action_error)
    }

    pub async fn cancel_hunt(&self, hunt_id: &str) -> Result<(), ActionError> {
        self.context
            .running_scheduler()?
            .cancel_hunt(hunt_id)
            .await
            .map_err(action_error)
    }

    pub async fn set_quarantine(
        &self,
        repo: &str,
        test: &str,
        on: bool,
        by: &str,
    ) -> Result<(), ActionError> {
        self.context
            .running_scheduler()?
            .set_quarantine(repo, test, on, by)
            .await
            .map_err(action_error)
    }

    /// Tests in quarantine and the newest `log_limit` entries and exits.
    pub async fn quarantine(
        &self,
        log_limit: usize,
    ) -> Result<(Vec<QuarantineEntry>, Vec<QuarantineEvent>), ReadError> {
        let Some(scheduler) = self.context.scheduler.get() else {
            return Ok((Vec::new(), Vec::new()));
        };
        Ok(scheduler
            .read(|engine| {
                (
                    engine.quarantined().into_iter().cloned().collect(),
                    engine.quarantine_log().take(log_limit).cloned().collect(),
                )
            })
            .await)
    }

    /// See [`crate::scheduler::Scheduler::repeat_on_branch`].
    pub async fn repeat_on_branch(
        &self,
        repo: &str,
        branch: &str,
        patterns: &[String],
        runs: u32,
        last_commits: usize,
    ) -> Result<(usize, usize), ActionError> {
        self.context
            .running_scheduler()?
            .repeat_on_branch(repo, branch, patterns, runs, last_commits)
            .await
            .map_err(action_error)
    }
}
