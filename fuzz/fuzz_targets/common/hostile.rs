//! A structured generator of hostile definitions files (review finding H4), driven by bytes:
//! chains of variables that double, reference each other and alias anchored strings; a
//! top-level `define` chain whose macro variables double; a `foreach` product; nested
//! anchored lists ("billion laughs"). Shared by the `bombs` fuzz target and the core
//! property test `definitions_limits` (which includes this file by path), so CI exercises
//! the same generator without cargo-fuzz.
//!
//! [`check`] resolves one generated file and asserts the resolution stayed within every
//! cumulative limit; a crash or an abort on memory is the failure the fuzzer looks for.
//! The fixed bombs of the review ([`doubling_variables`], [`alias_bomb`],
//! [`define_chain`]) are here too, for the tests of `tl` and of the server.

// Each includer uses part of this file.
#![allow(dead_code)]

use test_looper_core::definitions::limits::Counter;
use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{CommitRef, Resolver};

/// Reads choices from the input; zeros once it is exhausted.
struct Choices<'a> {
    data: &'a [u8],
}

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((first, rest)) => {
                self.data = rest;
                *first
            }
            None => 0,
        }
    }

    /// A number in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: usize) -> usize {
        usize::from(self.byte()) % bound
    }
}

/// The definitions file (YAML) the bytes describe.
pub fn hostile_file(data: &[u8]) -> String {
    let mut choices = Choices { data };
    let mut body = String::from("looper_version: 4\n");

    // Nested anchored lists: level i holds `width` aliases of level i-1.
    let depth = choices.below(9);
    let width = 1 + choices.below(12);
    if depth > 0 {
        body.push_str("laughs:\n");
        body.push_str(&format!("  l0: &l0 [{}]\n", vec!["ha"; width].join(", ")));
        for level in 1..depth {
            let aliases = vec![format!("*l{}", level - 1); width].join(", ");
            body.push_str(&format!("  l{level}: &l{level} [{aliases}]\n"));
        }
    }

    // The environment's variables: literals, doublings, references and aliases.
    body.push_str(
        "environments:\n  linux:\n    platform: linux\n    image: {dockerfile_contents: \"FROM x\"}\n    variables:\n",
    );
    let variables = choices.below(48);
    let mut anchored: Vec<usize> = Vec::new();
    for i in 0..variables {
        let anchor = if choices.below(4) == 0 {
            format!("&v{i} ")
        } else {
            String::new()
        };
        let value = match (choices.below(6), i) {
            (0, _) => format!("\"{}\"", "a".repeat(1 << choices.below(14))),
            (1 | 2, i) if i > 0 => format!("\"${{V{}}}${{V{}}}\"", i - 1, i - 1),
            (3, i) if i > 0 => {
                let target = choices.below(i);
                let repeat = 1 + choices.below(8);
                format!("\"{}\"", format!("${{V{target}}}").repeat(repeat))
            }
            (4, _) if !anchored.is_empty() => {
                format!("*v{}", anchored[choices.below(anchored.len())])
            }
            (5, i) if i > 1 => format!("\"${{${{V{}}}}}\"", choices.below(i)),
            _ => format!("\"x{i}\""),
        };
        // An alias can't carry an anchor.
        let anchor = if value.starts_with('*') {
            String::new()
        } else {
            anchor
        };
        if !anchor.is_empty() {
            anchored.push(i);
        }
        body.push_str(&format!("      V{i}: {anchor}{value}\n"));
    }

    // Macro variables of the top-level define chain: M0 literal, each next doubles.
    let macros = choices.below(32);

    // Tests that copy variables into their commands and own variables.
    body.push_str("tests:\n");
    let tests = 1 + choices.below(16);
    for t in 0..tests {
        let var = |choices: &mut Choices| {
            if variables > 0 {
                format!("${{V{}}}", choices.below(variables))
            } else {
                String::new()
            }
        };
        let mac = if macros > 0 {
            format!("${{M{}}}", choices.below(macros))
        } else {
            String::new()
        };
        let command = format!("{} {} {mac}", var(&mut choices), var(&mut choices));
        let own = var(&mut choices);
        body.push_str(&format!(
            "  t{t}/linux: {{command: \"{command}\", variables: {{W: \"{own}{own}\"}}}}\n"
        ));
    }

    // A `foreach` product of builds.
    let axes = choices.below(4);
    if axes > 0 {
        body.push_str("builds:\n  foreach:\n");
        let mut names = String::new();
        for axis in 0..axes {
            let values: Vec<String> = (0..1 + choices.below(80)).map(|v| v.to_string()).collect();
            body.push_str(&format!("    a{axis}: [{}]\n", values.join(", ")));
            names.push_str(&format!("${{a{axis}}}"));
        }
        body.push_str(&format!(
            "  repeat:\n    \"b{names}/linux\": {{command: \"make {names}\"}}\n"
        ));
    }

    define_chain(macros, &body)
}

/// `body` (a definitions file) inside a top-level `define` chain of `macros` levels:
/// `M0: "mmmmmmmmmmmmmmmm"`, then `M_n: "${M_{n-1}}${M_{n-1}}"` (doubling, like
/// [`doubling_variables`]). `macros == 0` gives `body`.
pub fn define_chain(macros: usize, body: &str) -> String {
    if macros == 0 {
        return body.to_owned();
    }
    let mut text = String::new();
    for m in 0..macros {
        let indent = "  ".repeat(m);
        let value = if m == 0 {
            "\"mmmmmmmmmmmmmmmm\"".to_owned()
        } else {
            format!("\"${{M{}}}${{M{}}}\"", m - 1, m - 1)
        };
        text.push_str(&format!("{indent}define: {{M{m}: {value}}}\n{indent}in:\n"));
    }
    let indent = "  ".repeat(macros);
    for line in body.lines() {
        text.push_str(&format!("{indent}{line}\n"));
    }
    text
}

/// H4 trigger A: an environment whose variables double, `V0` 16 bytes and
/// `V_n: "${V_{n-1}}${V_{n-1}}"` up to `V{levels}`, and a test that uses the last one.
/// Unbounded, `V30` alone is 16 GiB.
pub fn doubling_variables(levels: usize) -> String {
    let mut text = String::from(
        "looper_version: 4\nenvironments:\n  linux:\n    platform: linux\n    image: {dockerfile_contents: \"FROM x\"}\n    variables:\n      V0: \"aaaaaaaaaaaaaaaa\"\n",
    );
    for i in 1..=levels {
        text.push_str(&format!("      V{i}: \"${{V{}}}${{V{}}}\"\n", i - 1, i - 1));
    }
    text.push_str(&format!(
        "tests:\n  t/linux: {{command: \"echo ${{V{levels}}}\"}}\n"
    ));
    text
}

/// H4 trigger B: 100,000 aliases of a 1 MiB string (about 100 GB unbounded).
pub fn alias_bomb() -> String {
    let mut text = format!("s: &s \"{}\"\nl: [", "a".repeat(1 << 20));
    text.push_str(&vec!["*s"; 100_000].join(", "));
    text.push_str("]\n");
    text
}

/// Resolve the file `data` describes and check the resolution stayed within every
/// cumulative limit (it may succeed or be untestable; it may not crash).
pub fn check(data: &[u8]) {
    let text = hostile_file(data);
    let mut source = MemorySource::new().accepting_any_ref();
    source.add_file("app", "C", "testlooper.yml", &text);
    let mut resolver = Resolver::new(&source);
    let _ = resolver.resolve(&CommitRef::new("app", "C"));
    for counter in Counter::ALL {
        let spent = resolver.budget().spent(counter);
        assert!(
            spent <= counter.limit(),
            "{counter:?}: {spent} > {}",
            counter.limit()
        );
    }
}
