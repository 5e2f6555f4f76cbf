//! Group commit: the scheduler's steps are prepared under the engine lock (so their order is
//! the engine's order) and handed to one writer task, which writes the durable result
//! records, then every step waiting at that moment in a single `MULTI`/`EXEC`, then
//! publishes their feed events and answers each caller. A caller's reply therefore always
//! follows the Redis write of its step, while concurrent callers share one round trip.
//!
//! If a write fails, every step of the batch (and any queued behind it) fails, and the
//! engine is reloaded from Redis so memory never runs ahead of the stored state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use test_looper_core::scheduling::{Engine, ResultRecord, SchedulerConfig, UserSettings};
use tokio::sync::{broadcast, mpsc, oneshot, Mutex, Notify};

use super::feed::FeedEvent;
use super::results::ResultStore;
use crate::state::RedisState;

/// One prepared step.
pub(crate) struct PendingWrite {
    pub(crate) generation: u64,
    pub(crate) commands: Vec<redis::Cmd>,
    pub(crate) records: Vec<ResultRecord>,
    pub(crate) settings: Option<UserSettings>,
    pub(crate) events: Vec<FeedEvent>,
    pub(crate) done: oneshot::Sender<Result<(), String>>,
}

/// What the writer task shares with the scheduler.
pub(crate) struct WriterContext {
    pub(crate) engine: Arc<Mutex<Engine>>,
    pub(crate) generation: Arc<AtomicU64>,
    pub(crate) versions: Arc<super::versions::StateVersions>,
    pub(crate) redis: RedisState,
    pub(crate) store: Arc<dyn ResultStore>,
    pub(crate) feed: broadcast::Sender<FeedEvent>,
    pub(crate) deadline_changed: Arc<Notify>,
    pub(crate) config: SchedulerConfig,
    pub(crate) clock: Arc<dyn super::clock::Clock>,
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
    for write in &batch {
        for record in &write.records {
            if let Err(err) = context.store.write_result(record).await {
                tracing::error!(%err, run_id = %record.run.run_id, "cannot write the durable result record");
            }
        }
    }
    if let Some(settings) = batch.iter().rev().find_map(|write| write.settings.as_ref()) {
        if let Err(err) = context.store.write_settings(settings).await {
            tracing::error!(%err, "cannot write the user settings document");
        }
    }
    let commands: Vec<redis::Cmd> = batch
        .iter()
        .flat_map(|write| write.commands.iter().cloned())
        .collect();
    match context.redis.execute(commands).await {
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
            tracing::error!(%err, "cannot persist scheduler steps; reloading from redis");
            let message = err.to_string();
            for write in batch {
                let _ = write.done.send(Err(message.clone()));
            }
            let mut engine = context.engine.lock().await;
            context.generation.fetch_add(1, Ordering::SeqCst);
            context.versions.everything_changed();
            match context.redis.load().await {
                Ok(snapshot) => {
                    *engine = Engine::from_snapshot(
                        context.config.clone(),
                        snapshot,
                        context.clock.now(),
                    );
                }
                Err(err) => tracing::error!(%err, "cannot reload the state from redis"),
            }
        }
    }
}
