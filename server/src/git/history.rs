//! Branches and commit history read with libgit2: branch tops, commit metadata, and walks
//! from branch tops (merges included) that stop at commits already seen.

use super::GitError;
use git2::{Oid, Repository, Sort};
use serde::{Deserialize, Serialize};

/// Metadata of one commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMetadata {
    pub hash: String,
    pub parents: Vec<String>,
    pub author: String,
    pub author_email: String,
    /// Author time, seconds since the epoch.
    pub author_timestamp: i64,
    /// Committer time, seconds since the epoch (the commit's date in the UI).
    pub timestamp: i64,
    /// First line of the message.
    pub subject: String,
    /// Full message.
    pub message: String,
}

/// Whether a branch name is one the server tracks (the original ignores `/HEAD`, `(`, `*`).
pub fn is_tracked_branch_name(name: &str) -> bool {
    !name.is_empty() && !name.ends_with("/HEAD") && name != "HEAD" && !name.contains(['(', '*'])
}

/// Every branch (`refs/heads/*`) and the commit it points at, sorted by name. Branches that
/// point at something other than a commit are skipped.
pub fn branches(repo: &Repository, repo_name: &str) -> Result<Vec<(String, Oid)>, GitError> {
    let mut out = Vec::new();
    let references = repo
        .references_glob("refs/heads/*")
        .map_err(|e| GitError::git(repo_name, e))?;
    for reference in references {
        let reference = reference.map_err(|e| GitError::git(repo_name, e))?;
        let Some(name) = reference
            .name()
            .ok()
            .and_then(|n| n.strip_prefix("refs/heads/"))
        else {
            continue;
        };
        if !is_tracked_branch_name(name) {
            continue;
        }
        let Ok(commit) = reference.peel_to_commit() else {
            continue;
        };
        out.push((name.to_owned(), commit.id()));
    }
    out.sort();
    Ok(out)
}

/// Metadata of `oid`.
pub fn commit_metadata(
    repo: &Repository,
    repo_name: &str,
    oid: Oid,
) -> Result<CommitMetadata, GitError> {
    let commit = repo.find_commit(oid).map_err(|_| GitError::UnknownCommit {
        repo: repo_name.to_owned(),
        commit: oid.to_string(),
    })?;
    let author = commit.author();
    let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
    let subject = message.lines().next().unwrap_or("").trim_end().to_owned();
    Ok(CommitMetadata {
        hash: oid.to_string(),
        parents: commit.parent_ids().map(|p| p.to_string()).collect(),
        author: String::from_utf8_lossy(author.name_bytes()).into_owned(),
        author_email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
        author_timestamp: author.when().seconds(),
        timestamp: commit.time().seconds(),
        subject,
        message,
    })
}

/// Commits reachable from `include` but not from `exclude`, parents before children
/// (reverse topological order). Excluded tips that are not in the repo any more are ignored.
pub fn walk(
    repo: &Repository,
    repo_name: &str,
    include: &[Oid],
    exclude: &[Oid],
) -> Result<Vec<Oid>, GitError> {
    if include.is_empty() {
        return Ok(Vec::new());
    }
    let mut walk = repo.revwalk().map_err(|e| GitError::git(repo_name, e))?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .map_err(|e| GitError::git(repo_name, e))?;
    for oid in include {
        walk.push(*oid).map_err(|e| GitError::git(repo_name, e))?;
    }
    for oid in exclude {
        if repo.find_commit(*oid).is_ok() {
            walk.hide(*oid).map_err(|e| GitError::git(repo_name, e))?;
        }
    }
    walk.map(|oid| oid.map_err(|e| GitError::git(repo_name, e)))
        .collect()
}

/// Whether `descendant` is `ancestor` or has it in its history.
pub fn is_descendant_or_same(repo: &Repository, descendant: Oid, ancestor: Oid) -> bool {
    descendant == ancestor
        || repo
            .graph_descendant_of(descendant, ancestor)
            .unwrap_or(false)
}

/// Resolves a full or abbreviated hash to a commit of `repo`.
pub fn find_commit_id(repo: &Repository, repo_name: &str, hash: &str) -> Result<Oid, GitError> {
    let unknown = || GitError::UnknownCommit {
        repo: repo_name.to_owned(),
        commit: hash.to_owned(),
    };
    if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    let object = repo.revparse_single(hash).map_err(|_| unknown())?;
    object
        .peel_to_commit()
        .map(|c| c.id())
        .map_err(|_| unknown())
}

/// One file a commit changed, with its line counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    pub path: String,
    pub added: usize,
    pub removed: usize,
}

/// What a commit changed against its first parent: every file, and the patch text up to a
/// size bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitDiff {
    pub files: Vec<ChangedFile>,
    pub patch: String,
    /// The patch was cut at the bound.
    pub truncated: bool,
}

/// The diff of `oid` against its first parent (against the empty tree for a root commit),
/// with at most `max_patch_bytes` of patch text.
pub fn commit_diff(
    repo: &Repository,
    repo_name: &str,
    oid: Oid,
    max_patch_bytes: usize,
) -> Result<CommitDiff, GitError> {
    let git = |e| GitError::git(repo_name, e);
    let commit = repo.find_commit(oid).map_err(git)?;
    let tree = commit.tree().map_err(git)?;
    let parent_tree = match commit.parent(0) {
        Ok(parent) => Some(parent.tree().map_err(git)?),
        Err(_) => None,
    };
    let diff = repo
        .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)
        .map_err(git)?;
    let mut files: Vec<ChangedFile> = Vec::new();
    let mut patch = String::new();
    let mut truncated = false;
    diff.print(git2::DiffFormat::Patch, |delta, _hunk, line| {
        let path = delta
            .new_file()
            .path()
            .or_else(|| delta.old_file().path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if files.last().is_none_or(|file| file.path != path) {
            files.push(ChangedFile {
                path,
                added: 0,
                removed: 0,
            });
        }
        let file = files.last_mut().expect("pushed above");
        let origin = line.origin();
        match origin {
            '+' => file.added += 1,
            '-' => file.removed += 1,
            _ => {}
        }
        if !truncated {
            let text = String::from_utf8_lossy(line.content());
            if patch.len() + text.len() + 1 > max_patch_bytes {
                truncated = true;
            } else {
                if matches!(origin, '+' | '-' | ' ') {
                    patch.push(origin);
                }
                patch.push_str(&text);
            }
        }
        true
    })
    .map_err(git)?;
    Ok(CommitDiff {
        files,
        patch,
        truncated,
    })
}
