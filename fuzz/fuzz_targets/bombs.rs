//! Fuzz the size limits (H4): bytes drive a generator of hostile definitions files
//! (doubling variable chains, aliases of anchored strings, billion laughs, a doubling
//! `define` chain, `foreach` products; see `common/hostile.rs`), each is resolved, and the
//! resolution must stay within every cumulative limit. Run with a memory cap
//! (`-rss_limit_mb=2048`, libFuzzer's default) so an unbounded allocation is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/hostile.rs"]
mod hostile;

fuzz_target!(|data: &[u8]| {
    hostile::check(data);
});
