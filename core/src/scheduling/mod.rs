//! The scheduler's pure logic: priorities flowing through build dependencies, test states,
//! work ordering, the run lifecycle, hardware choice and failure-rate statistics. No I/O:
//! the server's scheduler feeds events in (with the current time, so tests use a fake
//! clock), persists what [`Changes`] lists and publishes the notices.
//!
//! Entry point: [`Engine`] (`engine.rs`), with events in `ingest.rs` (git), `inputs.rs`
//! (users), `lifecycle.rs` (machines and runs), derived values in `settle.rs` and read
//! models in `views.rs`.

pub mod changes;
pub mod engine;
pub mod hardware;
pub mod hunts;
mod ingest;
pub mod inputs;
mod lifecycle;
pub mod model;
pub mod quarantine;
mod retention;
mod settle;
pub mod state;
pub mod stats;
mod touched;
pub mod views;
mod waiting;

pub use changes::{Cancellation, Changes};
pub use engine::{Engine, SchedulerConfig, MAX_INFRASTRUCTURE_RETRIES};
pub use hardware::{choose_hardware, HardwareConfig, Requirements};
pub use hunts::{
    Culprit, HuntPosition, HuntRecord, HuntReport, HuntSpec, HuntState, PinChange,
    DEFAULT_HUNT_BATCH_RUNS, DEFAULT_HUNT_TARGET, MAX_HUNT_BUDGET, MAX_HUNT_COMMITS,
};
pub use inputs::{DeploymentLimits, SchedulingError};
pub use model::*;
pub use quarantine::{
    QuarantineEntry, QuarantineEvent, QuarantineEvidence, QuarantinePolicy, MAX_QUARANTINE_LOG,
};
pub use retention::ExpiredRun;
pub use settle::PoolDemand;
pub use state::{TestCounts, TestState};
pub use stats::{FailureRate, Verdict};
pub use touched::{PartsTouched, StatePart, MAX_PARTS_TOUCHED};
pub use views::*;
pub use waiting::{WaitingEntry, WaitingGroup, WaitingLimits};
