//! Opened repositories kept for reuse, so a page read does not reopen the repo (config files,
//! refs and pack indexes) on every request.
//!
//! A libgit2 handle reads refs from disk on each lookup and rescans the packs when an object
//! is missing, so a reused handle sees pushes at once. Handles are kept per (name, path): a
//! repo whose location changes gets fresh handles. At most [`IDLE_PER_REPO`] idle handles are
//! kept per repo, and those of repos that left the store are dropped.

use crate::git::store::RepoOrigin;
use crate::git::RepoStore;
use crate::reads::model::ReadError;
use git2::Repository;
use std::collections::HashMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Mutex;

/// Idle handles kept per repo (about the number of threads reading at once).
const IDLE_PER_REPO: usize = 8;

/// See the module documentation.
#[derive(Default)]
pub struct RepoPool {
    idle: Mutex<HashMap<String, (PathBuf, Vec<Repository>)>>,
}

/// A handle taken from the pool; it goes back when dropped.
pub struct PooledRepo<'a> {
    pool: &'a RepoPool,
    name: String,
    path: PathBuf,
    repo: Option<Repository>,
}

impl Deref for PooledRepo<'_> {
    type Target = Repository;

    fn deref(&self) -> &Repository {
        self.repo
            .as_ref()
            .expect("a pooled repo holds its handle until dropped")
    }
}

impl Drop for PooledRepo<'_> {
    fn drop(&mut self) {
        if let Some(repo) = self.repo.take() {
            self.pool.give_back(&self.name, &self.path, repo);
        }
    }
}

impl RepoPool {
    /// A handle on `name` of `store` (an idle one when there is one).
    pub fn take<'a>(&'a self, store: &RepoStore, name: &str) -> Result<PooledRepo<'a>, ReadError> {
        let path = match store.origin(name).map_err(ReadError::from)? {
            RepoOrigin::Local { path } => path,
            RepoOrigin::Remote { mirror, .. } => mirror,
        };
        let idle = {
            let mut pool = self.lock();
            match pool.get_mut(name) {
                Some((known, handles)) if *known == path => handles.pop(),
                Some(_) => {
                    pool.remove(name);
                    None
                }
                None => None,
            }
        };
        let repo = match idle {
            Some(repo) => repo,
            None => store.open(name).map_err(ReadError::from)?,
        };
        Ok(PooledRepo {
            pool: self,
            name: name.to_owned(),
            path,
            repo: Some(repo),
        })
    }

    /// Drops the idle handles of repos not in `known`.
    pub fn retain(&self, known: &[String]) {
        self.lock().retain(|name, _| known.contains(name));
    }

    fn give_back(&self, name: &str, path: &PathBuf, repo: Repository) {
        let mut pool = self.lock();
        let (known, handles) = pool
            .entry(name.to_owned())
            .or_insert_with(|| (path.clone(), Vec::new()));
        if known == path && handles.len() < IDLE_PER_REPO {
            handles.push(repo);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (PathBuf, Vec<Repository>)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}
