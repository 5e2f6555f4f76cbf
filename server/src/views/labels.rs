//! Words for the scheduler's states on pages: definition kinds, failure reasons, why a
//! definition waits, and a run's result.

use crate::reads::model::{RunState, RunView, WaitReason};
use crate::views::format;
use test_looper_core::definitions::DefinitionKind;
use test_looper_core::protocol::{FailureReason, RunResult};

pub fn kind_label(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Build => "build",
        DefinitionKind::Test => "test",
        DefinitionKind::Deployment => "deployment",
    }
}

/// "test failure", "timeout", ... (the wire name in words).
pub fn failure_reason_label(reason: &FailureReason) -> String {
    serde_json::to_value(reason)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_else(|| format!("{reason:?}"))
}

/// "assigned", "running", "timed out", ... (a run's state in words).
pub fn run_state_label(state: RunState) -> &'static str {
    match state {
        RunState::Assigned => "assigned",
        RunState::Running => "running",
        RunState::Passed => "passed",
        RunState::Failed => "failed",
        RunState::TimedOut => "timed out",
        RunState::Cancelled => "cancelled",
        RunState::Lost => "lost",
    }
}

/// Why a definition waits, in words.
pub fn wait_text(wait: &WaitReason) -> String {
    match wait {
        WaitReason::NotWanted => "priority zero: no enabled commit wants it".into(),
        WaitReason::Queued { priority } => format!("queued for a machine (priority {priority})"),
        WaitReason::BlockedOnBuild { build } => format!("blocked on build {build}"),
        WaitReason::DependencyFailed { reason } => format!("dependency failed: {reason}"),
        WaitReason::UnresolvedDependencies { missing } => {
            format!("needs builds whose definitions are not known yet: {missing}")
        }
        WaitReason::NoHardware { detail } => format!("no machine can provide: {detail}"),
        WaitReason::RetryWait { until } => {
            format!("build retry after {}", format::utc_millis(*until))
        }
        WaitReason::Done => "has all the runs it wants".into(),
    }
}

/// "passed", "test failure: exit code 1", why it was cancelled or lost, or nothing yet.
pub fn run_result_text(run: &RunView) -> String {
    match &run.result {
        Some(RunResult::Passed) => "passed".into(),
        Some(RunResult::Failed { reason, message }) => {
            format!("{}: {message}", failure_reason_label(reason))
        }
        None if !run.reason.is_empty() => run.reason.clone(),
        None => String::new(),
    }
}
