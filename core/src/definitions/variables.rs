//! Variable resolution (docs/definitions.md#variables): chained `${name}` references
//! between variables, resolved level by level, with cycle detection, repeated to a fixpoint
//! so computed names such as `${${A}${B}}` work. Only names matching `[A-Za-z0-9_-]+` take
//! part in the reference graph; undefined references stay literal. Also the runtime
//! variables (docs/definitions.md#runtime-variables) and the reserved names users may not
//! define.
//!
//! Every replacement computes its result's length first: no value passes
//! [`MAX_VALUE_BYTES`], a variable set [`MAX_VARIABLES_BYTES`], and the scanning and writing
//! are charged to the resolution's [`Budget`] (H4: `V1: "${V0}${V0}"`, ... doubles per line).

use std::collections::BTreeMap;

use super::limits::{
    show_bytes, value_too_large, Budget, Counter, LimitExceeded, MAX_VALUE_BYTES,
    MAX_VARIABLES_BYTES,
};

/// Variables set by the worker at run time (docs/definitions.md#runtime-variables). Users
/// can't define these names.
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
/// reference in `text` nests a `$`. `Ok(None)` when those don't hold. The output is checked
/// against [`MAX_VALUE_BYTES`] before each piece is added.
fn substitute_single_pass(
    text: &str,
    vars: &BTreeMap<String, String>,
    budget: &mut Budget,
) -> Result<Option<String>, LimitExceeded> {
    if vars
        .iter()
        .any(|(name, value)| name.contains('}') || value.contains(['$', '{', '}']))
    {
        return Ok(None);
    }
    budget.charge(Counter::SubstitutionWork, text.len())?;
    let mut out = String::with_capacity(text.len().min(MAX_VALUE_BYTES) + 32);
    let mut rest = text;
    let push = |out: &mut String, piece: &str, name: &str| {
        if out.len().saturating_add(piece.len()) > MAX_VALUE_BYTES {
            return Err(too_large_text(name));
        }
        out.push_str(piece);
        Ok(())
    };
    while let Some(at) = find_reference_start(rest) {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            break;
        };
        let name = &after[..end];
        if name.contains('$') {
            return Ok(None);
        }
        push(&mut out, &rest[..at], name)?;
        match vars.get(name) {
            Some(value) => push(&mut out, value, name)?,
            None => push(&mut out, &rest[at..at + 2 + end + 1], name)?,
        }
        rest = &after[end + 1..];
    }
    push(&mut out, rest, "")?;
    budget.charge(Counter::SubstitutionWork, out.len())?;
    Ok(Some(out))
}

fn too_large_text(name: &str) -> LimitExceeded {
    if name.is_empty() {
        value_too_large("a substituted text")
    } else {
        value_too_large(&format!("text substituted with variable {name}"))
    }
}

/// Replace every `${name}` of `name` in `text`; `Ok(None)` when there is none. The result's
/// length is computed before it is built: past [`MAX_VALUE_BYTES`] this fails with the
/// error `too_large` gives, and nothing is allocated. Scanning and writing are charged to
/// `budget`'s substitution work.
fn replace_var(
    text: &str,
    name: &str,
    value: &str,
    budget: &mut Budget,
    too_large: &dyn Fn() -> LimitExceeded,
) -> Result<Option<String>, LimitExceeded> {
    budget.charge(Counter::SubstitutionWork, text.len())?;
    if !contains_reference(text, name) {
        return Ok(None);
    }
    let pattern = format!("${{{name}}}");
    let occurrences = text.matches(&pattern).count();
    let new_len = (text.len() - occurrences * pattern.len())
        .saturating_add(occurrences.saturating_mul(value.len()));
    if new_len > MAX_VALUE_BYTES {
        return Err(too_large());
    }
    budget.charge(Counter::SubstitutionWork, new_len)?;
    Ok(Some(text.replace(&pattern, value)))
}

/// Why a variable set could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VariablesError {
    #[error("{0}")]
    Cycle(VariableCycle),
    /// A value, the whole set or the work passed one of the [`limits`](super::limits).
    #[error("{0}")]
    Limit(LimitExceeded),
}

impl From<LimitExceeded> for VariablesError {
    fn from(error: LimitExceeded) -> Self {
        VariablesError::Limit(error)
    }
}

/// Resolve chained references among `vars`, then substitute `extra` (runtime variables) into
/// every value and add them. Repeats to a fixpoint. Bounded: no value may pass
/// [`MAX_VALUE_BYTES`], all values together [`MAX_VARIABLES_BYTES`], and the work
/// [`MAX_SUBSTITUTION_WORK_BYTES`](super::limits::MAX_SUBSTITUTION_WORK_BYTES) (H4).
pub fn resolve(
    vars: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, VariablesError> {
    resolve_within(vars, extra, &mut Budget::new())
}

/// [`resolve`], charging the work to a resolution's `budget`.
pub(crate) fn resolve_within(
    vars: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
    budget: &mut Budget,
) -> Result<BTreeMap<String, String>, VariablesError> {
    let mut current = vars.clone();
    let mut total = total_bytes(&current);
    if total > MAX_VARIABLES_BYTES {
        return Err(variables_too_large().into());
    }
    // Bounded: every round that changes something removes at least one `${` reference
    // or adds a computed one; hostile inputs stop at the bound instead of looping.
    for _round in 0..64 {
        let next = resolve_once(&current, extra, &mut total, budget)?;
        if next == current {
            return Ok(next);
        }
        current = next;
    }
    Ok(current)
}

/// Bytes of the values of `vars`.
fn total_bytes(vars: &BTreeMap<String, String>) -> usize {
    vars.values().map(String::len).sum()
}

fn variables_too_large() -> LimitExceeded {
    LimitExceeded::new(format!(
        "variables expand to more than {} in total (limit)",
        show_bytes(MAX_VARIABLES_BYTES)
    ))
}

/// Replace `${name}` by `value` in every value of `values` that may still hold a reference,
/// keeping `total` (the bytes of all values) within [`MAX_VARIABLES_BYTES`].
fn replace_everywhere(
    values: &mut BTreeMap<String, String>,
    name: &str,
    value: &str,
    total: &mut usize,
    budget: &mut Budget,
) -> Result<(), LimitExceeded> {
    for (owner, other) in values.iter_mut() {
        if !has_reference(other) {
            continue;
        }
        let too_large = || value_too_large(&format!("variable {owner}"));
        if let Some(replaced) = replace_var(other, name, value, budget, &too_large)? {
            let grown_total = (*total - other.len()).saturating_add(replaced.len());
            if grown_total > MAX_VARIABLES_BYTES {
                return Err(variables_too_large());
            }
            *total = grown_total;
            *other = replaced;
        }
    }
    Ok(())
}

fn resolve_once(
    vars: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
    total: &mut usize,
    budget: &mut Budget,
) -> Result<BTreeMap<String, String>, VariablesError> {
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
            return Err(VariablesError::Cycle(VariableCycle { names }));
        }
        let mut by_level: Vec<(&str, usize)> = level.iter().map(|(n, l)| (*n, *l)).collect();
        by_level.sort_by_key(|(n, l)| (*l, *n));
        for (name, _) in by_level {
            let value = values[name].clone();
            replace_everywhere(&mut values, name, &value, total, budget)?;
        }
    }
    for (name, value) in extra {
        replace_everywhere(&mut values, name, value, total, budget)?;
    }
    for (name, value) in extra {
        *total = total.saturating_add(value.len());
        if let Some(old) = values.insert(name.clone(), value.clone()) {
            *total -= old.len();
        }
    }
    Ok(values)
}

/// [`substitute`], borrowing `text` when no variable occurs in it and charging the work to
/// a resolution's `budget`.
pub(crate) fn substitute_within<'t>(
    text: &'t str,
    vars: &BTreeMap<String, String>,
    budget: &mut Budget,
) -> Result<std::borrow::Cow<'t, str>, LimitExceeded> {
    if !may_reference_any(text, vars) {
        return Ok(std::borrow::Cow::Borrowed(text));
    }
    if let Some(replaced) = substitute_single_pass(text, vars, budget)? {
        return Ok(std::borrow::Cow::Owned(replaced));
    }
    let mut out: Option<String> = None;
    for (name, value) in vars {
        let current = out.as_deref().unwrap_or(text);
        if !has_reference(current) {
            break;
        }
        if let Some(replaced) = replace_var(current, name, value, budget, &|| too_large_text(name))?
        {
            out = Some(replaced);
        }
    }
    Ok(match out {
        Some(replaced) => std::borrow::Cow::Owned(replaced),
        None => std::borrow::Cow::Borrowed(text),
    })
}

/// Substitute every variable of `vars` into `text` (plain textual `${name}` replacement).
/// Fails, before building it, when the result would pass [`MAX_VALUE_BYTES`].
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, LimitExceeded> {
    substitute_within(text, vars, &mut Budget::new()).map(std::borrow::Cow::into_owned)
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
                let mut budget = Budget::new();
                let too_large = || value_too_large(name);
                if let Some(replaced) =
                    replace_var(&sequential, name, value, &mut budget, &too_large).expect("small")
                {
                    sequential = replaced;
                }
            }
            assert_eq!(
                substitute(text, &vars).expect("small"),
                sequential,
                "{text:?}"
            );
        }
    }

    #[test]
    fn undefined_references_stay() {
        let resolved = resolve(&map(&[("A", "${NOPE}-x")]), &BTreeMap::new()).expect("ok");
        assert_eq!(resolved["A"], "${NOPE}-x");
    }

    /// H4 trigger A: `V_n = V_{n-1}V_{n-1}` doubles per line; it fails at the first value
    /// over 1 MiB, naming it, having built nothing larger.
    #[test]
    fn exponential_chain_fails_at_the_value_limit() {
        let mut vars = map(&[("V0", "aaaaaaaaaaaaaaaa")]);
        for i in 1..=40 {
            vars.insert(format!("V{i}"), format!("${{V{}}}${{V{}}}", i - 1, i - 1));
        }
        let mut budget = Budget::new();
        let error = resolve_within(&vars, &BTreeMap::new(), &mut budget).unwrap_err();
        // 16 * 2^16 = 1 MiB is the last size allowed.
        assert_eq!(
            error.to_string(),
            "variable V17 expands to more than 1 MiB (limit)"
        );
        // Bounded work: a few MiB scanned and written, not 16 GiB.
        assert!(budget.spent(Counter::SubstitutionWork) < 64 << 20);
    }

    /// Many values that each stay under 1 MiB still fail on the set's total.
    #[test]
    fn wide_sets_fail_at_the_total_limit() {
        let mut vars = map(&[("BASE", &"b".repeat(512 << 10))]);
        for i in 0..40 {
            vars.insert(format!("COPY{i:02}"), "${BASE}".into());
        }
        let error = resolve(&vars, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "variables expand to more than 16 MiB in total (limit)"
        );
    }

    #[test]
    fn substitution_fails_before_building_a_large_text() {
        let vars = map(&[("A", &"a".repeat(1 << 10))]);
        let text = "${A}".repeat(2 << 10);
        assert_eq!(
            substitute(&text, &vars).unwrap_err().to_string(),
            "text substituted with variable A expands to more than 1 MiB (limit)"
        );
        // The sequential path (a value holding `$`) is bounded the same way.
        let vars = map(&[("A", &"$".repeat(1 << 10))]);
        assert!(substitute(&text, &vars).is_err());
        assert_eq!(substitute("${A}", &vars).expect("small").len(), 1 << 10);
    }
}
