//! Pure logic of test-looper: no I/O, no async.
//!
//! - [`definitions`]: the test-definitions language and commit resolution.

pub mod definitions;
