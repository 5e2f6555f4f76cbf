//! Caches of the read side, independent of what they hold:
//!
//! - [`coalesce`]: concurrent requests for the same view join one computation, and the
//!   result is kept per version of its sources.
//! - [`snapshot`]: a kept view (its JSON serialised once) and when it stays current.
//! - [`bounded`]: a bounded LRU of computed git facts, shared by concurrent readers.

pub mod bounded;
pub mod coalesce;
pub mod snapshot;
