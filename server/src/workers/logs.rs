//! Live run logs in Redis: `run_log:<run id>` holds the log (APPEND), and every new suffix is
//! published on the channel of the same name. Chunks carry their byte offset, so a replay
//! after a reconnect (or a server restart) appends only what is new. Logs expire a week after
//! their last write; the durable copy is the run's `test_looper_log.txt` artifact.

use crate::redis_state::RedisHandle;

const LOG_TTL_SECONDS: i64 = 7 * 24 * 3600;

/// Redis key (and pub/sub channel) of a run's log.
pub fn log_key(run_id: &str) -> String {
    format!("run_log:{run_id}")
}

/// Appends the part of `text` (starting at byte `offset`) that is not stored yet; returns the
/// log's new length. A gap (offset beyond the end) is filled from where the log is.
pub async fn append(
    redis: &RedisHandle,
    run_id: &str,
    offset: u64,
    text: &str,
) -> redis::RedisResult<u64> {
    // Atomic: compare lengths, append the unseen suffix, publish it.
    const SCRIPT: &str = r#"
local len = redis.call('STRLEN', KEYS[1])
local offset = tonumber(ARGV[1])
local text = ARGV[2]
local skip = len - offset
if skip < 0 then skip = 0 end
if skip >= string.len(text) then return len end
local suffix = string.sub(text, skip + 1)
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
        .arg(LOG_TTL_SECONDS)
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
