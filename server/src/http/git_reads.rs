//! What pages read from git: repos, branches, commit metadata, history pages with their merge
//! graph, the definitions file text, and each commit's definitions summarised for grids
//! (name, kind, identity hash, project, configuration). Parse results are immutable per
//! commit, so they are cached (except *pending*, which can change when a repo appears).
//! All functions block (libgit2): call them from `web::block`.

use super::cells::ParseState;
use super::read_model::ReadError;
use crate::git::history::{self, CommitMetadata};
use crate::git::{files, GitError, GitService, ParseOutcome};
use git2::Sort;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use test_looper_core::definitions::DefinitionKind;

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
    pub graph: Vec<super::merge_graph::RowGraph>,
    pub has_more: bool,
}

const CACHE_LIMIT: usize = 50_000;

/// Git reads for pages, over the server's [`GitService`].
pub struct GitReads {
    git: Arc<GitService>,
    parsed: Mutex<HashMap<(String, String), Arc<CommitDefinitions>>>,
}

fn read_error(err: GitError) -> ReadError {
    match err {
        GitError::UnknownRepo(repo) => ReadError::NotFound(format!("repo {repo}")),
        GitError::UnknownCommit { repo, commit } => {
            ReadError::NotFound(format!("commit {commit} of repo {repo}"))
        }
        other => ReadError::Internal(other.to_string()),
    }
}

impl GitReads {
    pub fn new(git: Arc<GitService>) -> Self {
        GitReads {
            git,
            parsed: Mutex::new(HashMap::new()),
        }
    }

    /// Known repo names, sorted (re-reads the directory for local repos).
    pub fn repos(&self) -> Result<Vec<String>, ReadError> {
        let store = self.git.store();
        if store.is_local() {
            store.refresh_local().map_err(read_error)
        } else {
            Ok(store.repo_names())
        }
    }

    /// Branches of `repo` and their heads, sorted by name.
    pub fn branches(&self, repo: &str) -> Result<Vec<(String, String)>, ReadError> {
        let git = self.open(repo)?;
        let branches = history::branches(&git, repo).map_err(read_error)?;
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
        let git = self.open(repo)?;
        let oid = history::find_commit_id(&git, repo, head).map_err(read_error)?;
        let mut walk = git
            .revwalk()
            .map_err(|e| read_error(GitError::git(repo, e)))?;
        walk.push(oid)
            .map_err(|e| read_error(GitError::git(repo, e)))?;
        Ok(walk.take(cap).count())
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
        let git = self.open(repo)?;
        let head = history::find_commit_id(&git, repo, head).map_err(read_error)?;
        let mut walk = git
            .revwalk()
            .map_err(|e| read_error(GitError::git(repo, e)))?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
            .map_err(|e| read_error(GitError::git(repo, e)))?;
        walk.push(head)
            .map_err(|e| read_error(GitError::git(repo, e)))?;
        let mut metadata = Vec::with_capacity(offset + limit);
        let mut has_more = false;
        for oid in walk {
            let oid = oid.map_err(|e| read_error(GitError::git(repo, e)))?;
            if metadata.len() == offset + limit {
                has_more = true;
                break;
            }
            metadata.push(history::commit_metadata(&git, repo, oid).map_err(read_error)?);
        }
        let mut graph = super::merge_graph::layout(
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

    /// Metadata of one commit.
    pub fn commit(&self, repo: &str, hash: &str) -> Result<CommitMetadata, ReadError> {
        let git = self.open(repo)?;
        let oid = history::find_commit_id(&git, repo, hash).map_err(read_error)?;
        history::commit_metadata(&git, repo, oid).map_err(read_error)
    }

    /// The definitions file of a commit: its path and text, if it has one.
    pub fn definitions_file(
        &self,
        repo: &str,
        hash: &str,
    ) -> Result<Option<(String, String)>, ReadError> {
        let git = self.open(repo)?;
        let oid = history::find_commit_id(&git, repo, hash).map_err(read_error)?;
        let tree = files::commit_tree(&git, repo, oid).map_err(read_error)?;
        let Some(path) = files::definitions_path(&git, &tree, &mut HashMap::new()) else {
            return Ok(None);
        };
        let bytes = files::read_blob(&git, &tree, &path).unwrap_or_default();
        Ok(Some((path, String::from_utf8_lossy(&bytes).into_owned())))
    }

    /// The commit's definitions (cached once final).
    pub fn definitions(&self, repo: &str, hash: &str) -> Result<Arc<CommitDefinitions>, ReadError> {
        let key = (repo.to_owned(), hash.to_owned());
        if let Some(known) = self.cache().get(&key) {
            return Ok(known.clone());
        }
        let outcome = self.git.parse_commit(repo, hash).map_err(read_error)?;
        let parsed = Arc::new(summarize(outcome));
        if !matches!(parsed.parse, ParseState::Pending(_)) {
            let mut cache = self.cache();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, parsed.clone());
        }
        Ok(parsed)
    }

    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<CommitDefinitions>>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, repo: &str) -> Result<git2::Repository, ReadError> {
        if !self.git.store().contains(repo) {
            // A repo created since the last listing (local back end).
            let _ = self.repos();
        }
        self.git.store().open(repo).map_err(read_error)
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
            parse: ParseState::Pending(match commit {
                Some(commit) => format!("commit {commit} of repo {repo} is not available yet"),
                None => format!("repo {repo} is not known yet"),
            }),
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
