//! Live run logs in Redis: `run_log:<run id>` holds the log (APPEND), and every new suffix is
//! published on the channel of the same name. Chunks carry their byte offset, so a replay
//! after a reconnect (or a server restart) appends only what is new. Logs expire
//! `retention.live_log_days` after their last write; the durable copy is the run's
//! `test_looper_log.txt` artifact.
//!
//! Each log is capped at `logs.live_log_max_bytes` (M2): past the cap nothing more is
//! appended except one notice line saying where the full log is. The cap and the notice are
//! applied in the same atomic script as the offset de-duplication, so a replayed chunk never
//! adds a second notice.

use crate::config::Config;
use crate::redis_connection::RedisHandle;

/// How much of a live log Redis keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLogLimits {
    pub max_bytes: u64,
    pub ttl_seconds: u64,
}

impl LiveLogLimits {
    pub fn from_config(config: &Config) -> Self {
        LiveLogLimits {
            max_bytes: config.logs.live_log_max_bytes,
            ttl_seconds: u64::from(config.retention.live_log_days) * 24 * 3600,
        }
    }
}

/// The artifact that keeps a finished run's log (uploaded by the worker, read by
/// [`crate::logs::feed`] once Redis has let the live log expire).
pub const LOG_ARTIFACT: &str = "test_looper_log.txt";

/// The line that ends a log cut at `max_bytes`.
pub fn truncation_notice(run_id: &str, max_bytes: u64) -> String {
    format!(
        "\n[test-looper] live log truncated at {max_bytes} bytes (logs.live_log_max_bytes); \
         the full log is in the run's artifact {} once the run has finished\n",
        crate::views::paths::artifact_url(run_id, LOG_ARTIFACT)
    )
}

/// Redis key (and pub/sub channel) of a run's log.
pub fn log_key(run_id: &str) -> String {
    format!("run_log:{run_id}")
}

/// Appends the part of `text` (starting at byte `offset`) that is not stored yet, up to the
/// cap; returns the log's new length. A gap (offset beyond the end) is filled from where the
/// log is. The chunk that crosses the cap is cut (at a UTF-8 boundary) and followed by the
/// truncation notice; once the log is longer than the cap, nothing more is stored.
pub async fn append(
    redis: &RedisHandle,
    limits: &LiveLogLimits,
    run_id: &str,
    offset: u64,
    text: &str,
) -> redis::RedisResult<u64> {
    // Atomic: compare lengths, cap, append the unseen suffix, publish it.
    const SCRIPT: &str = r#"
local len = redis.call('STRLEN', KEYS[1])
local offset = tonumber(ARGV[1])
local text = ARGV[2]
local cap = tonumber(ARGV[4])
if len > cap then return len end
local skip = len - offset
if skip < 0 then skip = 0 end
if skip >= string.len(text) then return len end
local suffix = string.sub(text, skip + 1)
if len + string.len(suffix) > cap then
  local keep = cap - len
  while keep > 0 do
    local b = string.byte(suffix, keep + 1)
    if b == nil or b < 128 or b >= 192 then break end
    keep = keep - 1
  end
  suffix = string.sub(suffix, 1, keep) .. ARGV[5]
end
len = redis.call('APPEND', KEYS[1], suffix)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', KEYS[1], suffix)
return len
"#;
    let mut connection = redis.connection().await?;
    redis::Script::new(SCRIPT)
        .key(log_key(run_id))
        .arg(offset)
        .arg(text)
        .arg(limits.ttl_seconds.max(1))
        .arg(limits.max_bytes)
        .arg(truncation_notice(run_id, limits.max_bytes))
        .invoke_async(&mut connection)
        .await
}

/// The log of `run_id` from byte `offset` (empty when unknown).
pub async fn read_from(
    redis: &RedisHandle,
    run_id: &str,
    offset: u64,
) -> redis::RedisResult<String> {
    let mut connection = redis.connection().await?;
    let bytes: Vec<u8> = redis::cmd("GETRANGE")
        .arg(log_key(run_id))
        .arg(offset)
        .arg(-1)
        .query_async(&mut connection)
        .await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
