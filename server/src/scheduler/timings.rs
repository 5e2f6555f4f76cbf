//! Where a scheduler step's time goes: the engine step under the lock, the durable result
//! records, and the Redis transaction, each kept as the latest [`WINDOW`] samples so that
//! percentiles are exact over recent traffic. Recording costs one uncontended lock and a
//! store; the benches read it (`bench_scheduler`) to report a completion's breakdown.

use std::sync::Mutex;
use std::time::Duration;

/// Samples kept per phase.
pub const WINDOW: usize = 8192;

/// The phases of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The engine event, its change set and the prepared commands, under the engine lock.
    EngineStep,
    /// Waiting in the writer's queue until its batch starts.
    Queued,
    /// Writing a batch's result records (and settings).
    DurableWrite,
    /// A batch's `MULTI`/`EXEC` round trip.
    RedisWrite,
}

const PHASES: usize = 4;

/// Recent samples of each phase.
#[derive(Debug, Default)]
pub struct StepTimings {
    phases: [Mutex<Ring>; PHASES],
}

#[derive(Debug, Default)]
struct Ring {
    samples: Vec<Duration>,
    next: usize,
}

/// Percentiles of one phase over its window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PhaseSummary {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl StepTimings {
    pub(crate) fn record(&self, phase: Phase, took: Duration) {
        let mut ring = self.phases[phase as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if ring.samples.len() < WINDOW {
            ring.samples.push(took);
        } else {
            let next = ring.next;
            ring.samples[next] = took;
        }
        ring.next = (ring.next + 1) % WINDOW;
    }

    /// The percentiles of `phase` over its recent samples.
    pub fn summary(&self, phase: Phase) -> PhaseSummary {
        let mut samples = self.phases[phase as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .samples
            .clone();
        samples.sort();
        let at = |p: f64| {
            samples
                .get(((samples.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        PhaseSummary {
            samples: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    /// Forgets every sample (between bench rounds).
    pub fn clear(&self) {
        for ring in &self.phases {
            *ring.lock().unwrap_or_else(|e| e.into_inner()) = Ring::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_cover_the_latest_window_only() {
        let timings = StepTimings::default();
        for _ in 0..WINDOW {
            timings.record(Phase::RedisWrite, Duration::from_millis(9));
        }
        for micros in 1..=WINDOW as u64 {
            timings.record(Phase::RedisWrite, Duration::from_micros(micros));
        }
        let summary = timings.summary(Phase::RedisWrite);
        assert_eq!(summary.samples, WINDOW);
        assert_eq!(summary.max, Duration::from_micros(WINDOW as u64));
        assert_eq!(summary.p50, Duration::from_micros(WINDOW as u64 / 2 + 1));
        assert_eq!(timings.summary(Phase::EngineStep), PhaseSummary::default());
    }
}
