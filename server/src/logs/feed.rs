//! Live run logs over the live log intake of the worker channel ([`crate::logs::intake`]):
//! a run's log is the Redis string `run_log:<run id>`, read by byte range, and every append
//! is published on the channel of the same name. One pattern subscription per server wakes
//! every waiting reader (with a timeout, so a lost subscription only slows readers down).
//!
//! A log is complete once its run has finished (and a short grace period has passed, for
//! the last chunks a worker forwards after its completion). When Redis no longer has the log
//! (it expires `retention.live_log_days` after its last write) the run's
//! `test_looper_log.txt` artifact is read instead; when that is gone too (removed by
//! retention, or never uploaded) the log is one line saying so, never an error. A live log
//! cut at `logs.live_log_max_bytes` ends with the notice the intake wrote.

use crate::logs::intake::{log_key, LOG_ARTIFACT};
use crate::reads::model::{LogChunk, ReadError};
use crate::AppContext;
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_looper_artifacts::{ArtifactError, ArtifactKey};
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

/// The most bytes one read returns (longer logs stream in several chunks).
pub const MAX_CHUNK: u64 = 1 << 20;
/// How long after its run finished a log may still grow.
pub const COMPLETION_GRACE_MS: u64 = 2_000;
/// The longest a reader waits without a notification before it looks again.
const WAIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Live logs in Redis.
pub struct RedisLogs {
    context: Arc<AppContext>,
    appended: broadcast::Sender<String>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the scheduler says about a run's log.
struct RunFacts {
    test_hash: String,
    finished_for: Option<u64>,
}

impl RedisLogs {
    pub fn new(context: Arc<AppContext>) -> Self {
        let (appended, _) = broadcast::channel(1024);
        RedisLogs {
            context,
            appended,
            listener: Mutex::new(None),
        }
    }

    async fn run_facts(&self, run_id: &str) -> Result<RunFacts, ReadError> {
        let scheduler = self.context.running_scheduler()?;
        let now = scheduler.now();
        scheduler
            .read(|engine| {
                engine.run(run_id).map(|run| RunFacts {
                    test_hash: run.test_hash.clone(),
                    finished_for: (!run.state.is_active())
                        .then(|| now.saturating_sub(run.ended.max(run.started))),
                })
            })
            .await
            .ok_or_else(|| ReadError::NotFound(format!("run {run_id}")))
    }

    async fn redis_range(&self, run_id: &str, offset: u64) -> Result<(u64, Vec<u8>), ReadError> {
        let unavailable = |e: redis::RedisError| ReadError::Unavailable(format!("redis: {e}"));
        let mut connection = self.context.redis.connection().await.map_err(unavailable)?;
        let key = log_key(run_id);
        let (length, bytes): (u64, Vec<u8>) = redis::pipe()
            .cmd("STRLEN")
            .arg(&key)
            .cmd("GETRANGE")
            .arg(&key)
            .arg(offset)
            .arg(offset.saturating_add(MAX_CHUNK - 1))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        // GETRANGE past the end answers "", but clamps a start beyond the end oddly on
        // some versions: trust STRLEN.
        let bytes = if offset >= length { Vec::new() } else { bytes };
        Ok((length, bytes))
    }

    async fn log_length(&self, run_id: &str) -> redis::RedisResult<u64> {
        let mut connection = self.context.redis.connection().await?;
        redis::cmd("STRLEN")
            .arg(log_key(run_id))
            .query_async(&mut connection)
            .await
    }

    /// The stored log artifact of a finished run, from `offset`; when there is none, the
    /// line that says why.
    async fn artifact_range(
        &self,
        facts: &RunFacts,
        run_id: &str,
        offset: u64,
    ) -> Result<Vec<u8>, ReadError> {
        let test_hash = facts.test_hash.as_str();
        let store =
            self.context.artifacts.get().ok_or_else(|| {
                ReadError::Unavailable("the artifact store is not open yet".into())
            })?;
        let key = ArtifactKey::run(test_hash, run_id, LOG_ARTIFACT)
            .map_err(|e| ReadError::Internal(e.to_string()))?;
        let mut reader = match store.get_reader(&key).await {
            Ok(reader) => reader,
            Err(ArtifactError::NotFound(_))
                if facts.finished_for.is_none_or(|ms| ms < COMPLETION_GRACE_MS) =>
            {
                // The worker may still be uploading it.
                return Ok(Vec::new());
            }
            Err(ArtifactError::NotFound(_)) => {
                let notice = self.missing_log_notice();
                return Ok(notice
                    .as_bytes()
                    .get(usize::try_from(offset).unwrap_or(usize::MAX)..)
                    .unwrap_or_default()
                    .to_vec());
            }
            Err(e) => return Err(ReadError::Unavailable(e.to_string())),
        };
        let io = |e: std::io::Error| ReadError::Internal(format!("read {key}: {e}"));
        tokio::io::copy(&mut (&mut reader).take(offset), &mut tokio::io::sink())
            .await
            .map_err(io)?;
        let mut bytes = Vec::new();
        reader
            .take(MAX_CHUNK)
            .read_to_end(&mut bytes)
            .await
            .map_err(io)?;
        Ok(bytes)
    }

    /// What a finished run whose log is stored nowhere shows instead.
    fn missing_log_notice(&self) -> String {
        match self.context.config.retention.artifact_days {
            Some(days) => format!(
                "[test-looper] this run's log has expired (logs are kept {days} days: \
                 retention.artifact_days) or was never stored; the run's result is kept.\n"
            ),
            None => "[test-looper] no log is stored for this run (it ended before its log \
                     was uploaded).\n"
                .to_string(),
        }
    }

    /// Starts (or restarts) the pattern subscription that wakes readers.
    fn ensure_listener(&self) {
        let mut listener = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if listener.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let url = self.context.config.redis.url.clone();
        let appended = self.appended.clone();
        *listener = Some(tokio::spawn(listen(url, appended)));
    }
}

impl Drop for RedisLogs {
    fn drop(&mut self) {
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Forwards the run id of every log append to `appended`, reconnecting while Redis is away.
async fn listen(url: String, appended: broadcast::Sender<String>) {
    let prefix = log_key("");
    loop {
        let attempt = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(format!("{prefix}*")).await?;
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let channel = message.get_channel_name();
                if let Some(run_id) = channel.strip_prefix(&prefix) {
                    let _ = appended.send(run_id.to_string());
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        if let Err(err) = attempt.await {
            tracing::debug!(%err, "log notifications: subscription failed; retrying");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl RedisLogs {
    pub async fn read_from(&self, run_id: &str, offset: u64) -> Result<LogChunk, ReadError> {
        let facts = self.run_facts(run_id).await?;
        let (length, mut bytes) = self.redis_range(run_id, offset).await?;
        if length == 0 && facts.finished_for.is_some() {
            bytes = self.artifact_range(&facts, run_id, offset).await?;
        }
        let complete = bytes.is_empty()
            && facts
                .finished_for
                .is_some_and(|ms| ms >= COMPLETION_GRACE_MS);
        Ok(LogChunk {
            offset,
            bytes,
            complete,
        })
    }

    pub async fn wait_for_more(&self, run_id: &str, offset: u64) {
        self.ensure_listener();
        let mut appended = self.appended.subscribe();
        // Appended between the caller's read and our subscription?
        if self
            .log_length(run_id)
            .await
            .is_ok_and(|length| length > offset)
        {
            return;
        }
        let wait = async {
            loop {
                match appended.recv().await {
                    Ok(id) if id == run_id => return,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        let _ = tokio::time::timeout(WAIT_TIMEOUT, wait).await;
    }
}
