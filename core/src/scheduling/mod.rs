//! The scheduler's pure logic: priorities flowing through build dependencies, test states,
//! work ordering, hardware choice and failure-rate statistics. No I/O: the server's
//! scheduler feeds events in (with the current time) and persists what changed.

pub mod hardware;
pub mod stats;
