//! Deterministic source tarballs (`.tar.gz`) of a commit or of one of its subdirectories,
//! for workers' source dependencies. The same (commit, path) always gives the same bytes:
//! entries in tree order, owner 0:0, mtime = committer time, modes 0644/0755, symlinks kept,
//! submodules skipped, gzip header without name or time. Archives are cached on disk under
//! `<cache dir>/<commit>/<sha256(path)>.tar.gz`, streamed to a temporary file while they are
//! built (never whole in memory) and renamed into place.
//!
//! The cache has a size budget (`retention.tarball_cache_max_bytes`, L6): after each new
//! tarball the least recently served ones are removed until the cache fits again (the new one
//! always stays). Use is tracked in memory; at the first use the files' modification times
//! give the order.

use super::{files, GitError};
use flate2::{Compression, GzBuilder};
use git2::{ObjectType, Oid, Repository, Tree};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The default size budget of the cache.
pub const DEFAULT_BUDGET_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// The on-disk cache of source tarballs.
#[derive(Debug, Clone)]
pub struct TarballCache {
    dir: PathBuf,
    index: Arc<Mutex<CacheIndex>>,
}

/// What the cache holds, with the order of last use.
#[derive(Debug)]
struct CacheIndex {
    budget: u64,
    loaded: bool,
    entries: HashMap<PathBuf, CacheEntry>,
    total: u64,
    clock: u64,
}

#[derive(Debug, Clone, Copy)]
struct CacheEntry {
    size: u64,
    last_used: u64,
}

impl CacheIndex {
    fn touch(&mut self, path: &Path, size: u64) {
        self.clock += 1;
        let last_used = self.clock;
        match self.entries.get_mut(path) {
            Some(entry) => {
                self.total = self.total - entry.size + size;
                *entry = CacheEntry { size, last_used };
            }
            None => {
                self.total += size;
                self.entries
                    .insert(path.to_path_buf(), CacheEntry { size, last_used });
            }
        }
    }

    fn forget(&mut self, path: &Path) {
        if let Some(entry) = self.entries.remove(path) {
            self.total -= entry.size;
        }
    }

    /// The least recently used entries to remove so the cache fits its budget; `keep` stays.
    fn over_budget(&self, keep: &Path) -> Vec<PathBuf> {
        let mut by_age: Vec<(&PathBuf, &CacheEntry)> = self
            .entries
            .iter()
            .filter(|(path, _)| path.as_path() != keep)
            .collect();
        by_age.sort_by_key(|(_, entry)| entry.last_used);
        let mut total = self.total;
        let mut doomed = Vec::new();
        for (path, entry) in by_age {
            if total <= self.budget {
                break;
            }
            total -= entry.size;
            doomed.push(path.clone());
        }
        doomed
    }
}

impl TarballCache {
    pub fn new(dir: &Path) -> Self {
        TarballCache {
            dir: dir.to_path_buf(),
            index: Arc::new(Mutex::new(CacheIndex {
                budget: DEFAULT_BUDGET_BYTES,
                loaded: false,
                entries: HashMap::new(),
                total: 0,
                clock: 0,
            })),
        }
    }

    /// Sets the size budget (bytes); applied from the next tarball built.
    pub fn set_budget(&self, bytes: u64) {
        self.lock().budget = bytes;
    }

    /// Bytes of tarballs in the cache, as far as this process knows.
    pub fn cached_bytes(&self) -> u64 {
        let mut index = self.lock();
        self.load(&mut index);
        index.total
    }

    fn lock(&self) -> MutexGuard<'_, CacheIndex> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads what an earlier life of the server left in the cache, oldest first.
    fn load(&self, index: &mut CacheIndex) {
        if index.loaded {
            return;
        }
        index.loaded = true;
        let mut found = Vec::new();
        for commit_dir in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(commit_dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = file.path();
                let is_tarball = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".tar.gz") && !n.starts_with('.'));
                if let (true, Ok(meta)) = (is_tarball, file.metadata()) {
                    found.push((meta.modified().ok(), path, meta.len()));
                }
            }
        }
        found.sort_by_key(|(modified, _, _)| *modified);
        for (_, path, size) in found {
            index.touch(&path, size);
        }
    }

    /// Where the tarball of (`commit`, `path`) is (or will be) cached.
    pub fn path_for(&self, commit: Oid, path: &str) -> PathBuf {
        let normalized = files::normalize_path(path).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(normalized.as_bytes()));
        self.dir
            .join(commit.to_string())
            .join(format!("{}.tar.gz", &digest[..24]))
    }

    /// The cached tarball of `path` (empty for the whole tree) at `commit`, built on first
    /// use. Fails when the commit is unknown or `path` is not a directory at that commit.
    pub fn tarball(
        &self,
        repo: &Repository,
        repo_name: &str,
        commit: Oid,
        path: &str,
    ) -> Result<PathBuf, GitError> {
        let target = self.path_for(commit, path);
        {
            let mut index = self.lock();
            self.load(&mut index);
            if let Ok(meta) = std::fs::metadata(&target) {
                if meta.is_file() {
                    index.touch(&target, meta.len());
                    return Ok(target);
                }
            }
            index.forget(&target);
        }
        let parent = target.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)?;
        let (temp_path, temp) = tempfile_in(parent)?;
        let written = (|| -> Result<u64, GitError> {
            let mut out = std::io::BufWriter::new(temp);
            write_tarball(repo, repo_name, commit, path, &mut out)?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            let size = file.metadata()?.len();
            std::fs::rename(&temp_path, &target)?;
            Ok(size)
        })();
        let size = match written {
            Ok(size) => size,
            Err(error) => {
                let _ = std::fs::remove_file(&temp_path);
                return Err(error);
            }
        };
        self.evict_for(&target, size);
        Ok(target)
    }

    /// Records the new tarball and removes the least recently used ones over the budget.
    fn evict_for(&self, target: &Path, size: u64) {
        let mut index = self.lock();
        index.touch(target, size);
        for path in index.over_budget(target) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(%error, path = %path.display(), "cannot evict a source tarball");
                    continue;
                }
            }
            index.forget(&path);
            if let Some(commit_dir) = path.parent() {
                // Only succeeds once the commit has no tarball left.
                let _ = std::fs::remove_dir(commit_dir);
            }
        }
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = format!(".tmp-{}-{}", std::process::id(), rand::random::<u64>());
    let path = dir.join(name);
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

/// The `.tar.gz` bytes of `path` at `commit` (tests; the cache streams to a file).
pub fn build_tarball(
    repo: &Repository,
    repo_name: &str,
    commit: Oid,
    path: &str,
) -> Result<Vec<u8>, GitError> {
    let mut bytes = Vec::new();
    write_tarball(repo, repo_name, commit, path, &mut bytes)?;
    Ok(bytes)
}

/// Streams the `.tar.gz` of `path` at `commit` into `out`.
pub fn write_tarball<W: Write>(
    repo: &Repository,
    repo_name: &str,
    commit: Oid,
    path: &str,
    out: W,
) -> Result<(), GitError> {
    let commit_object = repo
        .find_commit(commit)
        .map_err(|_| GitError::UnknownCommit {
            repo: repo_name.to_owned(),
            commit: commit.to_string(),
        })?;
    let mtime = u64::try_from(commit_object.time().seconds()).unwrap_or(0);
    let root = files::commit_tree(repo, repo_name, commit)?;
    let normalized = files::normalize_path(path).ok_or_else(|| GitError::Git {
        repo: repo_name.to_owned(),
        message: format!("invalid path {path:?}"),
    })?;
    let tree = if normalized.is_empty() {
        root
    } else {
        let entry = root
            .get_path(Path::new(&normalized))
            .map_err(|_| GitError::Git {
                repo: repo_name.to_owned(),
                message: format!("no directory {normalized} at {commit}"),
            })?;
        repo.find_tree(entry.id()).map_err(|_| GitError::Git {
            repo: repo_name.to_owned(),
            message: format!("{normalized} is not a directory at {commit}"),
        })?
    };
    let gz = GzBuilder::new().mtime(0).write(out, Compression::default());
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Deterministic);
    append_tree(repo, repo_name, &tree, "", mtime, &mut builder)?;
    let gz = builder.into_inner()?;
    gz.finish()?;
    Ok(())
}

fn append_tree<W: Write>(
    repo: &Repository,
    repo_name: &str,
    tree: &Tree<'_>,
    prefix: &str,
    mtime: u64,
    builder: &mut tar::Builder<W>,
) -> Result<(), GitError> {
    for entry in tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes());
        let path = format!("{prefix}{name}");
        match entry.kind() {
            Some(ObjectType::Tree) => {
                let mut header = base_header(mtime);
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                let sub = repo
                    .find_tree(entry.id())
                    .map_err(|e| GitError::git(repo_name, e))?;
                append_tree(repo, repo_name, &sub, &format!("{path}/"), mtime, builder)?;
            }
            Some(ObjectType::Blob) => {
                let blob = repo
                    .find_blob(entry.id())
                    .map_err(|e| GitError::git(repo_name, e))?;
                let mut header = base_header(mtime);
                if entry.filemode() == 0o120000 {
                    let target = String::from_utf8_lossy(blob.content()).into_owned();
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, &path, target)?;
                } else {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(if entry.filemode() == 0o100755 {
                        0o755
                    } else {
                        0o644
                    });
                    header.set_size(blob.content().len() as u64);
                    builder.append_data(&mut header, &path, blob.content())?;
                }
            }
            // Submodules (commit entries) are not part of the source.
            _ => {}
        }
    }
    Ok(())
}

fn base_header(mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}
