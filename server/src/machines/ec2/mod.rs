//! The EC2 machine pool: the wiring around the pure reconciler ([`test_looper_core::pool`]).
//!
//! Every `reconcile_interval_seconds` (at most 10), and 2 s after any scheduler event that can
//! change the demand (new work, a run ending, a machine registering), one step runs:
//! 1. **Observe**: every instance of the pool's subnet ([`cloud::Ec2Cloud::list`], plus the
//!    ones launched in the last minute that EC2 does not list yet), this pool's registered
//!    workers and the queued items with their minimums ([`observe`]).
//! 2. **Decide**: [`reconcile`] — launches, drains, terminations, workers gone.
//! 3. **Act**: workers gone are reported to the scheduler (their runs are retried), owned
//!    instances are terminated (ownership is checked again against this step's listing), drained
//!    workers get no new work, and each launch is one `RunInstances` with both ownership tags,
//!    followed by the machine's bootstrap script ([`bootstrap`]). Launch failures and spot
//!    interruptions are remembered for the reconciler's backoff.
//! 4. **Report**: the step's decision, the instances and the spend go to [`status`] for
//!    `/machines`.
//!
//! Nothing is kept that a restart needs: ownership is in the tags, the owner id in `data_dir`,
//! machine tokens are checked with a key in `data_dir` and the live set of the last step.

pub mod bootstrap;
pub mod cloud;
pub mod observe;
pub mod settings;
pub mod status;

use crate::scheduler::Scheduler;
use crate::workers::machine_tokens::MachineTokens;
use bootstrap::{BootstrapStore, MachineWorker};
use cloud::{Ec2Cloud, LaunchRequest, ListedInstance, BOOTSTRAP_KEY_TAG};
use observe::{IdleClock, PoolWorkers};
use status::{PoolStatus, StatusBoard};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use test_looper_core::pool::{
    is_owned, reconcile, Decision, InstanceState, InstanceTags, LaunchErrorKind, LaunchFailure,
    Observation, ObservedInstance, PoolSettings, TerminateReason,
};
use test_looper_core::protocol::Millis;

/// How long a launched instance is added to the observation when EC2 does not list it yet.
const LISTING_GRACE_MS: Millis = 60_000;

/// The running pool; dropping it stops the loop (the instances stay, and are adopted by the
/// next server life).
pub struct Ec2Pool {
    board: Arc<StatusBoard>,
    task: tokio::task::JoinHandle<()>,
}

impl Ec2Pool {
    /// Starts the reconcile loop.
    pub fn start(
        scheduler: Arc<Scheduler>,
        settings: PoolSettings,
        cloud: Ec2Cloud,
        bootstrap: BootstrapStore,
        tokens: Arc<MachineTokens>,
        interval: Duration,
        naked_amis: bool,
    ) -> Ec2Pool {
        let board = Arc::new(StatusBoard::new(&settings, scheduler.now()));
        let mut pool = PoolLoop {
            pool_started_at: scheduler.now(),
            scheduler,
            settings,
            cloud,
            bootstrap,
            tokens,
            board: board.clone(),
            idle: IdleClock::default(),
            failures: Vec::new(),
            recent_launches: Vec::new(),
            seen_interruptions: HashSet::new(),
            removed_scripts: HashSet::new(),
            launched_ids: HashSet::new(),
            naked_amis,
        };
        let task = tokio::spawn(async move {
            let mut feed = pool.scheduler.subscribe();
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                pool.step().await;
                if !wait_for_next_step(&mut ticker, &mut feed).await {
                    return;
                }
            }
        });
        Ec2Pool { board, task }
    }

    /// What `/machines` shows.
    pub fn status(&self) -> PoolStatus {
        self.board.snapshot()
    }

    /// The status board (shared with the web layer).
    pub fn board(&self) -> Arc<StatusBoard> {
        self.board.clone()
    }
}

/// Shortest time between two steps: a burst of scheduler events makes one step, and EC2 is
/// asked at most every this long.
const MIN_STEP_SPACING: Duration = Duration::from_secs(2);

/// Waits for the next step: the interval, or (not sooner than [`MIN_STEP_SPACING`]) an event
/// that can change the demand, so new work starts a launch within seconds. `false` when the
/// scheduler is gone.
async fn wait_for_next_step(
    ticker: &mut tokio::time::Interval,
    feed: &mut tokio::sync::broadcast::Receiver<crate::scheduler::feed::FeedEvent>,
) -> bool {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    tokio::time::sleep(MIN_STEP_SPACING).await;
    loop {
        // Events during the pause count too.
        match feed.try_recv() {
            Ok(event) if super::changes_pool_demand(&event) => return true,
            Ok(_) => continue,
            Err(TryRecvError::Lagged(_)) => return true,
            Err(TryRecvError::Closed) => return false,
            Err(TryRecvError::Empty) => break,
        }
    }
    loop {
        tokio::select! {
            _ = ticker.tick() => return true,
            event = feed.recv() => match event {
                Ok(event) if super::changes_pool_demand(&event) => return true,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return true,
                Err(RecvError::Closed) => return false,
            },
        }
    }
}

impl Drop for Ec2Pool {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct PoolLoop {
    scheduler: Arc<Scheduler>,
    /// It boots naked AMIs for one-shot items ([`settings::boots_naked_amis`]).
    naked_amis: bool,
    settings: PoolSettings,
    cloud: Ec2Cloud,
    bootstrap: BootstrapStore,
    tokens: Arc<MachineTokens>,
    board: Arc<StatusBoard>,
    pool_started_at: Millis,
    idle: IdleClock,
    failures: Vec<LaunchFailure>,
    recent_launches: Vec<ObservedInstance>,
    seen_interruptions: HashSet<String>,
    removed_scripts: HashSet<String>,
    /// Instances this server life launched (their workers are the pool's even before EC2
    /// lists them).
    launched_ids: HashSet<String>,
}

impl PoolLoop {
    async fn step(&mut self) {
        let listed = match self.cloud.list().await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "ec2 pool: cannot list instances; no decision this step");
                self.board
                    .record_error(self.scheduler.now(), error.to_string());
                return;
            }
        };
        let now = self.scheduler.now();
        self.remember_interruptions(&listed, now);
        let instances = self.instances_with_recent_launches(&listed, now);
        let owned: BTreeMap<String, ObservedInstance> = instances
            .iter()
            .filter(|instance| is_owned(&self.settings, instance))
            .map(|instance| (instance.instance_id.clone(), instance.clone()))
            .collect();
        self.tokens.set_live(
            owned
                .values()
                .filter(|instance| instance.state != InstanceState::Terminated)
                .map(|instance| instance.instance_id.clone())
                .collect(),
        );
        let pool_ids: HashSet<String> = owned
            .keys()
            .cloned()
            .chain(self.launched_ids.iter().cloned())
            .collect();
        let PoolWorkers { workers, demand } =
            observe::pool_workers(&self.scheduler, &pool_ids, self.naked_amis).await;
        let workers = self.idle.stamp(workers, now);
        self.failures.retain(|failure| {
            now.saturating_sub(failure.at) < self.settings.launch_failure_backoff_ms
        });
        let observation = Observation {
            now,
            pool_started_at: self.pool_started_at,
            instances,
            workers,
            demand,
            launch_failures: self.failures.clone(),
        };
        let decision = reconcile(&self.settings, &observation);
        if !decision.is_empty() {
            tracing::info!(
                launches = decision.launched_instances(),
                terminations = decision.terminations.len(),
                drains = decision.drains.len(),
                gone = decision.workers_gone.len(),
                "ec2 pool: {}",
                decision.explanation.lines().next().unwrap_or_default()
            );
        }
        let errors = self.act(&decision, &owned, now).await;
        self.remove_finished_scripts(&listed, &observation).await;
        self.board
            .record_step(now, &listed, &observation, decision, errors, &self.settings);
    }

    /// Carries a decision out; returns the errors met.
    async fn act(
        &mut self,
        decision: &Decision,
        owned: &BTreeMap<String, ObservedInstance>,
        now: Millis,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        for machine_id in &decision.workers_gone {
            if let Err(error) = self.scheduler.machine_gone(machine_id).await {
                errors.push(format!("machine {machine_id} gone: {error}"));
            }
        }
        // Only instances this step's listing shows with both tags are ever terminated.
        let doomed: Vec<String> = decision
            .terminations
            .iter()
            .filter(|termination| owned.contains_key(&termination.instance_id))
            .map(|termination| termination.instance_id.clone())
            .collect();
        if !doomed.is_empty() {
            match self.cloud.terminate(&doomed).await {
                Ok(()) => {
                    let ended = decision
                        .terminations
                        .iter()
                        .filter(|termination| doomed.contains(&termination.instance_id));
                    for termination in ended {
                        if termination.reason != TerminateReason::Drained {
                            tracing::warn!(instance = %termination.instance_id, reason = ?termination.reason,
                                "ec2 pool: terminating an instance");
                        }
                        // Its run, if any, is lost now rather than at the heartbeat timeout.
                        let _ = self.scheduler.machine_gone(&termination.instance_id).await;
                    }
                }
                Err(error) => errors.push(error.to_string()),
            }
        }
        for (ids, retired) in [(&decision.drains, true), (&decision.undrains, false)] {
            for machine_id in ids {
                if let Err(error) = self
                    .scheduler
                    .set_machine_retired(machine_id, retired)
                    .await
                {
                    errors.push(format!("drain {machine_id}: {error}"));
                }
            }
        }
        for launch in &decision.launches {
            for _ in 0..launch.count {
                if let Err(error) = self.launch_one(launch, now).await {
                    errors.push(error);
                    break;
                }
            }
        }
        errors
    }

    /// Launches one instance and writes its bootstrap script.
    async fn launch_one(
        &mut self,
        launch: &test_looper_core::pool::Launch,
        now: Millis,
    ) -> Result<(), String> {
        if launch.one_shot && !self.cloud.image_exists(&launch.image_id, now).await {
            // Not a launch failure of the type: the item waits, other launches go on.
            return Err(format!(
                "{}: no such AMI in the region; the items of that environment wait",
                launch.image_id
            ));
        }
        let (key, user_data) = self.bootstrap.prepare().await.map_err(|e| e.to_string())?;
        let mut tags: Vec<(String, String)> = self
            .settings
            .launch_tags()
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect();
        tags.push((BOOTSTRAP_KEY_TAG.into(), key.clone()));
        tags.push((
            "Name".into(),
            format!("{} worker", self.settings.worker_name),
        ));
        let request = LaunchRequest {
            instance_type: &launch.instance_type,
            image_id: &launch.image_id,
            purchase: launch.purchase,
            tags,
            user_data: &user_data,
        };
        let instance_id = match self.cloud.launch(&request).await {
            Ok(id) => id,
            Err(error) => {
                self.failures.push(LaunchFailure {
                    instance_type: launch.instance_type.clone(),
                    purchase: launch.purchase,
                    error: error.launch_error_kind(),
                    at: now,
                });
                tracing::warn!(%error, instance_type = %launch.instance_type, purchase = ?launch.purchase,
                    "ec2 pool: launch failed");
                return Err(error.to_string());
            }
        };
        tracing::info!(%instance_id, instance_type = %launch.instance_type, purchase = ?launch.purchase,
            "ec2 pool: launched");
        self.launched_ids.insert(instance_id.clone());
        self.recent_launches.push(ObservedInstance {
            instance_id: instance_id.clone(),
            instance_type: launch.instance_type.clone(),
            state: InstanceState::Pending,
            launched_at: now,
            purchase: launch.purchase,
            image_id: launch.image_id.clone(),
            tags: InstanceTags {
                worker_name: Some(self.settings.worker_name.clone()),
                owner: Some(self.settings.owner_id.clone()),
            },
        });
        let instance_type = self.settings.instance_type(&launch.instance_type);
        let token = self.tokens.issue(
            &instance_id,
            now.saturating_add(self.settings.boot_timeout_ms),
        );
        let worker = MachineWorker {
            instance_id: &instance_id,
            token: &token,
            cores: instance_type.map_or(1, |t| t.cores),
            ram_gb: instance_type.map_or(1, |t| t.ram_gb),
            vm_ami: launch.one_shot.then_some(launch.image_id.as_str()),
        };
        // Without its script the machine never registers and is replaced at the boot timeout.
        self.bootstrap
            .publish(&key, &worker)
            .await
            .map_err(|e| format!("{instance_id}: {e}"))
    }

    /// Spot instances EC2 reclaimed, remembered once each as launch failures.
    fn remember_interruptions(&mut self, listed: &[ListedInstance], now: Millis) {
        for instance in listed.iter().filter(|i| i.spot_interrupted) {
            if self
                .seen_interruptions
                .insert(instance.observed.instance_id.clone())
            {
                tracing::warn!(instance = %instance.observed.instance_id, "ec2 pool: spot instance reclaimed");
                self.failures.push(LaunchFailure {
                    instance_type: instance.observed.instance_type.clone(),
                    purchase: instance.observed.purchase,
                    error: LaunchErrorKind::SpotInterruption,
                    at: now,
                });
            }
        }
    }

    /// The listing plus instances launched within [`LISTING_GRACE_MS`] it does not show yet.
    fn instances_with_recent_launches(
        &mut self,
        listed: &[ListedInstance],
        now: Millis,
    ) -> Vec<ObservedInstance> {
        let listed_ids: HashSet<&str> = listed
            .iter()
            .map(|i| i.observed.instance_id.as_str())
            .collect();
        self.recent_launches.retain(|launch| {
            !listed_ids.contains(launch.instance_id.as_str())
                && now.saturating_sub(launch.launched_at) < LISTING_GRACE_MS
        });
        listed
            .iter()
            .map(|i| i.observed.clone())
            .chain(self.recent_launches.iter().cloned())
            .collect()
    }

    /// Deletes the bootstrap scripts of machines whose worker registered or that ended.
    async fn remove_finished_scripts(
        &mut self,
        listed: &[ListedInstance],
        observation: &Observation,
    ) {
        let registered: HashSet<&str> = observation
            .workers
            .iter()
            .map(|w| w.machine_id.as_str())
            .collect();
        for instance in listed {
            let Some(key) = &instance.bootstrap_key else {
                continue;
            };
            let done = registered.contains(instance.observed.instance_id.as_str())
                || instance.observed.state == InstanceState::Terminated;
            if done
                && is_owned(&self.settings, &instance.observed)
                && !self.removed_scripts.contains(key)
            {
                match self.bootstrap.remove(key).await {
                    Ok(()) => {
                        self.removed_scripts.insert(key.clone());
                    }
                    Err(error) => {
                        tracing::warn!(%error, "ec2 pool: cannot remove a bootstrap script")
                    }
                }
            }
        }
        // Forget what EC2 no longer lists (both sets stay as small as the listing).
        let keys: HashSet<&String> = listed
            .iter()
            .filter_map(|i| i.bootstrap_key.as_ref())
            .collect();
        self.removed_scripts.retain(|key| keys.contains(key));
        let ids: HashSet<&str> = listed
            .iter()
            .map(|i| i.observed.instance_id.as_str())
            .collect();
        let recent: HashSet<&str> = self
            .recent_launches
            .iter()
            .map(|i| i.instance_id.as_str())
            .collect();
        self.launched_ids
            .retain(|id| ids.contains(id.as_str()) || recent.contains(id.as_str()));
    }
}

/// Why the EC2 pool could not start.
#[derive(Debug, thiserror::Error)]
pub enum Ec2PoolError {
    #[error("machine_management.aws: {0}")]
    Settings(#[from] test_looper_core::pool::SettingsError),
    #[error("machine_management.aws: {0}")]
    Cloud(#[from] cloud::CloudError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("machine_management.aws needs artifacts.s3: machines cannot reach the server's disk")]
    LocalArtifacts,
    #[error("cannot encode the artifact store settings: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Builds the pool from `machine_management.aws` and starts it: the owner id and the
/// machine-token key from `data_dir`, the EC2 and S3 clients, the worker AMI checked.
pub async fn start_from_config(
    context: &crate::AppContext,
    scheduler: Arc<Scheduler>,
    store: &test_looper_artifacts::StoreConfig,
) -> Result<Ec2Pool, Ec2PoolError> {
    let config = &context.config;
    let Some(aws) = &config.machine_management.aws else {
        unreachable!("start_from_config is called only with machine_management.aws");
    };
    let data_dir = &config.server.data_dir;
    let io = |path: std::path::PathBuf| move |source| Ec2PoolError::Io { path, source };
    let owner_id = settings::owner_id(data_dir).map_err(io(data_dir.join("ec2_pool_owner.id")))?;
    let heartbeat_timeout =
        Duration::from_secs(config.machine_management.heartbeat_timeout_seconds);
    let pool_settings = settings::pool_settings(aws, &owner_id, heartbeat_timeout)?;
    let key_path = data_dir.join("machine_token.key");
    let tokens = Arc::new(MachineTokens::open(&key_path).map_err(io(key_path))?);
    let artifacts_json = match store {
        test_looper_artifacts::StoreConfig::S3 {
            bucket,
            region,
            key_prefix,
            endpoint_url,
            ..
        } => serde_json::to_string(&test_looper_artifacts::StoreConfig::S3 {
            bucket: bucket.clone(),
            region: region.clone(),
            key_prefix: key_prefix.clone(),
            endpoint_url: endpoint_url.clone(),
            // Machines use their instance role (or environment), never the server's keys.
            credentials: None,
        })?,
        test_looper_artifacts::StoreConfig::LocalDisk { .. } => {
            return Err(Ec2PoolError::LocalArtifacts)
        }
    };
    let spec = settings::LaunchSpec {
        vpc_id: aws.vpc_id.clone(),
        subnet: aws.subnet.clone(),
        security_group: aws.security_group.clone(),
        keypair: aws.keypair.clone(),
        iam_instance_profile: aws.worker_iam_role_name.clone(),
        disk_gb: aws
            .instance_types
            .iter()
            .map(|t| (t.instance_type.clone(), t.disk_gb))
            .collect(),
        bootstrap: settings::BootstrapSpec {
            bucket: aws.bootstrap_bucket.clone(),
            key_prefix: aws.bootstrap_key_prefix.clone(),
            worker_binary_key: aws.worker_binary_key.clone(),
            binary_path: aws.worker_binary_path.clone(),
            server_url: aws
                .server_url
                .clone()
                .unwrap_or_else(|| config.server.public_url()),
            storage_path: aws.worker_storage_path.clone(),
            host_ips: aws.host_ips.clone(),
            docker_scope: crate::machines::POOL_DOCKER_SCOPE.into(),
            artifacts_json,
            heartbeat_seconds: config.machine_management.heartbeat_interval_seconds(),
            shares_cores: aws.packing == crate::config::PoolPacking::SharedCores,
            valid_for: Duration::from_millis(pool_settings.boot_timeout_ms),
        },
    };
    let sdk = test_looper_aws::sdk_config(&settings::aws_settings(aws)).await;
    let s3 = test_looper_aws::s3_client(&sdk, aws.endpoint_url.is_some());
    let bootstrap = BootstrapStore::new(s3, spec.bootstrap.clone());
    let cloud = Ec2Cloud::connect(
        test_looper_aws::ec2_client(&sdk),
        spec,
        &pool_settings.worker_ami,
    )
    .await?;
    context.workers.accept_machine_tokens(tokens.clone());
    let interval = Duration::from_secs(
        aws.reconcile_interval_seconds
            .clamp(1, settings::MAX_RECONCILE_INTERVAL_SECONDS),
    );
    tracing::info!(owner = %owner_id, worker_name = %pool_settings.worker_name, ?interval,
        "ec2 machine pool started");
    let pool = Ec2Pool::start(
        scheduler,
        pool_settings,
        cloud,
        bootstrap,
        tokens,
        interval,
        settings::boots_naked_amis(aws),
    );
    let _ = context.ec2_pool.set(pool.board());
    Ok(pool)
}
