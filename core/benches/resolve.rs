//! Resolution benchmark (issue 3): a generated file with N tests over 20 environments with
//! 3-level inheritance and chained variables; each test depends on `src: HEAD` and one of
//! 20 builds. Run with `cargo bench -p test_looper_core --bench resolve`.

use criterion::{criterion_group, criterion_main, Criterion};
use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef};

mod generate;
use generate::{generate, COMMIT};

fn bench(c: &mut Criterion) {
    for tests in [1_000usize, 10_000] {
        let mut source = MemorySource::new();
        source.add_file("app", COMMIT, "testlooper.yml", &generate(tests));
        let target = CommitRef::new("app", COMMIT);
        let resolved = resolve_commit(&target, &source).expect("the generated file resolves");
        assert_eq!(resolved.definitions.len(), tests + 20);
        c.bench_function(&format!("resolve {tests} tests"), |b| {
            b.iter(|| resolve_commit(&target, &source).expect("resolves"))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
