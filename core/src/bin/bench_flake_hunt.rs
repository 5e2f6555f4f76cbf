//! Benchmark of the flake hunt (`core::stats::hunt`) against deflaked bisection: not written yet.

fn main() {}
