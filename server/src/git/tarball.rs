//! Deterministic source tarballs (`.tar.gz`) of a commit or of one of its subdirectories,
//! for workers' source dependencies. The same (commit, path) always gives the same bytes:
//! entries in tree order, owner 0:0, mtime = committer time, modes 0644/0755, symlinks kept,
//! submodules skipped, gzip header without name or time. Archives are cached on disk under
//! `<cache dir>/<commit>/<sha256(path)>.tar.gz` and written atomically (temp file + rename).

use super::{files, GitError};
use flate2::{Compression, GzBuilder};
use git2::{ObjectType, Oid, Repository, Tree};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The on-disk cache of source tarballs.
#[derive(Debug, Clone)]
pub struct TarballCache {
    dir: PathBuf,
}

impl TarballCache {
    pub fn new(dir: &Path) -> Self {
        TarballCache {
            dir: dir.to_path_buf(),
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
        if target.is_file() {
            return Ok(target);
        }
        let bytes = build_tarball(repo, repo_name, commit, path)?;
        let parent = target.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)?;
        let mut temp = tempfile_in(parent)?;
        temp.1.write_all(&bytes)?;
        temp.1.sync_all()?;
        std::fs::rename(&temp.0, &target)?;
        Ok(target)
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = format!(".tmp-{}-{}", std::process::id(), rand::random::<u64>());
    let path = dir.join(name);
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

/// The `.tar.gz` bytes of `path` at `commit`.
pub fn build_tarball(
    repo: &Repository,
    repo_name: &str,
    commit: Oid,
    path: &str,
) -> Result<Vec<u8>, GitError> {
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
    let gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Deterministic);
    append_tree(repo, repo_name, &tree, "", mtime, &mut builder)?;
    let gz = builder.into_inner()?;
    Ok(gz.finish()?)
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
