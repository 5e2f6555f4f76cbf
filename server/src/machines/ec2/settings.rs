//! `machine_management.aws` read into what the pool needs: the reconciler's
//! [`PoolSettings`] (with the install's owner id, kept in `data_dir`) and how an instance is
//! launched and bootstrapped ([`LaunchSpec`]).

use crate::config::{AwsMachines, PoolPacking};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use test_looper_aws::AwsSettings;
use test_looper_core::pool::{InstanceType, Packing, PoolLimits, PoolSettings, SettingsError};

/// Whether the pool boots naked AMIs for the builds and tests of `base_ami` environments
/// (one-shot): only when machines fetch the worker binary from the bucket, as a naked AMI
/// does not have it.
pub fn boots_naked_amis(aws: &AwsMachines) -> bool {
    aws.worker_binary_key.is_some()
}

/// The longest reconcile interval: the pool reacts within this.
pub const MAX_RECONCILE_INTERVAL_SECONDS: u64 = 10;

/// Where and how instances are launched, beyond what the reconciler decides.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    /// Checked at start: `subnet` must be in this VPC.
    pub vpc_id: String,
    pub subnet: String,
    pub security_group: String,
    pub keypair: String,
    pub iam_instance_profile: Option<String>,
    /// Root volume size per instance type.
    pub disk_gb: BTreeMap<String, u32>,
    pub bootstrap: BootstrapSpec,
}

/// What a machine's bootstrap script does.
#[derive(Clone, Debug)]
pub struct BootstrapSpec {
    pub bucket: String,
    /// Key prefix of the per-machine scripts (ends with `/` or is empty).
    pub key_prefix: String,
    /// The worker binary's key in the bucket; `None`: the AMI holds it at `binary_path`.
    pub worker_binary_key: Option<String>,
    pub binary_path: String,
    pub server_url: String,
    pub storage_path: String,
    /// Written to the machine's `/etc/hosts`.
    pub host_ips: BTreeMap<String, String>,
    /// Install scope of the worker's containers.
    pub docker_scope: String,
    /// The artifact store as the workers' JSON (no credentials: machines use their role).
    pub artifacts_json: String,
    pub heartbeat_seconds: u64,
    /// Workers run several items at once (`packing: shared_cores`).
    pub shares_cores: bool,
    /// How long the bootstrap URL and the token's first use stay valid.
    pub valid_for: Duration,
}

/// The AWS endpoint and credentials of the pool.
pub fn aws_settings(aws: &AwsMachines) -> AwsSettings {
    AwsSettings {
        region: aws.region.clone(),
        endpoint_url: aws.endpoint_url.clone(),
        credentials: aws
            .credentials
            .as_ref()
            .map(|c| test_looper_aws::StaticKeys {
                access_key_id: c.access_key_id.clone(),
                secret_access_key: c.secret_access_key.clone(),
            }),
    }
}

/// The reconciler's settings; `heartbeat_timeout` is `machine_management`'s.
pub fn pool_settings(
    aws: &AwsMachines,
    owner_id: &str,
    heartbeat_timeout: Duration,
) -> Result<PoolSettings, SettingsError> {
    let seconds = |s: u64| s.saturating_mul(1000);
    let settings = PoolSettings {
        owner_id: owner_id.to_string(),
        worker_name: aws.worker_name.clone(),
        worker_ami: aws.linux_ami.clone(),
        instance_types: aws
            .instance_types
            .iter()
            .map(|t| InstanceType {
                name: t.instance_type.clone(),
                cores: t.cores,
                ram_gb: t.ram_gb,
                disk_gb: t.disk_gb,
                on_demand_price_per_hour: t.price_per_hour,
                spot_price_per_hour: t.spot_price_per_hour,
            })
            .collect(),
        limits: PoolLimits {
            max_workers: aws.limits.max_workers,
            max_cores: aws.limits.max_cores,
            max_ram_gb: aws.limits.max_ram_gb,
            max_hourly_spend: aws.max_hourly_spend,
        },
        idle_timeout_ms: seconds(aws.idle_timeout_seconds),
        boot_timeout_ms: seconds(aws.boot_timeout_seconds),
        heartbeat_timeout_ms: u64::try_from(heartbeat_timeout.as_millis()).unwrap_or(u64::MAX),
        spot: aws.spot,
        launch_failure_backoff_ms: seconds(aws.launch_failure_backoff_seconds),
        drain_to_make_room: aws.drain_to_make_room,
        packing: match aws.packing {
            PoolPacking::OneItemPerInstance => Packing::OneItemPerInstance,
            PoolPacking::SharedCores => Packing::SharedCores,
        },
    };
    settings.validate()?;
    Ok(settings)
}

/// The install's owner id: 16 hex digits drawn once and kept in `data_dir/ec2_pool_owner.id`,
/// so a restarted server recognises (and adopts) the instances it launched before.
pub fn owner_id(data_dir: &Path) -> std::io::Result<String> {
    let bytes = crate::data_dir_secrets::load_or_create(&data_dir.join("ec2_pool_owner.id"), 8)?;
    Ok(format!("tl-{}", hex::encode(bytes)))
}
