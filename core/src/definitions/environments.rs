//! Environment inheritance (docs/definitions.md#inheritance): linearising the bases and
//! merging the chain.
//!
//! **Inheritance order.** For `E` with `base: [B1, ..., Bn]` the order is the C3-like
//! merge of `[E], L(Bn), ..., L(B1), [Bn], ..., [B1]` — bases *reversed*, so the
//! **last-listed base has the highest priority** (the original's behaviour, which its docs
//! describe backwards). `base: [child1, child2]` with both deriving `env_dep` → `env_root`
//! gives `[E, child2, child1, env_dep, env_root]`. A test's `mixins: [M1..Mk]` make a
//! synthetic environment with bases `[E, M1, ..., Mk]`: `Mk` wins, `E` is lowest.
//!
//! **Merging** over the order (highest priority first): at most one root environment;
//! `variables` and `dependencies` overlay from lowest to highest priority; each `test_*`
//! default is the first non-empty/non-zero value; `test_stages` concatenate lowest priority
//! first; the derived environments' non-empty `setup_script_contents` are joined base-most
//! first with `\n` and appended (after a `\n`) to the root image's Dockerfile text or AMI
//! script. Local bases are merged raw and substituted after merging (late binding);
//! environments of other commits arrive already substituted (early binding).

use std::collections::HashMap;

/// A node of the inheritance graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EnvNode {
    /// A local environment, by name (also the synthetic `E+M1+..` one).
    Local(String),
    /// An environment of another commit: (local repo name, environment name).
    External(String, String),
}

impl EnvNode {
    pub fn display_name(&self) -> &str {
        match self {
            EnvNode::Local(name) => name,
            EnvNode::External(_, name) => name,
        }
    }
}

/// Linearise `start` with `bases_of` giving each node's direct bases (in declaration
/// order). Errors name a cycle or an inconsistent hierarchy.
pub fn linearize(
    start: &EnvNode,
    bases_of: &dyn Fn(&EnvNode) -> Result<Vec<EnvNode>, String>,
) -> Result<Vec<EnvNode>, String> {
    let mut memo: HashMap<EnvNode, Vec<EnvNode>> = HashMap::new();
    let mut stack: Vec<EnvNode> = Vec::new();
    linearize_inner(start, bases_of, &mut memo, &mut stack)
}

fn linearize_inner(
    node: &EnvNode,
    bases_of: &dyn Fn(&EnvNode) -> Result<Vec<EnvNode>, String>,
    memo: &mut HashMap<EnvNode, Vec<EnvNode>>,
    stack: &mut Vec<EnvNode>,
) -> Result<Vec<EnvNode>, String> {
    if let Some(done) = memo.get(node) {
        return Ok(done.clone());
    }
    if let Some(at) = stack.iter().position(|n| n == node) {
        let cycle: Vec<&str> = stack[at..]
            .iter()
            .chain([node])
            .map(EnvNode::display_name)
            .collect();
        return Err(format!("Circular dependencies: ({})", cycle.join(" -> ")));
    }
    if stack.len() > 256 {
        return Err("environment inheritance is nested more than 256 levels deep".into());
    }
    stack.push(node.clone());
    let bases = bases_of(node)?;
    let mut lists: Vec<Vec<EnvNode>> = vec![vec![node.clone()]];
    for base in bases.iter().rev() {
        lists.push(linearize_inner(base, bases_of, memo, stack)?);
    }
    for base in bases.iter().rev() {
        lists.push(vec![base.clone()]);
    }
    stack.pop();
    let merged = c3_merge(lists).ok_or_else(|| {
        format!(
            "Can't linearise the bases of environment {}: inconsistent hierarchy",
            node.display_name()
        )
    })?;
    memo.insert(node.clone(), merged.clone());
    Ok(merged)
}

fn c3_merge(mut lists: Vec<Vec<EnvNode>>) -> Option<Vec<EnvNode>> {
    let mut out = Vec::new();
    loop {
        lists.retain(|l| !l.is_empty());
        if lists.is_empty() {
            return Some(out);
        }
        let head = lists
            .iter()
            .map(|l| &l[0])
            .find(|candidate| !lists.iter().any(|l| l[1..].contains(candidate)))?
            .clone();
        for list in &mut lists {
            if list.first() == Some(&head) {
                list.remove(0);
            }
        }
        out.push(head);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(name: &str) -> EnvNode {
        EnvNode::Local(name.into())
    }

    #[test]
    fn diamond_last_base_wins() {
        let bases = |node: &EnvNode| -> Result<Vec<EnvNode>, String> {
            Ok(match node.display_name() {
                "diamond" => vec![local("child1"), local("child2")],
                "child1" | "child2" => vec![local("env_dep")],
                "env_dep" => vec![local("env_root")],
                _ => vec![],
            })
        };
        let order = linearize(&local("diamond"), &bases).expect("linearises");
        let names: Vec<&str> = order.iter().map(EnvNode::display_name).collect();
        assert_eq!(
            names,
            ["diamond", "child2", "child1", "env_dep", "env_root"]
        );
    }

    #[test]
    fn cycles_are_errors() {
        let bases = |node: &EnvNode| -> Result<Vec<EnvNode>, String> {
            Ok(match node.display_name() {
                "a" => vec![local("b")],
                _ => vec![local("a")],
            })
        };
        assert!(linearize(&local("a"), &bases)
            .unwrap_err()
            .contains("Circular dependencies"));
    }
}
