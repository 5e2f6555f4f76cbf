//! The storage trait every backend implements, with the streaming helpers built on it.

use crate::error::ArtifactError;
use crate::key::{ArtifactKey, ArtifactPrefix};
use futures_util::future::BoxFuture;
use std::path::Path;
use std::pin::Pin;
use std::time::SystemTime;
use tokio::io::AsyncRead;

/// A streaming reader over one stored object.
pub type ArtifactReader = Pin<Box<dyn AsyncRead + Send>>;

/// One object found by [`ArtifactStore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// The name relative to the listed prefix (may contain `/`).
    pub name: String,
    pub size: u64,
}

/// What [`ArtifactStore::remove_older_than`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub objects: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for Removed {
    fn add_assign(&mut self, other: Removed) {
        self.objects += other.objects;
        self.bytes += other.bytes;
    }
}

/// Names (relative to the swept prefix) that [`ArtifactStore::remove_older_than`] must keep.
pub type KeepFilter<'a> = &'a (dyn Fn(&str) -> bool + Send + Sync);

/// A place to keep artifacts. Writes are atomic (readers never see a partial object) and
/// idempotent (writing an existing key replaces it).
pub trait ArtifactStore: Send + Sync {
    /// Streams `reader` into `key`; returns the number of bytes stored.
    fn put_reader<'a>(
        &'a self,
        key: &'a ArtifactKey,
        reader: ArtifactReader,
    ) -> BoxFuture<'a, Result<u64, ArtifactError>>;

    /// Opens `key` for streaming reads; [`ArtifactError::NotFound`] when absent.
    fn get_reader<'a>(
        &'a self,
        key: &'a ArtifactKey,
    ) -> BoxFuture<'a, Result<ArtifactReader, ArtifactError>>;

    /// The size of `key`, or `None` when it does not exist.
    fn size<'a>(
        &'a self,
        key: &'a ArtifactKey,
    ) -> BoxFuture<'a, Result<Option<u64>, ArtifactError>>;

    /// Every object under `prefix`, sorted by name.
    fn list<'a>(
        &'a self,
        prefix: &'a ArtifactPrefix,
    ) -> BoxFuture<'a, Result<Vec<StoredObject>, ArtifactError>>;

    /// A short description for logs (`disk:/path`, `s3://bucket/prefix`).
    fn describe(&self) -> String;

    /// Deletes `key`; `false` when it did not exist.
    fn delete<'a>(&'a self, key: &'a ArtifactKey) -> BoxFuture<'a, Result<bool, ArtifactError>>;

    /// Deletes every object under `prefix` last written before `cutoff`, except those whose
    /// name (relative to `prefix`) `keep` claims. Works through the listing page by page, so
    /// memory stays bounded whatever the store holds (retention).
    fn remove_older_than<'a>(
        &'a self,
        prefix: &'a ArtifactPrefix,
        cutoff: SystemTime,
        keep: KeepFilter<'a>,
    ) -> BoxFuture<'a, Result<Removed, ArtifactError>>;

    /// Uploads a local file, streaming.
    fn put_file<'a>(
        &'a self,
        key: &'a ArtifactKey,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<u64, ArtifactError>> {
        Box::pin(async move {
            let opened = tokio::fs::File::open(file)
                .await
                .map_err(|e| ArtifactError::io(format!("open {}", file.display()), e))?;
            self.put_reader(key, Box::pin(opened)).await
        })
    }

    /// Stores a small in-memory value (result records, short logs).
    fn put_bytes<'a>(
        &'a self,
        key: &'a ArtifactKey,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, ArtifactError>> {
        Box::pin(async move {
            self.put_reader(key, Box::pin(std::io::Cursor::new(bytes)))
                .await
        })
    }

    /// Stores a small value that every process sees at once and that survives any process
    /// crash, but that a machine crash may lose until the next
    /// [`ArtifactStore::sync_deferred`]. Backends whose writes are durable when they return
    /// (S3) keep this default, a plain [`ArtifactStore::put_bytes`].
    fn put_bytes_deferred<'a>(
        &'a self,
        key: &'a ArtifactKey,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, ArtifactError>> {
        self.put_bytes(key, bytes)
    }

    /// Makes every [`ArtifactStore::put_bytes_deferred`] write so far durable; returns how
    /// many objects it synced.
    fn sync_deferred(&self) -> BoxFuture<'_, Result<usize, ArtifactError>> {
        Box::pin(async { Ok(0) })
    }

    /// Downloads `key` into `dest` (written to a temporary sibling, then renamed).
    fn get_to_file<'a>(
        &'a self,
        key: &'a ArtifactKey,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<u64, ArtifactError>> {
        Box::pin(async move {
            let reader = self.get_reader(key).await?;
            write_atomically(reader, dest, &format!("download {key}")).await
        })
    }

    /// Reads a small object whole (result records); refuses objects over `limit` bytes.
    fn get_bytes<'a>(
        &'a self,
        key: &'a ArtifactKey,
        limit: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, ArtifactError>> {
        Box::pin(async move {
            use tokio::io::AsyncReadExt;
            let reader = self.get_reader(key).await?;
            let mut bytes = Vec::new();
            reader
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| ArtifactError::io(format!("read {key}"), e))?;
            if bytes.len() as u64 > limit {
                return Err(ArtifactError::io(
                    format!("read {key}"),
                    std::io::Error::other(format!("larger than {limit} bytes")),
                ));
            }
            Ok(bytes)
        })
    }

    /// Whether `key` exists.
    fn exists<'a>(&'a self, key: &'a ArtifactKey) -> BoxFuture<'a, Result<bool, ArtifactError>> {
        Box::pin(async move { Ok(self.size(key).await?.is_some()) })
    }
}

/// Streams `reader` into `dest` through a temporary sibling that is synced and renamed into
/// place, so readers never see a partial file; the temporary file is removed on failure.
/// `what` names the copy in errors (e.g. `download <key>`).
pub(crate) async fn write_atomically(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    dest: &Path,
    what: &str,
) -> Result<u64, ArtifactError> {
    let temp = temporary_sibling(dest);
    let result = async {
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| ArtifactError::io(format!("create {}", temp.display()), e))?;
        let copied = tokio::io::copy(&mut reader, &mut file)
            .await
            .map_err(|e| ArtifactError::io(what.to_string(), e))?;
        file.sync_all()
            .await
            .map_err(|e| ArtifactError::io(format!("sync {}", temp.display()), e))?;
        tokio::fs::rename(&temp, dest)
            .await
            .map_err(|e| ArtifactError::io(format!("rename to {}", dest.display()), e))?;
        Ok(copied)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

/// `dir/.name.partial-<random>` next to `path`.
pub(crate) fn temporary_sibling(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: u64 = rand::random();
    path.with_file_name(format!(".{name}.partial-{nonce:016x}"))
}
