//! Reading a commit's tree without a checkout: listing files, reading one file, finding the
//! definitions file (memoised per tree, so consecutive commits only look at changed
//! subtrees), and "the last commit at or before C that touched path P".

use crate::GitError;
use git2::{ObjectType, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};
use std::collections::HashMap;
use std::path::Path;
use test_looper_core::definitions::discovery;

/// The root tree of commit `oid`.
pub fn commit_tree<'r>(
    repo: &'r Repository,
    repo_name: &str,
    oid: Oid,
) -> Result<Tree<'r>, GitError> {
    let commit = repo.find_commit(oid).map_err(|_| GitError::UnknownCommit {
        repo: repo_name.to_owned(),
        commit: oid.to_string(),
    })?;
    commit.tree().map_err(|e| GitError::git(repo_name, e))
}

/// Every file path (blobs and symlinks, not submodules) of `tree`, `/`-separated, in tree
/// order.
pub fn list_files(tree: &Tree<'_>, repo_name: &str) -> Result<Vec<String>, GitError> {
    let mut files = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(ObjectType::Blob) {
            files.push(format!(
                "{dir}{}",
                String::from_utf8_lossy(entry.name_bytes())
            ));
        }
        TreeWalkResult::Ok
    })
    .map_err(|e| GitError::git(repo_name, e))?;
    Ok(files)
}

/// Normalises a repo-relative path: no leading/trailing `/`, no `.` segments. `None` for
/// paths that try to leave the tree.
pub fn normalize_path(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// The id of the object at `path` in `tree` (the tree itself for the empty path).
pub fn entry_id(tree: &Tree<'_>, path: &str) -> Option<Oid> {
    let path = normalize_path(path)?;
    if path.is_empty() {
        return Some(tree.id());
    }
    tree.get_path(Path::new(&path)).ok().map(|entry| entry.id())
}

/// The bytes of the file at `path` in `tree`; `None` when there is no file there.
pub fn read_blob(repo: &Repository, tree: &Tree<'_>, path: &str) -> Option<Vec<u8>> {
    let path = normalize_path(path)?;
    let entry = tree.get_path(Path::new(&path)).ok()?;
    if entry.kind() != Some(ObjectType::Blob) {
        return None;
    }
    repo.find_blob(entry.id())
        .ok()
        .map(|b| b.content().to_vec())
}

/// The definitions file of a tree by the basename rule of
/// [`discovery::find_definitions_path`], memoised by tree id in `memo`: the smallest
/// candidate of a tree is the smallest of its own candidate blobs and of each subtree's
/// smallest candidate prefixed by the subtree's name, so only changed subtrees are visited.
pub fn definitions_path(
    repo: &Repository,
    tree: &Tree<'_>,
    memo: &mut HashMap<Oid, Option<String>>,
) -> Option<String> {
    if let Some(known) = memo.get(&tree.id()) {
        return known.clone();
    }
    let mut best: Option<String> = None;
    for entry in tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes());
        let candidate = match entry.kind() {
            Some(ObjectType::Blob) if discovery::is_definitions_file(&name) => {
                Some(name.into_owned())
            }
            Some(ObjectType::Tree) if name != ".git" => repo
                .find_tree(entry.id())
                .ok()
                .and_then(|sub| definitions_path(repo, &sub, memo))
                .map(|inner| format!("{name}/{inner}")),
            _ => None,
        };
        if let Some(candidate) = candidate {
            if best
                .as_ref()
                .is_none_or(|b| candidate.as_bytes() < b.as_bytes())
            {
                best = Some(candidate);
            }
        }
    }
    memo.insert(tree.id(), best.clone());
    best
}

/// The most recent commit at or before `start` that changed `path` (a file or directory;
/// empty for the whole tree), following git's default history simplification: at a merge
/// whose path matches one parent, follow that parent. `None` when `path` does not exist at
/// `start`.
pub fn last_commit_touching(
    repo: &Repository,
    repo_name: &str,
    start: Oid,
    path: &str,
) -> Result<Option<Oid>, GitError> {
    let mut current = repo
        .find_commit(start)
        .map_err(|_| GitError::UnknownCommit {
            repo: repo_name.to_owned(),
            commit: start.to_string(),
        })?;
    let tree = current.tree().map_err(|e| GitError::git(repo_name, e))?;
    let Some(id) = entry_id(&tree, path) else {
        return Ok(None);
    };
    loop {
        let mut same_parent = None;
        for parent in current.parents() {
            let parent_id = parent.tree().ok().and_then(|t| entry_id(&t, path));
            if parent_id == Some(id) {
                same_parent = Some(parent);
                break;
            }
        }
        match same_parent {
            Some(parent) => current = parent,
            None => return Ok(Some(current.id())),
        }
    }
}
