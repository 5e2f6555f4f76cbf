//! The repo store: which repos the server watches and where their objects live.
//!
//! - **Local** back end: every repo below `path_to_repos` (nested names like `group/name`),
//!   read in place with libgit2; "fetching" is a no-op, new commits appear as soon as they are
//!   pushed there.
//! - **Remote** back ends (GitHub, GitLab): each repo is mirrored as a bare repo under
//!   `data_dir/git/<name>.git` and updated with `git fetch --prune <url>
//!   +refs/heads/*:refs/heads/*` (the `git` command line, because libgit2 is built here
//!   without https/ssh). The clone URL holds no credentials; see [`super::credentials`].
//!
//! Commits referenced by pins can be kept readable with [`RepoStore::keep_commit`], which
//! writes a `refs/test-looper/keep/<hash>` ref that prunes and `gc` leave alone.

use super::credentials::GitCredentials;
use super::{discovery, GitError};
use git2::{Oid, Repository};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Ref namespace of commits kept readable for pins.
pub const KEEP_REF_PREFIX: &str = "refs/test-looper/keep/";

/// Where one repo's objects come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoOrigin {
    /// A repo on the server's disk, read in place.
    Local { path: PathBuf },
    /// A remote repo mirrored into `mirror` from `clone_url` (no credentials in it).
    Remote { clone_url: String, mirror: PathBuf },
}

/// The configured back end.
#[derive(Debug, Clone)]
enum Backend {
    Local { root: PathBuf },
    Remote { mirrors: PathBuf },
}

/// The set of watched repos and access to their objects.
#[derive(Debug)]
pub struct RepoStore {
    backend: Backend,
    repos: RwLock<BTreeMap<String, RepoOrigin>>,
    credentials: GitCredentials,
}

impl RepoStore {
    /// A store over every repo below `root`, discovered by [`RepoStore::refresh_local`].
    pub fn local(root: &Path) -> Self {
        RepoStore {
            backend: Backend::Local {
                root: root.to_path_buf(),
            },
            repos: RwLock::new(BTreeMap::new()),
            credentials: GitCredentials::default(),
        }
    }

    /// A store of remote repos mirrored under `data_dir/git`, named by
    /// [`RepoStore::set_remote_repos`].
    pub fn remote(data_dir: &Path, credentials: GitCredentials) -> Self {
        RepoStore {
            backend: Backend::Remote {
                mirrors: data_dir.join("git"),
            },
            repos: RwLock::new(BTreeMap::new()),
            credentials,
        }
    }

    /// True for the local back end.
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local { .. })
    }

    /// Credentials used for network fetches and pushes.
    pub fn credentials(&self) -> &GitCredentials {
        &self.credentials
    }

    /// Re-reads the repos below `path_to_repos` (local back end); returns the names.
    pub fn refresh_local(&self) -> Result<Vec<String>, GitError> {
        let Backend::Local { root } = &self.backend else {
            return Ok(self.repo_names());
        };
        let found = discovery::discover(root)?;
        let mut repos = BTreeMap::new();
        for repo in found {
            repos.insert(repo.name, RepoOrigin::Local { path: repo.path });
        }
        let names = repos.keys().cloned().collect();
        *self.repos.write().unwrap_or_else(|e| e.into_inner()) = repos;
        Ok(names)
    }

    /// Replaces the list of remote repos: `(name, clone_url)` pairs (remote back ends).
    pub fn set_remote_repos(&self, repos: impl IntoIterator<Item = (String, String)>) {
        let Backend::Remote { mirrors } = &self.backend else {
            return;
        };
        let mut map = BTreeMap::new();
        for (name, clone_url) in repos {
            if !is_safe_repo_name(&name) {
                tracing::warn!(repo = %name, "ignoring repo with an unsafe name");
                continue;
            }
            let mirror = mirrors.join(format!("{name}.git"));
            map.insert(name, RepoOrigin::Remote { clone_url, mirror });
        }
        *self.repos.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// Every known repo name, sorted.
    pub fn repo_names(&self) -> Vec<String> {
        self.read_repos().keys().cloned().collect()
    }

    /// Whether `name` is a known repo.
    pub fn contains(&self, name: &str) -> bool {
        self.read_repos().contains_key(name)
    }

    /// Where `name`'s objects come from.
    pub fn origin(&self, name: &str) -> Result<RepoOrigin, GitError> {
        self.read_repos()
            .get(name)
            .cloned()
            .ok_or_else(|| GitError::UnknownRepo(name.to_owned()))
    }

    /// Opens `name` with libgit2 (the local repo, or the mirror once it has been fetched).
    pub fn open(&self, name: &str) -> Result<Repository, GitError> {
        let path = match self.origin(name)? {
            RepoOrigin::Local { path } => path,
            RepoOrigin::Remote { mirror, .. } => mirror,
        };
        Repository::open(&path).map_err(|e| GitError::git(name, e))
    }

    /// Brings the mirror of `name` up to date (creating it first); a no-op for local repos.
    pub fn fetch(&self, name: &str) -> Result<(), GitError> {
        let RepoOrigin::Remote { clone_url, mirror } = self.origin(name)? else {
            return Ok(());
        };
        if !mirror.join("HEAD").exists() {
            std::fs::create_dir_all(&mirror)?;
            Repository::init_bare(&mirror).map_err(|e| GitError::git(name, e))?;
        }
        let started = std::time::Instant::now();
        let output = self
            .credentials
            .git_command()
            .arg("--git-dir")
            .arg(&mirror)
            .args(["fetch", "--prune", "--quiet", "--no-tags", "--"])
            .arg(&clone_url)
            .arg("+refs/heads/*:refs/heads/*")
            .output()?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(GitError::Fetch {
                repo: name.to_owned(),
                message: self.credentials.redact(stderr.trim()),
            });
        }
        tracing::debug!(repo = %name, elapsed_ms = started.elapsed().as_millis() as u64, "fetched");
        Ok(())
    }

    /// Pushes `commit` to `branch` of `name` as a fast-forward only, when the branch is still
    /// at `expected_old` (`None`: the branch must not exist).
    pub fn push_fast_forward(
        &self,
        name: &str,
        branch: &str,
        expected_old: Option<Oid>,
        commit: Oid,
    ) -> Result<(), GitError> {
        let refname = format!("refs/heads/{branch}");
        match self.origin(name)? {
            RepoOrigin::Local { .. } => {
                let repo = self.open(name)?;
                let result = match expected_old {
                    Some(old) => repo
                        .reference_matching(&refname, commit, true, old, "test-looper pin update")
                        .map(|_| ()),
                    None => repo
                        .reference(&refname, commit, false, "test-looper pin update")
                        .map(|_| ()),
                };
                result.map_err(|e| GitError::Push {
                    repo: name.to_owned(),
                    message: e.message().to_owned(),
                })
            }
            RepoOrigin::Remote { clone_url, mirror } => {
                let output = self
                    .credentials
                    .git_command()
                    .arg("--git-dir")
                    .arg(&mirror)
                    .args(["push", "--quiet", "--porcelain"])
                    .arg(format!(
                        "--force-with-lease={refname}:{}",
                        expected_old.map(|o| o.to_string()).unwrap_or_default()
                    ))
                    .arg("--")
                    .arg(&clone_url)
                    .arg(format!("{commit}:{refname}"))
                    .output()?;
                if !output.status.success() {
                    let text = format!(
                        "{}{}",
                        String::from_utf8_lossy(&output.stdout),
                        String::from_utf8_lossy(&output.stderr)
                    );
                    return Err(GitError::Push {
                        repo: name.to_owned(),
                        message: self.credentials.redact(text.trim()),
                    });
                }
                Ok(())
            }
        }
    }

    /// Keeps `commit` of `name` readable even when no branch reaches it any more.
    pub fn keep_commit(&self, name: &str, commit: Oid) -> Result<(), GitError> {
        let repo = self.open(name)?;
        repo.reference(
            &format!("{KEEP_REF_PREFIX}{commit}"),
            commit,
            true,
            "test-looper: pinned commit",
        )
        .map_err(|e| GitError::git(name, e))?;
        Ok(())
    }

    fn read_repos(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, RepoOrigin>> {
        self.repos.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The shared definitions source reads repos through the store.
impl test_looper_git::RepoOpener for RepoStore {
    fn open_repo(&self, name: &str) -> Result<Repository, GitError> {
        self.open(name)
    }
}

/// Repo names from listings become directory names: no `..`, no absolute paths, no empty
/// segments, no hidden segments.
pub fn is_safe_repo_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_rejected() {
        assert!(is_safe_repo_name("group/sub/proj-1"));
        for bad in ["", "../x", "a//b", "/abs", "a/.git", "a b"] {
            assert!(!is_safe_repo_name(bad), "{bad}");
        }
    }
}
