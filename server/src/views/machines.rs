//! Machines (hardware, uptime, heartbeat, what each is busy with) and the queue (what
//! waits, and why).

use crate::cache::snapshot::Keep;
use crate::reads::model::{MachineView, ReadError, WaitingTest};
use crate::views::format::elapsed_texts_keep;
use crate::views::labels::wait_text;
use crate::views::{format, paths, Reads, Snapshot, Sources};
use serde::Serialize;
use std::sync::Arc;

#[derive(Clone, Debug, Serialize)]
pub struct MachinesView {
    pub state_wired: bool,
    pub machines: Vec<MachineRow>,
    pub queue: Vec<QueueRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MachineRow {
    pub machine: MachineView,
    pub hardware: String,
    pub up_for: String,
    pub heartbeat_age: String,
    /// What it holds: (id, link to the run's page or the deployment's terminal).
    pub busy: Vec<(String, String)>,
    /// "3 of 16 cores free" on a machine that shares its cores.
    pub sharing: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QueueRow {
    pub entry: WaitingTest,
    pub commit_url: String,
    pub why: String,
}

impl Sources {
    pub async fn machines(self: &Arc<Self>) -> Result<Arc<Snapshot<MachinesView>>, ReadError> {
        let version = self.state_version();
        self.kept_view(&self.coalesced.machines, (), version, || {
            self.machines_now()
        })
        .await
    }

    async fn machines_now(self: &Arc<Self>) -> Result<Arc<Snapshot<MachinesView>>, ReadError> {
        let now_ms = format::now_millis();
        let machines = self.state.machines().await?;
        let queue = self.state.queue().await?;
        let deployment_ids: std::collections::HashSet<String> = self
            .state
            .deployments()
            .await?
            .into_iter()
            .map(|deployment| deployment.deployment_id)
            .collect();
        // A machine is busy with a run (its page) or a deployment (its terminal).
        let busy_url = |busy: &str| {
            if deployment_ids.contains(busy) {
                paths::terminal_url(busy)
            } else {
                paths::run_url(busy)
            }
        };
        let elapsed = |since: u64| format::duration((now_ms.saturating_sub(since) / 1000) as i64);
        // Heartbeats move `last_heartbeat` without a new version, and the ages move with
        // the clock.
        let clock_texts = machines
            .iter()
            .flat_map(|m| [m.registered, m.last_heartbeat])
            .map(|since| i64::try_from(since).unwrap_or(i64::MAX));
        let keep = Keep::unversioned(now_ms).min(elapsed_texts_keep(now_ms, clock_texts));
        let view = MachinesView {
            state_wired: self.state.wired(),
            machines: machines
                .into_iter()
                .map(|m| MachineRow {
                    hardware: format!("{} cores, {} GB", m.info.cores, m.info.ram_gb),
                    up_for: elapsed(m.registered),
                    heartbeat_age: elapsed(m.last_heartbeat),
                    busy: m
                        .holds
                        .iter()
                        .map(|held| (held.id.clone(), busy_url(&held.id)))
                        .collect(),
                    sharing: m.info.shares_cores.then(|| {
                        let (used, _) = test_looper_core::scheduling::Held::granted(&m.holds);
                        format!(
                            "{} of {} cores free",
                            m.info.cores.saturating_sub(used),
                            m.info.cores
                        )
                    }),
                    machine: m,
                })
                .collect(),
            queue: queue
                .into_iter()
                .map(|entry| QueueRow {
                    commit_url: paths::commit_url(&entry.repo, &entry.commit),
                    why: wait_text(&entry.wait),
                    entry,
                })
                .collect(),
        };
        Ok(Snapshot::new(view, Reads::Everything, keep))
    }
}
