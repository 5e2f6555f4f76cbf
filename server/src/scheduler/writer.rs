//! Group commit: the scheduler's steps are prepared under the engine lock (so their order is
//! the engine's order) and handed to one writer task, which writes the durable result
//! records, then every step waiting at that moment in a single `MULTI`/`EXEC`, then
//! publishes their feed events and answers each caller. A caller's reply therefore always
//! follows the durable and the Redis write of its step, while concurrent callers share one
//! round trip.
//!
//! Failures (reviews M1 and L2):
//! - If a durable record, the settings document or the Redis write fails, every step of the
//!   batch fails, and the scheduler *recovers*: it refuses new steps (callers retry; workers
//!   resend their completions) until Redis answers again, then either reloads the engine
//!   from Redis (the store kept this life's state, so memory never runs ahead of it) or, if
//!   Redis lost its state meanwhile, rewrites the engine's whole state into it.
//! - Result records may be written *deferred* (see [`ResultStore::sync_interval`]): the
//!   caller is answered once every process can read its record, and [`sync_results`] syncs
//!   them to the disk on an interval, off the callers' path.
//! - If a transaction finds that Redis lost its state before it (a flush, a restart without
//!   persistence, a failover to an empty replica: see `state` on the epoch), the engine's
//!   whole state is rewritten at once and the batch succeeds: nothing the server knew is
//!   lost, and run ids keep counting up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use test_looper_core::scheduling::{Engine, ResultRecord, SchedulerConfig, UserSettings};
use tokio::sync::{broadcast, mpsc, oneshot, Mutex, Notify};

use super::feed::FeedEvent;
use super::results::ResultStore;
use super::store::{RedisState, StateError, StoreCheck};
use super::timings::{Phase, StepTimings};

/// One prepared step.
pub(crate) struct PendingWrite {
    pub(crate) generation: u64,
    pub(crate) commands: Vec<redis::Cmd>,
    pub(crate) records: Vec<ResultRecord>,
    pub(crate) settings: Option<UserSettings>,
    pub(crate) events: Vec<FeedEvent>,
    pub(crate) done: oneshot::Sender<Result<(), String>>,
    /// When the step was queued (for [`Phase::Queued`]).
    pub(crate) prepared_at: Instant,
}

/// What the writer task shares with the scheduler.
pub(crate) struct WriterContext {
    pub(crate) engine: Arc<Mutex<Engine>>,
    pub(crate) generation: Arc<AtomicU64>,
    pub(crate) versions: Arc<super::versions::StateVersions>,
    pub(crate) redis: RedisState,
    /// This server life's epoch in `tl:meta`.
    pub(crate) epoch: String,
    pub(crate) recovering: Arc<AtomicBool>,
    pub(crate) store: Arc<dyn ResultStore>,
    pub(crate) feed: broadcast::Sender<FeedEvent>,
    pub(crate) deadline_changed: Arc<Notify>,
    pub(crate) config: SchedulerConfig,
    pub(crate) clock: Arc<dyn super::clock::Clock>,
    pub(crate) timings: Arc<StepTimings>,
}

/// Most steps written in one transaction.
const MAX_BATCH: usize = 256;

/// Runs until every sender is dropped (the scheduler is gone).
pub(crate) async fn run(context: WriterContext, mut queue: mpsc::UnboundedReceiver<PendingWrite>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let current = context.generation.load(Ordering::SeqCst);
        let (batch, stale): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|write| write.generation == current);
        for write in stale {
            let _ = write
                .done
                .send(Err("state was reloaded after a failed write".into()));
        }
        if batch.is_empty() {
            continue;
        }
        write_batch(&context, batch).await;
    }
}

async fn write_batch(context: &WriterContext, batch: Vec<PendingWrite>) {
    let started = Instant::now();
    for write in &batch {
        context
            .timings
            .record(Phase::Queued, started - write.prepared_at);
    }
    let durable = write_durable(context, &batch).await;
    if batch.iter().any(|write| !write.records.is_empty()) {
        context
            .timings
            .record(Phase::DurableWrite, started.elapsed());
    }
    if let Err(message) = durable {
        tracing::error!(%message, "cannot write the durable records of a batch; its steps fail");
        fail(context, batch, message).await;
        return;
    }
    let commands: Vec<redis::Cmd> = batch
        .iter()
        .flat_map(|write| write.commands.iter().cloned())
        .collect();
    let redis_started = Instant::now();
    let executed = context.redis.execute(commands, &context.epoch).await;
    context
        .timings
        .record(Phase::RedisWrite, redis_started.elapsed());
    let written = match executed {
        Ok(StoreCheck::Intact) => Ok(()),
        Ok(StoreCheck::Lost) => {
            tracing::error!(
                "redis lost the scheduler state (flushed, restarted empty or replaced): \
                 rewriting the whole state from memory"
            );
            let engine = context.engine.lock().await;
            context
                .redis
                .write_everything(&engine, &context.epoch)
                .await
        }
        Err(err) => Err(err),
    };
    match written {
        Ok(()) => {
            for write in batch {
                for event in write.events {
                    // No receiver is fine: nobody is watching.
                    let _ = context.feed.send(event);
                }
                let _ = write.done.send(Ok(()));
            }
            context.deadline_changed.notify_one();
        }
        Err(err) => {
            tracing::error!(%err, "cannot persist scheduler steps; recovering");
            fail(context, batch, err.to_string()).await;
        }
    }
}

/// Writes the batch's result records and its last settings document.
async fn write_durable(context: &WriterContext, batch: &[PendingWrite]) -> Result<(), String> {
    let records = batch.iter().flat_map(|write| write.records.iter());
    futures_util::future::try_join_all(records.map(|record| context.store.write_result(record)))
        .await
        .map_err(|err| err.to_string())?;
    if let Some(settings) = batch.iter().rev().find_map(|write| write.settings.as_ref()) {
        context
            .store
            .write_settings(settings)
            .await
            .map_err(|err| err.to_string())?;
    }
    Ok(())
}

/// Fails every step of the batch, then recovers (see the module docs).
async fn fail(context: &WriterContext, batch: Vec<PendingWrite>, message: String) {
    {
        // Under the lock, so no step is prepared against the engine being replaced.
        let _engine = context.engine.lock().await;
        context.recovering.store(true, Ordering::SeqCst);
        context.generation.fetch_add(1, Ordering::SeqCst);
    }
    // One attempt before answering: when Redis is fine (a failed durable write), callers see
    // their error only once memory is back to the stored state.
    let first = restore(context).await;
    for write in batch {
        let _ = write.done.send(Err(message.clone()));
    }
    let mut delay = Duration::from_millis(50);
    let mut attempt = Some(first);
    loop {
        let result = match attempt.take() {
            Some(result) => result,
            None => restore(context).await,
        };
        match result {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(%err, "redis is not back yet; steps stay refused");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    context.recovering.store(false, Ordering::SeqCst);
    context.deadline_changed.notify_one();
    tracing::info!("scheduler state store recovered; steps are accepted again");
}

/// Syncs deferred result records every `interval` while the scheduler lives (`alive` is its
/// step queue), and once more when it is gone. A failed sync is logged and retried: what it
/// could not sync stays pending.
pub(crate) async fn sync_results(
    store: Arc<dyn ResultStore>,
    interval: Duration,
    alive: mpsc::WeakUnboundedSender<PendingWrite>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let last = alive.upgrade().is_none();
        if let Err(err) = store.sync().await {
            tracing::error!(%err, "cannot sync result records to the disk; retrying");
        }
        if last {
            break;
        }
    }
}

/// Brings memory and Redis back to one state: Redis' when it kept this life's state, the
/// engine's (rewritten whole) when Redis lost it.
async fn restore(context: &WriterContext) -> Result<(), StateError> {
    let intact = context.redis.epoch().await?.as_deref() == Some(context.epoch.as_str());
    let mut engine = context.engine.lock().await;
    if intact {
        let (mut snapshot, quarantined) = context.redis.load().await?;
        if quarantined > 0 {
            tracing::error!(quarantined, "records that do not decode were set aside");
        }
        // Ids issued by steps that were not stored must never be issued again.
        snapshot.next_id = snapshot.next_id.max(engine.next_id());
        *engine = Engine::from_snapshot(context.config.clone(), snapshot, context.clock.now());
    } else {
        tracing::error!(
            "redis lost the scheduler state while a write failed: rewriting it from memory"
        );
        context
            .redis
            .write_everything(&engine, &context.epoch)
            .await?;
    }
    context.versions.everything_changed();
    Ok(())
}
