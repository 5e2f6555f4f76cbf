//! Fuzz the whole definitions pipeline: arbitrary bytes → YAML text → `resolve_commit`
//! through the in-memory source. Nothing may panic.
//!
//! The input is split on lines `---8<---` into up to three files of a small world: the
//! root file of `app`, the root file of repo `lib` (reachable as `lib/L`), and an include
//! `inc.yml` of `app`. Plain YAML inputs (the seeds) are just the first file. Every part
//! is also checked on its own as YAML and as JSON (`check_file`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{check_file, resolve_commit, CommitRef};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split("\n---8<---\n");
    let app = parts.next().unwrap_or_default();
    let lib = parts.next();
    let include = parts.next();

    let mut source = MemorySource::new().accepting_any_ref();
    source.add_file("app", "C", "testlooper.yml", app);
    source.add_file("app", "C", "src/main.c", "int main() {}\n");
    if let Some(lib) = lib {
        source.add_file("lib", "L", "testlooper.yml", lib);
    }
    if let Some(include) = include {
        source.add_file("app", "C", "inc.yml", include);
    }
    let _ = resolve_commit(&CommitRef::new("app", "C"), &source);
    for part in text.split("\n---8<---\n").take(3) {
        let _ = check_file(part, "testlooper.yml");
        let _ = check_file(part, "testlooper.json");
    }
});
