//! Auto-updating floating pins (docs/definitions.md#branch-pins).
//!
//! A branch whose head's definitions pin `repo_def: {reference: R/<hash>, branch: B, auto:
//! true}` follows branch `B` of repo `R`: when `B` moves, a commit that rewrites only the
//! hash text of the root definitions file is pushed onto the pinning branch (fast-forward
//! only; a branch that moved meanwhile makes the push fail and it is retried after the next
//! scan). Several stale pins of one branch are folded into one commit.
//!
//! Order: a branch is updated only when none of the branches it follows still has a stale
//! auto pin, so updates spread upstream first, one level per call of
//! [`PinUpdater::update`]. Branches on or upstream of a cycle of auto pins are never updated
//! (logged once). When every stale auto pin tracking one branch points at the same commit
//! and the branch's new head is a linear fast-forward of at most 100 single-parent commits,
//! the pins advance one commit at a time.

use super::definitions_source::{DefinitionsCaches, GitDefinitionsSource};
use super::scanner::BranchHeads;
use super::{files, history, store::RepoStore, GitError};
use git2::{Oid, Repository, Signature};
use indexmap::IndexMap;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use test_looper_core::definitions::{CommitRef, RepoReference, Resolver};

/// Longest linear chain advanced one commit at a time.
const MAX_STEPWISE_CHAIN: usize = 100;

/// A branch of a repo.
pub type BranchKey = (String, String);

/// An auto pin of a branch head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoPin {
    /// The pin's name in the `repos` section.
    pub repo_def: String,
    pub target_repo: String,
    pub target_branch: String,
    /// The hash (or `HEAD` placeholder) written in the file now.
    pub current: String,
}

/// Remembers per-commit pins and failed updates between calls.
#[derive(Default)]
pub struct PinUpdater {
    pins_by_commit: HashMap<(String, Oid), Vec<AutoPin>>,
    failed: HashSet<(String, String, Oid)>,
    kept: HashSet<(String, String)>,
    cycles_logged: HashSet<BranchKey>,
}

/// One planned update: rewrite `pins` of `branch` (at `head`) to the given new hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedUpdate {
    pub repo: String,
    pub branch: String,
    pub head: Oid,
    /// `(pin, new hash)`.
    pub pins: Vec<(AutoPin, String)>,
    /// The followed branch whose move triggered the update (for the commit message).
    pub source: BranchKey,
}

impl PinUpdater {
    /// Pushes every update that is due now; returns the repos that got a new commit.
    pub fn update(
        &mut self,
        store: &RepoStore,
        caches: &DefinitionsCaches,
        heads: &HashMap<String, BranchHeads>,
    ) -> Vec<String> {
        let pins = self.collect_pins(store, caches, heads);
        let plan = self.plan(store, heads, &pins);
        let mut updated = BTreeSet::new();
        for update in plan {
            match apply(store, &update) {
                Ok(commit) => {
                    tracing::info!(
                        repo = %update.repo,
                        branch = %update.branch,
                        %commit,
                        "pushed a pin update"
                    );
                    updated.insert(update.repo.clone());
                }
                Err(error) => {
                    tracing::warn!(
                        repo = %update.repo,
                        branch = %update.branch,
                        %error,
                        "pin update failed"
                    );
                    self.failed
                        .insert((update.repo.clone(), update.branch.clone(), update.head));
                }
            }
        }
        updated.into_iter().collect()
    }

    /// Auto pins of every branch head, read once per head commit.
    fn collect_pins(
        &mut self,
        store: &RepoStore,
        caches: &DefinitionsCaches,
        heads: &HashMap<String, BranchHeads>,
    ) -> BTreeMap<BranchKey, (Oid, Vec<AutoPin>)> {
        let source = GitDefinitionsSource::new(store, caches);
        let mut out = BTreeMap::new();
        for (repo, branches) in heads {
            for (branch, head) in branches {
                let key = (repo.clone(), *head);
                if !self.pins_by_commit.contains_key(&key) {
                    let references = Resolver::new(&source)
                        .repos(&CommitRef::new(repo.clone(), head.to_string()))
                        .unwrap_or_default();
                    if !store.is_local() {
                        self.keep_referenced(store, &references);
                    }
                    self.pins_by_commit
                        .insert(key.clone(), auto_pins(&references));
                }
                let pins = self.pins_by_commit.get(&key).cloned().unwrap_or_default();
                if !pins.is_empty() {
                    out.insert((repo.clone(), branch.clone()), (*head, pins));
                }
            }
        }
        out
    }

    fn keep_referenced(&mut self, store: &RepoStore, references: &IndexMap<String, RepoReference>) {
        for reference in references.values() {
            let target = reference.reference();
            let key = (target.repo.clone(), target.commit.clone());
            if self.kept.contains(&key) {
                continue;
            }
            if let Ok(oid) = Oid::from_str(&target.commit) {
                if store.keep_commit(&target.repo, oid).is_ok() {
                    self.kept.insert(key);
                }
            }
        }
    }

    /// The updates due now, in a self-consistent order.
    fn plan(
        &mut self,
        store: &RepoStore,
        heads: &HashMap<String, BranchHeads>,
        pins: &BTreeMap<BranchKey, (Oid, Vec<AutoPin>)>,
    ) -> Vec<PlannedUpdate> {
        let head_of =
            |repo: &str, branch: &str| heads.get(repo).and_then(|b| b.get(branch)).copied();
        let stale: BTreeSet<BranchKey> = pins
            .iter()
            .filter(|(_, (_, list))| {
                list.iter().any(|pin| {
                    head_of(&pin.target_repo, &pin.target_branch)
                        .is_some_and(|h| h.to_string() != pin.current)
                })
            })
            .map(|(key, _)| key.clone())
            .collect();
        let in_cycle = branches_reaching_cycles(pins);
        let mut plan = Vec::new();
        for key in &stale {
            let (head, list) = &pins[key];
            if in_cycle.contains(key) {
                if self.cycles_logged.insert(key.clone()) {
                    tracing::warn!(repo = %key.0, branch = %key.1, "auto pins form a cycle; not updating");
                }
                continue;
            }
            if self.failed.contains(&(key.0.clone(), key.1.clone(), *head)) {
                continue;
            }
            let upstream_settled = list
                .iter()
                .all(|pin| !stale.contains(&(pin.target_repo.clone(), pin.target_branch.clone())));
            if !upstream_settled {
                continue;
            }
            let mut updates = Vec::new();
            let mut source = None;
            let mut by_target: BTreeMap<BranchKey, Vec<&AutoPin>> = BTreeMap::new();
            for pin in list {
                by_target
                    .entry((pin.target_repo.clone(), pin.target_branch.clone()))
                    .or_default()
                    .push(pin);
            }
            for (target, tracking) in by_target {
                let Some(target_head) = head_of(&target.0, &target.1) else {
                    continue;
                };
                if tracking
                    .iter()
                    .all(|p| p.current == target_head.to_string())
                {
                    continue;
                }
                let next = next_pin_target(store, &target.0, &tracking, target_head);
                for pin in tracking {
                    if pin.current != next {
                        updates.push((pin.clone(), next.clone()));
                    }
                }
                source.get_or_insert(target);
            }
            if let (false, Some(source)) = (updates.is_empty(), source) {
                plan.push(PlannedUpdate {
                    repo: key.0.clone(),
                    branch: key.1.clone(),
                    head: *head,
                    pins: updates,
                    source,
                });
            }
        }
        plan
    }
}

/// The auto floating pins among a commit's repo references.
pub fn auto_pins(references: &IndexMap<String, RepoReference>) -> Vec<AutoPin> {
    references
        .iter()
        .filter_map(|(name, reference)| match reference {
            RepoReference::Pin {
                reference,
                branch,
                auto: true,
                ..
            } => Some(AutoPin {
                repo_def: name.clone(),
                target_repo: reference.repo.clone(),
                target_branch: branch.clone(),
                current: reference.commit.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Branches that are on a cycle of auto pins or follow (transitively) a branch on one.
fn branches_reaching_cycles(pins: &BTreeMap<BranchKey, (Oid, Vec<AutoPin>)>) -> HashSet<BranchKey> {
    let edges = |key: &BranchKey| -> Vec<BranchKey> {
        pins.get(key)
            .map(|(_, list)| {
                list.iter()
                    .map(|p| (p.target_repo.clone(), p.target_branch.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut bad = HashSet::new();
    for start in pins.keys() {
        // Depth-first search for a path from `start` back to any node already on the path.
        let mut stack: Vec<(BranchKey, Vec<BranchKey>)> =
            vec![(start.clone(), vec![start.clone()])];
        let mut seen = HashSet::new();
        'search: while let Some((node, path)) = stack.pop() {
            for next in edges(&node) {
                if path.contains(&next) || bad.contains(&next) {
                    bad.insert(start.clone());
                    break 'search;
                }
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next, longer));
                }
            }
        }
    }
    bad
}

/// Where pins tracking a branch should point next: the child of their common commit on a
/// short linear fast-forward, else the branch head.
fn next_pin_target(store: &RepoStore, repo: &str, tracking: &[&AutoPin], head: Oid) -> String {
    let head_text = head.to_string();
    let Some(first) = tracking.first() else {
        return head_text;
    };
    if tracking.iter().any(|p| p.current != first.current) {
        return head_text;
    }
    let Ok(old) = Oid::from_str(&first.current) else {
        return head_text;
    };
    let Ok(git) = store.open(repo) else {
        return head_text;
    };
    // Walk first parents back from the head; every commit must have exactly one parent.
    let mut chain = vec![head];
    let mut current = head;
    while chain.len() <= MAX_STEPWISE_CHAIN {
        let Ok(commit) = git.find_commit(current) else {
            return head_text;
        };
        if commit.parent_count() != 1 {
            return head_text;
        }
        let parent = commit.parent_id(0).unwrap_or(current);
        if parent == old {
            return chain.last().map_or(head_text, |c| c.to_string());
        }
        chain.push(parent);
        current = parent;
    }
    head_text
}

/// Replaces `<repo_def> : reference : <target_repo>/<old>` with the new hash in `text`,
/// keeping every other byte. `None` when the reference is not written literally.
pub fn rewrite_pin(text: &str, pin: &AutoPin, new_hash: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let needle = pin.repo_def.as_bytes();
    let target = format!("{}/{}", pin.target_repo, pin.current);
    let mut from = 0;
    while let Some(offset) = text[from..].find(&pin.repo_def) {
        let start = from + offset;
        from = start + 1;
        let before_ok = start == 0
            || matches!(
                bytes[start - 1],
                b' ' | b'\t' | b'\n' | b'\r' | b'{' | b',' | b'"' | b'\''
            );
        if !before_ok {
            continue;
        }
        let mut i = start + needle.len();
        if matches!(bytes.get(i), Some(b'"' | b'\'')) {
            i += 1;
        }
        let Some(i) = expect(bytes, skip_ws(bytes, i), b":") else {
            continue;
        };
        let mut i = skip_ws(bytes, i);
        if matches!(bytes.get(i), Some(b'{')) {
            i = skip_ws(bytes, i + 1);
        }
        let Some(i) = expect(bytes, i, b"reference") else {
            continue;
        };
        let Some(i) = expect(bytes, skip_ws(bytes, i), b":") else {
            continue;
        };
        let mut i = skip_ws(bytes, i);
        if matches!(bytes.get(i), Some(b'"' | b'\'')) {
            i += 1;
        }
        let Some(end) = expect(bytes, i, target.as_bytes()) else {
            continue;
        };
        if bytes
            .get(end)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            continue;
        }
        let hash_start = end - pin.current.len();
        return Some(format!("{}{new_hash}{}", &text[..hash_start], &text[end..]));
    }
    None
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

fn expect(bytes: &[u8], i: usize, token: &[u8]) -> Option<usize> {
    bytes
        .get(i..i + token.len())
        .filter(|slice| *slice == token)
        .map(|_| i + token.len())
}

/// The commit message of a pin update (parsed back by the scheduler's prioritisation).
pub fn pin_update_message(
    git_target: &Repository,
    pins: &[(AutoPin, String)],
    source: &BranchKey,
    new_commit: Oid,
) -> String {
    let names: Vec<&str> = pins.iter().map(|(p, _)| p.repo_def.as_str()).collect();
    let plural = if names.len() > 1 { "pins" } else { "pin" };
    let mut message = format!(
        "Updating {plural} {}:\n\nNew commit in pinned branch {}/{}:\n    commit {new_commit}\n",
        names.join(", "),
        source.0,
        source.1
    );
    if let Ok(commit) = git_target.find_commit(new_commit) {
        let author = commit.author();
        message.push_str(&format!(
            "    Author: {} <{}>\n    Date:   {}\n\n",
            author.name().unwrap_or(""),
            author.email().unwrap_or(""),
            commit.time().seconds()
        ));
        for line in String::from_utf8_lossy(commit.message_bytes()).lines() {
            message.push_str(&format!("        {line}\n"));
        }
    }
    message
}

/// Writes and pushes the commit of one planned update; returns the new commit.
pub fn apply(store: &RepoStore, update: &PlannedUpdate) -> Result<Oid, GitError> {
    let repo_name = &update.repo;
    let git = store.open(repo_name)?;
    let head = git
        .find_commit(update.head)
        .map_err(|e| GitError::git(repo_name, e))?;
    let tree = head.tree().map_err(|e| GitError::git(repo_name, e))?;
    let mut memo = HashMap::new();
    let path = files::definitions_path(&git, &tree, &mut memo).ok_or_else(|| GitError::Git {
        repo: repo_name.clone(),
        message: "the branch head has no definitions file".into(),
    })?;
    let text = files::read_blob(&git, &tree, &path)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| GitError::Git {
            repo: repo_name.clone(),
            message: format!("cannot read {path}"),
        })?;
    let mut new_text = text;
    for (pin, new_hash) in &update.pins {
        new_text = rewrite_pin(&new_text, pin, new_hash).ok_or_else(|| GitError::Git {
            repo: repo_name.clone(),
            message: format!(
                "Failed to update the pin in the testDefinitions file: {} is not written literally in {path}",
                pin.repo_def
            ),
        })?;
    }
    let blob = git
        .blob(new_text.as_bytes())
        .map_err(|e| GitError::git(repo_name, e))?;
    let mut index = git2::Index::new().map_err(|e| GitError::git(repo_name, e))?;
    index
        .read_tree(&tree)
        .map_err(|e| GitError::git(repo_name, e))?;
    let mut entry = index
        .get_path(std::path::Path::new(&path), 0)
        .ok_or_else(|| GitError::Git {
            repo: repo_name.clone(),
            message: format!("{path} missing from the index"),
        })?;
    entry.id = blob;
    entry.file_size = new_text.len() as u32;
    index.add(&entry).map_err(|e| GitError::git(repo_name, e))?;
    let tree_id = index
        .write_tree_to(&git)
        .map_err(|e| GitError::git(repo_name, e))?;
    let new_tree = git
        .find_tree(tree_id)
        .map_err(|e| GitError::git(repo_name, e))?;
    let target_commit = update
        .pins
        .first()
        .and_then(|(_, h)| Oid::from_str(h).ok())
        .unwrap_or(update.head);
    let message = match store.open(&update.source.0) {
        Ok(target_git) => {
            pin_update_message(&target_git, &update.pins, &update.source, target_commit)
        }
        Err(_) => pin_update_message(&git, &update.pins, &update.source, target_commit),
    };
    let signature = Signature::now("test_looper", "test_looper@test_looper.com")
        .map_err(|e| GitError::git(repo_name, e))?;
    let commit = git
        .commit(None, &signature, &signature, &message, &new_tree, &[&head])
        .map_err(|e| GitError::git(repo_name, e))?;
    store.push_fast_forward(repo_name, &update.branch, Some(update.head), commit)?;
    // Fast-forward: the new commit's parent is the head we read.
    debug_assert!(history::is_descendant_or_same(&git, commit, update.head));
    Ok(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(current: &str) -> AutoPin {
        AutoPin {
            repo_def: "lib".into(),
            target_repo: "group/lib".into(),
            target_branch: "master".into(),
            current: current.into(),
        }
    }

    #[test]
    fn rewrites_only_the_hash_text() {
        let text = "looper_version: 4\nrepos:\n  lib:\n    reference: group/lib/aaaa\n    branch: master\n    auto: true\n# lib: reference: group/lib/aaaa\n";
        let out = rewrite_pin(text, &pin("aaaa"), "bbbb").unwrap();
        assert_eq!(out, text.replacen("group/lib/aaaa", "group/lib/bbbb", 1));
        let flow = "repos: {lib: {reference: \"group/lib/aaaa\", branch: master, auto: true}}";
        assert_eq!(
            rewrite_pin(flow, &pin("aaaa"), "cc").unwrap(),
            "repos: {lib: {reference: \"group/lib/cc\", branch: master, auto: true}}"
        );
        assert!(rewrite_pin(
            "repos:\n  lib:\n    branch: master\n    reference: group/lib/aaaa",
            &pin("aaaa"),
            "b"
        )
        .is_none());
        assert!(rewrite_pin(
            "repos:\n  mylib:\n    reference: group/lib/aaaa",
            &pin("aaaa"),
            "b"
        )
        .is_none());
    }
}
