//! A commit's references to other repos as the UI shows them (the Pins view, the Repo
//! Refs section): where each points, whether that commit is known, and for floating pins how far the
//! followed branch has moved. Also the manual "update pin": one pin of a branch
//! head is moved to its branch's head through the auto updater's own rewrite, commit and
//! fast-forward push ([`super::pins::apply`]).

use super::definitions_source::{DefinitionsCaches, GitDefinitionsSource};
use super::pins::{self, AutoPin, PlannedUpdate};
use super::{store::RepoStore, GitError};
use git2::{Oid, Repository};
use serde::Serialize;
use test_looper_core::definitions::{CommitRef, DefinitionsSource, RepoReference, Resolver};

/// The form of a repo reference (docs/definitions.md#repos).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    /// `name: repo/<hash>`: never moves.
    Fixed,
    /// `{reference, branch[, auto][, prioritize]}`: follows a branch.
    Pin,
    /// `{import: a/b}`: borrowed from another commit's repos.
    Import,
}

/// Where a floating pin stands against the branch it follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PinStatus {
    /// `auto: true`: the server moves it itself.
    Auto,
    /// The followed repo or branch does not exist.
    UnknownBranch,
    /// It points at the followed branch's head.
    UpToDate,
    /// The followed branch's head is elsewhere. `commits`: commits of the head that the
    /// pinned commit lacks (unknown when the pinned commit is not in the repo).
    Behind { commits: Option<usize> },
}

/// One repo reference of a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepoRef {
    /// Its name in the `repos` section.
    pub name: String,
    pub kind: ReferenceKind,
    /// The referenced repo and commit (the commit may be the `HEAD` placeholder).
    pub repo: String,
    pub commit: String,
    /// Whether the store has that repo and commit.
    pub commit_known: bool,
    /// The followed branch (pins only) and its head, if it exists.
    pub branch: Option<String>,
    pub branch_head: Option<String>,
    pub auto: bool,
    pub prioritize: bool,
    /// The import path as written (imports only).
    pub import_source: Option<String>,
    /// Pins only.
    pub status: Option<PinStatus>,
}

/// A commit's references, or why its definitions cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum References {
    Listed(Vec<RepoRef>),
    /// The definitions file (or one it includes or imports from) does not parse.
    Invalid(String),
}

/// Every repo reference of `commit` (fixed, pins, imports), in file order.
pub fn commit_references(
    store: &RepoStore,
    caches: &DefinitionsCaches,
    repo: &str,
    commit: Oid,
) -> Result<References, GitError> {
    store
        .open(repo)?
        .find_commit(commit)
        .map_err(|_| GitError::UnknownCommit {
            repo: repo.to_owned(),
            commit: commit.to_string(),
        })?;
    let source = GitDefinitionsSource::new(store, caches);
    let references =
        match Resolver::new(&source).repos(&CommitRef::new(repo.to_owned(), commit.to_string())) {
            Ok(references) => references,
            Err(error) => return Ok(References::Invalid(error.to_string())),
        };
    Ok(References::Listed(
        references
            .iter()
            .map(|(name, reference)| describe(store, name, reference))
            .collect(),
    ))
}

fn describe(store: &RepoStore, name: &str, reference: &RepoReference) -> RepoRef {
    let target = reference.reference();
    let opened = store.open(&target.repo).ok();
    let pinned = opened
        .as_ref()
        .and_then(|git| known_commit(git, &target.commit));
    let mut out = RepoRef {
        name: name.to_owned(),
        kind: ReferenceKind::Fixed,
        repo: target.repo.clone(),
        commit: target.commit.clone(),
        commit_known: pinned.is_some(),
        branch: None,
        branch_head: None,
        auto: false,
        prioritize: false,
        import_source: None,
        status: None,
    };
    match reference {
        RepoReference::Fixed { .. } => {}
        RepoReference::Import { import_source, .. } => {
            out.kind = ReferenceKind::Import;
            out.import_source = Some(import_source.clone());
        }
        RepoReference::Pin {
            branch,
            auto,
            prioritize,
            ..
        } => {
            out.kind = ReferenceKind::Pin;
            out.auto = *auto;
            out.prioritize = *prioritize;
            out.branch = Some(branch.clone());
            let head = opened.as_ref().and_then(|git| branch_head_in(git, branch));
            out.branch_head = head.map(|h| h.to_string());
            out.status = Some(match (head, opened.as_ref()) {
                _ if *auto => PinStatus::Auto,
                (Some(head), _) if head.to_string() == target.commit => PinStatus::UpToDate,
                (Some(head), Some(git)) => PinStatus::Behind {
                    commits: pinned
                        .and_then(|old| git.graph_ahead_behind(head, old).ok())
                        .map(|(ahead, _)| ahead),
                },
                _ => PinStatus::UnknownBranch,
            });
        }
    }
    out
}

fn known_commit(git: &Repository, hash: &str) -> Option<Oid> {
    let oid = Oid::from_str(hash).ok().filter(|_| hash.len() == 40)?;
    git.find_commit(oid).ok().map(|c| c.id())
}

fn branch_head_in(git: &Repository, branch: &str) -> Option<Oid> {
    git.find_reference(&format!("refs/heads/{branch}"))
        .ok()?
        .peel_to_commit()
        .ok()
        .map(|c| c.id())
}

/// The head of `branch` of `repo`, if the branch exists.
pub fn branch_head(store: &RepoStore, repo: &str, branch: &str) -> Result<Option<Oid>, GitError> {
    Ok(branch_head_in(&store.open(repo)?, branch))
}

/// Why a manual pin update was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdatePinError {
    #[error("branch {branch} of repo {repo} not found")]
    UnknownBranch { repo: String, branch: String },
    #[error("the head of {repo}/{branch} has no pin named {pin:?}")]
    UnknownPin {
        repo: String,
        branch: String,
        pin: String,
    },
    #[error("branch {branch} moved to {actual} (expected {expected}): nothing was pushed; reload and try again")]
    BranchMoved {
        branch: String,
        expected: String,
        actual: String,
    },
    #[error("pin {pin} is auto: the server moves it itself")]
    Auto { pin: String },
    #[error("pin {pin} already points at the head of {target}")]
    UpToDate { pin: String, target: String },
    #[error("pin {pin} follows {target}, which does not exist")]
    UnknownTarget { pin: String, target: String },
    #[error("cannot read the definitions of the branch head: {0}")]
    Definitions(String),
    #[error("Failed to update the pin in the testDefinitions file: {pin} is not written literally in {path} (it must be in the root file, with reference as its first key)")]
    NotRewritable { pin: String, path: String },
    #[error(transparent)]
    Git(#[from] GitError),
}

/// A pushed manual pin update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinUpdated {
    /// The new head of the branch.
    pub commit: String,
    /// The head it was pushed onto.
    pub parent: String,
    /// The commit the pin now points at.
    pub pinned: String,
}

/// Moves pin `pin` of `branch`'s head to the head of the branch it follows: rewrites the
/// root definitions file, commits and pushes it as a fast-forward. `seen_head` is the head
/// the user looked at: if the branch has moved since (or moves during the push), nothing is
/// pushed and [`UpdatePinError::BranchMoved`] says so.
pub fn update_pin(
    store: &RepoStore,
    caches: &DefinitionsCaches,
    repo: &str,
    branch: &str,
    pin: &str,
    seen_head: Option<Oid>,
) -> Result<PinUpdated, UpdatePinError> {
    let head = branch_head(store, repo, branch)?.ok_or_else(|| UpdatePinError::UnknownBranch {
        repo: repo.to_owned(),
        branch: branch.to_owned(),
    })?;
    let moved = |actual: Oid, expected: Oid| UpdatePinError::BranchMoved {
        branch: branch.to_owned(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    };
    if let Some(seen) = seen_head.filter(|seen| *seen != head) {
        return Err(moved(head, seen));
    }
    let source = GitDefinitionsSource::new(store, caches);
    let at_head = CommitRef::new(repo.to_owned(), head.to_string());
    let references = Resolver::new(&source)
        .repos(&at_head)
        .map_err(|e| UpdatePinError::Definitions(e.to_string()))?;
    let Some(RepoReference::Pin {
        reference,
        branch: target_branch,
        auto,
        ..
    }) = references.get(pin)
    else {
        return Err(UpdatePinError::UnknownPin {
            repo: repo.to_owned(),
            branch: branch.to_owned(),
            pin: pin.to_owned(),
        });
    };
    let target = format!("{}/{target_branch}", reference.repo);
    if *auto {
        return Err(UpdatePinError::Auto {
            pin: pin.to_owned(),
        });
    }
    let target_head = match branch_head(store, &reference.repo, target_branch) {
        Ok(Some(head)) => head,
        Ok(None) | Err(GitError::UnknownRepo(_)) => {
            return Err(UpdatePinError::UnknownTarget {
                pin: pin.to_owned(),
                target,
            })
        }
        Err(other) => return Err(other.into()),
    };
    if target_head.to_string() == reference.commit {
        return Err(UpdatePinError::UpToDate {
            pin: pin.to_owned(),
            target,
        });
    }
    let auto_pin = AutoPin {
        repo_def: pin.to_owned(),
        target_repo: reference.repo.clone(),
        target_branch: target_branch.clone(),
        current: reference.commit.clone(),
    };
    let new_hash = target_head.to_string();
    // A pin from an include, or one whose reference is not written literally, cannot be
    // rewritten: say so as a refusal rather than a failure.
    let path = source
        .definitions_path(&at_head)
        .map_err(|e| UpdatePinError::Definitions(e.to_string()))?
        .unwrap_or_default();
    let text = source
        .read_file(&at_head, &path)
        .map_err(|e| UpdatePinError::Definitions(e.to_string()))?
        .unwrap_or_default();
    if pins::rewrite_pin(&text, &auto_pin, &new_hash).is_none() {
        return Err(UpdatePinError::NotRewritable {
            pin: pin.to_owned(),
            path,
        });
    }
    let update = PlannedUpdate {
        repo: repo.to_owned(),
        branch: branch.to_owned(),
        head,
        pins: vec![(auto_pin, new_hash.clone())],
        source: (reference.repo.clone(), target_branch.clone()),
    };
    match pins::apply(store, &update) {
        Ok(commit) => Ok(PinUpdated {
            commit: commit.to_string(),
            parent: head.to_string(),
            pinned: new_hash,
        }),
        Err(error @ GitError::Push { .. }) => match branch_head(store, repo, branch)? {
            Some(now) if now != head => Err(moved(now, head)),
            _ => Err(error.into()),
        },
        Err(error) => Err(error.into()),
    }
}
