//! Loading definitions text into a [`Node`] tree: YAML (safe loading only, YAML 1.1 scalar
//! typing) or JSON.
//!
//! **YAML 1.1 choices** (matching PyYAML, which the original used). A *plain* (unquoted,
//! untagged) scalar is typed as:
//! - null: `~`, `null`, `Null`, `NULL` or empty;
//! - bool: `yes/no/on/off/true/false` in the forms `yes`, `Yes`, `YES` (so `AUTO: yes` is true);
//! - int: decimal with `_` separators (`1_000`), **octal with a leading `0`** (`010` is 8),
//!   `0b…` binary, `0x…` hex, and sexagesimal `1:30` (90);
//! - float: needs a `.` (`1.0`, `1.5e+3`, `.5`), or `.inf`/`.nan`; `1e5` stays a string;
//! - anything else is a string. Quoted and block scalars are always strings.
//!
//! Explicit standard tags (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`) are honoured;
//! any other tag is rejected (no object construction). Anchors and aliases work, `<<` merge
//! keys are supported (explicit keys win), duplicate keys are an error, and the tree after
//! alias expansion is charged to the resolution's [`Budget`] in values *and* bytes of text
//! (every alias copy, and the copy kept for each anchor) before it is built, so "billion
//! laughs" and alias bombs of long strings fail cleanly (H4).
//! Non-ASCII text is kept as UTF-8.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::limits::{Budget, Counter};
use super::node::{Map, Mark, Node, Value};

/// Maximum nesting depth of a loaded tree.
pub const MAX_DEPTH: usize = 200;

/// A load failure with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub message: String,
    pub mark: Mark,
}

/// Parse YAML text, charging the tree to `budget`. Empty text or text with only comments
/// gives `Null`.
pub fn load_yaml(text: &str, budget: &mut Budget) -> Result<Node, LoadError> {
    let mut builder = TreeBuilder::new(budget);
    let mut parser = Parser::new_from_str(text);
    let outcome = parser.load(&mut builder, true);
    if let Some(error) = builder.error {
        return Err(error);
    }
    if let Err(scan) = outcome {
        return Err(LoadError {
            message: format!("invalid YAML: {}", scan.info()),
            mark: to_mark(scan.marker()),
        });
    }
    if builder.documents > 1 {
        return Err(LoadError {
            message: "expected a single YAML document, found several".into(),
            mark: Mark::default(),
        });
    }
    Ok(builder
        .root
        .unwrap_or_else(|| Node::new(Value::Null, Mark::default())))
}

/// Parse JSON text (no aliases: the tree is no larger than the text, which is bounded by
/// the file size limit).
pub fn load_json(text: &str) -> Result<Node, LoadError> {
    if text.trim().is_empty() {
        return Ok(Node::new(Value::Null, Mark::default()));
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| LoadError {
        message: format!("invalid JSON: {e}"),
        mark: Mark {
            line: e.line() as u32,
            column: e.column() as u32,
        },
    })?;
    Ok(Node::from_json(&value))
}

fn to_mark(marker: &Marker) -> Mark {
    Mark {
        line: marker.line() as u32,
        column: marker.col() as u32 + 1,
    }
}

enum Frame {
    List {
        items: Vec<Node>,
        mark: Mark,
        anchor: usize,
        extent: Extent,
    },
    Map {
        map: Map,
        merges: Vec<Node>,
        pending_key: Option<(String, bool)>,
        mark: Mark,
        anchor: usize,
        extent: Extent,
    },
}

/// Node count, text bytes (scalars and keys) and height of a subtree: kept incrementally
/// so closing a collection or copying an alias does not walk the subtree again.
#[derive(Clone, Copy, Default)]
struct Extent {
    size: usize,
    bytes: usize,
    height: usize,
}

impl Extent {
    fn add_child(&mut self, child: Extent) {
        self.size = self.size.saturating_add(child.size);
        self.bytes = self.bytes.saturating_add(child.bytes);
        self.height = self.height.max(child.height);
    }

    fn of_scalar(value: &Value) -> Extent {
        let bytes = match value {
            Value::Str(s) => s.len(),
            _ => 0,
        };
        Extent {
            size: 1,
            bytes,
            height: 0,
        }
    }

    /// The extent of a finished collection whose children add up to `self`.
    fn closed(self) -> Extent {
        Extent {
            size: self.size.saturating_add(1),
            bytes: self.bytes,
            height: self.height + 1,
        }
    }
}

struct TreeBuilder<'b> {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, Extent)>,
    root: Option<Node>,
    documents: usize,
    budget: &'b mut Budget,
    error: Option<LoadError>,
}

impl MarkedEventReceiver for TreeBuilder<'_> {
    fn on_event(&mut self, event: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        if let Err(error) = self.handle(event, to_mark(&marker)) {
            self.error = Some(error);
        }
    }
}

impl<'b> TreeBuilder<'b> {
    fn new(budget: &'b mut Budget) -> Self {
        TreeBuilder {
            stack: Vec::new(),
            anchors: HashMap::new(),
            root: None,
            documents: 0,
            budget,
            error: None,
        }
    }

    fn handle(&mut self, event: Event, mark: Mark) -> Result<(), LoadError> {
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                // Charged before the text is typed (and copied by a `!!str` tag).
                self.charge(
                    Extent::of_scalar(&Value::Str(String::new())),
                    text.len(),
                    mark,
                )?;
                let value = scalar_value(text, style, tag.as_ref(), mark)?;
                let extent = Extent::of_scalar(&value);
                self.finish(Node::new(value, mark), anchor, extent)
            }
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_ref(), "seq", mark)?;
                let depth = self.stack.len() + 1;
                self.check_depth(depth, mark)?;
                self.stack.push(Frame::List {
                    items: Vec::new(),
                    mark,
                    anchor,
                    extent: Extent::default(),
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_ref(), "map", mark)?;
                let depth = self.stack.len() + 1;
                self.check_depth(depth, mark)?;
                self.stack.push(Frame::Map {
                    map: Map::default(),
                    merges: Vec::new(),
                    pending_key: None,
                    mark,
                    anchor,
                    extent: Extent::default(),
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::List {
                    items,
                    mark,
                    anchor,
                    extent,
                }) => {
                    self.charge(Extent::default().closed(), 0, mark)?;
                    self.finish(Node::new(Value::List(items), mark), anchor, extent.closed())
                }
                _ => Err(err("unbalanced sequence end", mark)),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    mut map,
                    merges,
                    mark,
                    anchor,
                    extent,
                    ..
                }) => {
                    self.charge(Extent::default().closed(), 0, mark)?;
                    let extent = if merges.is_empty() {
                        extent.closed()
                    } else {
                        // The merged maps were charged when they were built or aliased.
                        apply_merge_keys(&mut map, merges, mark)?;
                        map_extent(&map)
                    };
                    self.finish(Node::new(Value::Map(map), mark), anchor, extent)
                }
                _ => Err(err("unbalanced mapping end", mark)),
            },
            Event::Alias(id) => {
                let extent = self
                    .anchors
                    .get(&id)
                    .map(|(_, extent)| *extent)
                    .ok_or_else(|| err("alias to an unknown anchor", mark))?;
                self.check_depth(self.stack.len() + extent.height, mark)?;
                // The copy is charged in full before it is made (H4).
                self.charge(extent, 0, mark)?;
                let node = self.anchors[&id].0.clone();
                self.finish(node, 0, extent)
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(()),
        }
    }

    fn check_depth(&self, depth: usize, mark: Mark) -> Result<(), LoadError> {
        if depth > MAX_DEPTH {
            return Err(err(
                &format!("the document is nested more than {MAX_DEPTH} levels deep"),
                mark,
            ));
        }
        Ok(())
    }

    /// Charge `extent` (plus `extra_bytes` of text) to the budget, before building it.
    fn charge(&mut self, extent: Extent, extra_bytes: usize, mark: Mark) -> Result<(), LoadError> {
        let bytes = extent.bytes.saturating_add(extra_bytes);
        self.budget
            .charge(Counter::YamlNodes, extent.size)
            .and_then(|()| self.budget.charge(Counter::YamlBytes, bytes))
            .map_err(|e| err(&e.message, mark))
    }

    /// Place a built node (its `extent` already charged) in its parent; an anchored node
    /// is copied once more for later aliases, and that copy is charged too.
    fn finish(&mut self, node: Node, anchor: usize, extent: Extent) -> Result<(), LoadError> {
        if anchor > 0 {
            self.charge(extent, 0, node.mark)?;
            self.anchors.insert(anchor, (node.clone(), extent));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
                Ok(())
            }
            Some(Frame::List {
                items,
                extent: frame,
                ..
            }) => {
                frame.add_child(extent);
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                map,
                merges,
                pending_key,
                extent: frame,
                ..
            }) => match pending_key.take() {
                None => {
                    let is_merge = is_plain_merge_marker(&node);
                    let key = key_text(node)?;
                    // Keys are copied with their map by an alias: count their text.
                    frame.bytes = frame.bytes.saturating_add(key.len());
                    *pending_key = Some((key, is_merge));
                    Ok(())
                }
                Some((_, true)) => {
                    merges.push(node);
                    Ok(())
                }
                Some((key, false)) => {
                    frame.add_child(extent);
                    match map.entry(key) {
                        indexmap::map::Entry::Occupied(entry) => {
                            Err(err(&format!("duplicate key {:?}", entry.key()), node.mark))
                        }
                        indexmap::map::Entry::Vacant(entry) => {
                            entry.insert(node);
                            Ok(())
                        }
                    }
                }
            },
        }
    }
}

/// The extent of a built tree, by walking it (only after `<<` merge keys).
fn extent_of(node: &Node) -> Extent {
    match &node.value {
        Value::List(items) => items
            .iter()
            .fold(Extent::default(), |mut acc, item| {
                acc.add_child(extent_of(item));
                acc
            })
            .closed(),
        Value::Map(map) => map_extent(map),
        value => Extent::of_scalar(value),
    }
}

fn map_extent(map: &Map) -> Extent {
    map.iter()
        .fold(Extent::default(), |mut acc, (key, value)| {
            acc.bytes = acc.bytes.saturating_add(key.len());
            acc.add_child(extent_of(value));
            acc
        })
        .closed()
}

fn is_plain_merge_marker(node: &Node) -> bool {
    // The scalar event for `<<` arrives as a string; quoted `"<<"` is indistinguishable
    // after typing, which is acceptable (PyYAML treats only plain `<<` as a merge).
    matches!(&node.value, Value::Str(s) if s == "<<")
}

fn apply_merge_keys(map: &mut Map, merges: Vec<Node>, mark: Mark) -> Result<(), LoadError> {
    for merge in merges {
        let sources = match merge.value {
            Value::Map(source) => vec![source],
            Value::List(items) => {
                let mut sources = Vec::new();
                for item in items {
                    match item.value {
                        Value::Map(source) => sources.push(source),
                        _ => return Err(err("a '<<' merge list must hold only maps", item.mark)),
                    }
                }
                sources
            }
            _ => {
                return Err(err(
                    "a '<<' merge value must be a map or a list of maps",
                    mark,
                ))
            }
        };
        for source in sources {
            for (key, value) in source {
                map.entry(key).or_insert(value);
            }
        }
    }
    Ok(())
}

fn err(message: &str, mark: Mark) -> LoadError {
    LoadError {
        message: message.to_owned(),
        mark,
    }
}

/// The text of a map key: strings as they are, other scalars as the decoder prints them.
fn key_text(node: Node) -> Result<String, LoadError> {
    match node.value {
        Value::Str(s) => Ok(s),
        Value::Bool(b) => Ok(if b { "true".into() } else { "false".into() }),
        Value::Int(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(super::node::python_float(f)),
        Value::Null => Ok(String::new()),
        Value::List(_) | Value::Map(_) => Err(err("a map key must be a scalar", node.mark)),
    }
}

fn check_collection_tag(tag: Option<&Tag>, expected: &str, mark: Mark) -> Result<(), LoadError> {
    match tag {
        None => Ok(()),
        Some(tag) if tag.handle == "tag:yaml.org,2002:" && tag.suffix == expected => Ok(()),
        Some(tag) if tag.handle == "!!" && tag.suffix == expected => Ok(()),
        Some(tag) => Err(err(
            &format!("unsupported YAML tag {}{}", tag.handle, tag.suffix),
            mark,
        )),
    }
}

fn scalar_value(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Mark,
) -> Result<Value, LoadError> {
    if let Some(tag) = tag {
        let standard = tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!";
        let typed = match (standard, tag.suffix.as_str()) {
            (true, "str") => Some(Value::Str(text.clone())),
            (true, "int") => resolve_int(&text)
                .map(|r| r.map(Value::Int))
                .transpose()
                .ok()
                .flatten(),
            (true, "float") => resolve_float(&text)
                .or_else(|| resolve_int(&text).and_then(|r| r.ok()).map(|i| i as f64))
                .map(Value::Float),
            (true, "bool") => resolve_bool(&text).map(Value::Bool),
            (true, "null") => Some(Value::Null),
            _ => {
                return Err(err(
                    &format!("unsupported YAML tag {}{}", tag.handle, tag.suffix),
                    mark,
                ))
            }
        };
        return typed
            .ok_or_else(|| err(&format!("{text:?} is not a valid !!{}", tag.suffix), mark));
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::Str(text));
    }
    resolve_plain(text, mark)
}

/// YAML 1.1 typing of a plain scalar (see the module doc).
pub fn resolve_plain(text: String, mark: Mark) -> Result<Value, LoadError> {
    if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = resolve_bool(&text) {
        return Ok(Value::Bool(b));
    }
    if let Some(int) = resolve_int(&text) {
        return int
            .map(Value::Int)
            .map_err(|_| err(&format!("integer {text} is too large"), mark));
    }
    if let Some(f) = resolve_float(&text) {
        return Ok(Value::Float(f));
    }
    Ok(Value::Str(text))
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// `None`: not an int. `Some(Err)`: an int that does not fit in 64 bits.
fn resolve_int(text: &str) -> Option<Result<i64, ()>> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() {
        return None;
    }
    let magnitude: Option<Result<i128, ()>> = if let Some(bin) = body.strip_prefix("0b") {
        digits(bin, 2)
    } else if let Some(hex) = body.strip_prefix("0x") {
        digits(hex, 16)
    } else if body == "0" {
        Some(Ok(0))
    } else if let Some(oct) = body.strip_prefix('0') {
        digits(oct, 8)
    } else if body.contains(':') {
        sexagesimal(body)
    } else if body.as_bytes()[0].is_ascii_digit() {
        digits(body, 10)
    } else {
        None
    };
    magnitude.map(|m| {
        m.and_then(|m| {
            let signed = if negative { -m } else { m };
            i64::try_from(signed).map_err(|_| ())
        })
    })
}

fn digits(text: &str, radix: u32) -> Option<Result<i128, ()>> {
    if text.is_empty() || !text.chars().all(|c| c == '_' || c.is_digit(radix)) {
        return None;
    }
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    Some(i128::from_str_radix(&clean, radix).map_err(|_| ()))
}

fn sexagesimal(body: &str) -> Option<Result<i128, ()>> {
    let mut parts = body.split(':');
    let first = parts.next()?;
    if first.is_empty()
        || first.starts_with('0')
        || !first.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let mut total: i128 = match digits(first, 10)? {
        Ok(v) => v,
        Err(()) => return Some(Err(())),
    };
    for part in parts {
        if part.is_empty() || part.len() > 2 || !part.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let value: i128 = part.parse().ok()?;
        if value > 59 {
            return None;
        }
        total = match total.checked_mul(60).and_then(|t| t.checked_add(value)) {
            Some(t) => t,
            None => return Some(Err(())),
        };
    }
    Some(Ok(total))
}

fn resolve_float(text: &str) -> Option<f64> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    let sign = if negative { -1.0 } else { 1.0 };
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if body.len() == text.len() => return Some(f64::NAN),
        _ => {}
    }
    if !body.contains('.') {
        return None;
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    if let Some(exponent) = exponent {
        let digits = exponent.strip_prefix(['-', '+'])?;
        if digits.is_empty()
            || !digits.chars().all(|c| c.is_ascii_digit())
            || exponent.len() == digits.len()
        {
            return None;
        }
    }
    let (whole, fraction) = mantissa.split_once('.')?;
    let whole_ok = whole.is_empty()
        || (whole.as_bytes()[0].is_ascii_digit()
            && whole.chars().all(|c| c.is_ascii_digit() || c == '_'));
    let fraction_ok = fraction.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !whole_ok || !fraction_ok || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    if whole.is_empty()
        && !fraction
            .as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_digit())
    {
        return None;
    }
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    clean.parse::<f64>().ok().map(|f| sign * f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Node, LoadError> {
        load_yaml(text, &mut Budget::new())
    }

    fn scalar(text: &str) -> Value {
        resolve_plain(text.to_owned(), Mark::default()).expect("valid scalar")
    }

    #[test]
    fn yaml_11_scalars() {
        assert_eq!(scalar("yes"), Value::Bool(true));
        assert_eq!(scalar("Off"), Value::Bool(false));
        assert_eq!(scalar("yEs"), Value::Str("yEs".into()));
        assert_eq!(scalar("010"), Value::Int(8));
        assert_eq!(scalar("0x1F"), Value::Int(31));
        assert_eq!(scalar("1_000"), Value::Int(1000));
        assert_eq!(scalar("1:30"), Value::Int(90));
        assert_eq!(scalar("-0b11"), Value::Int(-3));
        assert_eq!(scalar("1.0"), Value::Float(1.0));
        assert_eq!(scalar("1e5"), Value::Str("1e5".into()));
        assert_eq!(scalar("1.5e+3"), Value::Float(1500.0));
        assert_eq!(scalar("~"), Value::Null);
        assert_eq!(scalar("09"), Value::Str("09".into()));
        assert_eq!(scalar("linux"), Value::Str("linux".into()));
    }

    #[test]
    fn quoted_scalars_stay_strings_and_marks_are_recorded() {
        let node = load("a: 'yes'\nb:\n  - 010\n").expect("loads");
        let Value::Map(map) = &node.value else {
            panic!("map expected")
        };
        assert_eq!(map["a"].value, Value::Str("yes".into()));
        let Value::List(items) = &map["b"].value else {
            panic!("list expected")
        };
        assert_eq!(items[0].value, Value::Int(8));
        assert_eq!(items[0].mark.line, 3);
    }

    #[test]
    fn comments_only_is_null_and_duplicates_fail() {
        assert_eq!(load("# nothing\n").expect("loads").value, Value::Null);
        assert!(load("a: 1\na: 2\n").is_err());
        assert!(load("a: !!python/object:os.system x\n").is_err());
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let node = load("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n").expect("loads");
        let Value::Map(map) = &node.value else {
            panic!("map expected")
        };
        let Value::Map(d) = &map["d"].value else {
            panic!("map expected")
        };
        assert_eq!(d["x"].value, Value::Int(1));
        assert_eq!(d["y"].value, Value::Int(3));
    }

    #[test]
    fn billion_laughs_fails_cleanly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let mut budget = Budget::new();
        let error = load_yaml(&text, &mut budget).unwrap_err();
        assert!(
            error.message.contains("more than 1000000 values"),
            "{error:?}"
        );
        // Bounded work: never more than the limit was built.
        assert!(budget.spent(Counter::YamlNodes) <= crate::definitions::limits::MAX_YAML_NODES);
    }

    /// H4 trigger B: each alias of a long string counts its bytes, not one value.
    #[test]
    fn alias_bomb_of_long_strings_fails_by_bytes() {
        let long = "a".repeat(1 << 20);
        let mut text = format!("s: &s \"{long}\"\nl: [");
        text.push_str(&vec!["*s"; 100_000].join(", "));
        text.push_str("]\n");
        let mut budget = Budget::new();
        let error = load_yaml(&text, &mut budget).unwrap_err();
        assert!(
            error.message.contains("MiB of text (aliases?)"),
            "{error:?}"
        );
        assert!(budget.spent(Counter::YamlBytes) <= crate::definitions::limits::MAX_YAML_BYTES);
        assert!(budget.spent(Counter::YamlNodes) < 100);
    }

    #[test]
    fn merge_keys_and_aliases_are_charged() {
        let mut budget = Budget::new();
        load_yaml("b: &b {xx: 1}\nd: {<<: *b}\ne: *b\n", &mut budget).expect("loads");
        // Text as read: b, xx, 1, d, <<, e (8 bytes); copies of {xx: 1} (its key text, 2
        // bytes): the anchor's, the alias in d, the alias in e.
        assert_eq!(budget.spent(Counter::YamlBytes), 8 + 3 * 2);
    }
}
