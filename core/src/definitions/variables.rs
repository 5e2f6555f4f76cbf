//! Variable resolution (§8.2): chained `${name}` references between variables, resolved
//! level by level, with cycle detection, repeated to a fixpoint so computed names such as
//! `${${A}${B}}` work. Only names matching `[A-Za-z0-9_-]+` take part in the reference
//! graph; undefined references stay literal. Also the runtime variables (§10) and the
//! reserved names users may not define (§15.20).

use std::collections::BTreeMap;

/// Variables set by the worker at run time (§10). Users can't define these names.
pub const RUNTIME_VARIABLES: &[&str] = &[
    "TEST_INPUTS",
    "TEST_SCRATCH_DIR",
    "TEST_OUTPUT_DIR",
    "TEST_BUILD_OUTPUT_DIR",
    "TEST_CCACHE_DIR",
    "TEST_CORES_AVAILABLE",
    "TEST_RAM_GB_AVAILABLE",
    "TEST_LOOPER_TEST_ID",
    "HOSTNAME",
    "PYTHONUNBUFFERED",
];

/// Whether a user variable name is reserved: any runtime variable name, `TEST_*` in
/// general, `HOSTNAME` and `PYTHONUNBUFFERED`.
pub fn is_reserved_name(name: &str) -> bool {
    RUNTIME_VARIABLES.contains(&name) || name.starts_with("TEST_")
}

/// The runtime variables for a docker run (fixed container paths).
pub fn docker_runtime_variables(
    cores: u64,
    ram_gb: u64,
    run_id: Option<&str>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for (name, value) in [
        ("TEST_INPUTS", "/test_looper/test_inputs"),
        ("TEST_SCRATCH_DIR", "/test_looper/scratch"),
        ("TEST_OUTPUT_DIR", "/test_looper/output"),
        ("TEST_BUILD_OUTPUT_DIR", "/test_looper/build_output"),
        ("TEST_CCACHE_DIR", "/test_looper/ccache"),
        ("HOSTNAME", "testlooperworker"),
        ("PYTHONUNBUFFERED", "TRUE"),
    ] {
        vars.insert(name.to_owned(), value.to_owned());
    }
    vars.insert("TEST_CORES_AVAILABLE".into(), cores.to_string());
    vars.insert("TEST_RAM_GB_AVAILABLE".into(), ram_gb.to_string());
    if let Some(id) = run_id {
        vars.insert("TEST_LOOPER_TEST_ID".into(), id.to_owned());
    }
    vars
}

/// A cycle among variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariableCycle {
    pub names: Vec<String>,
}

impl std::fmt::Display for VariableCycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quoted: Vec<String> = self.names.iter().map(|n| format!("'{n}'")).collect();
        write!(
            f,
            "Cyclic variable dependencies detected: [{}]",
            quoted.join(", ")
        )
    }
}

/// Byte offset of the first `${` in `text` (a byte scan for `$`: cheaper than the generic
/// substring search on the short texts substitution sees).
pub(crate) fn find_reference_start(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = bytes[from..].iter().position(|&b| b == b'$') {
        let dollar = from + at;
        if bytes.get(dollar + 1) == Some(&b'{') {
            return Some(dollar);
        }
        from = dollar + 1;
    }
    None
}

/// Whether `text` contains `${`.
pub(crate) fn has_reference(text: &str) -> bool {
    find_reference_start(text).is_some()
}

fn is_graph_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The `${name}` references in `text` (graph-eligible names only).
fn references(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = find_reference_start(rest) {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if is_graph_name(&after[..end]) => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            Some(_) => rest = after,
            None => break,
        }
    }
    out
}

/// Whether `text` contains `${name}` (without building the pattern).
fn contains_reference(text: &str, name: &str) -> bool {
    let mut from = 0;
    while let Some(at) = find_reference_start(&text[from..]) {
        let start = from + at + 2;
        let rest = &text[start..];
        if rest.starts_with(name) && rest[name.len()..].starts_with('}') {
            return true;
        }
        from = start;
    }
    false
}

/// Whether `text` may contain `${name}` for a name of `vars`; `false` means
/// [`substitute`] returns `text` unchanged. One scan of `text` instead of one per variable:
/// the name after each `${` runs to the next `}` (exact unless a variable name itself
/// contains `}`, in which case this answers `true`).
fn may_reference_any(text: &str, vars: &BTreeMap<String, String>) -> bool {
    let mut from = 0;
    let mut found_any = false;
    while let Some(at) = find_reference_start(&text[from..]) {
        found_any = true;
        let start = from + at + 2;
        match text[start..].find('}') {
            Some(end) if vars.contains_key(&text[start..start + end]) => return true,
            Some(_) => {}
            None => break,
        }
        from = start;
    }
    found_any && vars.keys().any(|name| name.contains('}'))
}

/// [`substitute`] in one left-to-right pass, when that gives the same result as replacing
/// one variable at a time in name order: no value contains `$`, `{` or `}` (so a
/// replacement can't form or break another reference), no name contains `}`, and no
/// reference in `text` nests a `$`. `None` when those don't hold.
fn substitute_single_pass(text: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    if vars
        .iter()
        .any(|(name, value)| name.contains('}') || value.contains(['$', '{', '}']))
    {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(at) = find_reference_start(rest) {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            break;
        };
        let name = &after[..end];
        if name.contains('$') {
            return None;
        }
        out.push_str(&rest[..at]);
        match vars.get(name) {
            Some(value) => out.push_str(value),
            None => out.push_str(&rest[at..at + 2 + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Replace every `${name}` of `name` in `text`; `None` when there is none.
fn replace_var(text: &str, name: &str, value: &str) -> Option<String> {
    if !contains_reference(text, name) {
        return None;
    }
    let pattern = format!("${{{name}}}");
    Some(text.replace(&pattern, value))
}

/// Resolve chained references among `vars`, then substitute `extra` (runtime variables) into
/// every value and add them (§8.2). Repeats to a fixpoint.
pub fn resolve(
    vars: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, VariableCycle> {
    let mut current = vars.clone();
    // Bounded: every round that changes something removes at least one `${` reference
    // or adds a computed one; hostile inputs stop at the bound instead of looping.
    for _round in 0..64 {
        let next = resolve_once(&current, extra)?;
        if next == current {
            return Ok(next);
        }
        current = next;
    }
    Ok(current)
}

fn resolve_once(
    vars: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, VariableCycle> {
    let mut values = vars.clone();
    if values.values().any(|v| has_reference(v)) {
        // Level of each graph variable: 0 without references, else 1 + max level of refs.
        let graph: Vec<&String> = vars.keys().filter(|k| is_graph_name(k)).collect();
        let mut level: BTreeMap<&str, usize> = BTreeMap::new();
        let deps: BTreeMap<&str, Vec<&str>> = graph
            .iter()
            .map(|name| {
                let refs: Vec<&str> = references(&vars[*name])
                    .into_iter()
                    .filter(|r| vars.contains_key(*r))
                    .collect();
                (name.as_str(), refs)
            })
            .collect();
        let mut changed = true;
        while changed {
            changed = false;
            for (name, refs) in &deps {
                if level.contains_key(name) {
                    continue;
                }
                if refs.iter().all(|r| level.contains_key(r)) {
                    let l = refs.iter().map(|r| level[r] + 1).max().unwrap_or(0);
                    level.insert(name, l);
                    changed = true;
                }
            }
        }
        if level.len() < deps.len() {
            let names = deps
                .keys()
                .filter(|n| !level.contains_key(*n))
                .map(|n| (*n).to_owned())
                .collect();
            return Err(VariableCycle { names });
        }
        let mut by_level: Vec<(&str, usize)> = level.iter().map(|(n, l)| (*n, *l)).collect();
        by_level.sort_by_key(|(n, l)| (*l, *n));
        for (name, _) in by_level {
            let value = values[name].clone();
            for other in values.values_mut() {
                if let Some(replaced) = replace_var(other, name, &value) {
                    *other = replaced;
                }
            }
        }
    }
    for (name, value) in extra {
        for other in values.values_mut() {
            if let Some(replaced) = replace_var(other, name, value) {
                *other = replaced;
            }
        }
    }
    for (name, value) in extra {
        values.insert(name.clone(), value.clone());
    }
    Ok(values)
}

/// [`substitute`] in place: `text` is only rebuilt when a variable occurs in it.
pub fn substitute_in_place(text: &mut String, vars: &BTreeMap<String, String>) {
    if may_reference_any(text, vars) {
        *text = substitute(text, vars);
    }
}

/// [`substitute`], borrowing `text` when no variable occurs in it.
pub fn substitute_cow<'t>(
    text: &'t str,
    vars: &BTreeMap<String, String>,
) -> std::borrow::Cow<'t, str> {
    if may_reference_any(text, vars) {
        std::borrow::Cow::Owned(substitute(text, vars))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Substitute every variable of `vars` into `text` (plain textual `${name}` replacement).
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    if !may_reference_any(text, vars) {
        return text.to_owned();
    }
    if let Some(replaced) = substitute_single_pass(text, vars) {
        return replaced;
    }
    let mut out: Option<String> = None;
    for (name, value) in vars {
        let current = out.as_deref().unwrap_or(text);
        if !has_reference(current) {
            break;
        }
        if let Some(replaced) = replace_var(current, name, value) {
            out = Some(replaced);
        }
    }
    out.unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn e26_chains_cycles_and_computed_names() {
        let mut chain = BTreeMap::new();
        for i in 0..20 {
            chain.insert(format!("A_{i}"), format!("${{A_{}}}_", i + 1));
        }
        chain.insert("A_20".into(), String::new());
        let resolved = resolve(&chain, &BTreeMap::new()).expect("no cycle");
        assert_eq!(resolved["A_0"], "_".repeat(20));

        let cycle = resolve(&map(&[("A", "${B}"), ("B", "${A}")]), &BTreeMap::new()).unwrap_err();
        assert_eq!(
            cycle.to_string(),
            "Cyclic variable dependencies detected: ['A', 'B']"
        );
        assert!(resolve(&map(&[("A", "${A}")]), &BTreeMap::new()).is_err());

        let computed = map(&[
            ("A", "AB"),
            ("B", "BV"),
            ("ABBV", "FINAL"),
            ("D", "${${A}${B}}"),
        ]);
        assert_eq!(
            resolve(&computed, &BTreeMap::new()).expect("ok")["D"],
            "FINAL"
        );

        let runtime = map(&[("TEST_INPUTS", "/ti")]);
        let with_runtime = resolve(
            &map(&[("P", "${TEST_INPUTS}/x"), ("Q", "${P}/y")]),
            &runtime,
        )
        .expect("ok");
        assert_eq!(with_runtime["Q"], "/ti/x/y");
        assert!(is_reserved_name("TEST_INPUTS"));
        assert!(is_reserved_name("HOSTNAME"));
        assert!(!is_reserved_name("MY_VAR"));
    }

    /// The one-pass fast path agrees with one-variable-at-a-time replacement.
    #[test]
    fn single_pass_matches_sequential_substitution() {
        let vars = map(&[("A", "x"), ("AB", "y"), ("B", "z"), ("E", "e-1")]);
        for text in [
            "run ${A} ${AB} ${B}${E} ${C} $ {A} ${A",
            "${${A}}",
            "${A}}${B}{",
            "",
            "no refs",
            "${}${ A}${A}${A}",
        ] {
            let mut sequential = text.to_owned();
            for (name, value) in &vars {
                if let Some(replaced) = replace_var(&sequential, name, value) {
                    sequential = replaced;
                }
            }
            assert_eq!(substitute(text, &vars), sequential, "{text:?}");
        }
    }

    #[test]
    fn undefined_references_stay() {
        let resolved = resolve(&map(&[("A", "${NOPE}-x")]), &BTreeMap::new()).expect("ok");
        assert_eq!(resolved["A"], "${NOPE}-x");
    }
}
