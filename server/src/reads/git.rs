//! What pages read from git: repos, branches, commit metadata, history pages with their merge
//! graph, the definitions file text, and each commit's definitions summarised for grids
//! (name, kind, identity hash, project, configuration).
//!
//! Only facts that cannot change are cached, so pages stay fresh without any invalidation:
//! a branch's walked history and merge graph are keyed by (repo, head commit) — a push or a
//! force push moves the head, and the next read walks from the new one — while commit
//! metadata, definitions files and parse results are keyed by commit (except *pending* parses,
//! which can change when a repo appears). Branch heads and the repo list are read afresh on
//! every call, through opened repositories kept in a pool ([`crate::reads::repo_pool`]).
//! Every cache is bounded ([`crate::cache::bounded`]). All functions block (libgit2): call
//! them from `spawn_blocking`.

use crate::cache::bounded::{BoundedCache, Computed};
use crate::git::history;
use crate::git::history::CommitMetadata;
use crate::git::{files, GitError, GitService, ParseOutcome};
use crate::reads::model::ReadError;
use crate::reads::repo_pool::{PooledRepo, RepoPool};
use crate::views::merge_graph;
use crate::views::merge_graph::RowGraph;
use git2::{Oid, Sort};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use test_looper_core::definitions::DefinitionKind;

/// How a commit's definitions parsed, as the grid needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "reason", rename_all = "snake_case")]
pub enum ParseState {
    /// Not scanned yet.
    NotLoaded,
    NoTests,
    Pending(String),
    Untestable(String),
    Ok,
}

/// One definition of a commit as grids need it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DefinitionSummary {
    pub name: String,
    pub kind: DefinitionKind,
    pub hash: String,
    pub project: String,
    pub configuration: String,
    pub disabled: bool,
    /// Names of the builds it depends on (in this or another commit).
    pub build_dependencies: Vec<String>,
}

/// A commit's definitions, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommitDefinitions {
    pub parse: ParseState,
    pub definitions: Vec<DefinitionSummary>,
}

/// A page of a branch's history, newest first, with the graph computed from the branch head.
pub struct HistoryPage {
    pub commits: Vec<CommitMetadata>,
    pub graph: Vec<RowGraph>,
    pub has_more: bool,
}

/// Commits kept per walked history; pages beyond are walked without the cache.
const WALK_LIMIT: usize = 100_000;
/// Budgets of the caches: commits over all walks, commit metadata and definitions files in
/// bytes, parsed definitions in definitions.
const WALKS_BUDGET: usize = 400_000;
const METADATA_BUDGET: usize = 32 << 20;
const FILES_BUDGET: usize = 32 << 20;
const PARSED_BUDGET: usize = 200_000;

type CommitKey = (String, Oid);

/// The history reachable from one head: topological order, newest first (merges included).
struct Walk {
    /// Each commit and its parents, as hex hashes.
    commits: Vec<(String, Vec<String>)>,
    /// False when the walk stopped at [`WALK_LIMIT`].
    complete: bool,
    /// The merge graph of the first rows, grown on demand (a row's lanes depend only on the
    /// rows above it).
    graph: Mutex<Arc<Vec<RowGraph>>>,
}

impl Walk {
    /// The graph rows of the first `rows` commits (or more).
    fn graph(&self, rows: usize) -> Arc<Vec<RowGraph>> {
        let rows = rows.min(self.commits.len());
        let mut graph = self.graph.lock().unwrap_or_else(|e| e.into_inner());
        if graph.len() < rows {
            let grown = rows.max(graph.len() * 2).min(self.commits.len());
            *graph = Arc::new(merge_graph::layout(
                self.commits[..grown]
                    .iter()
                    .map(|(hash, parents)| (hash.as_str(), parents.as_slice())),
            ));
        }
        graph.clone()
    }
}

/// Git reads for pages, over the server's [`GitService`].
pub struct GitReads {
    git: Arc<GitService>,
    pool: RepoPool,
    walks: BoundedCache<CommitKey, Arc<Walk>>,
    metadata: BoundedCache<CommitKey, Arc<CommitMetadata>>,
    files: BoundedCache<CommitKey, Arc<Option<(String, String)>>>,
    parsed: BoundedCache<(String, String), Arc<CommitDefinitions>>,
}

fn git_error(repo: &str) -> impl Fn(git2::Error) -> ReadError + '_ {
    move |e| ReadError::from(GitError::git(repo, e))
}

/// A full hash names its commit without asking the repo (an abbreviated one needs the repo).
fn full_oid(hash: &str) -> Option<Oid> {
    (hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Oid::from_str(hash).ok())
        .flatten()
}

impl GitReads {
    pub fn new(git: Arc<GitService>) -> Self {
        GitReads {
            git,
            pool: RepoPool::default(),
            walks: BoundedCache::new(WALKS_BUDGET, |walk: &Arc<Walk>| walk.commits.len() + 1),
            metadata: BoundedCache::new(METADATA_BUDGET, |m: &Arc<CommitMetadata>| {
                m.message.len()
                    + m.author.len()
                    + m.author_email.len()
                    + 160 * (1 + m.parents.len())
            }),
            files: BoundedCache::new(FILES_BUDGET, |file: &Arc<Option<(String, String)>>| {
                file.as_ref()
                    .as_ref()
                    .map_or(0, |(path, text)| path.len() + text.len())
                    + 64
            }),
            parsed: BoundedCache::new(PARSED_BUDGET, |defs: &Arc<CommitDefinitions>| {
                defs.definitions.len() + 1
            }),
        }
    }

    /// Known repo names, sorted (re-reads the directory for local repos).
    pub fn repos(&self) -> Result<Vec<String>, ReadError> {
        let store = self.git.store();
        let names = if store.is_local() {
            store.refresh_local().map_err(ReadError::from)?
        } else {
            store.repo_names()
        };
        self.pool.retain(&names);
        Ok(names)
    }

    /// Branches of `repo` and their heads, sorted by name (read afresh on every call).
    pub fn branches(&self, repo: &str) -> Result<Vec<(String, String)>, ReadError> {
        let git = self.open(repo)?;
        let branches = history::branches(&git, repo).map_err(ReadError::from)?;
        Ok(branches
            .into_iter()
            .map(|(name, oid)| (name, oid.to_string()))
            .collect())
    }

    /// The head of one branch.
    pub fn branch_head(&self, repo: &str, branch: &str) -> Result<String, ReadError> {
        self.branches(repo)?
            .into_iter()
            .find(|(name, _)| name == branch)
            .map(|(_, head)| head)
            .ok_or_else(|| ReadError::NotFound(format!("branch {branch} of repo {repo}")))
    }

    /// Number of commits reachable from `head`, capped at `cap`.
    pub fn count_commits(&self, repo: &str, head: &str, cap: usize) -> Result<usize, ReadError> {
        let walk = self.walk(repo, head)?;
        if walk.complete || walk.commits.len() >= cap {
            return Ok(walk.commits.len().min(cap));
        }
        let git = self.open(repo)?;
        let oid = history::find_commit_id(&git, repo, head).map_err(ReadError::from)?;
        let mut revwalk = git.revwalk().map_err(git_error(repo))?;
        revwalk.push(oid).map_err(git_error(repo))?;
        Ok(revwalk.take(cap).count())
    }

    /// Commits `offset..offset+limit` of the history of `head` (topological, newest first,
    /// merges included).
    pub fn history(
        &self,
        repo: &str,
        head: &str,
        offset: usize,
        limit: usize,
    ) -> Result<HistoryPage, ReadError> {
        let walk = self.walk(repo, head)?;
        let end = offset.saturating_add(limit);
        if !walk.complete && end >= walk.commits.len() {
            return self.history_uncached(repo, head, offset, limit);
        }
        let rows = offset.min(walk.commits.len())..end.min(walk.commits.len());
        let graph = walk.graph(rows.end);
        let mut git = None;
        let commits = walk.commits[rows.clone()]
            .iter()
            .map(|(hash, _)| {
                let oid = Oid::from_str(hash).map_err(git_error(repo))?;
                Ok((*self.metadata_of(repo, oid, &mut git)?).clone())
            })
            .collect::<Result<Vec<_>, ReadError>>()?;
        Ok(HistoryPage {
            commits,
            graph: graph[rows].to_vec(),
            has_more: walk.commits.len() > end,
        })
    }

    /// Metadata of one commit.
    pub fn commit(&self, repo: &str, hash: &str) -> Result<CommitMetadata, ReadError> {
        let mut git = None;
        let oid = self.resolve(repo, hash, &mut git)?;
        Ok((*self.metadata_of(repo, oid, &mut git)?).clone())
    }

    /// What a commit changed against its first parent (patch text bounded to 256 KiB).
    pub fn diff(&self, repo: &str, hash: &str) -> Result<history::CommitDiff, ReadError> {
        let mut git = None;
        let oid = self.resolve(repo, hash, &mut git)?;
        let git = self.opened(repo, &mut git)?;
        history::commit_diff(git, repo, oid, 256 * 1024).map_err(ReadError::from)
    }

    /// The definitions file of a commit: its path and text, if it has one.
    pub fn definitions_file(
        &self,
        repo: &str,
        hash: &str,
    ) -> Result<Option<(String, String)>, ReadError> {
        let mut git = None;
        let oid = self.resolve(repo, hash, &mut git)?;
        let file = self.files.get_or_compute(&(repo.to_owned(), oid), || {
            let git = self.opened(repo, &mut git)?;
            let tree = files::commit_tree(git, repo, oid).map_err(ReadError::from)?;
            let file = files::definitions_path(git, &tree, &mut HashMap::new()).map(|path| {
                let bytes = files::read_blob(git, &tree, &path).unwrap_or_default();
                (path, String::from_utf8_lossy(&bytes).into_owned())
            });
            Ok::<_, ReadError>(Computed::keep(Arc::new(file)))
        })?;
        Ok((*file).clone())
    }

    /// The commit's definitions (cached once final).
    pub fn definitions(&self, repo: &str, hash: &str) -> Result<Arc<CommitDefinitions>, ReadError> {
        self.parsed
            .get_or_compute(&(repo.to_owned(), hash.to_owned()), || {
                let outcome = self.git.parse_commit(repo, hash).map_err(ReadError::from)?;
                let parsed = Arc::new(summarize(outcome));
                Ok(Computed {
                    keep: !matches!(parsed.parse, ParseState::Pending(_)),
                    value: parsed,
                })
            })
    }

    /// The walked history of `head` (cached per head commit).
    fn walk(&self, repo: &str, head: &str) -> Result<Arc<Walk>, ReadError> {
        let mut git = None;
        let head = self.resolve(repo, head, &mut git)?;
        self.walks.get_or_compute(&(repo.to_owned(), head), || {
            let git = self.opened(repo, &mut git)?;
            let mut revwalk = git.revwalk().map_err(git_error(repo))?;
            revwalk
                .set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
                .map_err(git_error(repo))?;
            revwalk.push(head).map_err(git_error(repo))?;
            let mut commits = Vec::new();
            let mut complete = true;
            for oid in revwalk {
                if commits.len() == WALK_LIMIT {
                    complete = false;
                    break;
                }
                let oid = oid.map_err(git_error(repo))?;
                let commit = git.find_commit(oid).map_err(git_error(repo))?;
                let parents = commit.parent_ids().map(|p| p.to_string()).collect();
                commits.push((oid.to_string(), parents));
            }
            Ok(Computed::keep(Arc::new(Walk {
                commits,
                complete,
                graph: Mutex::new(Arc::new(Vec::new())),
            })))
        })
    }

    /// A history page walked without the cache (beyond [`WALK_LIMIT`]).
    fn history_uncached(
        &self,
        repo: &str,
        head: &str,
        offset: usize,
        limit: usize,
    ) -> Result<HistoryPage, ReadError> {
        let git = self.open(repo)?;
        let head = history::find_commit_id(&git, repo, head).map_err(ReadError::from)?;
        let mut revwalk = git.revwalk().map_err(git_error(repo))?;
        revwalk
            .set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
            .map_err(git_error(repo))?;
        revwalk.push(head).map_err(git_error(repo))?;
        let mut metadata = Vec::new();
        let mut has_more = false;
        for oid in revwalk {
            let oid = oid.map_err(git_error(repo))?;
            if metadata.len() == offset.saturating_add(limit) {
                has_more = true;
                break;
            }
            metadata.push(history::commit_metadata(&git, repo, oid).map_err(ReadError::from)?);
        }
        let mut graph = merge_graph::layout(
            metadata
                .iter()
                .map(|c: &CommitMetadata| (c.hash.as_str(), c.parents.as_slice())),
        );
        let commits = metadata.split_off(offset.min(metadata.len()));
        let graph = graph.split_off(offset.min(graph.len()));
        Ok(HistoryPage {
            commits,
            graph,
            has_more,
        })
    }

    /// Metadata of `oid` (cached per commit); opens the repo into `git` on a miss.
    fn metadata_of<'a>(
        &'a self,
        repo: &str,
        oid: Oid,
        git: &mut Option<PooledRepo<'a>>,
    ) -> Result<Arc<CommitMetadata>, ReadError> {
        self.metadata.get_or_compute(&(repo.to_owned(), oid), || {
            let git = self.opened(repo, git)?;
            let metadata = history::commit_metadata(git, repo, oid).map_err(ReadError::from)?;
            Ok(Computed::keep(Arc::new(metadata)))
        })
    }

    /// The commit `hash` names: a full hash as it is, anything else resolved by the repo.
    /// Either way an unknown repo is an error.
    fn resolve<'a>(
        &'a self,
        repo: &str,
        hash: &str,
        git: &mut Option<PooledRepo<'a>>,
    ) -> Result<Oid, ReadError> {
        match full_oid(hash) {
            Some(oid) if self.known_repo(repo) => Ok(oid),
            _ => {
                let git = self.opened(repo, git)?;
                history::find_commit_id(git, repo, hash).map_err(ReadError::from)
            }
        }
    }

    /// The repo opened into `slot` (from the pool) if it is not yet.
    fn opened<'a, 's>(
        &'a self,
        repo: &str,
        slot: &'s mut Option<PooledRepo<'a>>,
    ) -> Result<&'s PooledRepo<'a>, ReadError> {
        if slot.is_none() {
            *slot = Some(self.open(repo)?);
        }
        Ok(slot.as_ref().expect("opened just above"))
    }

    fn known_repo(&self, repo: &str) -> bool {
        if !self.git.store().contains(repo) {
            // A repo created since the last listing (local back end).
            let _ = self.repos();
        }
        self.git.store().contains(repo)
    }

    fn open(&self, repo: &str) -> Result<PooledRepo<'_>, ReadError> {
        self.known_repo(repo);
        self.pool.take(self.git.store(), repo)
    }
}

/// Grid-ready summary of a parse outcome.
pub fn summarize(outcome: ParseOutcome) -> CommitDefinitions {
    match outcome {
        ParseOutcome::NoTests => CommitDefinitions {
            parse: ParseState::NoTests,
            definitions: Vec::new(),
        },
        ParseOutcome::Pending { repo, commit } => CommitDefinitions {
            parse: ParseState::Pending(crate::git::scanner::pending_reason(
                &repo,
                commit.as_deref(),
            )),
            definitions: Vec::new(),
        },
        ParseOutcome::Untestable { message, .. } => CommitDefinitions {
            parse: ParseState::Untestable(message),
            definitions: Vec::new(),
        },
        ParseOutcome::Ok(resolved) => CommitDefinitions {
            parse: ParseState::Ok,
            definitions: resolved
                .definitions
                .values()
                .map(|d| DefinitionSummary {
                    name: d.name.clone(),
                    kind: d.kind,
                    hash: d.hash.clone(),
                    project: d.project.clone(),
                    configuration: d.configuration.clone(),
                    disabled: d.disabled,
                    build_dependencies: d
                        .dependencies
                        .values()
                        .filter_map(|dep| match dep {
                            test_looper_core::definitions::ResolvedDependency::Build {
                                name,
                                ..
                            } => Some(name.clone()),
                            _ => None,
                        })
                        .collect(),
                })
                .collect(),
        },
    }
}
