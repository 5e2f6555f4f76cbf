//! The generated input of the resolution benchmark (issue 3), shared by `benches/resolve.rs`
//! and `examples/resolve_large.rs`: `tests` tests over 20 environments with 3-level
//! inheritance and chained variables; each test depends on `src: HEAD` and one of 20 builds.

/// The commit the generated file is stored at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The definitions file text with `tests` tests and 20 builds.
pub fn generate(tests: usize) -> String {
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
