//! The plain YAML/JSON tree the preprocessor and the decoder work on: maps (insertion
//! ordered, string keys), lists and YAML 1.1-typed scalars, each with the line and column
//! it came from (when it came from YAML text).

use indexmap::IndexMap;

/// 1-based position in the source text; line 0 means "unknown".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub line: u32,
    pub column: u32,
}

impl Mark {
    pub fn known(self) -> Option<(usize, usize)> {
        (self.line > 0).then_some((self.line as usize, self.column as usize))
    }
}

/// The hasher of the pipeline's own maps: foldhash, much cheaper than SipHash on the
/// short keys here, and seeded per process.
pub type FastState = foldhash::fast::RandomState;
/// An insertion-ordered map hashed with [`FastState`].
pub type FastIndexMap<K, V> = IndexMap<K, V, FastState>;
/// A hash map hashed with [`FastState`].
pub type FastHashMap<K, V> = std::collections::HashMap<K, V, FastState>;
/// A hash set hashed with [`FastState`].
pub type FastHashSet<K> = std::collections::HashSet<K, FastState>;

/// A map with string keys, in document order.
pub type Map = FastIndexMap<String, Node>;

/// A value of the tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Map(Map),
}

/// A value with its source position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
}

impl Node {
    pub fn new(value: Value, mark: Mark) -> Self {
        Node { value, mark }
    }

    pub fn str(text: impl Into<String>, mark: Mark) -> Self {
        Node::new(Value::Str(text.into()), mark)
    }

    /// A short name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Convert to JSON (for messages and comparisons).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => s.clone().into(),
            Value::List(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// Build from JSON (positions unknown).
    pub fn from_json(value: &serde_json::Value) -> Node {
        let value = match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(items) => {
                Value::List(items.iter().map(Node::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Node::from_json(v)))
                    .collect(),
            ),
        };
        Node::new(value, Mark::default())
    }

    /// Python `str()` of a scalar, as used by macro substitution: `True`/`False`.
    pub fn python_str(&self) -> Option<String> {
        match &self.value {
            Value::Bool(true) => Some("True".into()),
            Value::Bool(false) => Some("False".into()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(python_float(*f)),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// Python 2 `str(float)`-like formatting: `1.0`, `1.5`, `1e+20`, `inf`, `nan`.
pub fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == f.trunc() && f.abs() < 1e16 {
        return format!("{f:.1}");
    }
    let text = format!("{f}");
    if f.abs() >= 1e16 || (f != 0.0 && f.abs() < 1e-4) {
        format!("{f:e}")
    } else {
        text
    }
}
