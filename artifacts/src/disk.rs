//! The local-directory backend: `<root>/<key>`, written through a temporary file and renamed.

use crate::error::ArtifactError;
use crate::key::{ArtifactKey, ArtifactPrefix};
use crate::small_writes::{write_whole, DeferredSyncs};
use crate::store::{
    write_atomically, ArtifactReader, ArtifactStore, KeepFilter, Removed, StoredObject,
};
use futures_util::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Artifacts in a directory.
#[derive(Clone, Debug)]
pub struct DiskStore {
    root: PathBuf,
    /// Deferred writes not yet synced (shared by clones).
    deferred: Arc<DeferredSyncs>,
}

impl DiskStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            deferred: Arc::default(),
        }
    }

    /// How many deferred writes wait for [`ArtifactStore::sync_deferred`].
    pub fn unsynced(&self) -> usize {
        self.deferred.len()
    }

    /// Writes a small value whole in one blocking call (one thread hop instead of five).
    async fn put_whole(
        &self,
        key: &ArtifactKey,
        bytes: Vec<u8>,
        sync: bool,
    ) -> Result<(u64, Vec<PathBuf>, PathBuf), ArtifactError> {
        let dest = self.path_of(key.as_str());
        let len = bytes.len() as u64;
        let what = format!("write {key}");
        tokio::task::spawn_blocking(move || {
            write_whole(&dest, &bytes, sync)
                .map(|dirs| (len, dirs, dest))
                .map_err(|e| ArtifactError::io(what, e))
        })
        .await
        .map_err(|e| ArtifactError::io(format!("write {key}"), std::io::Error::other(e)))?
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, relative: &str) -> PathBuf {
        // Keys are validated segment by segment, so joining cannot leave `root`.
        relative
            .split('/')
            .fold(self.root.clone(), |path, part| path.join(part))
    }
}

impl ArtifactStore for DiskStore {
    fn put_reader<'a>(
        &'a self,
        key: &'a ArtifactKey,
        reader: ArtifactReader,
    ) -> BoxFuture<'a, Result<u64, ArtifactError>> {
        Box::pin(async move {
            let dest = self.path_of(key.as_str());
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| ArtifactError::io(format!("create {}", parent.display()), e))?;
            }
            write_atomically(reader, &dest, &format!("write {key}")).await
        })
    }

    fn put_bytes<'a>(
        &'a self,
        key: &'a ArtifactKey,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, ArtifactError>> {
        Box::pin(async move { Ok(self.put_whole(key, bytes, true).await?.0) })
    }

    fn put_bytes_deferred<'a>(
        &'a self,
        key: &'a ArtifactKey,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, ArtifactError>> {
        Box::pin(async move {
            let (len, dirs, dest) = self.put_whole(key, bytes, false).await?;
            self.deferred.add(dest, dirs);
            Ok(len)
        })
    }

    fn sync_deferred(&self) -> BoxFuture<'_, Result<usize, ArtifactError>> {
        let deferred = Arc::clone(&self.deferred);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || deferred.sync())
                .await
                .map_err(|e| ArtifactError::io("sync deferred writes", std::io::Error::other(e)))?
        })
    }

    fn get_reader<'a>(
        &'a self,
        key: &'a ArtifactKey,
    ) -> BoxFuture<'a, Result<ArtifactReader, ArtifactError>> {
        Box::pin(async move {
            let path = self.path_of(key.as_str());
            match tokio::fs::File::open(&path).await {
                Ok(file) => Ok(Box::pin(file) as ArtifactReader),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(ArtifactError::NotFound(key.to_string()))
                }
                Err(e) => Err(ArtifactError::io(format!("open {}", path.display()), e)),
            }
        })
    }

    fn size<'a>(
        &'a self,
        key: &'a ArtifactKey,
    ) -> BoxFuture<'a, Result<Option<u64>, ArtifactError>> {
        Box::pin(async move {
            let path = self.path_of(key.as_str());
            match tokio::fs::metadata(&path).await {
                Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ArtifactError::io(format!("stat {}", path.display()), e)),
            }
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a ArtifactPrefix,
    ) -> BoxFuture<'a, Result<Vec<StoredObject>, ArtifactError>> {
        Box::pin(async move {
            let base = self.path_of(prefix.as_str());
            let mut found = Vec::new();
            let mut pending = vec![(base.clone(), String::new())];
            while let Some((dir, relative)) = pending.pop() {
                let mut entries = match tokio::fs::read_dir(&dir).await {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(ArtifactError::io(format!("list {}", dir.display()), e)),
                };
                while let Some(entry) = entries
                    .next_entry()
                    .await
                    .map_err(|e| ArtifactError::io(format!("list {}", dir.display()), e))?
                {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') && name.contains(".partial-") {
                        continue;
                    }
                    let child = if relative.is_empty() {
                        name
                    } else {
                        format!("{relative}/{name}")
                    };
                    let meta = entry
                        .metadata()
                        .await
                        .map_err(|e| ArtifactError::io(format!("stat {child}"), e))?;
                    if meta.is_dir() {
                        pending.push((entry.path(), child));
                    } else if meta.is_file() {
                        found.push(StoredObject {
                            name: child,
                            size: meta.len(),
                        });
                    }
                }
            }
            found.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(found)
        })
    }

    fn describe(&self) -> String {
        format!("disk:{}", self.root.display())
    }

    fn delete<'a>(&'a self, key: &'a ArtifactKey) -> BoxFuture<'a, Result<bool, ArtifactError>> {
        Box::pin(async move {
            let path = self.path_of(key.as_str());
            match tokio::fs::remove_file(&path).await {
                // The directory stays: a writer may be about to put a file in it.
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(ArtifactError::io(format!("delete {}", path.display()), e)),
            }
        })
    }

    fn remove_older_than<'a>(
        &'a self,
        prefix: &'a ArtifactPrefix,
        cutoff: SystemTime,
        keep: KeepFilter<'a>,
    ) -> BoxFuture<'a, Result<Removed, ArtifactError>> {
        Box::pin(async move {
            let base = self.path_of(prefix.as_str());
            let mut removed = Removed::default();
            // Directories that were older than the cutoff when visited, in visiting order:
            // the emptied ones are removed deepest first. A recent directory is left alone,
            // as a writer may be about to put its first file in it.
            let mut visited = Vec::new();
            let mut pending = vec![(base.clone(), String::new())];
            while let Some((dir, relative)) = pending.pop() {
                // Before anything in it is deleted (which makes it recent).
                let dir_old = tokio::fs::symlink_metadata(&dir)
                    .await
                    .and_then(|meta| meta.modified())
                    .is_ok_and(|modified| modified < cutoff);
                let mut entries = match tokio::fs::read_dir(&dir).await {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(ArtifactError::io(format!("list {}", dir.display()), e)),
                };
                while let Some(entry) = entries
                    .next_entry()
                    .await
                    .map_err(|e| ArtifactError::io(format!("list {}", dir.display()), e))?
                {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let child = if relative.is_empty() {
                        name
                    } else {
                        format!("{relative}/{name}")
                    };
                    // Not following symlinks: a link is removed like a file, never entered.
                    let meta = match tokio::fs::symlink_metadata(entry.path()).await {
                        Ok(meta) => meta,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(ArtifactError::io(format!("stat {child}"), e)),
                    };
                    if meta.is_dir() {
                        pending.push((entry.path(), child));
                        continue;
                    }
                    let old = meta.modified().map(|m| m < cutoff).unwrap_or(false);
                    if !old || keep(&child) {
                        continue;
                    }
                    match tokio::fs::remove_file(entry.path()).await {
                        Ok(()) => {
                            removed.objects += 1;
                            removed.bytes += meta.len();
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(ArtifactError::io(format!("delete {child}"), e)),
                    }
                }
                if dir_old {
                    visited.push(dir);
                }
            }
            for dir in visited.iter().rev() {
                if *dir != base {
                    // Fails (harmlessly) while the directory still holds something.
                    let _ = tokio::fs::remove_dir(dir).await;
                }
            }
            Ok(removed)
        })
    }
}
