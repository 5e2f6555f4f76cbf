//! worker

pub mod tl;
