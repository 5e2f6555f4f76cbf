//! worker

pub mod executor;
pub mod tl;
