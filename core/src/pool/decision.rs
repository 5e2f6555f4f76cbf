//! What one reconcile step decides, and why: the actions for the wiring to carry out and the
//! explanation the /machines page shows as "last decision".

use super::settings::Purchase;
use crate::protocol::Millis;
use serde::{Deserialize, Serialize};

/// Boot `count` instances of one type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launch {
    pub instance_type: String,
    pub purchase: Purchase,
    /// The pool's worker AMI, or the naked AMI of one-shot items.
    pub image_id: String,
    /// Whether these are one-shot machines (one item each, ended after it).
    pub one_shot: bool,
    pub count: u32,
}

/// Why an owned instance is terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminateReason {
    /// Idle past the idle timeout (or in the way of blocked demand), drained, still idle.
    Drained,
    /// A one-shot machine that has done its item.
    OneShotFinished,
    /// Its worker did not register within the boot timeout.
    NeverRegistered,
    /// Its worker stopped heartbeating.
    HeartbeatLost,
    /// Stopped (the pool never stops instances; a stopped one is of no use).
    Stopped,
}

/// End one owned instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termination {
    pub instance_id: String,
    pub reason: TerminateReason,
}

/// An instance the step saw and deliberately left alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredInstance {
    pub instance_id: String,
    pub why: String,
}

/// Which limit stopped a launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    MaxWorkers,
    MaxCores,
    MaxRamGb,
    MaxHourlySpend,
    /// Every instance type that fits the item failed to launch recently.
    LaunchFailures,
    /// No configured instance type fits the item.
    NoFittingType,
}

impl Limit {
    /// Whether this is one of the configured caps (rather than a launch problem).
    pub fn is_capacity_limit(self) -> bool {
        matches!(
            self,
            Limit::MaxWorkers | Limit::MaxCores | Limit::MaxRamGb | Limit::MaxHourlySpend
        )
    }
}

/// Capacity held by owned instances after the step's decisions (launches included,
/// terminations not subtracted: an instance holds capacity until EC2 says terminated).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeldCapacity {
    pub instances: u32,
    pub cores: u32,
    pub ram_gb: u32,
    pub hourly_spend: f64,
}

/// How the owned instances stood before the step acted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolCensus {
    /// Owned, not registered yet, within the boot timeout.
    pub booting: u32,
    pub busy: u32,
    pub idle: u32,
    /// Retired (draining or one-shot done) and still registered.
    pub retired: u32,
    pub shutting_down: u32,
    /// Instances without this pool's tags (never touched).
    pub foreign: u32,
    /// Queued items in the observation (capped at the planning horizon).
    pub queued_items: u64,
    /// Queued items that existing or booting capacity will serve.
    pub served_by_existing: u64,
    /// Queued items the launches of this step will serve.
    pub served_by_launches: u64,
    /// Queued items left waiting, by the limit that stopped them.
    pub blocked: Vec<(Limit, u64)>,
}

/// One step's decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at: Millis,
    pub launches: Vec<Launch>,
    pub terminations: Vec<Termination>,
    /// Instance ids whose workers must take no new work.
    pub drains: Vec<String>,
    /// Drained instance ids that demand wants again: take work again.
    pub undrains: Vec<String>,
    /// Registered workers whose instance EC2 reports terminated or not at all: tell the
    /// scheduler they are gone (their runs are retried).
    pub workers_gone: Vec<String>,
    pub ignored: Vec<IgnoredInstance>,
    pub census: PoolCensus,
    pub held: HeldCapacity,
    /// Human-readable: what was counted, what was decided and why.
    pub explanation: String,
}

impl Decision {
    /// Instances launched by this decision.
    pub fn launched_instances(&self) -> u32 {
        self.launches.iter().map(|launch| launch.count).sum()
    }

    /// Whether the decision changes nothing.
    pub fn is_empty(&self) -> bool {
        self.launches.is_empty()
            && self.terminations.is_empty()
            && self.drains.is_empty()
            && self.undrains.is_empty()
            && self.workers_gone.is_empty()
    }
}
