//! Resolution benchmark (issue 3): a generated file with N tests over 20 environments with
//! 3-level inheritance and chained variables; each test depends on `src: HEAD` and one of
//! 20 builds. Run with `cargo bench -p test_looper_core`.

use criterion::{criterion_group, criterion_main, Criterion};
use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn generate(tests: usize) -> String {
    let mut text = String::from("looper_version: 4\nenvironments:\n");
    text.push_str("  root: {platform: linux, image: {dockerfile_contents: \"FROM base\"}, variables: {A: \"${B}-a\", B: \"${C}-b\", C: c}}\n");
    text.push_str("  mid: {base: root, variables: {C: mid}}\n");
    for e in 0..20 {
        text.push_str(&format!(
            "  env{e}: {{base: mid, variables: {{E: \"e{e}-${{A}}\"}}}}\n"
        ));
    }
    text.push_str("builds:\n");
    for b in 0..20 {
        text.push_str(&format!(
            "  build{b}/env{b}: {{command: \"make ${{E}}\", dependencies: {{src: HEAD}}}}\n"
        ));
    }
    text.push_str("tests:\n");
    for t in 0..tests {
        let e = t % 20;
        let b = (t / 20) % 20;
        text.push_str(&format!(
            "  test{t}/env{e}: {{command: \"run ${{A}} ${{E}} {t}\", dependencies: {{src: HEAD, build: build{b}/env{b}}}}}\n"
        ));
    }
    text
}

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
