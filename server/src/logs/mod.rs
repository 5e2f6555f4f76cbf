//! Live run logs, both ways:
//!
//! - [`intake`]: what workers stream in, appended to Redis with the configured limits.
//! - [`feed`]: what browsers read back, by byte range with a wake-up when more arrives (and
//!   the stored log artifact once Redis has let the live log expire).

pub mod feed;
pub mod intake;
