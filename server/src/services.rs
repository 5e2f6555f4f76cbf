//! Builds and starts the server's services from the configuration, and wires them together:
//!
//! - the artifact store (`artifacts.local_disk` or `artifacts.s3`), shared with the local
//!   workers as a [`StoreConfig`];
//! - the scheduler over Redis ([`Scheduler::open`]) with its durable result records and its
//!   deadline timer, told the machine shapes the configured pool can provide (so work no
//!   shape can run is reported as "no viable hardware");
//! - the git service's scans fed into the scheduler ([`spawn_scheduler_feed`]);
//! - commit statuses posted back to GitHub/GitLab when configured ([`spawn_status_reporter`]);
//! - the scheduler handed to the [`AppContext`], where the UI, the API and the worker channel
//!   find it ([`AppContext::running_scheduler`]);
//! - the machine pool ([`LocalPool`] for `machine_management.local_docker`, the EC2 pool for
//!   `machine_management.aws`), started once the HTTP listener's address is known because
//!   local workers connect back to it.
//!
//! [`run_in_background`] is what `run_server` uses: it retries until Redis answers (the web UI
//! is up meanwhile, the worker socket answers 503) and keeps the services alive for the life
//! of the server. Tests call [`start`] and [`Services::start_machine_pool`] directly.

use crate::config::{Config, LocalDockerMachines};
use crate::machines::shapes::{host_hardware, local_shapes, Capacity};
use crate::machines::{LocalPool, LocalPoolSettings, PoolError};
use crate::scheduler::clock::SystemClock;
use crate::scheduler::ingest::spawn_scheduler_feed;
use crate::scheduler::results::{ArtifactResultStore, ResultStore};
use crate::scheduler::status_reporter::spawn_status_reporter;
use crate::scheduler::{Scheduler, SchedulerError};
use crate::AppContext;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use test_looper_artifacts::{open_store, ArtifactError, ArtifactStore, StoreConfig};
use test_looper_core::protocol::OsConfig;
use test_looper_core::scheduling::{HardwareConfig, SchedulerConfig};
use thiserror::Error;

/// Why the services could not start.
#[derive(Debug, Error)]
pub enum ServicesError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("scheduler: {0}")]
    Scheduler(#[from] SchedulerError),
    #[error("artifact store: {0}")]
    Artifacts(#[from] ArtifactError),
    #[error("machine pool: {0}")]
    Pool(#[from] PoolError),
    #[error("ec2 machine pool: {0}")]
    Ec2Pool(#[from] crate::machines::ec2::Ec2PoolError),
}

/// The running services; dropping them stops the background tasks and the workers.
pub struct Services {
    pub scheduler: Arc<Scheduler>,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub store_config: StoreConfig,
    pool: Option<LocalPool>,
    ec2_pool: Option<crate::machines::ec2::Ec2Pool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Services {
    /// The local machine pool, once started.
    pub fn pool(&self) -> Option<&LocalPool> {
        self.pool.as_ref()
    }

    /// The EC2 pool, once started.
    pub fn ec2_pool(&self) -> Option<&crate::machines::ec2::Ec2Pool> {
        self.ec2_pool.as_ref()
    }

    /// Starts the configured machine pool; local workers connect to `server_url`.
    pub async fn start_machine_pool(
        &mut self,
        context: &AppContext,
        server_url: &str,
    ) -> Result<(), ServicesError> {
        let config = &context.config;
        if let Some(local) = &config.machine_management.local_docker {
            let settings = LocalPoolSettings {
                binary: worker_binary(local),
                server_url: server_url.to_string(),
                token: Some(context.workers.token().to_string()),
                scope: local.docker_scope.clone(),
                storage: local.local_storage_path.clone(),
                idle_timeout: Duration::from_secs(local.idle_timeout_seconds),
                artifacts: self.store_config.clone(),
                capacity: local_capacity(local),
                heartbeat: Duration::from_secs(
                    config.machine_management.heartbeat_interval_seconds(),
                ),
                heartbeat_timeout: Duration::from_secs(
                    config.machine_management.heartbeat_timeout_seconds,
                ),
            };
            self.pool = Some(LocalPool::start(self.scheduler.clone(), settings).await?);
            tracing::info!(scope = %local.docker_scope, "local machine pool started");
        } else if config.machine_management.aws.is_some() {
            // EC2 may be unreachable for a while (a network blip at boot): keep trying; a
            // setting that cannot work is an error at once.
            let mut backoff = Duration::from_secs(1);
            loop {
                match crate::machines::ec2::start_from_config(
                    context,
                    self.scheduler.clone(),
                    &self.store_config,
                )
                .await
                {
                    Ok(pool) => {
                        self.ec2_pool = Some(pool);
                        break;
                    }
                    Err(crate::machines::ec2::Ec2PoolError::Cloud(error))
                        if error.is_transient() =>
                    {
                        tracing::warn!(%error, retry_in = ?backoff, "ec2 machine pool cannot reach EC2");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        } else {
            tracing::info!("no machine pool configured: runs wait for workers started by hand");
        }
        Ok(())
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens the artifact store and the scheduler, feeds git scans into it and attaches the
/// worker channel (and the context's `scheduler`/`artifacts` handles).
pub async fn start(context: &Arc<AppContext>) -> Result<Services, ServicesError> {
    let config = &context.config;
    let store_config = store_config(config);
    let artifacts = open_store(&store_config).await?;
    let results: Arc<dyn ResultStore> = Arc::new(
        ArtifactResultStore::new(artifacts.clone())
            .with_deferred_sync(result_sync_interval(config)),
    );
    let client = redis::Client::open(config.redis.url.as_str())?;
    let (hardware, os_configs) = pool_hardware(config);
    let scheduler_config = SchedulerConfig {
        hardware,
        os_configs,
        id_prefix: id_prefix(),
        heartbeat_timeout_ms: config
            .machine_management
            .heartbeat_timeout_seconds
            .saturating_mul(1000),
        deployment_limits: crate::deployments::reaper::limits(&config.deployments),
        // Refused at start when out of range (config::refusals); the default otherwise.
        quarantine: config.statistics.quarantine.policy().unwrap_or_default(),
        boots_linux_vms: config
            .machine_management
            .aws
            .as_ref()
            .is_some_and(crate::machines::ec2::settings::boots_naked_amis),
        ..SchedulerConfig::default()
    };
    let scheduler =
        Scheduler::open(&client, results, scheduler_config, Arc::new(SystemClock)).await?;
    let mut tasks = vec![
        scheduler.spawn_deadline_timer(),
        scheduler.spawn_store_watch(STORE_CHECK_INTERVAL),
        spawn_scheduler_feed(context.git.clone(), scheduler.clone()),
    ];
    if let Some(scm) = context.git.scm() {
        tasks.extend(spawn_status_reporter(
            scm.clone(),
            scheduler.clone(),
            config.server.public_url(),
        ));
    }
    tasks.push(context.access.audit.spawn_writer(artifacts.clone()));
    tasks.push(crate::access::spawn_rate_limit_sweeper(context.clone()));
    // Bounded storage and deployments (M2, M6, L6).
    tasks.push(crate::retention::spawn(
        context.clone(),
        scheduler.clone(),
        artifacts.clone(),
    ));
    tasks.push(crate::deployments::reaper::spawn(
        context.clone(),
        scheduler.clone(),
    ));
    context
        .git
        .set_tarball_cache_budget(config.retention.tarball_cache_max_bytes);
    let _ = context.scheduler.set(scheduler.clone());
    let _ = context.artifacts.set(artifacts.clone());
    tracing::info!(mode = ?scheduler.start_mode(), store = %artifacts.describe(), "scheduler running");
    Ok(Services {
        scheduler,
        artifacts,
        store_config,
        pool: None,
        ec2_pool: None,
        tasks,
    })
}

/// Starts everything, retrying while Redis (or the store) is unreachable, and keeps it
/// running until the server stops.
pub async fn run_in_background(context: Arc<AppContext>, server_url: String) {
    let mut backoff = Duration::from_millis(500);
    let mut services = loop {
        match start(&context).await {
            Ok(services) => break services,
            Err(error) => {
                tracing::error!(%error, retry_in = ?backoff, "services could not start");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    if let Err(error) = services.start_machine_pool(&context, &server_url).await {
        tracing::error!(%error, "no machine pool: runs wait for workers started by hand");
    }
    // Hold the services (and the pool's workers) for the life of the server.
    std::future::pending::<()>().await;
    drop(services);
}

/// The URL local workers use to reach this server (a wildcard bind becomes loopback).
pub fn own_url(addrs: &[SocketAddr]) -> String {
    let Some(addr) = addrs.first() else {
        return "http://127.0.0.1:9081".into();
    };
    let mut addr = *addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{addr}")
}

/// How often deferred result records are synced (local disk only: S3 writes are durable
/// when they return).
fn result_sync_interval(config: &Config) -> std::time::Duration {
    let millis = match (&config.artifacts.local_disk, &config.artifacts.s3) {
        (Some(disk), _) => disk.result_sync_interval_ms,
        (None, Some(_)) => 0,
        (None, None) => crate::config::DEFAULT_RESULT_SYNC_INTERVAL_MS,
    };
    std::time::Duration::from_millis(millis)
}

/// The artifact store section as the value workers are started with.
pub fn store_config(config: &Config) -> StoreConfig {
    if let Some(s3) = &config.artifacts.s3 {
        return StoreConfig::S3 {
            bucket: s3.bucket.clone(),
            region: s3.region.clone(),
            key_prefix: s3.key_prefix.clone(),
            endpoint_url: s3.endpoint_url.clone(),
            credentials: s3
                .credentials
                .as_ref()
                .map(|c| (c.access_key_id.clone(), c.secret_access_key.clone())),
        };
    }
    let path = config
        .artifacts
        .local_disk
        .as_ref()
        .map(|disk| disk.path.clone())
        .unwrap_or_else(|| config.server.data_dir.join("artifacts"));
    StoreConfig::LocalDisk { path }
}

/// How often an idle server checks that Redis still holds its state (steps check it too).
const STORE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Run ids are unique per server start (see [`SchedulerConfig::id_prefix`]).
fn id_prefix() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("r{millis:x}")
}

fn local_capacity(local: &LocalDockerMachines) -> Capacity {
    Capacity::new(
        local.limits.max_workers,
        local.limits.max_cores,
        local.limits.max_ram_gb,
        host_hardware(),
    )
}

/// The machine shapes and OS configurations the configured pool can provide.
pub fn pool_hardware(config: &Config) -> (Vec<HardwareConfig>, Vec<OsConfig>) {
    let machines = &config.machine_management;
    if let Some(local) = &machines.local_docker {
        let shapes = local_shapes(
            local_capacity(local),
            local.worker_cores,
            local.worker_ram_gb,
        );
        return (shapes, vec![OsConfig::LinuxDocker]);
    }
    if let Some(aws) = &machines.aws {
        let shapes = aws
            .instance_types
            .iter()
            .map(|t| HardwareConfig {
                cores: t.cores,
                ram_gb: t.ram_gb,
            })
            .collect();
        return (shapes, vec![OsConfig::LinuxDocker]);
    }
    (Vec::new(), Vec::new())
}

/// The configured worker executable, else `test-looper-worker` next to this executable (or
/// one directory up, where cargo puts binaries relative to test executables).
fn worker_binary(local: &LocalDockerMachines) -> PathBuf {
    if let Some(binary) = &local.worker_binary {
        return binary.clone();
    }
    if let Some(binary) = std::env::var_os("TEST_LOOPER_WORKER_BINARY") {
        return PathBuf::from(binary);
    }
    let name = "test-looper-worker";
    let own = std::env::current_exe().ok();
    let dir = own.as_deref().and_then(|exe| exe.parent());
    let candidates = [
        dir.map(|d| d.join(name)),
        dir.and_then(|d| d.parent()).map(|d| d.join(name)),
    ];
    candidates
        .iter()
        .flatten()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(name))
}
