//! One rescan of one repo: read the branch tops, diff them against the tops seen last time,
//! walk only the new commits (merges included), parse their definitions, and find deleted
//! branches, force pushes and commits no branch reaches any more (orphans). The result is a
//! plain-data [`RepoScanned`] event.

use super::definitions_source::{DefinitionsCaches, GitDefinitionsSource};
use super::history::{self, CommitMetadata};
use super::{store::RepoStore, GitError};
use git2::Oid;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use test_looper_core::definitions::{
    resolve_commit, CommitRef, DefinitionsError, RepoReference, ResolvedCommit, Resolver,
};

/// Commits at or before this time are never parsed (July 2017, as in the original).
pub const OLDEST_TIMESTAMP_WITH_TESTS: i64 = 1_500_000_000;

/// Batches smaller than this are parsed on the scanning thread.
const PARALLEL_PARSE_THRESHOLD: usize = 64;
/// Most threads used to parse one batch.
const MAX_PARSE_THREADS: usize = 8;

/// Why a commit whose definitions reference `repo` (at `commit`) waits: one wording for the
/// scheduler and the pages.
pub fn pending_reason(repo: &str, commit: Option<&str>) -> String {
    match commit {
        Some(commit) => format!("commit {commit} of repo {repo} is not available yet"),
        None => format!("repo {repo} is not known yet"),
    }
}

/// What parsing a commit's definitions gave (docs/definitions.md#the-file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ParseOutcome {
    /// No definitions file, an empty one, or a commit older than
    /// [`OLDEST_TIMESTAMP_WITH_TESTS`].
    NoTests,
    /// A referenced repo (or one of its commits) is not available yet: parse again when it
    /// appears (see [`super::GitService::parse_commit`]).
    Pending {
        repo: String,
        commit: Option<String>,
    },
    /// The definitions are invalid. `repos` holds the commit's repo pins when they could be
    /// read (an untestable commit keeps its pins).
    Untestable {
        message: String,
        repos: IndexMap<String, RepoReference>,
    },
    /// Resolved.
    Ok(Box<ResolvedCommit>),
}

impl ParseOutcome {
    /// The commit's repo references, when known.
    pub fn repos(&self) -> Option<&IndexMap<String, RepoReference>> {
        match self {
            ParseOutcome::Ok(resolved) => Some(&resolved.repos),
            ParseOutcome::Untestable { repos, .. } => Some(repos),
            _ => None,
        }
    }
}

/// A newly seen commit: metadata and parse outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitInfo {
    pub hash: String,
    pub parents: Vec<String>,
    pub author: String,
    pub author_email: String,
    pub author_timestamp: i64,
    /// Committer time, seconds since the epoch.
    pub timestamp: i64,
    pub subject: String,
    pub message: String,
    pub parse: ParseOutcome,
}

impl CommitInfo {
    fn new(metadata: CommitMetadata, parse: ParseOutcome) -> Self {
        CommitInfo {
            hash: metadata.hash,
            parents: metadata.parents,
            author: metadata.author,
            author_email: metadata.author_email,
            author_timestamp: metadata.author_timestamp,
            timestamp: metadata.timestamp,
            subject: metadata.subject,
            message: metadata.message,
            parse,
        }
    }
}

/// The outcome of one rescan of one repo in which something changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepoScanned {
    pub repo: String,
    /// Every branch and its head after the scan, sorted by name.
    pub branches: Vec<(String, String)>,
    /// Commits no branch reached at the previous scan, parents before children.
    pub new_commits: Vec<CommitInfo>,
    /// Branches that existed at the previous scan and are gone.
    pub deleted_branches: Vec<String>,
    /// Branches whose new head does not descend from their previous head.
    pub force_pushed_branches: Vec<String>,
    /// Commits some branch reached at the previous scan and none reaches now.
    pub orphaned_commits: Vec<String>,
}

/// Branch heads seen at the previous scan of one repo.
pub type BranchHeads = BTreeMap<String, Oid>;

/// Rescans `repo_name` against `previous` heads. Returns `None` when nothing changed, else
/// the event and the new heads.
pub fn scan_repo(
    store: &RepoStore,
    caches: &DefinitionsCaches,
    repo_name: &str,
    previous: &BranchHeads,
) -> Result<Option<(RepoScanned, BranchHeads)>, GitError> {
    let repo = store.open(repo_name)?;
    let current: BranchHeads = history::branches(&repo, repo_name)?.into_iter().collect();
    if &current == previous {
        return Ok(None);
    }
    let deleted_branches: Vec<String> = previous
        .keys()
        .filter(|name| !current.contains_key(*name))
        .cloned()
        .collect();
    let force_pushed_branches: Vec<String> = previous
        .iter()
        .filter_map(|(name, old)| {
            let new = current.get(name)?;
            (!history::is_descendant_or_same(&repo, *new, *old)).then(|| name.clone())
        })
        .collect();
    let current_tips: Vec<Oid> = unique(current.values());
    let previous_tips: Vec<Oid> = unique(previous.values());
    let new_ids = history::walk(&repo, repo_name, &current_tips, &previous_tips)?;
    let current_set: BTreeSet<Oid> = current_tips.iter().copied().collect();
    let lost_tips: Vec<Oid> = previous_tips
        .iter()
        .filter(|tip| !current_set.contains(tip) && repo.find_commit(**tip).is_ok())
        .copied()
        .collect();
    let orphaned_commits = history::walk(&repo, repo_name, &lost_tips, &current_tips)?
        .into_iter()
        .map(|oid| oid.to_string())
        .collect();

    let metadata = new_ids
        .into_iter()
        .map(|oid| history::commit_metadata(&repo, repo_name, oid))
        .collect::<Result<Vec<_>, _>>()?;
    let parses = parse_all(store, caches, repo_name, &metadata)?;
    let new_commits = metadata
        .into_iter()
        .zip(parses)
        .map(|(metadata, parse)| CommitInfo::new(metadata, parse))
        .collect();
    let event = RepoScanned {
        repo: repo_name.to_owned(),
        branches: current
            .iter()
            .map(|(name, oid)| (name.clone(), oid.to_string()))
            .collect(),
        new_commits,
        deleted_branches,
        force_pushed_branches,
        orphaned_commits,
    };
    Ok(Some((event, current)))
}

/// Parses every commit of `metadata` (in order). Large batches (a newly watched repo, a
/// long push) are split across the machine's cores; each thread opens its own repos.
fn parse_all(
    store: &RepoStore,
    caches: &DefinitionsCaches,
    repo_name: &str,
    metadata: &[CommitMetadata],
) -> Result<Vec<ParseOutcome>, GitError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_PARSE_THREADS);
    if threads <= 1 || metadata.len() < PARALLEL_PARSE_THRESHOLD {
        let source = GitDefinitionsSource::new(store, caches)
            .with_open_repo(repo_name, store.open(repo_name)?);
        return Ok(metadata
            .iter()
            .map(|m| parse_commit(&source, repo_name, m))
            .collect());
    }
    let chunk = metadata.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = metadata
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> Result<Vec<ParseOutcome>, GitError> {
                    let source = GitDefinitionsSource::new(store, caches)
                        .with_open_repo(repo_name, store.open(repo_name)?);
                    Ok(part
                        .iter()
                        .map(|m| parse_commit(&source, repo_name, m))
                        .collect())
                })
            })
            .collect();
        let mut out = Vec::with_capacity(metadata.len());
        for handle in handles {
            match handle.join() {
                Ok(part) => out.extend(part?),
                Err(_) => {
                    return Err(GitError::Git {
                        repo: repo_name.to_owned(),
                        message: "a definitions parser thread panicked".into(),
                    })
                }
            }
        }
        Ok(out)
    })
}

/// Parses one commit's definitions (docs/definitions.md#the-file).
pub fn parse_commit(
    source: &GitDefinitionsSource<'_>,
    repo_name: &str,
    metadata: &CommitMetadata,
) -> ParseOutcome {
    if metadata.timestamp <= OLDEST_TIMESTAMP_WITH_TESTS {
        return ParseOutcome::NoTests;
    }
    let commit = CommitRef::new(repo_name, metadata.hash.clone());
    match resolve_commit(&commit, source) {
        Ok(resolved) => {
            let empty = resolved.definitions.is_empty()
                && resolved.repos.is_empty()
                && resolved.environments.is_empty();
            if resolved.definitions_path.is_none() || empty {
                ParseOutcome::NoTests
            } else {
                ParseOutcome::Ok(Box::new(resolved))
            }
        }
        Err(DefinitionsError::Pending { repo, commit }) => ParseOutcome::Pending { repo, commit },
        Err(error @ DefinitionsError::Invalid { .. }) => ParseOutcome::Untestable {
            message: error.to_string(),
            repos: Resolver::new(source).repos(&commit).unwrap_or_default(),
        },
    }
}

fn unique<'a>(oids: impl Iterator<Item = &'a Oid>) -> Vec<Oid> {
    let set: BTreeSet<Oid> = oids.copied().collect();
    set.into_iter().collect()
}
