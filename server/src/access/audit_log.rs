//! The durable audit log: every action, login, logout, token use, token change, deployment
//! attach and refused call ([`AuditEvent`]), kept as JSON lines beside the result records in
//! the artifact store (`audit/<YYYY-MM-DD>/<segment>.jsonl`), so it survives a Redis wipe.
//!
//! [`AuditLog::record`] never blocks a request: it queues the event (and logs it under the
//! `audit` tracing target). The writer ([`AuditLog::spawn_writer`]) writes what is queued at
//! least once a second by rewriting the day's current segment whole (an atomic put, the same
//! on disk and S3); a segment is closed at 1 MiB or when the day changes. A crash loses at
//! most the last second; a store that fails keeps the events queued (up to
//! [`MAX_QUEUED`]) and retries.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_looper_artifacts::{ArtifactKey, ArtifactPrefix, ArtifactStore};
use test_looper_auth::{AuditEvent, AuditOutcome};

/// How often queued events are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// A segment is closed once it holds this many bytes.
pub const SEGMENT_BYTES: usize = 1 << 20;
/// Events kept in memory while the store cannot be written; more are dropped (and counted).
pub const MAX_QUEUED: usize = 100_000;
/// Most events one query returns.
pub const MAX_LIMIT: usize = 5_000;
/// How far back one query looks at most.
pub const MAX_DAYS: i64 = 366;

/// The day segment being filled.
struct Segment {
    day: NaiveDate,
    name: String,
    text: String,
}

#[derive(Default)]
struct State {
    queued: Vec<AuditEvent>,
    /// Taken by the writer, not yet on the store.
    writing: Vec<AuditEvent>,
    segment: Option<Segment>,
    dropped: u64,
}

/// The audit log (one per server).
#[derive(Clone, Default)]
pub struct AuditLog {
    state: Arc<Mutex<State>>,
}

/// Which events a query wants (`/api/audit` query parameters).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// `provider:subject` or `static:NAME`, exactly.
    pub who: Option<String>,
    /// The login, exactly (ASCII case-insensitive).
    pub login: Option<String>,
    /// An action, or an action prefix ending in `.` or `*` (`token.`, `deployment.*`).
    pub action: Option<String>,
    pub outcome: Option<AuditOutcome>,
    /// A substring of the object.
    pub object: Option<String>,
    pub client_ip: Option<std::net::IpAddr>,
    /// RFC 3339; default: 7 days before `until`.
    pub since: Option<DateTime<Utc>>,
    /// RFC 3339; default: now.
    pub until: Option<DateTime<Utc>>,
    /// Default 200, at most [`MAX_LIMIT`].
    pub limit: Option<usize>,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the artifact store is not open yet")]
    NoStore,
    #[error("reading the audit log failed: {0}")]
    Store(#[from] test_looper_artifacts::ArtifactError),
    #[error("{0}")]
    Invalid(String),
}

impl AuditFilter {
    fn matches(&self, event: &AuditEvent) -> bool {
        let action_ok = match self.action.as_deref() {
            None => true,
            Some(wanted) => match wanted.strip_suffix('*') {
                Some(prefix) => event.action.starts_with(prefix),
                None if wanted.ends_with('.') => event.action.starts_with(wanted),
                None => event.action == wanted,
            },
        };
        action_ok
            && self
                .who
                .as_ref()
                .is_none_or(|w| event.who.as_ref() == Some(w))
            && self.login.as_ref().is_none_or(|l| {
                event
                    .login
                    .as_ref()
                    .is_some_and(|have| have.eq_ignore_ascii_case(l))
            })
            && self.outcome.is_none_or(|o| event.outcome == o)
            && self.object.as_ref().is_none_or(|o| {
                event
                    .object
                    .as_ref()
                    .is_some_and(|have| have.contains(o.as_str()))
            })
            && self.client_ip.is_none_or(|ip| event.client_ip == Some(ip))
    }

    /// The time window and limit, checked.
    fn bounds(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>, usize), AuditError> {
        let until = self.until.unwrap_or(now);
        let since = self.since.unwrap_or(until - chrono::Duration::days(7));
        if since > until {
            return Err(AuditError::Invalid("since is after until".into()));
        }
        if until - since > chrono::Duration::days(MAX_DAYS) {
            return Err(AuditError::Invalid(format!(
                "one query covers at most {MAX_DAYS} days"
            )));
        }
        let limit = self.limit.unwrap_or(200);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(AuditError::Invalid(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok((since, until, limit))
    }
}

impl AuditLog {
    /// Queues `event` for the durable log (and logs it).
    pub fn record(&self, event: AuditEvent) {
        tracing::info!(target: "audit", action = %event.action, who = ?event.who,
            outcome = ?event.outcome, object = ?event.object, ip = ?event.client_ip,
            detail = ?event.detail, "audit");
        let mut state = self.state.lock().expect("audit state");
        if state.queued.len() >= MAX_QUEUED {
            state.dropped += 1;
            if state.dropped.is_power_of_two() {
                tracing::error!(
                    dropped = state.dropped,
                    "the audit log cannot be written and its queue is full: events dropped"
                );
            }
            return;
        }
        state.queued.push(event);
    }

    /// Events dropped because the store could not be written for too long.
    pub fn dropped(&self) -> u64 {
        self.state.lock().expect("audit state").dropped
    }

    /// Writes what is queued every [`FLUSH_INTERVAL`] into `store`.
    pub fn spawn_writer(&self, store: Arc<dyn ArtifactStore>) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(err) = log.flush(store.as_ref()).await {
                    tracing::warn!(%err, "writing the audit log failed; retrying");
                }
            }
        })
    }

    /// Writes every queued event now.
    pub async fn flush(&self, store: &dyn ArtifactStore) -> Result<(), AuditError> {
        let (key, text, count) = {
            let mut state = self.state.lock().expect("audit state");
            if state.queued.is_empty() || !state.writing.is_empty() {
                return Ok(());
            }
            let events = std::mem::take(&mut state.queued);
            let day = events[0].time.date_naive();
            let roll = state
                .segment
                .as_ref()
                .is_none_or(|s| s.day != day || s.text.len() >= SEGMENT_BYTES);
            if roll {
                state.segment = Some(Segment {
                    day,
                    name: format!(
                        "{}-{:08x}.jsonl",
                        events[0].time.format("%H%M%S%.3f"),
                        rand::random::<u32>()
                    ),
                    text: String::new(),
                });
            }
            // Events of a later day go to the next segment.
            let split = events
                .iter()
                .position(|e| e.time.date_naive() != day)
                .unwrap_or(events.len());
            let mut events = events;
            let later = events.split_off(split);
            state.queued = later;
            let segment = state.segment.as_mut().expect("segment");
            let mut text = segment.text.clone();
            for event in &events {
                text.push_str(&event.to_json_line());
            }
            let key = ArtifactKey::audit(&segment.day.to_string(), &segment.name)?;
            let count = events.len();
            state.writing = events;
            (key, text, count)
        };
        let written = store.put_bytes(&key, text.clone().into_bytes()).await;
        let mut state = self.state.lock().expect("audit state");
        let events = std::mem::take(&mut state.writing);
        match written {
            Ok(_) => {
                if let Some(segment) = state.segment.as_mut() {
                    segment.text = text;
                }
                tracing::debug!(count, %key, "audit events written");
                Ok(())
            }
            Err(err) => {
                let mut retry = events;
                retry.append(&mut state.queued);
                state.queued = retry;
                Err(err.into())
            }
        }
    }

    /// The events matching `filter`, newest first.
    pub async fn query(
        &self,
        store: Option<&dyn ArtifactStore>,
        filter: &AuditFilter,
        now: DateTime<Utc>,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        let (since, until, limit) = filter.bounds(now)?;
        let in_window = |e: &AuditEvent| e.time >= since && e.time <= until && filter.matches(e);
        let mut found: Vec<AuditEvent> = {
            let state = self.state.lock().expect("audit state");
            state
                .queued
                .iter()
                .chain(&state.writing)
                .filter(|e| in_window(e))
                .cloned()
                .collect()
        };
        let store = store.ok_or(AuditError::NoStore)?;
        let mut day = until.date_naive();
        while day >= since.date_naive() && found.len() < limit {
            let prefix = ArtifactPrefix::audit(&day.to_string())?;
            let mut segments = store.list(&prefix).await?;
            segments.sort_by(|a, b| b.name.cmp(&a.name));
            let mut of_day = Vec::new();
            for segment in segments {
                let key = ArtifactKey::audit(&day.to_string(), &segment.name)?;
                let bytes = store.get_bytes(&key, 4 * SEGMENT_BYTES as u64).await?;
                for line in String::from_utf8_lossy(&bytes).lines() {
                    match serde_json::from_str::<AuditEvent>(line) {
                        Ok(event) if in_window(&event) => of_day.push(event),
                        Ok(_) => {}
                        Err(err) => tracing::warn!(%err, %key, "unreadable audit line skipped"),
                    }
                }
                if found.len() + of_day.len() >= limit * 2 {
                    break;
                }
            }
            found.append(&mut of_day);
            day = match day.pred_opt() {
                Some(d) => d,
                None => break,
            };
        }
        found.sort_by_key(|event| std::cmp::Reverse(event.time));
        found.dedup();
        found.truncate(limit);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_looper_artifacts::DiskStore;

    fn event(action: &str, who: &str, at: DateTime<Utc>) -> AuditEvent {
        let mut event = AuditEvent::new(action).at(at);
        event.who = Some(who.into());
        event
    }

    #[tokio::test]
    async fn events_survive_in_the_store_and_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::new(dir.path());
        let log = AuditLog::default();
        let now = Utc::now();
        let yesterday = now - chrono::Duration::days(1);
        log.record(event("login", "corp:a", yesterday));
        log.record(event(
            "commit.priority",
            "corp:a",
            now - chrono::Duration::seconds(5),
        ));
        log.flush(&store).await.unwrap();
        // The later day's event waits for the next flush, into its own segment.
        log.flush(&store).await.unwrap();
        log.record(event("token.create", "corp:b", now).denied("too high a role"));
        log.flush(&store).await.unwrap();
        assert_eq!(
            store
                .list(&ArtifactPrefix::audit(&now.date_naive().to_string()).unwrap())
                .await
                .unwrap()
                .len(),
            1,
            "one segment per day, rewritten whole"
        );
        // A fresh log (a restarted server) reads the same from the store.
        let fresh = AuditLog::default();
        let all = fresh
            .query(Some(&store), &AuditFilter::default(), now)
            .await
            .unwrap();
        let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["token.create", "commit.priority", "login"]);
        let filter = AuditFilter {
            who: Some("corp:a".into()),
            action: Some("commit.*".into()),
            ..AuditFilter::default()
        };
        let some = fresh.query(Some(&store), &filter, now).await.unwrap();
        assert_eq!(some.len(), 1);
        let denied = AuditFilter {
            outcome: Some(AuditOutcome::Denied),
            ..AuditFilter::default()
        };
        assert_eq!(
            fresh.query(Some(&store), &denied, now).await.unwrap()[0].action,
            "token.create"
        );
        let bad = AuditFilter {
            limit: Some(0),
            ..AuditFilter::default()
        };
        assert!(fresh.query(Some(&store), &bad, now).await.is_err());
        // Queued events show before they are written.
        log.record(event("logout", "corp:a", now));
        let queued = log
            .query(Some(&store), &AuditFilter::default(), now)
            .await
            .unwrap();
        assert_eq!(queued[0].action, "logout");
    }
}
