//! Property tests of the preprocessing invariants (docs/definitions.md#macros), through the public
//! [`expand_file`] (the document after macro expansion, as JSON) and the whole pipeline.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::variables::substitute;
use test_looper_core::definitions::{check_file, expand_file, resolve_commit, CommitRef};

/// Expand a document given as JSON (a `.json` file, so no YAML typing gets in the way).
fn expand(doc: &Value) -> Value {
    expand_file(&doc.to_string(), "testDefinitions.json")
        .expect("expands")
        .expect("not empty")
}

/// The `tests` section of an expanded document.
fn tests_of(doc: &Value) -> Value {
    expand(doc)["tests"].clone()
}

/// Plain words that are not directive keys and contain no `${`.
fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,7}".prop_filter("not a directive key", |w| {
        ![
            "define", "in", "squash", "over", "foreach", "repeat", "merge", "case",
        ]
        .contains(&w.as_str())
    })
}

/// Distinct words, in a random order.
fn distinct_words(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(word(), 1..max)
        .prop_map(|set| set.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
}

/// A macro-free JSON tree: maps with plain keys, lists, and scalars without `${`.
fn macro_free_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|i| json!(i)),
        "[ -~&&[^$]]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(word(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Arbitrary trees that use directive keys and `${...}` references freely.
fn hostile_tree() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("define".to_owned()),
        Just("in".to_owned()),
        Just("squash".to_owned()),
        Just("over".to_owned()),
        Just("foreach".to_owned()),
        Just("repeat".to_owned()),
        Just("merge".to_owned()),
        Just("case".to_owned()),
        Just("${a}".to_owned()),
        Just("t/linux".to_owned()),
        word(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>().prop_map(|f| json!(f)),
        "(\\$\\{[a-z]{0,2}\\}?|[a-z /{}$]){0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|entries| { Value::Object(entries.into_iter().collect::<Map<_, _>>()) }),
        ]
    })
}

/// Literal chunks (`Some`) and `${name}` references (`None`).
fn template() -> impl Strategy<Value = Vec<Option<String>>> {
    prop::collection::vec(
        prop_oneof![Just(None), "[a-z .:/-]{1,6}".prop_map(Some)],
        0..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `{define: {v: X}, in: BODY}` expands like BODY with `${v}` replaced by hand.
    #[test]
    fn define_then_in_equals_manual_replacement(
        name in word(),
        value in "[a-zA-Z0-9 ._-]{0,10}",
        parts in template(),
    ) {
        let reference = format!("${{{name}}}");
        let with_macro: String = parts
            .iter()
            .map(|p| p.clone().unwrap_or_else(|| reference.clone()))
            .collect();
        let by_hand: String = parts
            .iter()
            .map(|p| p.clone().unwrap_or_else(|| value.clone()))
            .collect();
        let macro_doc = json!({
            "looper_version": 4,
            "tests": {"define": {name.clone(): value.clone()}, "in": {"t/linux": {"command": with_macro}}}
        });
        let manual_doc = json!({"looper_version": 4, "tests": {"t/linux": {"command": by_hand}}});
        prop_assert_eq!(tests_of(&macro_doc), tests_of(&manual_doc));
    }

    /// `foreach` over a map of axes yields one entry per element of the cross product, in
    /// document order (first axis outermost). Read through the resolved definitions, which
    /// keep declaration order (JSON maps here are sorted).
    #[test]
    fn foreach_cross_product_in_document_order(
        first in distinct_words(5),
        second in distinct_words(5),
    ) {
        let doc = json!({
            "looper_version": 4,
            "environments": {"linux": {"platform": "linux", "image": {"dockerfile_contents": "FROM x"}}},
            "tests": {
                "foreach": {"a": first.clone(), "b": second.clone()},
                "repeat": {"${a}-${b}/linux": {"command": "run ${a} ${b}"}}
            }
        });
        let mut source = MemorySource::new().accepting_any_ref();
        source.add_file("app", "C", "testDefinitions.json", &doc.to_string());
        let resolved = resolve_commit(&CommitRef::new("app", "C"), &source).expect("resolves");
        let names: Vec<&String> = resolved.definitions.keys().collect();
        let expected: Vec<String> = first
            .iter()
            .flat_map(|a| second.iter().map(move |b| format!("{a}-{b}/linux")))
            .collect();
        prop_assert_eq!(names.len(), first.len() * second.len());
        prop_assert_eq!(names, expected.iter().collect::<Vec<_>>());
        let command = &resolved.definitions[&expected[0]].stages[0].command;
        prop_assert_eq!(command, &format!("run {} {}", first[0], second[0]));
    }

    /// `squash` over a list of maps keeps the length and adds the squashed keys to each.
    #[test]
    fn squash_over_a_list_keeps_length(
        items in prop::collection::vec(prop::collection::btree_map(word(), word(), 0..4), 0..8),
        extra in word(),
    ) {
        let squashed_key = format!("x_{extra}");
        let over: Vec<Value> = items.iter().map(|m| json!(m)).collect();
        let doc = json!({
            "looper_version": 4,
            "tests": {"squash": {squashed_key.clone(): 1}, "over": over}
        });
        let tests = tests_of(&doc);
        let list = tests.as_array().expect("a list");
        prop_assert_eq!(list.len(), items.len());
        for (out, original) in list.iter().zip(&items) {
            let map = out.as_object().expect("a map");
            prop_assert_eq!(map.len(), original.len() + 1);
            prop_assert_eq!(&map[&squashed_key], &json!(1));
        }
    }

    /// `merge` of lists concatenates them in order.
    #[test]
    fn merge_of_lists_concatenates(
        lists in prop::collection::vec(prop::collection::vec(word(), 0..5), 1..5),
    ) {
        let doc = json!({"looper_version": 4, "tests": {"merge": lists.clone()}});
        let expected: Vec<String> = lists.concat();
        prop_assert_eq!(tests_of(&doc), json!(expected));
    }

    /// Expansion leaves a macro-free document as it is, so it is idempotent on one.
    #[test]
    fn expansion_is_idempotent_on_macro_free_documents(tree in macro_free_tree()) {
        let doc = json!({"looper_version": 4, "tests": tree.clone(), "builds": [tree]});
        let once = expand(&doc);
        prop_assert_eq!(&once, &doc);
        prop_assert_eq!(expand(&once), once);
    }

    /// Nothing panics on arbitrary nested values full of directives and references, as
    /// JSON or as YAML, through expansion, decoding and the whole pipeline.
    #[test]
    fn arbitrary_nested_values_never_panic(tree in hostile_tree(), section in 0usize..6) {
        let sections = ["tests", "builds", "environments", "repos", "includes", "define"];
        let mut doc = json!({"looper_version": 4, "environments": {"linux": {"platform": "linux", "image": {"dockerfile_contents": "FROM x"}}}});
        doc[sections[section]] = tree.clone();
        let wrapped = json!({"define": {"a": tree}, "in": doc.clone()});
        for candidate in [&doc, &wrapped] {
            let json_text = candidate.to_string();
            let _ = expand_file(&json_text, "testDefinitions.json");
            let _ = check_file(&json_text, "testDefinitions.json");
            let mut source = MemorySource::new().accepting_any_ref();
            source.add_file("app", "C", "testDefinitions.json", &json_text);
            source.add_file("app", "D", "testDefinitions.yml", &json_text);
            let _ = resolve_commit(&CommitRef::new("app", "C"), &source);
            let _ = resolve_commit(&CommitRef::new("app", "D"), &source);
        }
    }

    /// Variable substitution equals replacing `${name}` one variable at a time in
    /// name order, whatever the text and values (including `$`, `{`, `}` and nesting).
    #[test]
    fn substitution_equals_name_ordered_replacement(
        vars in prop::collection::btree_map("[A-C]{1,2}", "[a-c${}]{0,4}", 0..5),
        text in "([a-c ${}]|\\$\\{[A-C]{1,2}\\}){0,12}",
    ) {
        let mut expected = text.clone();
        for (name, value) in &vars {
            expected = expected.replace(&format!("${{{name}}}"), value);
        }
        prop_assert_eq!(substitute(&text, &vars).expect("small texts"), expected);
    }

    /// Arbitrary text as YAML never panics either.
    #[test]
    fn arbitrary_yaml_text_never_panics(text in "(looper_version: 4\n)?[ -~\n\t]{0,200}") {
        let _ = expand_file(&text, "testDefinitions.yml");
        let _ = check_file(&text, "testDefinitions.yml");
    }
}
