//! The scheduler service: the single writer that owns the in-memory
//! [`Engine`](test_looper_core::scheduling::Engine), applies events to it (git ingestion, user
//! inputs, workers), writes every step to Redis in one transaction, writes a durable result
//! record for every finished run, and publishes the change feed.
//!
//! - Startup ([`Scheduler::open`]): load the facts from Redis; on an empty Redis, rebuild
//!   from the result store (runs + user settings; commits and definitions come back with the
//!   next git scan). Runs that were in flight get a fresh heartbeat deadline: a worker that
//!   reconnects keeps its run, a silent one is declared lost and the test retried.
//! - Events, never polling: each call settles priorities and states at once; the only timer
//!   ([`Scheduler::spawn_deadline_timer`]) sleeps until the next heartbeat expiry or build
//!   retry and is re-armed after every step.
//! - Ingest API for the git service: [`Scheduler::ingest_branch_scan`],
//!   [`Scheduler::update_commits`], [`Scheduler::branch_deleted`],
//!   [`Scheduler::commits_orphaned`] with plain-data [`CommitInfo`] / [`ParseOutcome`].
//! - Worker API: [`Scheduler::register_machine`], [`Scheduler::next_work`],
//!   [`Scheduler::heartbeat`], [`Scheduler::artifact_uploaded`],
//!   [`Scheduler::record_completion`]; cancellation notices are `RunCancelled` feed events
//!   and heartbeat replies.
//!
//! - [`store`] (+ [`keys`]): the scheduler's facts in Redis, one transaction per step.
//! - [`ingest`]: the bridge from git scans into the ingest API; [`status_reporter`]: the
//!   change feed out to the forge as commit statuses.
//! - [`writer`]: the single writer with group commit; [`results`]: durable run records;
//!   [`feed`]: the change feed out of the scheduler; [`versions`]: which parts changed when.

pub mod clock;
pub mod feed;
pub mod ingest;
pub mod keys;
pub mod results;
pub mod status_reporter;
pub mod store;
pub mod timings;
pub mod versions;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use test_looper_core::protocol::{
    ArtifactAck, ArtifactUploaded, Completion, CompletionAck, Heartbeat, HeartbeatReply,
    MachineInfo, Millis, Work,
};
use test_looper_core::scheduling::{
    Changes, Engine, HuntSpec, ResultRecord, SchedulerConfig, SchedulingError, Snapshot, StatePart,
};
pub use test_looper_core::scheduling::{CommitInfo, ParseOutcome};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, Mutex, Notify};

use clock::Clock;
use feed::FeedEvent;
use results::{ResultStore, StoreError};
use store::{RedisState, StateError};
use timings::{Phase, StepTimings};
use versions::StateVersions;

/// Why a scheduler call failed.
#[derive(Debug, Error)]
pub enum SchedulerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scheduling(#[from] SchedulingError),
    #[error("cannot persist the step: {0}")]
    Persist(String),
    #[error("the state store is being recovered after a failed write; try again")]
    Recovering,
}

/// How the scheduler was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Loaded from Redis.
    Loaded,
    /// Redis was empty: rebuilt from `runs` result records.
    Rebuilt { runs: usize },
}

/// The scheduler service (see the module docs). Cheap to share behind an `Arc`.
pub struct Scheduler {
    engine: Arc<Mutex<Engine>>,
    generation: Arc<AtomicU64>,
    /// The version of the state and of each of its parts (see [`Scheduler::state_version`]).
    versions: Arc<StateVersions>,
    writes: mpsc::UnboundedSender<writer::PendingWrite>,
    clock: Arc<dyn Clock>,
    feed: broadcast::Sender<FeedEvent>,
    deadline_changed: Arc<Notify>,
    /// Set while the writer brings the store back after a failed write: steps are refused
    /// (their callers retry), reads keep working on the engine.
    recovering: Arc<AtomicBool>,
    start_mode: StartMode,
    timings: Arc<StepTimings>,
}

impl Scheduler {
    /// Loads (or rebuilds) the state and returns the running scheduler.
    pub async fn open(
        client: &redis::Client,
        store: Arc<dyn ResultStore>,
        config: SchedulerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Scheduler>, SchedulerError> {
        let redis = RedisState::connect(client).await?;
        let epoch = store::new_epoch();
        let now = clock.now();
        let (engine, start_mode) = if redis.is_initialized().await? {
            let (snapshot, quarantined) = redis.load().await?;
            if quarantined > 0 {
                tracing::error!(quarantined, "records that do not decode were set aside");
            }
            redis.claim(&epoch).await?;
            (
                Engine::from_snapshot(config.clone(), snapshot, now),
                StartMode::Loaded,
            )
        } else {
            let (engine, runs) = rebuild(store.as_ref(), &config, now).await?;
            redis.write_everything(&engine, &epoch).await?;
            tracing::info!(
                runs,
                "empty redis: rebuilt scheduler state from result records"
            );
            (engine, StartMode::Rebuilt { runs })
        };
        let (feed, _) = broadcast::channel(4096);
        let engine = Arc::new(Mutex::new(engine));
        let generation = Arc::new(AtomicU64::new(0));
        let versions = Arc::new(StateVersions::default());
        let deadline_changed = Arc::new(Notify::new());
        let recovering = Arc::new(AtomicBool::new(false));
        let timings = Arc::new(StepTimings::default());
        let (writes, queue) = mpsc::unbounded_channel();
        if let Some(interval) = store.sync_interval() {
            tokio::spawn(writer::sync_results(
                Arc::clone(&store),
                interval,
                writes.downgrade(),
            ));
        }
        tokio::spawn(writer::run(
            writer::WriterContext {
                engine: Arc::clone(&engine),
                generation: Arc::clone(&generation),
                versions: Arc::clone(&versions),
                redis,
                epoch,
                recovering: Arc::clone(&recovering),
                store,
                feed: feed.clone(),
                deadline_changed: Arc::clone(&deadline_changed),
                config,
                clock: Arc::clone(&clock),
                timings: Arc::clone(&timings),
            },
            queue,
        ));
        Ok(Arc::new(Scheduler {
            engine,
            generation,
            versions,
            writes,
            clock,
            feed,
            deadline_changed,
            recovering,
            start_mode,
            timings,
        }))
    }

    pub fn start_mode(&self) -> StartMode {
        self.start_mode
    }

    /// Where recent steps spent their time (see [`timings`]).
    pub fn step_timings(&self) -> &StepTimings {
        &self.timings
    }

    /// The change feed (in-process). Other processes read the Redis stream `tl:feed`.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.feed.subscribe()
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// A number that changes whenever the engine's state does: a step that changed it, or a
    /// reload from Redis. Both are bumped while the engine is locked, so a view computed
    /// after reading version `v` is at least as new as `v` (the UI keeps views per version).
    pub fn state_version(&self) -> u64 {
        self.versions.current()
    }

    /// Whether any of `parts` may have changed after [`Scheduler::state_version`] `since`
    /// (see [`versions`]): what was computed from them at `since` is still current if not.
    pub fn changed_since(&self, parts: &[StatePart], since: u64) -> bool {
        self.versions.changed_since(parts, since)
    }

    /// Reads the engine (views for the UI and the JSON API).
    pub async fn read<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        let engine = self.engine.lock().await;
        f(&engine)
    }

    /// Applies one step: runs `f` on the engine, prepares what changed (result records,
    /// settings document, Redis commands, feed events) while the engine is locked, and
    /// returns once the writer task has stored it (see `writer.rs`).
    async fn apply<R>(
        &self,
        f: impl FnOnce(&mut Engine, Millis) -> R,
    ) -> Result<R, SchedulerError> {
        let (done, stored) = oneshot::channel();
        let result = {
            let mut engine = self.engine.lock().await;
            if self.recovering.load(Ordering::SeqCst) {
                return Err(SchedulerError::Recovering);
            }
            let started = Instant::now();
            let now = self.clock.now();
            let result = f(&mut engine, now);
            let changes = engine.take_changes();
            if changes.is_empty() {
                self.timings.record(Phase::EngineStep, started.elapsed());
                return Ok(result);
            }
            self.versions.step(engine.parts_touched(&changes));
            let events = feed::events_for(&changes, |run_id| {
                engine
                    .run(run_id)
                    .map(|run| (run.test_hash.clone(), run.machine_id.clone(), run.state))
            });
            let write = writer::PendingWrite {
                generation: self.generation.load(Ordering::SeqCst),
                commands: RedisState::prepare(&engine, &changes, &events)?,
                records: result_records(&engine, &changes),
                settings: changes.settings.then(|| engine.user_settings()),
                events,
                done,
                prepared_at: Instant::now(),
            };
            self.timings.record(Phase::EngineStep, started.elapsed());
            self.writes
                .send(write)
                .map_err(|_| SchedulerError::Persist("the writer task has stopped".into()))?;
            result
        };
        match stored.await {
            Ok(Ok(())) => Ok(result),
            Ok(Err(message)) => Err(SchedulerError::Persist(message)),
            Err(_) => Err(SchedulerError::Persist(
                "the writer task has stopped".into(),
            )),
        }
    }

    // --- git ingestion -------------------------------------------------------------------

    /// A branch scan found `head` and these commits (see `Engine::ingest_branch_scan`).
    pub async fn ingest_branch_scan(
        &self,
        repo: &str,
        branch: &str,
        head: &str,
        commits: Vec<CommitInfo>,
    ) -> Result<(), SchedulerError> {
        self.apply(|engine, now| engine.ingest_branch_scan(repo, branch, head, commits, now))
            .await
    }

    /// Re-delivered parse outcomes (e.g. a pending commit resolved).
    pub async fn update_commits(
        &self,
        repo: &str,
        commits: Vec<CommitInfo>,
    ) -> Result<(), SchedulerError> {
        self.apply(|engine, now| engine.update_commits(repo, commits, now))
            .await
    }

    pub async fn branch_deleted(&self, repo: &str, branch: &str) -> Result<(), SchedulerError> {
        self.apply(|engine, now| engine.branch_deleted(repo, branch, now))
            .await
    }

    pub async fn commits_orphaned(
        &self,
        repo: &str,
        hashes: &[String],
    ) -> Result<(), SchedulerError> {
        self.apply(|engine, now| engine.commits_orphaned(repo, hashes, now))
            .await
    }

    // --- user inputs ---------------------------------------------------------------------

    pub async fn set_branch_under_test(
        &self,
        repo: &str,
        branch: &str,
        on: bool,
    ) -> Result<(), SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.set_branch_under_test(repo, branch, on, now))
            .await??)
    }

    /// 0 disables the commit, 1 enables it, higher bumps it ahead.
    pub async fn set_commit_priority(
        &self,
        repo: &str,
        commit: &str,
        priority: u32,
    ) -> Result<(), SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.set_commit_priority(repo, commit, priority, now))
            .await??)
    }

    pub async fn prioritize_branch_history(
        &self,
        repo: &str,
        branch: &str,
        priority: u32,
        depth: usize,
    ) -> Result<usize, SchedulerError> {
        Ok(self
            .apply(|engine, now| {
                engine.prioritize_branch_history(repo, branch, priority, depth, now)
            })
            .await??)
    }

    /// Puts a test of a repo in quarantine or takes it out (`by`: who asked).
    pub async fn set_quarantine(
        &self,
        repo: &str,
        test: &str,
        on: bool,
        by: &str,
    ) -> Result<(), SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.set_quarantine(repo, test, on, by, now))
            .await??)
    }

    /// Starts a flake hunt (see `core::scheduling::hunts`); returns its id.
    pub async fn start_hunt(&self, spec: HuntSpec) -> Result<String, SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.start_hunt(spec, now))
            .await??)
    }

    pub async fn cancel_hunt(&self, hunt_id: &str) -> Result<(), SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.cancel_hunt(hunt_id, now))
            .await??)
    }

    /// Runs the tests matching `patterns` `runs` times on the last `last_commits` commits
    /// of a branch; returns (commits, (commit, test) pairs).
    pub async fn repeat_on_branch(
        &self,
        repo: &str,
        branch: &str,
        patterns: &[String],
        runs: u32,
        last_commits: usize,
    ) -> Result<(usize, usize), SchedulerError> {
        Ok(self
            .apply(|engine, now| {
                engine.repeat_on_branch(repo, branch, patterns, runs, last_commits, now)
            })
            .await??)
    }

    pub async fn set_runs_desired(
        &self,
        repo: &str,
        commit: &str,
        test_name: &str,
        runs: u32,
    ) -> Result<(), SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.set_runs_desired(repo, commit, test_name, runs, now))
            .await??)
    }

    pub async fn set_branch_default_runs(
        &self,
        repo: &str,
        branch: &str,
        runs: u32,
    ) -> Result<(), SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.set_branch_default_runs(repo, branch, runs, now))
            .await??)
    }

    pub async fn cancel_run(&self, run_id: &str, reason: &str) -> Result<bool, SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.cancel_run(run_id, reason, now))
            .await??)
    }

    pub async fn restart_test(&self, test_hash: &str) -> Result<(), SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.restart_test(test_hash, now))
            .await??)
    }

    pub async fn create_deployment(&self, test_hash: &str) -> Result<String, SchedulerError> {
        self.create_deployment_by(test_hash, None).await
    }

    /// Creates a deployment booted by `booted_by`.
    pub async fn create_deployment_by(
        &self,
        test_hash: &str,
        booted_by: Option<test_looper_core::scheduling::DeploymentOwner>,
    ) -> Result<String, SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.create_deployment_by(test_hash, booted_by, now))
            .await??)
    }

    pub async fn shutdown_deployment(&self, deployment_id: &str) -> Result<(), SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.shutdown_deployment(deployment_id, now))
            .await??)
    }

    // --- workers -------------------------------------------------------------------------

    pub async fn register_machine(&self, info: MachineInfo) -> Result<(), SchedulerError> {
        self.apply(|engine, now| engine.register_machine(info, now))
            .await
    }

    pub async fn machine_gone(&self, machine_id: &str) -> Result<(), SchedulerError> {
        self.apply(|engine, now| engine.machine_gone(machine_id, now))
            .await
    }

    /// Drains or undrains a pool machine (see the engine's `set_machine_retired`).
    pub async fn set_machine_retired(
        &self,
        machine_id: &str,
        retired: bool,
    ) -> Result<(), SchedulerError> {
        self.apply(|engine, now| engine.set_machine_retired(machine_id, retired, now))
            .await
    }

    /// The machine's session closed (it leaves unless it holds work; see the engine).
    pub async fn machine_disconnected(&self, machine_id: &str) -> Result<(), SchedulerError> {
        self.apply(|engine, now| engine.machine_disconnected(machine_id, now))
            .await
    }

    pub async fn next_work(&self, machine_id: &str) -> Result<Option<Work>, SchedulerError> {
        self.next_work_holding(machine_id, Vec::new()).await
    }

    /// Work for a machine that still holds the runs `holding` (see
    /// [`Engine::next_work_holding`](test_looper_core::scheduling::Engine::next_work_holding)).
    pub async fn next_work_holding(
        &self,
        machine_id: &str,
        holding: Vec<String>,
    ) -> Result<Option<Work>, SchedulerError> {
        Ok(self
            .apply(|engine, now| engine.next_work_holding(machine_id, &holding, now))
            .await??)
    }

    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatReply, SchedulerError> {
        self.apply(|engine, now| engine.heartbeat(heartbeat, now))
            .await
    }

    pub async fn artifact_uploaded(
        &self,
        report: &ArtifactUploaded,
    ) -> Result<ArtifactAck, SchedulerError> {
        self.apply(|engine, now| engine.artifact_uploaded(report, now))
            .await
    }

    /// Idempotent: a duplicate delivery is answered `AlreadyRecorded` and counts nothing.
    pub async fn record_completion(
        &self,
        completion: &Completion,
    ) -> Result<CompletionAck, SchedulerError> {
        self.apply(|engine, now| engine.record_completion(completion, now))
            .await
    }

    /// Checks that Redis still holds this life's state, and rewrites it whole if not (see
    /// `writer.rs`). Steps check it too; this catches a wipe while no step happens.
    pub async fn check_store(&self) -> Result<(), SchedulerError> {
        let (done, checked) = oneshot::channel();
        {
            let _engine = self.engine.lock().await;
            if self.recovering.load(Ordering::SeqCst) {
                return Err(SchedulerError::Recovering);
            }
            self.writes
                .send(writer::PendingWrite {
                    generation: self.generation.load(Ordering::SeqCst),
                    commands: Vec::new(),
                    records: Vec::new(),
                    settings: None,
                    events: Vec::new(),
                    done,
                    prepared_at: Instant::now(),
                })
                .map_err(|_| SchedulerError::Persist("the writer task has stopped".into()))?;
        }
        match checked.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(SchedulerError::Persist(message)),
            Err(_) => Err(SchedulerError::Persist(
                "the writer task has stopped".into(),
            )),
        }
    }

    /// Calls [`Scheduler::check_store`] every `every` (the server runs one).
    pub fn spawn_store_watch(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let scheduler = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(err) = scheduler.check_store().await {
                    tracing::warn!(%err, "state store check failed");
                }
            }
        })
    }

    // --- retention (server/src/retention) -------------------------------------------------

    /// Forgets finished runs whose result records retention removed (see
    /// `Engine::forget_runs`); returns how many were forgotten.
    pub async fn forget_runs(&self, run_ids: &[String]) -> Result<usize, SchedulerError> {
        self.apply(|engine, now| engine.forget_runs(run_ids, now))
            .await
    }

    /// Forgets ended deployments (see `Engine::forget_deployments`); returns how many.
    pub async fn forget_deployments(&self, ids: &[String]) -> Result<usize, SchedulerError> {
        self.apply(|engine, now| engine.forget_deployments(ids, now))
            .await
    }

    // --- time ----------------------------------------------------------------------------

    /// Applies every passed deadline (lost runs, build retries).
    pub async fn expire(&self) -> Result<(), SchedulerError> {
        self.apply(|engine, now| engine.expire(now)).await
    }

    /// The next time [`Scheduler::expire`] has work.
    pub async fn next_deadline(&self) -> Option<Millis> {
        self.engine.lock().await.next_deadline()
    }

    /// Sleeps until the next deadline (re-armed after every step) and expires it. Uses the
    /// scheduler's clock to measure the remaining time.
    pub fn spawn_deadline_timer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let scheduler = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let wait = match scheduler.next_deadline().await {
                    Some(deadline) => {
                        std::time::Duration::from_millis(deadline.saturating_sub(scheduler.now()))
                    }
                    None => std::time::Duration::from_secs(3600),
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {
                        if let Err(err) = scheduler.expire().await {
                            tracing::error!(%err, "deadline sweep failed");
                        }
                    }
                    _ = scheduler.deadline_changed.notified() => {}
                }
            }
        })
    }
}

/// An engine rebuilt from the durable records: every run and the user settings (commits and
/// definitions come back with the next git scan). Returns it with the number of runs.
async fn rebuild(
    store: &dyn ResultStore,
    config: &SchedulerConfig,
    now: Millis,
) -> Result<(Engine, usize), SchedulerError> {
    let records = store.list_results().await?;
    let runs = records.len();
    let snapshot = Snapshot {
        next_id: 1,
        runs: records.into_iter().map(|record| record.run).collect(),
        ..Snapshot::default()
    };
    let mut engine = Engine::from_snapshot(config.clone(), snapshot, now);
    if let Some(settings) = store.read_settings().await? {
        engine.apply_user_settings(&settings, now);
    }
    engine.take_changes();
    Ok((engine, runs))
}

/// The durable records of the runs that finished (or were cleared) in this step.
fn result_records(engine: &Engine, changes: &Changes) -> Vec<ResultRecord> {
    changes
        .result_records
        .iter()
        .filter_map(|run_id| engine.run(run_id))
        .map(|run| {
            let (test_name, source) = match engine.test_record(&run.test_hash) {
                Some(test) => (test.definition.name.clone(), test.source.clone()),
                None => (
                    String::new(),
                    test_looper_core::protocol::SourceCommit {
                        repo: String::new(),
                        commit: String::new(),
                    },
                ),
            };
            ResultRecord {
                run: run.clone(),
                test_name,
                source,
            }
        })
        .collect()
}
