//! One run: its state, times, result, stored files and test cases, and the row a run gets
//! in the commit page's list.

use crate::reads::model::{ReadError, RunState, RunView};
use crate::views::labels::{run_result_text, run_state_label};
use crate::views::{format, paths, Sources};
use serde::Serialize;
use std::sync::Arc;

#[derive(Clone, Debug, Serialize)]
pub struct RunPageView {
    pub run: RunView,
    pub state_label: &'static str,
    pub active: bool,
    pub started: String,
    pub ended: String,
    pub result: String,
    pub commit_url: String,
    pub artifacts: Vec<ArtifactLink>,
    pub passed_cases: usize,
    pub failed_cases: usize,
    pub log_socket: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ArtifactLink {
    pub name: String,
    pub url: String,
    pub size: u64,
    /// "12.3 Kb".
    pub size_text: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub url: String,
    pub state: RunState,
    pub state_label: &'static str,
    pub machine_id: String,
    pub started: String,
    pub result: String,
    pub cleared: bool,
}

impl Sources {
    pub async fn run(self: &Arc<Self>, run_id: &str) -> Result<RunPageView, ReadError> {
        let run = self
            .state
            .run(run_id)
            .await?
            .ok_or_else(|| ReadError::NotFound(format!("run {run_id}")))?;
        let files = match self.files.list(&run.test_hash, &run.run_id).await {
            Ok(files) => files,
            // The run page still shows the run while the store is unreachable.
            Err(err) => {
                tracing::warn!(%err, run_id, "cannot list the run's stored files");
                Vec::new()
            }
        };
        Ok(RunPageView {
            state_label: run_state_label(run.state),
            active: run.state.is_active(),
            started: format::utc_millis(run.started),
            ended: if run.ended > 0 {
                format::utc_millis(run.ended)
            } else {
                String::new()
            },
            result: run_result_text(&run),
            commit_url: paths::commit_url(&run.repo, &run.commit),
            artifacts: files
                .into_iter()
                .map(|file| ArtifactLink {
                    url: paths::artifact_url(&run.run_id, &file.name),
                    size_text: format::bytes(file.size),
                    size: file.size,
                    name: file.name,
                })
                .collect(),
            passed_cases: run.test_cases.iter().filter(|c| c.passed).count(),
            failed_cases: run.test_cases.iter().filter(|c| !c.passed).count(),
            log_socket: format!("/api/runs/{}/log", paths::encode_component(&run.run_id)),
            run,
        })
    }
}

pub fn run_row(run: &RunView) -> RunRow {
    RunRow {
        run_id: run.run_id.clone(),
        url: paths::run_url(&run.run_id),
        state: run.state,
        state_label: run_state_label(run.state),
        machine_id: run.machine_id.clone(),
        started: format::utc_millis(run.started),
        result: run_result_text(run),
        cleared: run.cleared,
    }
}
