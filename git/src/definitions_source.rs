//! [`DefinitionsSource`] over git repos found by name through a [`RepoOpener`] (the server's
//! repo store, `tl`'s checkout and its `--repos` directory), so `resolve_commit` can read any
//! commit of any reachable repo the same way in both. Definitions-file lookups (per tree) and
//! "last commit touching" answers (per commit and path) are cached in [`DefinitionsCaches`],
//! shared across scans: both are content-addressed, so they never go stale. A file over the
//! definitions' size limit is refused from its size in the object header, never read whole
//! (H4).

use crate::{files, GitError};
use git2::{ObjectType, Oid, Repository};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Mutex;
use test_looper_core::definitions::{CommitRef, DefinitionsSource, SourceError};

/// Where a [`GitDefinitionsSource`] finds repos by name.
pub trait RepoOpener {
    /// Opens repo `name`. [`GitError::UnknownRepo`] when there is no such repo (the commit
    /// being resolved is then *pending*); any other error makes it untestable.
    fn open_repo(&self, name: &str) -> Result<Repository, GitError>;
}

/// Entries kept per cache before it is cleared (bounds memory on huge histories).
const MAX_CACHE_ENTRIES: usize = 500_000;

/// Caches shared by every [`GitDefinitionsSource`].
#[derive(Default)]
pub struct DefinitionsCaches {
    tree_definitions: Mutex<HashMap<Oid, Option<String>>>,
    last_touch: Mutex<HashMap<(Oid, String), Option<Oid>>>,
}

impl DefinitionsCaches {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Reads commits of the repos `repos` opens; repos are opened once per source.
pub struct GitDefinitionsSource<'a> {
    repos: &'a dyn RepoOpener,
    caches: &'a DefinitionsCaches,
    open_repos: RefCell<HashMap<String, Rc<Repository>>>,
}

impl<'a> GitDefinitionsSource<'a> {
    pub fn new(repos: &'a dyn RepoOpener, caches: &'a DefinitionsCaches) -> Self {
        GitDefinitionsSource {
            repos,
            caches,
            open_repos: RefCell::new(HashMap::new()),
        }
    }

    /// Uses an already open repo for `name` (saves reopening it).
    pub fn with_open_repo(self, name: &str, repo: Repository) -> Self {
        self.open_repos
            .borrow_mut()
            .insert(name.to_owned(), Rc::new(repo));
        self
    }

    fn repo(&self, name: &str) -> Result<Rc<Repository>, SourceError> {
        if let Some(repo) = self.open_repos.borrow().get(name) {
            return Ok(repo.clone());
        }
        let repo = match self.repos.open_repo(name) {
            Ok(repo) => Rc::new(repo),
            Err(GitError::UnknownRepo(_)) => {
                return Err(SourceError::UnknownRepo {
                    repo: name.to_owned(),
                })
            }
            Err(other) => return Err(SourceError::Other(other.to_string())),
        };
        self.open_repos
            .borrow_mut()
            .insert(name.to_owned(), repo.clone());
        Ok(repo)
    }

    fn commit_id(&self, commit: &CommitRef, repo: &Repository) -> Result<Oid, SourceError> {
        let unknown = || SourceError::UnknownCommit {
            repo: commit.repo.clone(),
            commit: commit.commit.clone(),
        };
        let oid = Oid::from_str(&commit.commit).map_err(|_| unknown())?;
        if commit.commit.len() != 40 || repo.find_commit(oid).is_err() {
            return Err(unknown());
        }
        Ok(oid)
    }

    fn with_tree<T>(
        &self,
        commit: &CommitRef,
        f: impl FnOnce(&Repository, &git2::Tree<'_>) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let repo = self.repo(&commit.repo)?;
        let oid = self.commit_id(commit, &repo)?;
        let tree = files::commit_tree(&repo, &commit.repo, oid)
            .map_err(|e| SourceError::Other(e.to_string()))?;
        f(&repo, &tree)
    }
}

impl DefinitionsSource for GitDefinitionsSource<'_> {
    fn list_files(&self, commit: &CommitRef) -> Result<Vec<String>, SourceError> {
        self.with_tree(commit, |_, tree| {
            files::list_files(tree, &commit.repo).map_err(|e| SourceError::Other(e.to_string()))
        })
    }

    fn read_file(&self, commit: &CommitRef, path: &str) -> Result<Option<String>, SourceError> {
        self.with_tree(commit, |repo, tree| {
            let Some(clean) = files::normalize_path(path) else {
                return Ok(None);
            };
            let Ok(entry) = tree.get_path(Path::new(&clean)) else {
                return Ok(None);
            };
            if entry.kind() != Some(ObjectType::Blob) {
                return Ok(None);
            }
            // The size from the object header first: a huge blob is never loaded (H4).
            let (size, _) = repo
                .odb()
                .and_then(|odb| odb.read_header(entry.id()))
                .map_err(|e| SourceError::Other(e.message().to_owned()))?;
            SourceError::check_size(path, size as u64)?;
            let Ok(blob) = repo.find_blob(entry.id()) else {
                return Ok(None);
            };
            String::from_utf8(blob.content().to_vec())
                .map(Some)
                .map_err(|_| SourceError::Other(format!("{path} at {commit} is not valid UTF-8")))
        })
    }

    fn last_commit_touching(
        &self,
        commit: &CommitRef,
        path: &str,
    ) -> Result<Option<String>, SourceError> {
        let repo = self.repo(&commit.repo)?;
        let oid = self.commit_id(commit, &repo)?;
        let key = (oid, path.to_owned());
        if let Some(known) = lock(&self.caches.last_touch).get(&key) {
            return Ok(known.map(|o| o.to_string()));
        }
        let found = files::last_commit_touching(&repo, &commit.repo, oid, path)
            .map_err(|e| SourceError::Other(e.to_string()))?;
        let mut cache = lock(&self.caches.last_touch);
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, found);
        Ok(found.map(|o| o.to_string()))
    }

    fn definitions_path(&self, commit: &CommitRef) -> Result<Option<String>, SourceError> {
        self.with_tree(commit, |repo, tree| {
            let mut memo = lock(&self.caches.tree_definitions);
            if memo.len() >= MAX_CACHE_ENTRIES {
                memo.clear();
            }
            Ok(files::definitions_path(repo, tree, &mut memo))
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
