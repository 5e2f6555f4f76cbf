//! Derived per-test state: where a definition stands in the scheduling order and why, and its
//! counters (always recomputed from run records, so they cannot drift).

use serde::{Deserialize, Serialize};

use super::stats::FailureRate;
use crate::protocol::Millis;

/// The scheduling state of a definition (first matching rule wins, see `settle.rs`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TestState {
    /// No enabled commit (and no enabled dependent) wants it.
    Unprioritized,
    /// Has all the runs it needs (or is a deployment, which runs only on request).
    NoMoreTests,
    /// A failed build waiting before its next attempt.
    WaitingToRetry {
        until: Millis,
    },
    /// A build it needs failed for good (or is itself blocked): it will not run.
    DependencyFailed {
        reason: String,
    },
    /// Needs artifacts that do not exist yet.
    WaitingOnBuilds {
        waiting_for: Vec<String>,
    },
    /// Needs a build whose definition is not known yet (another repo not ingested).
    UnresolvedDependencies {
        missing: Vec<String>,
    },
    /// No configured machine shape can provide its cores/RAM/OS.
    NoViableHardware {
        needs: String,
    },
    FirstBuild,
    FirstTest,
    WantsMoreTests,
}

impl TestState {
    /// Order class among runnable work: builds, then first runs, then repeats.
    pub fn work_class(&self) -> Option<u8> {
        match self {
            TestState::FirstBuild => Some(1),
            TestState::FirstTest => Some(2),
            TestState::WantsMoreTests => Some(3),
            _ => None,
        }
    }

    /// Short name for display and logs.
    pub fn name(&self) -> &'static str {
        match self {
            TestState::Unprioritized => "unprioritized",
            TestState::NoMoreTests => "no_more_tests",
            TestState::WaitingToRetry { .. } => "waiting_to_retry",
            TestState::DependencyFailed { .. } => "dependency_failed",
            TestState::WaitingOnBuilds { .. } => "waiting_on_builds",
            TestState::UnresolvedDependencies { .. } => "unresolved_dependencies",
            TestState::NoViableHardware { .. } => "no_viable_hardware",
            TestState::FirstBuild => "first_build",
            TestState::FirstTest => "first_test",
            TestState::WantsMoreTests => "wants_more_tests",
        }
    }
}

/// Counters of one definition (shared by every commit that declares the same hash).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TestCounts {
    /// Finished runs that count (passed, failed, timed out; not cancelled, lost or cleared).
    pub runs: u64,
    pub failures: u64,
    /// Assigned or running now.
    pub running: u64,
    /// Sum of individual test cases over counted runs, and how many of them failed.
    pub cases: u64,
    pub failed_cases: u64,
}

impl TestCounts {
    pub fn successes(&self) -> u64 {
        self.runs - self.failures
    }

    pub fn failure_rate(&self) -> FailureRate {
        FailureRate::new(self.failures, self.runs)
    }
}
