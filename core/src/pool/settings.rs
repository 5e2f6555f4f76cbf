//! What the EC2 pool is allowed to do: the instance types it may boot with their prices, its
//! limits, its timeouts and how its instances are tagged. Plain data the server fills from
//! `machine_management.aws` (see `docs/ec2_pool.md` for which keys it reads today).

use crate::protocol::Millis;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Tag key carrying the install's `worker_name` on every instance the pool launches.
pub const WORKER_NAME_TAG: &str = "test-looper:worker-name";
/// Tag key carrying the pool's owner id on every instance the pool launches.
pub const OWNER_TAG: &str = "test-looper:owner";

/// One bootable instance type and what an hour of it costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceType {
    /// The EC2 name, e.g. `c5.2xlarge`.
    pub name: String,
    pub cores: u32,
    pub ram_gb: u32,
    pub disk_gb: u32,
    /// Dollars per hour, on demand.
    pub on_demand_price_per_hour: f64,
    /// Dollars per hour on the spot market (an estimate); `None`: never launched as spot.
    pub spot_price_per_hour: Option<f64>,
}

impl InstanceType {
    /// The hourly price of one instance bought as `purchase` (spot falls back to the
    /// on-demand price when no spot price is configured).
    pub fn price_per_hour(&self, purchase: Purchase) -> f64 {
        match purchase {
            Purchase::Spot => self
                .spot_price_per_hour
                .unwrap_or(self.on_demand_price_per_hour),
            Purchase::OnDemand => self.on_demand_price_per_hour,
        }
    }
}

/// How an instance is bought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purchase {
    Spot,
    OnDemand,
}

/// Caps that hold at every instant, counting every owned instance that is pending, running,
/// shutting down or stopped (an instance holds its capacity until EC2 reports it terminated).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolLimits {
    /// 0 = no cap.
    pub max_workers: u32,
    /// 0 = no cap.
    pub max_cores: u32,
    /// 0 = no cap.
    pub max_ram_gb: u32,
    /// Dollars per hour summed over held instances (price table prices); `None` = no cap.
    pub max_hourly_spend: Option<f64>,
}

/// How many queued items one instance serves at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Packing {
    /// Items share an instance while their cores, RAM and disk fit: eight 1-core tests on one
    /// 8-core box. Needs a worker that runs several jobs at once.
    #[default]
    SharedCores,
    /// One item per instance, as the scheduler hands out work today (one run per machine).
    OneItemPerInstance,
}

/// Everything the reconciler needs to know about its pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolSettings {
    /// Value of the [`OWNER_TAG`]: identifies this install (stable across restarts).
    pub owner_id: String,
    /// Value of the [`WORKER_NAME_TAG`] (`machine_management.aws.worker_name`).
    pub worker_name: String,
    /// The AMI pooled workers boot from (`machine_management.aws.linux_ami`).
    pub worker_ami: String,
    pub instance_types: Vec<InstanceType>,
    pub limits: PoolLimits,
    /// An idle worker is drained after this long idle, then terminated once drained.
    pub idle_timeout_ms: Millis,
    /// An owned instance whose worker has not registered this long after its launch (or
    /// after the pool started, whichever is later) is terminated and replaced.
    pub boot_timeout_ms: Millis,
    /// A registered worker not heard from for this long is terminated.
    pub heartbeat_timeout_ms: Millis,
    /// Launch as spot where a spot price is configured.
    pub spot: bool,
    /// After a launch failure or a spot interruption, how long the failed choice is avoided
    /// (spot is avoided altogether after a spot failure).
    pub launch_failure_backoff_ms: Millis,
    /// When demand is blocked by a limit, drain idle workers no demand wants at once instead
    /// of waiting for their idle timeout.
    pub drain_to_make_room: bool,
    pub packing: Packing,
}

/// A setting that makes the pool unusable.
#[derive(Debug, Error, PartialEq)]
pub enum SettingsError {
    #[error("no instance types are configured")]
    NoInstanceTypes,
    #[error("instance type {0} is listed twice")]
    DuplicateInstanceType(String),
    #[error("instance type {0} has no cores")]
    NoCores(String),
    #[error("instance type {name} has an invalid price {price} (must be finite and positive)")]
    InvalidPrice { name: String, price: f64 },
    #[error("the owner id must not be empty (only instances tagged with it are ever terminated)")]
    EmptyOwnerId,
    #[error("the worker name must not be empty")]
    EmptyWorkerName,
    #[error("the hourly spend cap {0} must be finite and not negative")]
    InvalidSpendCap(f64),
    #[error("{0} must be positive")]
    ZeroTimeout(&'static str),
}

impl PoolSettings {
    /// Checks what [`reconcile`](super::reconcile()) relies on.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.owner_id.is_empty() {
            return Err(SettingsError::EmptyOwnerId);
        }
        if self.worker_name.is_empty() {
            return Err(SettingsError::EmptyWorkerName);
        }
        if self.instance_types.is_empty() {
            return Err(SettingsError::NoInstanceTypes);
        }
        for (index, instance_type) in self.instance_types.iter().enumerate() {
            if self.instance_types[..index]
                .iter()
                .any(|earlier| earlier.name == instance_type.name)
            {
                return Err(SettingsError::DuplicateInstanceType(
                    instance_type.name.clone(),
                ));
            }
            if instance_type.cores == 0 {
                return Err(SettingsError::NoCores(instance_type.name.clone()));
            }
            let prices = std::iter::once(instance_type.on_demand_price_per_hour)
                .chain(instance_type.spot_price_per_hour);
            for price in prices {
                if !(price.is_finite() && price > 0.0) {
                    return Err(SettingsError::InvalidPrice {
                        name: instance_type.name.clone(),
                        price,
                    });
                }
            }
        }
        if let Some(cap) = self.limits.max_hourly_spend {
            if !(cap.is_finite() && cap >= 0.0) {
                return Err(SettingsError::InvalidSpendCap(cap));
            }
        }
        for (name, value) in [
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("boot_timeout_ms", self.boot_timeout_ms),
            ("heartbeat_timeout_ms", self.heartbeat_timeout_ms),
        ] {
            if value == 0 {
                return Err(SettingsError::ZeroTimeout(name));
            }
        }
        Ok(())
    }

    /// The configured type called `name`.
    pub fn instance_type(&self, name: &str) -> Option<&InstanceType> {
        self.instance_types.iter().find(|t| t.name == name)
    }

    /// The tags (key, value) every launched instance must carry.
    pub fn launch_tags(&self) -> [(&'static str, String); 2] {
        [
            (WORKER_NAME_TAG, self.worker_name.clone()),
            (OWNER_TAG, self.owner_id.clone()),
        ]
    }
}
