//! worker

pub mod daemon;
pub mod executor;
pub mod tl;
