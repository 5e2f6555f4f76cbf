//! What the EC2 pool shows on `/machines` and `/api/machines`: each owned instance with its
//! type, state (booting, idle, busy, draining, shutting down), uptime and hourly cost, the
//! reconciler's last decision with its explanation, and the spend since the pool started.

use super::cloud::ListedInstance;
use serde::Serialize;
use std::sync::Mutex;
use test_looper_core::pool::{
    is_owned, Decision, InstanceState, Observation, PoolSettings, Purchase,
};
use test_looper_core::protocol::Millis;

/// One owned instance.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceRow {
    pub instance_id: String,
    pub instance_type: String,
    pub purchase: Purchase,
    /// booting, idle, busy, draining, shutting down, stopped, terminated.
    pub state: &'static str,
    /// The type's cores (from the price table; 0 for a type no longer configured).
    pub cores: u32,
    /// Runs and deployments its worker holds, and the cores granted to them.
    pub jobs: u32,
    pub cores_in_use: u32,
    pub uptime_ms: Millis,
    pub hourly_cost: f64,
    pub private_ip: Option<String>,
}

/// The pool as of its last step.
#[derive(Clone, Debug, Serialize)]
pub struct PoolStatus {
    pub worker_name: String,
    pub owner_id: String,
    pub started_at: Millis,
    pub steps: u64,
    pub last_step_at: Option<Millis>,
    pub instances: Vec<InstanceRow>,
    /// Instances of the subnet without this pool's tags (never touched).
    pub foreign_instances: usize,
    pub last_decision: Option<Decision>,
    /// Errors of the last step (listing, launches, terminations).
    pub last_errors: Vec<String>,
    /// Dollars spent since the pool started, from the price table.
    pub spend_dollars: f64,
    /// Dollars per hour of the instances held now.
    pub hourly_spend: f64,
    pub max_hourly_spend: Option<f64>,
}

/// The shared, latest [`PoolStatus`].
pub struct StatusBoard {
    status: Mutex<PoolStatus>,
}

impl StatusBoard {
    pub fn new(settings: &PoolSettings, now: Millis) -> StatusBoard {
        StatusBoard {
            status: Mutex::new(PoolStatus {
                worker_name: settings.worker_name.clone(),
                owner_id: settings.owner_id.clone(),
                started_at: now,
                steps: 0,
                last_step_at: None,
                instances: Vec::new(),
                foreign_instances: 0,
                last_decision: None,
                last_errors: Vec::new(),
                spend_dollars: 0.0,
                hourly_spend: 0.0,
                max_hourly_spend: settings.limits.max_hourly_spend,
            }),
        }
    }

    pub fn snapshot(&self) -> PoolStatus {
        self.lock().clone()
    }

    /// A step that could not observe EC2.
    pub fn record_error(&self, now: Millis, error: String) {
        let mut status = self.lock();
        status.last_step_at = Some(now);
        status.last_errors = vec![error];
    }

    /// A completed step: accrues the spend of the instances held since the last step.
    pub fn record_step(
        &self,
        now: Millis,
        listed: &[ListedInstance],
        observation: &Observation,
        decision: Decision,
        errors: Vec<String>,
        settings: &PoolSettings,
    ) {
        let mut rows = Vec::new();
        let mut foreign = 0;
        for instance in listed.iter().map(|i| &i.observed) {
            if !is_owned(settings, instance) {
                foreign += 1;
                continue;
            }
            let worker = observation
                .workers
                .iter()
                .find(|w| w.machine_id == instance.instance_id);
            let state = match (instance.state, worker) {
                (InstanceState::Terminated, _) => "terminated",
                (InstanceState::ShuttingDown, _) => "shutting down",
                (InstanceState::Stopped, _) => "stopped",
                (_, None) => "booting",
                (_, Some(w)) if !w.is_idle() && w.retired => "draining",
                (_, Some(w)) if !w.is_idle() => "busy",
                (_, Some(w)) if w.retired => "draining",
                (_, Some(_)) => "idle",
            };
            let hourly_cost = if instance.state.holds_capacity() {
                settings
                    .instance_type(&instance.instance_type)
                    .map_or(0.0, |t| t.price_per_hour(instance.purchase))
            } else {
                0.0
            };
            rows.push(InstanceRow {
                instance_id: instance.instance_id.clone(),
                instance_type: instance.instance_type.clone(),
                purchase: instance.purchase,
                state,
                cores: settings
                    .instance_type(&instance.instance_type)
                    .map_or(0, |t| t.cores),
                jobs: worker.map_or(0, |w| w.busy.items),
                cores_in_use: worker.map_or(0, |w| w.busy.cores),
                uptime_ms: now.saturating_sub(instance.launched_at),
                hourly_cost,
                private_ip: listed
                    .iter()
                    .find(|l| l.observed.instance_id == instance.instance_id)
                    .and_then(|l| l.private_ip.clone()),
            });
        }
        rows.sort_by(|a, b| {
            (a.state == "terminated", &a.instance_id)
                .cmp(&(b.state == "terminated", &b.instance_id))
        });
        let hourly_spend: f64 = rows.iter().map(|row| row.hourly_cost).sum();
        let mut status = self.lock();
        let since = status.last_step_at.unwrap_or(status.started_at);
        status.spend_dollars +=
            status.hourly_spend * now.saturating_sub(since) as f64 / 3_600_000.0;
        status.hourly_spend = hourly_spend;
        status.steps += 1;
        status.last_step_at = Some(now);
        status.instances = rows;
        status.foreign_instances = foreign;
        status.last_decision = Some(decision);
        status.last_errors = errors;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolStatus> {
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
