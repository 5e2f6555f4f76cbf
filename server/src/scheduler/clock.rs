//! The time source of the scheduler. Every lifecycle decision takes the time as an input, so
//! tests drive a [`FakeClock`] and stay deterministic.

use std::sync::atomic::{AtomicU64, Ordering};

use test_looper_core::protocol::Millis;

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: AtomicU64,
}

impl FakeClock {
    pub fn new(start: Millis) -> FakeClock {
        FakeClock {
            now: AtomicU64::new(start),
        }
    }

    pub fn set(&self, now: Millis) {
        self.now.store(now, Ordering::SeqCst);
    }

    pub fn advance_secs(&self, seconds: u64) {
        self.now.fetch_add(seconds * 1000, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}
