//! Pure logic of test-looper: no I/O, no async.
//!
//! - [`definitions`]: the test-definitions language and commit resolution.
//! - [`protocol`]: wire types between scheduler and workers.
//! - [`scheduling`]: the scheduler's pure state machine: priorities, work order, statistics.

pub mod definitions;
pub mod protocol;
pub mod scheduling;
pub mod scrollback;
