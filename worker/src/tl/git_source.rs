//! A [`DefinitionsSource`] over local git repositories (libgit2, no subprocess): the
//! checkout `tl` runs in, plus referenced repos found by name under a directory (`DIR/<name>`,
//! where names may contain `/`). A file over the definitions' size limit is refused from
//! its size in the object header, never read whole (H4).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use git2::{Oid, Repository};
use test_looper_core::definitions::{CommitRef, DefinitionsSource, SourceError};

/// Local repositories by repo name.
pub struct GitSource {
    repos: RefCell<HashMap<String, Option<Rc<Repository>>>>,
    repos_dir: Option<PathBuf>,
}

impl GitSource {
    /// `checkout_name` names the checkout `checkout`; other names are looked up under `repos_dir`.
    pub fn new(checkout_name: &str, checkout: Repository, repos_dir: Option<PathBuf>) -> Self {
        let mut repos = HashMap::new();
        repos.insert(checkout_name.to_owned(), Some(Rc::new(checkout)));
        GitSource {
            repos: RefCell::new(repos),
            repos_dir,
        }
    }

    fn repo(&self, name: &str) -> Result<Rc<Repository>, SourceError> {
        if let Some(found) = self.repos.borrow().get(name) {
            return found.clone().ok_or_else(|| SourceError::UnknownRepo {
                repo: name.to_owned(),
            });
        }
        let opened = self
            .repos_dir
            .as_deref()
            .and_then(|dir| open_named(dir, name))
            .map(Rc::new);
        self.repos
            .borrow_mut()
            .insert(name.to_owned(), opened.clone());
        opened.ok_or_else(|| SourceError::UnknownRepo {
            repo: name.to_owned(),
        })
    }

    fn commit<'r>(
        &self,
        repo: &'r Repository,
        commit: &CommitRef,
    ) -> Result<git2::Commit<'r>, SourceError> {
        let unknown = || SourceError::UnknownCommit {
            repo: commit.repo.clone(),
            commit: commit.commit.clone(),
        };
        let oid = Oid::from_str(&commit.commit).map_err(|_| unknown())?;
        repo.find_commit(oid).map_err(|_| unknown())
    }
}

fn open_named(dir: &Path, name: &str) -> Option<Repository> {
    if name
        .split('/')
        .any(|segment| segment == ".." || segment.is_empty())
    {
        return None;
    }
    let path = dir.join(name);
    Repository::open(&path)
        .ok()
        .or_else(|| Repository::open(dir.join(format!("{name}.git"))).ok())
}

fn other(error: git2::Error) -> SourceError {
    SourceError::Other(error.message().to_owned())
}

/// The id of the tree entry at `path` in `commit`, if any.
fn entry_id(commit: &git2::Commit<'_>, path: &str) -> Result<Option<Oid>, SourceError> {
    let tree = commit.tree().map_err(other)?;
    match tree.get_path(Path::new(path)) {
        Ok(entry) => Ok(Some(entry.id())),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(other(e)),
    }
}

impl DefinitionsSource for GitSource {
    fn list_files(&self, commit: &CommitRef) -> Result<Vec<String>, SourceError> {
        let repo = self.repo(&commit.repo)?;
        let found = self.commit(&repo, commit)?;
        let tree = found.tree().map_err(other)?;
        let mut files = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob) {
                if let Ok(name) = entry.name() {
                    files.push(format!("{dir}{name}"));
                }
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(other)?;
        Ok(files)
    }

    fn read_file(&self, commit: &CommitRef, path: &str) -> Result<Option<String>, SourceError> {
        let repo = self.repo(&commit.repo)?;
        let found = self.commit(&repo, commit)?;
        let Some(id) = entry_id(&found, path)? else {
            return Ok(None);
        };
        // The size from the object header first: a huge blob is never loaded (H4).
        let (size, kind) = repo
            .odb()
            .and_then(|odb| odb.read_header(id))
            .map_err(other)?;
        if kind != git2::ObjectType::Blob {
            return Ok(None);
        }
        SourceError::check_size(path, size as u64)?;
        let Ok(blob) = repo.find_blob(id) else {
            return Ok(None);
        };
        match std::str::from_utf8(blob.content()) {
            Ok(text) => Ok(Some(text.to_owned())),
            Err(_) => Err(SourceError::Other(format!(
                "{path} in {commit} is not UTF-8 text"
            ))),
        }
    }

    fn last_commit_touching(
        &self,
        commit: &CommitRef,
        path: &str,
    ) -> Result<Option<String>, SourceError> {
        let repo = self.repo(&commit.repo)?;
        let mut current = self.commit(&repo, commit)?;
        let path = path.trim_matches('/');
        let Some(mut id) = entry_id(&current, path)? else {
            return Ok(None);
        };
        // Follow first parents while the entry is unchanged (like `git log -n1 -- path`
        // with history simplification along the first-parent line).
        loop {
            let Ok(parent) = current.parent(0) else { break };
            match entry_id(&parent, path)? {
                Some(parent_id) if parent_id == id => {
                    id = parent_id;
                    current = parent;
                }
                _ => break,
            }
        }
        Ok(Some(current.id().to_string()))
    }
}
