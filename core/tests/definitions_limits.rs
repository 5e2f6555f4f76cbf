//! The size limits of the definitions language (review finding H4): each bomb ends in a
//! clear untestable error, and the memory it took is bounded. A counting global allocator
//! measures the peak bytes allocated while each case runs (the cases run one at a time),
//! and refuses any allocation past 1 GiB, so a regression aborts this test binary instead
//! of exhausting the machine.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use proptest::prelude::*;
use test_looper_core::definitions::limits::{Counter, MAX_FILE_BYTES};
use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef, DefinitionsError, Resolver};

#[path = "../../fuzz/fuzz_targets/common/hostile.rs"]
mod hostile;

#[path = "../benches/generate.rs"]
mod generate;

/// Allocations that would take the live total past this fail (and abort the binary).
const HARD_CAP: usize = 1 << 30;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        if live > HARD_CAP {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
            return std::ptr::null_mut();
        }
        PEAK.fetch_max(live, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One measured case at a time.
static MEASURING: Mutex<()> = Mutex::new(());

/// Run `f`; return its result and the most bytes it had allocated at once.
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let _guard = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let result = f();
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(before);
    (result, peak)
}

const MIB: usize = 1 << 20;
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Resolve `text` as the definitions file of app at COMMIT: the untestable message (the
/// test fails if it resolves) and the peak allocation.
fn untestable(text: &str) -> (String, usize) {
    let mut source = MemorySource::new();
    source.add_file("app", COMMIT, "testlooper.yml", text);
    let (outcome, peak) = peak_of(|| resolve_commit(&CommitRef::new("app", COMMIT), &source));
    println!("peak allocation {:.1} MiB", peak as f64 / MIB as f64);
    match outcome {
        Err(error @ DefinitionsError::Invalid { .. }) => (error.to_string(), peak),
        other => panic!("expected untestable, got {other:?}"),
    }
}

/// Trigger A: `V_n: "${V_{n-1}}${V_{n-1}}"` up to V40 (16 GiB unbounded).
#[test]
fn exponential_variables_fail_at_the_value_limit() {
    let (message, peak) = untestable(&hostile::doubling_variables(40));
    assert!(
        message.contains("variable V17 expands to more than 1 MiB (limit)"),
        "{message}"
    );
    assert!(peak < 32 * MIB, "peak {peak}");
}

/// Trigger B: 100,000 aliases of a 1 MiB string (~100 GB unbounded).
#[test]
fn alias_bomb_fails_by_bytes() {
    let (message, peak) = untestable(&hostile::alias_bomb());
    assert!(
        message.contains("the YAML expands to more than 32 MiB of text (aliases?) (limit)"),
        "{message}"
    );
    assert!(peak < 64 * MIB, "peak {peak}");
}

/// Trigger C: ten-fold nested aliases, ten levels.
#[test]
fn billion_laughs_fail_by_values() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let (message, peak) = untestable(&text);
    assert!(
        message.contains("the YAML expands to more than 1000000 values (aliases?) (limit)"),
        "{message}"
    );
    assert!(peak < 128 * MIB, "peak {peak}");
}

#[test]
fn oversized_file_is_refused_before_parsing() {
    let text = format!("# {}\nlooper_version: 4\n", "x".repeat(MAX_FILE_BYTES));
    let (message, peak) = untestable(&text);
    assert!(
        message.contains(&format!(
            "testlooper.yml is {} bytes, more than the 4 MiB a definitions file may have (limit)",
            text.len()
        )),
        "{message}"
    );
    assert!(peak < MIB, "peak {peak}");
}

/// Macros double too: a top-level `define` chain `M_n: "${M_{n-1}}${M_{n-1}}"`.
#[test]
fn doubling_macros_fail_at_the_value_limit() {
    let (message, peak) = untestable(&hostile::define_chain(40, "looper_version: 4\n"));
    assert!(
        message.contains("substituting 'M16' expands to more than 1 MiB (limit)"),
        "{message}"
    );
    assert!(peak < 64 * MIB, "peak {peak}");
}

/// A `foreach` product is charged before it is built.
#[test]
fn foreach_products_fail_before_they_are_built() {
    let axis = (0..200)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "looper_version: 4\nbuilds:\n  foreach: {{a: [{axis}], b: [{axis}], c: [{axis}]}}\n  repeat: {{\"b${{a}}${{b}}${{c}}/linux\": {{command: x}}}}\n"
    );
    let (message, peak) = untestable(&text);
    assert!(
        message.contains("macro expansion produces more than 1000000 values (limit)"),
        "{message}"
    );
    assert!(peak < 64 * MIB, "peak {peak}");
}

/// Every definition copies its environment's variables: a 1 MiB variable times 200 tests
/// passes the resolved-bytes limit, before the copies are made.
#[test]
fn copies_into_many_definitions_fail_at_the_resolved_limit() {
    // V15 is 512 KiB, the variables together about 1 MiB (each within its limits).
    let mut text = hostile::doubling_variables(15);
    for t in 0..200 {
        text.push_str(&format!("  t{t}/linux: {{command: \"run {t}\"}}\n"));
    }
    let (message, peak) = untestable(&text);
    assert!(
        message.contains("the resolved definitions hold more than 64 MiB of text"),
        "{message}"
    );
    assert!(peak < 128 * MIB, "peak {peak}");
}

/// The benchmark's 10,000-test file (about 1 MB) resolves well within every limit.
#[test]
fn a_large_honest_file_fits_the_limits() {
    let text = generate::generate(10_000);
    let mut source = MemorySource::new();
    source.add_file("app", generate::COMMIT, "testlooper.yml", &text);
    let mut resolver = Resolver::new(&source);
    let (resolved, _) = peak_of(|| resolver.resolve(&CommitRef::new("app", generate::COMMIT)));
    assert_eq!(resolved.expect("resolves").definitions.len(), 10_020);
    for counter in Counter::ALL {
        let spent = resolver.budget().spent(counter);
        assert!(
            spent * 4 < counter.limit(),
            "{counter:?}: {spent} is more than a quarter of {}",
            counter.limit()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The fuzz target `bombs` as a property: generated hostile files stay within every
    /// limit and within bounded memory.
    #[test]
    fn generated_bombs_stay_within_the_limits(data in proptest::collection::vec(any::<u8>(), 0..160)) {
        let ((), peak) = peak_of(|| hostile::check(&data));
        prop_assert!(peak < 512 * MIB, "peak {}", peak);
    }
}
