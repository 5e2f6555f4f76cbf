//! Preprocessing (docs/definitions.md#macros): macro expansion of the plain tree before any
//! schema applies.
//!
//! Directives are recognised by their *exact* key set: `{define, in}`, `{squash, over}`,
//! `{foreach, repeat}`, `{merge}` and `{case, in}`. Strings get `${name}` substitution with
//! the variables in scope, applied one variable at a time in ascending name order (so a
//! value containing `${b}` is expanded again only when `b` sorts after the variable that
//! introduced it). A string that is exactly `${name}` of a structured variable
//! becomes that value. Unknown `${x}` stays literal.
//!
//! Deliberate differences from the original
//! (docs/definitions.md#differences-from-the-original): `foreach` map keys iterate in
//! document order and a scalar value is a one-element list (not its characters); keys that
//! collide after expansion are an error; an include map `{path}` without `variables` is
//! accepted.
//!
//! Expansion is bounded (H4): every value it produces or copies (including the variable
//! scopes copied for `define`, `foreach` and include records) is charged to the
//! resolution's [`Budget`] in values and bytes *before* it is built, and no substituted
//! string may pass [`MAX_VALUE_BYTES`], so hostile files fail cleanly.

use std::collections::BTreeMap;

use super::error::{invalid_at, DefinitionsError};
use super::limits::{value_too_large, Budget, Counter, LimitExceeded, MAX_VALUE_BYTES};
use super::node::{Map, Mark, Node, Value};
use super::path::DocPath;
use super::variables::has_reference;

/// Variables in scope, sorted by name (the substitution order).
pub type Scope = BTreeMap<String, Node>;

/// Expansion context for one file, charging what it builds to a resolution's budget.
pub struct Expander<'b> {
    budget: &'b mut Budget,
}

/// Values and text bytes of a tree (what copying it costs).
#[derive(Clone, Copy, Default)]
struct Cost {
    nodes: usize,
    bytes: usize,
}

impl Cost {
    fn of(node: &Node) -> Cost {
        match &node.value {
            Value::Str(s) => Cost {
                nodes: 1,
                bytes: s.len(),
            },
            Value::List(items) => items.iter().fold(Cost::one(), |acc, i| acc + Cost::of(i)),
            Value::Map(map) => Cost::of_entries(map.iter()) + Cost::one(),
            _ => Cost::one(),
        }
    }

    fn of_entries<'a>(entries: impl Iterator<Item = (&'a String, &'a Node)>) -> Cost {
        entries.fold(Cost::default(), |acc, (key, value)| {
            acc + Cost {
                nodes: 0,
                bytes: key.len(),
            } + Cost::of(value)
        })
    }

    fn one() -> Cost {
        Cost { nodes: 1, bytes: 0 }
    }

    fn times(self, count: usize) -> Cost {
        Cost {
            nodes: self.nodes.saturating_mul(count),
            bytes: self.bytes.saturating_mul(count),
        }
    }
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost {
            nodes: self.nodes.saturating_add(other.nodes),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// Whether strings in an `includes` section become include records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Includes,
}

type Result<T> = std::result::Result<T, DefinitionsError>;

impl<'b> Expander<'b> {
    pub fn new(budget: &'b mut Budget) -> Self {
        Expander { budget }
    }

    /// Expand a section value (`environments`, `builds`, ...).
    pub fn expand(&mut self, node: &Node, scope: &Scope, path: &DocPath) -> Result<Node> {
        self.walk(node, scope, Mode::Plain, false, path)
    }

    /// [`Expander::expand`] of a value the caller gives up: subtrees that expansion would
    /// copy unchanged (no directive, nothing to substitute) are moved instead of rebuilt,
    /// which keeps large macro-free sections cheap.
    pub fn expand_owned(&mut self, node: Node, scope: &Scope, path: &DocPath) -> Result<Node> {
        if is_inert(&node, scope) {
            return Ok(node);
        }
        match node.value {
            Value::Map(map) if !is_directive(&map) => {
                self.spend(1, path, node.mark)?;
                let mut out = Map::with_capacity_and_hasher(map.len(), Default::default());
                for (key, value) in map {
                    let child_path = path.key(&key);
                    let new_key = self.expand_key(&key, scope, &child_path, value.mark)?;
                    let new_value = self.expand_owned(value, scope, &child_path)?;
                    if out.contains_key(&new_key) {
                        return Err(duplicate_key(&new_key, &child_path, new_value.mark));
                    }
                    out.insert(new_key, new_value);
                }
                Ok(Node::new(Value::Map(out), node.mark))
            }
            Value::List(items) => {
                self.spend(1, path, node.mark)?;
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    out.push(self.expand_owned(item, scope, &path.index(i))?);
                }
                Ok(Node::new(Value::List(out), node.mark))
            }
            value => self.expand(&Node::new(value, node.mark), scope, path),
        }
    }

    /// Expand an `includes` section: strings become `{path, variables}` records.
    pub fn expand_includes(&mut self, node: &Node, scope: &Scope, path: &DocPath) -> Result<Node> {
        self.walk(node, scope, Mode::Includes, false, path)
    }

    /// Expand a `define` operand and add its entries to `scope` (no shadowing).
    pub fn define_into(&mut self, define: &Node, scope: &mut Scope, path: &DocPath) -> Result<()> {
        let expanded = self.walk(define, scope, Mode::Plain, true, path)?;
        let Value::Map(entries) = expanded.value else {
            return Err(invalid_at(
                format!("define must produce a map, not a {}", expanded.type_name()),
                path,
                define.mark,
            ));
        };
        for (name, value) in entries {
            if scope.contains_key(&name) {
                return Err(invalid_at(
                    format!("Can't redefine variable {name}"),
                    path,
                    value.mark,
                ));
            }
            scope.insert(name, value);
        }
        Ok(())
    }

    fn spend(&mut self, count: usize, path: &DocPath, mark: Mark) -> Result<()> {
        self.spend_cost(
            Cost {
                nodes: count,
                bytes: 0,
            },
            path,
            mark,
        )
    }

    /// Charge a copy of `cost` before making it.
    fn spend_cost(&mut self, cost: Cost, path: &DocPath, mark: Mark) -> Result<()> {
        self.budget
            .charge(Counter::ExpandedNodes, cost.nodes)
            .and_then(|()| self.budget.charge(Counter::ExpandedBytes, cost.bytes))
            .map_err(|e| limit_at(e, path, mark))
    }

    /// Charge a copy of the whole scope (for `define`, `foreach` and include records).
    fn spend_scope(&mut self, scope: &Scope, path: &DocPath, mark: Mark) -> Result<()> {
        self.spend_cost(Cost::of_entries(scope.iter()), path, mark)
    }

    fn walk(
        &mut self,
        node: &Node,
        scope: &Scope,
        mode: Mode,
        vardef: bool,
        path: &DocPath,
    ) -> Result<Node> {
        self.spend(1, path, node.mark)?;
        match &node.value {
            Value::Str(text) => {
                if mode == Mode::Includes && !vardef {
                    let expanded = self.substitute_node(text, scope, path, node.mark)?;
                    self.spend_scope(scope, path, node.mark)?;
                    return Ok(include_record(expanded, scope_map(scope), node.mark));
                }
                self.substitute_node(text, scope, path, node.mark)
            }
            Value::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(self.walk(item, scope, mode, vardef, &path.index(i))?);
                }
                Ok(Node::new(Value::List(out), node.mark))
            }
            Value::Map(map) => self.walk_map(map, node.mark, scope, mode, vardef, path),
            _ => Ok(node.clone()),
        }
    }

    fn walk_map(
        &mut self,
        map: &Map,
        mark: Mark,
        scope: &Scope,
        mode: Mode,
        vardef: bool,
        path: &DocPath,
    ) -> Result<Node> {
        let has =
            |keys: &[&str]| map.len() == keys.len() && keys.iter().all(|k| map.contains_key(*k));
        if let (true, Some(define), Some(body)) =
            (has(&["define", "in"]), map.get("define"), map.get("in"))
        {
            self.spend_scope(scope, path, mark)?;
            let mut inner = scope.clone();
            self.define_into(define, &mut inner, &path.key("define"))?;
            return self.walk(body, &inner, mode, vardef, &path.key("in"));
        }
        if let (true, Some(squash), Some(over)) =
            (has(&["squash", "over"]), map.get("squash"), map.get("over"))
        {
            return self.squash(squash, over, scope, mode, vardef, path);
        }
        if let (true, Some(each), Some(repeat)) = (
            has(&["foreach", "repeat"]),
            map.get("foreach"),
            map.get("repeat"),
        ) {
            return self.foreach(each, repeat, mark, scope, mode, vardef, path);
        }
        if let (true, Some(children)) = (has(&["merge"]), map.get("merge")) {
            return self.merge(children, scope, mode, vardef, &path.key("merge"));
        }
        if let (true, Some(key), Some(table)) =
            (has(&["case", "in"]), map.get("case"), map.get("in"))
        {
            return self.case(key, table, scope, mode, vardef, path);
        }
        if mode == Mode::Includes && !vardef && map.contains_key("path") {
            let only_path = map.len() == 1;
            let with_vars = map.len() == 2 && map.contains_key("variables");
            if let (true, Some(include_path)) = (only_path || with_vars, map.get("path")) {
                return self.include_map(map, include_path, scope, path, mark);
            }
        }
        let mut out = Map::with_capacity_and_hasher(map.len(), Default::default());
        for (key, value) in map {
            let child_path = path.key(key);
            let new_key = self.expand_key(key, scope, &child_path, value.mark)?;
            let new_value = self.walk(value, scope, mode, vardef, &child_path)?;
            if out.contains_key(&new_key) {
                return Err(duplicate_key(&new_key, &child_path, value.mark));
            }
            out.insert(new_key, new_value);
        }
        Ok(Node::new(Value::Map(out), mark))
    }

    /// Substitute into a map key, which must stay a string.
    fn expand_key(
        &mut self,
        key: &str,
        scope: &Scope,
        path: &DocPath,
        mark: Mark,
    ) -> Result<String> {
        match self.substitute_node(key, scope, path, mark)?.value {
            Value::Str(s) => Ok(s),
            other => Err(invalid_at(
                format!(
                    "map key {key:?} expands to a {}, not a string",
                    Node::new(other, mark).type_name()
                ),
                path,
                mark,
            )),
        }
    }

    fn include_map(
        &mut self,
        map: &Map,
        include_path: &Node,
        scope: &Scope,
        path: &DocPath,
        mark: Mark,
    ) -> Result<Node> {
        let expanded_path =
            self.walk(include_path, scope, Mode::Plain, false, &path.key("path"))?;
        self.spend_scope(scope, path, mark)?;
        let mut variables = scope_map(scope);
        if let Some(user) = map.get("variables") {
            let expanded = self.walk(user, scope, Mode::Plain, false, &path.key("variables"))?;
            match expanded.value {
                Value::Map(user_vars) => {
                    for (k, v) in user_vars {
                        variables.insert(k, v);
                    }
                }
                Value::Null => {}
                _ => {
                    return Err(invalid_at(
                        "include variables must be a map",
                        &path.key("variables"),
                        user.mark,
                    ))
                }
            }
        }
        Ok(include_record(expanded_path, variables, mark))
    }

    fn squash(
        &mut self,
        squash: &Node,
        over: &Node,
        scope: &Scope,
        mode: Mode,
        vardef: bool,
        path: &DocPath,
    ) -> Result<Node> {
        let squash_path = path.key("squash");
        let extra = self.walk(squash, scope, Mode::Plain, true, &squash_path)?;
        let Value::Map(extra) = extra.value else {
            return Err(invalid_at(
                format!("Can't squash {} because its not a dict", squash.to_json()),
                &squash_path,
                squash.mark,
            ));
        };
        let over_path = path.key("over");
        let children = self.walk(over, scope, mode, vardef, &over_path)?;
        let extra_cost = Cost::of_entries(extra.iter());
        let mut out = Vec::new();
        for child in flatten(children) {
            let Value::Map(mut child_map) = child.value else {
                return Err(invalid_at(
                    format!(
                        "Can't squash into {} because it's not a dict",
                        child.to_json()
                    ),
                    &over_path,
                    child.mark,
                ));
            };
            self.spend_cost(extra_cost, path, child.mark)?;
            for (k, v) in &extra {
                if child_map.contains_key(k) {
                    return Err(invalid_at(
                        format!("Can't define {k} twice when squashing"),
                        &over_path,
                        child.mark,
                    ));
                }
                child_map.insert(k.clone(), v.clone());
            }
            out.push(Node::new(Value::Map(child_map), child.mark));
        }
        Ok(Node::new(Value::List(out), over.mark))
    }

    #[allow(clippy::too_many_arguments)]
    fn foreach(
        &mut self,
        each: &Node,
        repeat: &Node,
        mark: Mark,
        scope: &Scope,
        mode: Mode,
        vardef: bool,
        path: &DocPath,
    ) -> Result<Node> {
        let repeat_path = path.key("repeat");
        if !matches!(repeat.value, Value::Map(_) | Value::List(_)) {
            return Err(invalid_at(
                format!(
                    "Can't repeat {} because it's not a dictionary or list",
                    repeat.to_json()
                ),
                &repeat_path,
                repeat.mark,
            ));
        }
        let each_path = path.key("foreach");
        let each_value = self.walk(each, scope, Mode::Plain, true, &each_path)?;
        let iterations = self.iterations(each_value, &each_path)?;
        let scope_cost = Cost::of_entries(scope.iter());
        let mut result: Option<Node> = None;
        for iteration in iterations {
            self.spend_cost(scope_cost, &each_path, mark)?;
            let mut inner = scope.clone();
            for (name, value) in iteration {
                if inner.contains_key(&name) {
                    return Err(invalid_at(
                        format!("Can't redefine variable {name}"),
                        &each_path,
                        value.mark,
                    ));
                }
                inner.insert(name, value);
            }
            let expanded = self.walk(repeat, &inner, mode, vardef, &repeat_path)?;
            match (&mut result, expanded.value) {
                (None, Value::Map(m)) => result = Some(Node::new(Value::Map(m), mark)),
                (None, Value::List(l)) => result = Some(Node::new(Value::List(l), mark)),
                (
                    Some(Node {
                        value: Value::Map(acc),
                        ..
                    }),
                    Value::Map(m),
                ) => {
                    for (k, v) in m {
                        if acc.contains_key(&k) {
                            return Err(invalid_at(
                                format!("Can't define {k} twice"),
                                &repeat_path,
                                v.mark,
                            ));
                        }
                        acc.insert(k, v);
                    }
                }
                (
                    Some(Node {
                        value: Value::List(acc),
                        ..
                    }),
                    Value::List(l),
                ) => acc.extend(l),
                (Some(_), Value::Map(_) | Value::List(_)) => {
                    return Err(invalid_at(
                        "foreach iterations produced a mix of maps and lists",
                        &repeat_path,
                        repeat.mark,
                    ))
                }
                _ => {}
            }
        }
        Ok(result.unwrap_or_else(|| Node::new(Value::Null, mark)))
    }

    fn merge(
        &mut self,
        children: &Node,
        scope: &Scope,
        mode: Mode,
        vardef: bool,
        path: &DocPath,
    ) -> Result<Node> {
        let Value::List(items) = &children.value else {
            return Err(invalid_at("merge needs a list", path, children.mark));
        };
        if items.is_empty() {
            return Err(invalid_at(
                "merge needs a non-empty list",
                path,
                children.mark,
            ));
        }
        let mut expanded = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            expanded.push(self.walk(item, scope, mode, vardef, &path.index(i))?);
        }
        match expanded[0].value {
            Value::List(_) => {
                let mut out = Vec::new();
                for item in expanded {
                    match item.value {
                        Value::List(l) => out.extend(l),
                        _ => return Err(mixed_merge(children, path)),
                    }
                }
                Ok(Node::new(Value::List(out), children.mark))
            }
            Value::Map(_) => {
                let mut out = Map::default();
                for item in expanded {
                    match item.value {
                        Value::Map(m) => {
                            for (k, v) in m {
                                if out.contains_key(&k) {
                                    return Err(invalid_at(
                                        format!(
                                            "merging {} produced key {k} twice",
                                            children.to_json()
                                        ),
                                        path,
                                        v.mark,
                                    ));
                                }
                                out.insert(k, v);
                            }
                        }
                        _ => return Err(mixed_merge(children, path)),
                    }
                }
                Ok(Node::new(Value::Map(out), children.mark))
            }
            _ => Err(mixed_merge(children, path)),
        }
    }

    fn case(
        &mut self,
        key: &Node,
        table: &Node,
        scope: &Scope,
        mode: Mode,
        vardef: bool,
        path: &DocPath,
    ) -> Result<Node> {
        let key_path = path.key("case");
        let key = self.walk(key, scope, Mode::Plain, vardef, &key_path)?;
        let table_path = path.key("in");
        let table = self.walk(table, scope, mode, vardef, &table_path)?;
        let Value::Map(entries) = table.value else {
            return Err(invalid_at(
                format!(
                    "case needs a map to look up in, not a {}",
                    table.type_name()
                ),
                &table_path,
                table.mark,
            ));
        };
        let lookup = match &key.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(invalid_at(
                    format!("case key must be a scalar, not a {}", key.type_name()),
                    &key_path,
                    key.mark,
                ))
            }
        };
        match entries.get(&lookup) {
            Some(found) => {
                self.spend_cost(Cost::of(found), &table_path, found.mark)?;
                Ok(found.clone())
            }
            None => Err(invalid_at(
                format!(
                    "Can't find lookup key '{lookup}' amongst: {:?}",
                    entries.keys().collect::<Vec<_>>()
                ),
                &key_path,
                key.mark,
            )),
        }
    }

    /// Macro substitution of one string. The length of each replacement is computed before
    /// it is made: no string passes [`MAX_VALUE_BYTES`].
    fn substitute_node(
        &mut self,
        text: &str,
        scope: &Scope,
        path: &DocPath,
        mark: Mark,
    ) -> Result<Node> {
        if !has_reference(text) {
            self.spend_cost(
                Cost {
                    nodes: 0,
                    bytes: text.len(),
                },
                path,
                mark,
            )?;
            return Ok(Node::str(text, mark));
        }
        let mut current = text.to_owned();
        for (name, value) in scope {
            if !has_reference(&current) {
                break;
            }
            let pattern = format!("${{{name}}}");
            let occurrences = current.matches(&pattern).count();
            self.budget
                .charge(Counter::SubstitutionWork, current.len())
                .map_err(|e| limit_at(e, path, mark))?;
            if occurrences == 0 {
                continue;
            }
            match &value.value {
                Value::List(_) | Value::Map(_) | Value::Null => {
                    if current == pattern {
                        self.spend_cost(Cost::of(value), path, mark)?;
                        return Ok(value.clone());
                    }
                    return Err(invalid_at(
                        format!(
                            "Can't replace in-string variable '{name}' with non-string value {} in {text:?}",
                            value.to_json()
                        ),
                        path,
                        mark,
                    ));
                }
                _ => {
                    let replacement = value.python_str().unwrap_or_default();
                    let grown = occurrences.saturating_mul(replacement.len());
                    let new_len =
                        (current.len() - occurrences * pattern.len()).saturating_add(grown);
                    if new_len > MAX_VALUE_BYTES {
                        return Err(limit_at(
                            value_too_large(&format!("substituting '{name}'")),
                            path,
                            mark,
                        ));
                    }
                    self.budget
                        .charge(Counter::SubstitutionWork, new_len)
                        .map_err(|e| limit_at(e, path, mark))?;
                    current = current.replace(&pattern, &replacement);
                }
            }
        }
        self.spend_cost(
            Cost {
                nodes: 0,
                bytes: current.len(),
            },
            path,
            mark,
        )?;
        Ok(Node::str(current, mark))
    }

    /// The iteration variable sets of a `foreach` operand, charged before they
    /// are built (a product of axes multiplies them).
    fn iterations(&mut self, each: Node, path: &DocPath) -> Result<Vec<Vec<(String, Node)>>> {
        match each.value {
            Value::Map(axes) => {
                let mut product: Vec<Vec<(String, Node)>> = vec![Vec::new()];
                let mut product_cost = Cost::default();
                for (name, values) in axes {
                    let values = match values.value {
                        Value::List(items) => items,
                        Value::Null => Vec::new(),
                        _ => vec![values],
                    };
                    let count = product.len().saturating_mul(values.len());
                    let values_cost = values.iter().fold(Cost::default(), |acc, v| {
                        acc + Cost::of(v)
                            + Cost {
                                nodes: 0,
                                bytes: name.len(),
                            }
                    });
                    let next_cost =
                        product_cost.times(values.len()) + values_cost.times(product.len());
                    self.spend_cost(next_cost, path, each.mark)?;
                    let mut next = Vec::with_capacity(count);
                    for prefix in &product {
                        for value in &values {
                            let mut combo = prefix.clone();
                            combo.push((name.clone(), value.clone()));
                            next.push(combo);
                        }
                    }
                    product = next;
                    product_cost = next_cost;
                }
                Ok(product)
            }
            Value::List(_) => {
                let mut out = Vec::new();
                for element in flatten(each) {
                    match element.value {
                        Value::Map(vars) => out.push(vars.into_iter().collect()),
                        Value::Str(s) => {
                            return Err(invalid_at(
                                format!("Can't repeat a string: '{s}'"),
                                path,
                                element.mark,
                            ))
                        }
                        _ => {
                            return Err(invalid_at(
                                format!(
                                    "Can't repeat {}: foreach elements must be maps",
                                    element.to_json()
                                ),
                                path,
                                element.mark,
                            ))
                        }
                    }
                }
                Ok(out)
            }
            Value::Null => Ok(Vec::new()),
            _ => Err(invalid_at(
                format!(
                    "Can't iterate over {}: foreach needs a map or a list",
                    each.to_json()
                ),
                path,
                each.mark,
            )),
        }
    }
}

/// A passed limit as an error at `path` and `mark`.
fn limit_at(error: LimitExceeded, path: &DocPath, mark: Mark) -> DefinitionsError {
    invalid_at(error.message, path, mark)
}

fn duplicate_key(key: &str, path: &DocPath, mark: Mark) -> DefinitionsError {
    invalid_at(format!("duplicate key after expansion: {key}"), path, mark)
}

/// The key sets of the directives, each recognised when a map has exactly these keys
/// (what [`is_directive`] and `Expander::walk_map` test).
pub const DIRECTIVES: &[&[&str]] = &[
    &["define", "in"],
    &["foreach", "repeat"],
    &["squash", "over"],
    &["merge"],
    &["case", "in"],
];

/// Whether `map` is a directive, by its exact key set (see the module doc).
fn is_directive(map: &Map) -> bool {
    // Compare the (at most two) keys directly: no hashing for the common non-directive map.
    let mut keys = map.keys().map(String::as_str);
    match map.len() {
        1 => keys.next() == Some("merge"),
        2 => {
            let (a, b) = (keys.next(), keys.next());
            let pair = |x, y| (a == Some(x) && b == Some(y)) || (a == Some(y) && b == Some(x));
            pair("define", "in")
                || pair("squash", "over")
                || pair("foreach", "repeat")
                || pair("case", "in")
        }
        _ => false,
    }
}

/// Whether plain-mode expansion returns `node` unchanged: no directive anywhere and no
/// string (value or key) that substitution could change.
fn is_inert(node: &Node, scope: &Scope) -> bool {
    let text_inert = |text: &str| scope.is_empty() || !has_reference(text);
    match &node.value {
        Value::Str(text) => text_inert(text),
        Value::List(items) => items.iter().all(|item| is_inert(item, scope)),
        Value::Map(map) => {
            !is_directive(map)
                && map
                    .iter()
                    .all(|(key, value)| text_inert(key) && is_inert(value, scope))
        }
        _ => true,
    }
}

fn mixed_merge(children: &Node, path: &DocPath) -> DefinitionsError {
    invalid_at(
        format!(
            "Can't merge {} all children need to be either dictionaries or lists",
            children.to_json()
        ),
        path,
        children.mark,
    )
}

fn scope_map(scope: &Scope) -> Map {
    scope.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn include_record(path: Node, variables: Map, mark: Mark) -> Node {
    let mut record = Map::default();
    record.insert("path".into(), path);
    record.insert("variables".into(), Node::new(Value::Map(variables), mark));
    Node::new(Value::Map(record), mark)
}

/// Flatten nested lists recursively; a non-list is a one-element list.
pub fn flatten(node: Node) -> Vec<Node> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        match node.value {
            Value::List(items) => stack.extend(items.into_iter().rev()),
            _ => out.push(node),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_of(keys: &[&str]) -> Map {
        keys.iter()
            .map(|k| ((*k).to_owned(), Node::new(Value::Null, Mark::default())))
            .collect()
    }

    #[test]
    fn directives_are_exactly_the_listed_key_sets() {
        for keys in DIRECTIVES {
            assert!(is_directive(&map_of(keys)), "{keys:?}");
            let mut more = keys.to_vec();
            more.push("x");
            assert!(!is_directive(&map_of(&more)), "{more:?}");
        }
        assert!(!is_directive(&map_of(&["define"])));
        assert!(!is_directive(&map_of(&["foreach", "in"])));
    }
}
