//! The local-directory backend: `<root>/<key>`, written through a temporary file and renamed.

use crate::error::ArtifactError;
use crate::key::{ArtifactKey, ArtifactPrefix};
use crate::store::{temporary_sibling, ArtifactReader, ArtifactStore, StoredObject};
use futures_util::future::BoxFuture;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Artifacts in a directory.
#[derive(Clone, Debug)]
pub struct DiskStore {
    root: PathBuf,
}

impl DiskStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
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
        mut reader: ArtifactReader,
    ) -> BoxFuture<'a, Result<u64, ArtifactError>> {
        Box::pin(async move {
            let dest = self.path_of(key.as_str());
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| ArtifactError::io(format!("create {}", parent.display()), e))?;
            }
            let temp = temporary_sibling(&dest);
            let result = async {
                let mut file = tokio::fs::File::create(&temp)
                    .await
                    .map_err(|e| ArtifactError::io(format!("create {}", temp.display()), e))?;
                let copied = tokio::io::copy(&mut reader, &mut file)
                    .await
                    .map_err(|e| ArtifactError::io(format!("write {key}"), e))?;
                file.flush()
                    .await
                    .map_err(|e| ArtifactError::io(format!("flush {key}"), e))?;
                tokio::fs::rename(&temp, &dest)
                    .await
                    .map_err(|e| ArtifactError::io(format!("rename to {}", dest.display()), e))?;
                Ok(copied)
            }
            .await;
            if result.is_err() {
                let _ = tokio::fs::remove_file(&temp).await;
            }
            result
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
}
