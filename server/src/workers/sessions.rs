//! Which machine ids have a live worker session (H2): a machine id is held by at most one
//! session, so a second connection cannot take over a machine (its runs, its deployments'
//! terminal input) while the first is alive. A claim is released when its session ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a registration waits for a previous session of the same machine to end (a
/// worker that reconnects at once may be faster than the server noticing the old close).
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Inner {
    holders: Mutex<HashMap<String, u64>>,
    released: Notify,
    next_session: AtomicU64,
}

/// The live sessions' machine ids. Cheap to clone.
#[derive(Clone, Default)]
pub struct LiveSessions {
    inner: Arc<Inner>,
}

/// A session's hold on its machine id; released on drop.
pub struct MachineClaim {
    sessions: LiveSessions,
    machine_id: String,
    session: u64,
}

impl MachineClaim {
    pub fn machine_id(&self) -> &str {
        &self.machine_id
    }
}

impl Drop for MachineClaim {
    fn drop(&mut self) {
        let inner = &self.sessions.inner;
        let mut holders = inner.holders.lock().unwrap_or_else(|e| e.into_inner());
        if holders.get(&self.machine_id) == Some(&self.session) {
            holders.remove(&self.machine_id);
        }
        drop(holders);
        inner.released.notify_waiters();
    }
}

impl LiveSessions {
    fn try_claim(&self, machine_id: &str) -> Option<MachineClaim> {
        let inner = &self.inner;
        let mut holders = inner.holders.lock().unwrap_or_else(|e| e.into_inner());
        if holders.contains_key(machine_id) {
            return None;
        }
        let session = inner.next_session.fetch_add(1, Ordering::Relaxed);
        holders.insert(machine_id.to_string(), session);
        Some(MachineClaim {
            sessions: self.clone(),
            machine_id: machine_id.to_string(),
            session,
        })
    }

    /// Claims `machine_id` for a new session, waiting up to `wait` for a session that holds
    /// it to end; `None` when it is still held.
    pub async fn claim(&self, machine_id: &str, wait: Duration) -> Option<MachineClaim> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let released = self.inner.released.notified();
            if let Some(claim) = self.try_claim(machine_id) {
                return Some(claim);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return self.try_claim(machine_id);
            }
        }
    }

    /// Whether a live session holds `machine_id`.
    pub fn is_live(&self, machine_id: &str) -> bool {
        self.inner
            .holders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(machine_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_session_per_machine_until_it_ends() {
        let sessions = LiveSessions::default();
        let first = sessions.claim("m1", Duration::ZERO).await.unwrap();
        assert!(sessions.is_live("m1"));
        assert!(sessions
            .claim("m1", Duration::from_millis(50))
            .await
            .is_none());
        let other = sessions.claim("m2", Duration::ZERO).await.unwrap();
        assert_eq!(other.machine_id(), "m2");
        // A claim waiting for the holder gets the id once the holder ends.
        let waiting = {
            let sessions = sessions.clone();
            tokio::spawn(async move { sessions.claim("m1", Duration::from_secs(20)).await })
        };
        tokio::task::yield_now().await;
        drop(first);
        let second = waiting.await.unwrap().expect("claimed after release");
        assert_eq!(second.machine_id(), "m1");
        drop(second);
        assert!(!sessions.is_live("m1"));
    }
}
