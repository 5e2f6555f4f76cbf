//! What one reconcile step looks at: the instances EC2 reports, the workers the scheduler has
//! registered, the queued demand and recent launch failures, all at one instant.

use super::settings::Purchase;
use crate::protocol::Millis;
use crate::scheduling::HardwareConfig;
use serde::{Deserialize, Serialize};

/// An instance's state as EC2 reports it (`stopping` and `stopped` are both [`Self::Stopped`]),
/// ordered from the earliest to the most advanced (terminated).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Stopped,
    Terminated,
}

impl InstanceState {
    /// Whether the instance still holds capacity (and is billed or about to be freed).
    pub fn holds_capacity(self) -> bool {
        self != InstanceState::Terminated
    }
}

/// The two ownership tags as found on an instance (`None`: tag absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceTags {
    pub worker_name: Option<String>,
    pub owner: Option<String>,
}

/// One instance as `DescribeInstances` (plus the ids `RunInstances` just returned) reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedInstance {
    pub instance_id: String,
    pub instance_type: String,
    pub state: InstanceState,
    pub launched_at: Millis,
    pub purchase: Purchase,
    pub image_id: String,
    pub tags: InstanceTags,
}

/// What a registered worker is doing, summed over the items it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occupancy {
    /// Runs and deployments in progress; 0 = idle.
    pub items: u32,
    pub cores: u32,
    pub ram_gb: u32,
    pub disk_gb: u32,
}

/// A worker as the scheduler sees it. Its machine id is the instance id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredWorker {
    pub machine_id: String,
    pub hardware: HardwareConfig,
    pub last_heartbeat: Millis,
    pub busy: Occupancy,
    /// When it last became idle (its registration when it never worked); meaningful only
    /// while `busy.items == 0`.
    pub idle_since: Millis,
    /// It takes no new work: drained by the pool, or a one-shot machine that has done its job.
    pub retired: bool,
}

impl RegisteredWorker {
    pub fn is_idle(&self) -> bool {
        self.busy.items == 0
    }
}

/// What a queued item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemandKind {
    Run,
    /// An interactive deployment: served first, never packed with other items.
    Deployment,
}

/// `count` queued items with the same needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demand {
    pub min_cores: u32,
    pub min_ram_gb: u32,
    pub min_disk_gb: u32,
    pub count: u64,
    pub kind: DemandKind,
    /// `Some(ami)`: the target boots a naked AMI, one instance per item, ended after it.
    pub one_shot_ami: Option<String>,
}

/// Why a launch failed or an instance was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchErrorKind {
    /// `InsufficientInstanceCapacity` and the spot capacity errors.
    InsufficientCapacity,
    /// EC2 reclaimed a spot instance.
    SpotInterruption,
    Other,
}

/// A recent launch failure or spot interruption, remembered by the wiring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchFailure {
    pub instance_type: String,
    pub purchase: Purchase,
    pub error: LaunchErrorKind,
    pub at: Millis,
}

/// Everything one step looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub now: Millis,
    /// When this server life's pool started: instances launched before it get a full
    /// boot timeout from here to register again.
    pub pool_started_at: Millis,
    /// Every instance EC2 reports in the pool's region and subnet, tagged or not, including
    /// the ones the previous step launched.
    pub instances: Vec<ObservedInstance>,
    /// The scheduler's workers of this pool.
    pub workers: Vec<RegisteredWorker>,
    /// Queued items not yet assigned, in priority order.
    pub demand: Vec<Demand>,
    pub launch_failures: Vec<LaunchFailure>,
}
