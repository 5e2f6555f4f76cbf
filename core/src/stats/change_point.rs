//! INTERIM placeholder.
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissingReason {
    Absent,
    BuildFailed,
    Untestable,
    NotRun,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Position {
    Observed { failures: u64, runs: u64 },
    Missing(MissingReason),
}
