//! Every key the configuration file accepts, read from the schema itself: a tracing
//! [`Deserializer`] hands [`Config`] one value of each field it asks for and records the
//! field names serde's derive declares (`deserialize_struct` receives them all), so the list
//! follows the structs with no hand-kept copy. `docs/configuration.md` is tested against it
//! (`tests.rs`).

use serde::de::{
    self, value::StrDeserializer, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess,
    SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;

use super::Config;

/// What a key holds, as far as the tracer can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A section (a map of further keys).
    Section,
    /// A list of sections (`[]` in the path of its keys).
    SectionList,
    /// A value: string, number, bool, list or map of values.
    Value,
    /// One of these names.
    Choice(Vec<&'static str>),
}

/// Every key of the configuration file as a dotted path (`server.http_port`; the keys of a
/// list item get `[]`: `machine_management.aws.instance_types[].cores`), in schema order.
pub fn config_keys() -> Vec<(String, KeyKind)> {
    let mut keys = Vec::new();
    <Config as de::Deserialize>::deserialize(Tracer {
        path: String::new(),
        keys: &mut keys,
    })
    .expect("the tracer satisfies every field of the schema");
    keys
}

#[derive(Debug)]
struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Error {}
impl de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Lists whose items have alternatives of their own, documented with examples elsewhere
/// (`docs/authentication.md`): traced as one value.
const OPAQUE_LISTS: [&str; 2] = ["auth.providers", "auth.roles"];

/// Deserializes one value at `path`, recording the keys it finds.
struct Tracer<'k> {
    path: String,
    keys: &'k mut Vec<(String, KeyKind)>,
}

impl Tracer<'_> {
    /// Mark the key this tracer stands for (the last one recorded) as `kind`.
    fn mark(&mut self, kind: KeyKind) {
        if let Some(last) = self.keys.iter_mut().rev().find(|(p, _)| *p == self.path) {
            last.1 = kind;
        }
    }
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(false)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(0)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_i64(0)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_f64(0.0)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, Error> {
        if OPAQUE_LISTS.contains(&self.path.as_str()) {
            return visitor.visit_seq(OneItem { tracer: None });
        }
        // One item, traced under `path[]`: a list of sections shows its keys once.
        let before = self.keys.len();
        let item_path = format!("{}[]", self.path);
        let value = visitor.visit_seq(OneItem {
            tracer: Some(Tracer {
                path: item_path,
                keys: &mut *self.keys,
            }),
        })?;
        if self.keys.len() > before {
            self.mark(KeyKind::SectionList);
        }
        Ok(value)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // A map of user-chosen names (such as `host_ips`): no keys of the schema inside.
        visitor.visit_map(Fields {
            fields: &[],
            tracer: self,
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if !self.path.is_empty() {
            self.mark(KeyKind::Section);
        }
        visitor.visit_map(Fields {
            fields,
            tracer: self,
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.mark(KeyKind::Choice(variants.to_vec()));
        // The first variant, as a unit variant.
        let first: StrDeserializer<'_, Error> = variants[0].into_deserializer();
        visitor.visit_enum(first)
    }

    forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct newtype_struct tuple
        tuple_struct identifier ignored_any
    }
}

/// The fields of one struct, each given a traced value.
struct Fields<'k> {
    fields: &'static [&'static str],
    tracer: Tracer<'k>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.first() else {
            return Ok(None);
        };
        let path = if self.tracer.path.is_empty() {
            (*field).to_owned()
        } else {
            format!("{}.{field}", self.tracer.path)
        };
        self.tracer.keys.push((path, KeyKind::Value));
        let key: StrDeserializer<'_, Error> = field.into_deserializer();
        seed.deserialize(key).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let field = self.fields[0];
        self.fields = &self.fields[1..];
        let path = if self.tracer.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.tracer.path)
        };
        seed.deserialize(Tracer {
            path,
            keys: &mut *self.tracer.keys,
        })
    }
}

/// A list of one traced item.
struct OneItem<'k> {
    tracer: Option<Tracer<'k>>,
}

impl<'de> SeqAccess<'de> for OneItem<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.tracer.take().map(|t| seed.deserialize(t)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const DOC: &str = include_str!("../../../docs/configuration.md");

    /// The keys in the first column of the doc's `| key | ...` tables.
    fn documented(doc: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut in_key_table = false;
        for line in doc.lines() {
            let line = line.trim();
            if !line.starts_with('|') {
                in_key_table = false;
                continue;
            }
            let first = line
                .trim_start_matches('|')
                .split('|')
                .next()
                .unwrap_or("")
                .trim();
            if first == "key" {
                in_key_table = true;
            } else if in_key_table && !first.starts_with("---") {
                keys.push(first.trim_matches('`').to_owned());
            }
        }
        keys
    }

    fn problems(doc: &str) -> Vec<String> {
        let schema: BTreeSet<String> = config_keys().into_iter().map(|(k, _)| k).collect();
        let listed = documented(doc);
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for key in &listed {
            if !seen.insert(key.clone()) {
                problems.push(format!("`{key}` is documented twice"));
            }
            if !schema.contains(key) {
                problems.push(format!(
                    "`{key}` is documented but the configuration does not accept it"
                ));
            }
        }
        for key in &schema {
            if !seen.contains(key) {
                problems.push(format!("`{key}` is accepted but not documented"));
            }
        }
        problems
    }

    #[test]
    fn the_tracer_sees_nested_sections_lists_and_choices() {
        let keys = config_keys();
        let kind = |path: &str| {
            keys.iter()
                .find(|(p, _)| p == path)
                .map(|(_, k)| k.clone())
                .unwrap_or_else(|| panic!("{path} not traced"))
        };
        assert_eq!(kind("server"), KeyKind::Section);
        assert_eq!(kind("server.tls"), KeyKind::Section);
        assert_eq!(kind("server.tls.cert"), KeyKind::Value);
        assert_eq!(kind("server.allowed_hosts"), KeyKind::Value);
        assert_eq!(
            kind("machine_management.aws.instance_types"),
            KeyKind::SectionList
        );
        assert_eq!(
            kind("machine_management.aws.instance_types[].cores"),
            KeyKind::Value
        );
        assert_eq!(
            kind("auth.mode"),
            KeyKind::Choice(vec!["none", "write", "full"])
        );
        assert_eq!(kind("retention.artifact_days"), KeyKind::Value);
        assert!(keys.len() > 90, "{}", keys.len());
    }

    #[test]
    fn docs_configuration_lists_exactly_the_accepted_keys() {
        let problems = problems(DOC);
        assert!(
            problems.is_empty(),
            "docs/configuration.md and the configuration schema disagree:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn the_doc_check_notices_a_missing_and_an_invented_key() {
        let without: String = DOC
            .lines()
            .filter(|l| !l.starts_with("| `retention.result_days` |"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(without, DOC);
        assert!(problems(&without)
            .iter()
            .any(|p| p == "`retention.result_days` is accepted but not documented"));
        let invented = DOC.replace(
            "| `deployments.max_live` |",
            "| `deployments.max_dead` | int | | |\n| `deployments.max_live` |",
        );
        assert!(problems(&invented)
            .iter()
            .any(|p| p.starts_with("`deployments.max_dead` is documented")));
    }

    #[test]
    fn the_doc_choices_are_the_schema_choices() {
        for (path, kind) in config_keys() {
            if let KeyKind::Choice(variants) = kind {
                let row = DOC
                    .lines()
                    .find(|l| l.starts_with(&format!("| `{path}` |")))
                    .unwrap_or_else(|| panic!("{path} has no row"));
                for variant in variants {
                    assert!(row.contains(&format!("`{variant}`")), "{path}: {variant}");
                }
            }
        }
    }

    #[test]
    fn the_doc_examples_are_valid_configurations() {
        let mut examples = 0;
        let mut block: Option<String> = None;
        for line in DOC.lines() {
            match (&mut block, line) {
                (None, "```yaml") => block = Some(String::new()),
                (Some(text), "```") => {
                    super::super::Config::from_text(text, |_| None)
                        .unwrap_or_else(|e| panic!("{e}\n{text}"));
                    examples += 1;
                    block = None;
                }
                (Some(text), _) => {
                    text.push_str(line);
                    text.push('\n');
                }
                (None, _) => {}
            }
        }
        assert_eq!(examples, 2);
    }

    /// A configuration with the alternative `path` lives in, in which every key of the
    /// doc's examples can be set.
    fn base_for(path: &str) -> &'static str {
        const LOCAL: &str = "server: {data_dir: /d}\nredis: {url: redis://h/0}\nsource_control: {local: {path_to_repos: /r}}\nartifacts: {local_disk: {path: /a}}\nmachine_management: {local_docker: {local_storage_path: /w}}\n";
        const GITHUB: &str = "server: {data_dir: /d}\nredis: {url: redis://h/0}\nsource_control: {github: {owner: 'org:o', access_token: t}}\nartifacts: {local_disk: {path: /a}}\nmachine_management: {local_docker: {local_storage_path: /w}}\n";
        const GITLAB: &str = "server: {data_dir: /d}\nredis: {url: redis://h/0}\nsource_control: {gitlab: {group: g, private_token: t}}\nartifacts: {local_disk: {path: /a}}\nmachine_management: {local_docker: {local_storage_path: /w}}\n";
        const S3: &str = "server: {data_dir: /d}\nredis: {url: redis://h/0}\nsource_control: {local: {path_to_repos: /r}}\nartifacts: {s3: {bucket: b, region: r}}\nmachine_management: {local_docker: {local_storage_path: /w}}\n";
        if path.starts_with("source_control.github.") {
            GITHUB
        } else if path.starts_with("source_control.gitlab.") {
            GITLAB
        } else if path.starts_with("artifacts.s3.") {
            S3
        } else {
            LOCAL
        }
    }

    /// Every default the doc gives as one literal value (`` `9081` ``, `` `false` ``) is the
    /// schema's: setting the key to it explicitly changes nothing in the loaded config.
    #[test]
    fn the_documented_literal_defaults_are_the_schema_defaults() {
        let mut checked = 0;
        for line in DOC.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let (path, default) = (cells[0].trim_matches('`'), cells[2]);
            let literal = default.split_once(' ').map_or(default, |(first, _)| first);
            if !(literal.starts_with('`') && literal.ends_with('`') && literal.len() > 2) {
                continue;
            }
            let literal = literal.trim_matches('`');
            // Refused alternatives cannot be loaded at all.
            if path.starts_with("machine_management.aws") || path.contains(".oauth") {
                continue;
            }
            let base = base_for(path);
            let mut tree: serde_norway::Value = serde_norway::from_str(base).unwrap();
            let value: serde_norway::Value = serde_norway::from_str(literal).unwrap();
            let mut node = &mut tree;
            for part in path.split('.') {
                let map = node.as_mapping_mut().expect("a section");
                let key = serde_norway::Value::String(part.to_owned());
                if !map.contains_key(&key) {
                    map.insert(
                        key.clone(),
                        serde_norway::Value::Mapping(Default::default()),
                    );
                }
                node = map.get_mut(&key).unwrap();
            }
            *node = value;
            let explicit = serde_norway::to_string(&tree).unwrap();
            let load = |text: &str| {
                super::super::Config::from_text(text, |_| None)
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_else(|e| panic!("{path}: {e}\n{text}"))
            };
            assert_eq!(
                load(base),
                load(&explicit),
                "docs/configuration.md gives {path} the default {literal}, the schema another"
            );
            checked += 1;
        }
        assert!(checked > 30, "only {checked} defaults checked");
    }
}
