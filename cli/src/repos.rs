//! The repos `tl` reads: the checkout it runs in, plus referenced repos found by name under a
//! directory (`DIR/<name>` or `DIR/<name>.git`, where names may contain `/`). Reading them is
//! `test_looper_git`'s [`GitDefinitionsSource`], the server's reader.

use std::path::{Path, PathBuf};

use git2::Repository;
use test_looper_git::{DefinitionsCaches, GitDefinitionsSource, GitError, RepoOpener};

/// Referenced repos by name under an optional directory.
pub struct ReposDir {
    dir: Option<PathBuf>,
}

impl ReposDir {
    pub fn new(dir: Option<PathBuf>) -> Self {
        ReposDir { dir }
    }

    /// The definitions source over the checkout (named `checkout_name`) and this directory.
    pub fn source<'a>(
        &'a self,
        caches: &'a DefinitionsCaches,
        checkout_name: &str,
        checkout: Repository,
    ) -> GitDefinitionsSource<'a> {
        GitDefinitionsSource::new(self, caches).with_open_repo(checkout_name, checkout)
    }
}

impl RepoOpener for ReposDir {
    fn open_repo(&self, name: &str) -> Result<Repository, GitError> {
        self.dir
            .as_deref()
            .and_then(|dir| open_named(dir, name))
            .ok_or_else(|| GitError::UnknownRepo(name.to_owned()))
    }
}

fn open_named(dir: &Path, name: &str) -> Option<Repository> {
    if name
        .split('/')
        .any(|segment| segment == ".." || segment.is_empty())
    {
        return None;
    }
    Repository::open(dir.join(name))
        .ok()
        .or_else(|| Repository::open(dir.join(format!("{name}.git"))).ok())
}
