//! Resolve the benchmark's generated file once (or `ITERATIONS` times) and print the time
//! per resolution: for measuring peak memory (`/usr/bin/time -v`) and for profiling.
//!
//! `cargo run --release -p test_looper_core --example resolve_large -- [TESTS] [ITERATIONS]`
//! (defaults: 10000 tests, 1 iteration).

use std::time::Instant;

use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef};

#[path = "../benches/generate.rs"]
mod generate;
use generate::{generate, COMMIT};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tests: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let iterations: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    let mut source = MemorySource::new();
    source.add_file("app", COMMIT, "testlooper.yml", &generate(tests));
    let target = CommitRef::new("app", COMMIT);
    let start = Instant::now();
    let mut definitions = 0;
    for _ in 0..iterations {
        let resolved = resolve_commit(&target, &source)?;
        definitions = resolved.definitions.len();
    }
    let elapsed = start.elapsed() / iterations.max(1);
    println!("resolved {definitions} definitions ({tests} tests) in {elapsed:?} per resolution");
    Ok(())
}
