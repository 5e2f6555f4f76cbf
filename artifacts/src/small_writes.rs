//! Small whole-value writes on the local disk (result records, settings), done in one blocking
//! call, and the *deferred sync* that takes their `fsync` off the caller's path.
//!
//! A deferred write is renamed into place before it returns: every process sees it at once and
//! it survives any process crash (the page cache belongs to the kernel). Only a machine crash
//! (power loss, kernel panic) can lose it, until [`DeferredSyncs::sync`] has flushed the file
//! and the directory entries that name it. The scheduler calls that on a short interval, the
//! same trade as Redis' `appendfsync everysec`; see `docs/durability.md`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::ArtifactError;
use crate::store::temporary_sibling;

/// Writes `bytes` to `dest` through a temporary sibling renamed into place, creating missing
/// parent directories. With `sync`, the file is synced before the rename. Returns the
/// directories whose entries changed (the parent and the parents of created directories),
/// which must be synced too before the write survives a machine crash.
pub(crate) fn write_whole(dest: &Path, bytes: &[u8], sync: bool) -> std::io::Result<Vec<PathBuf>> {
    let mut changed_dirs = Vec::new();
    if let Some(parent) = dest.parent() {
        let mut missing = parent;
        while !missing.as_os_str().is_empty() && !missing.exists() {
            if let Some(above) = missing.parent() {
                changed_dirs.push(above.to_path_buf());
                missing = above;
            } else {
                break;
            }
        }
        std::fs::create_dir_all(parent)?;
        changed_dirs.push(parent.to_path_buf());
    }
    let temp = temporary_sibling(dest);
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        std::fs::rename(&temp, dest)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map(|()| changed_dirs)
}

/// Files and directories written since the last [`DeferredSyncs::sync`].
#[derive(Debug, Default)]
pub(crate) struct DeferredSyncs {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    files: BTreeSet<PathBuf>,
    dirs: BTreeSet<PathBuf>,
}

impl DeferredSyncs {
    /// Remembers a deferred write of `file` that changed `dirs`.
    pub(crate) fn add(&self, file: PathBuf, dirs: Vec<PathBuf>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.files.insert(file);
        pending.dirs.extend(dirs);
    }

    /// How many files wait for a sync.
    pub(crate) fn len(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .files
            .len()
    }

    /// Syncs every file, then every directory, written so far (blocking). What could not be
    /// synced stays pending for the next call; a file deleted meanwhile needs no sync.
    pub(crate) fn sync(&self) -> Result<usize, ArtifactError> {
        let Pending { files, dirs } =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let count = files.len();
        let result = sync_paths(&files).and_then(|()| sync_paths(&dirs));
        if let Err(err) = result {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.files.extend(files);
            pending.dirs.extend(dirs);
            return Err(err);
        }
        Ok(count)
    }
}

fn sync_paths(paths: &BTreeSet<PathBuf>) -> Result<(), ArtifactError> {
    for path in paths {
        match File::open(path).and_then(|file| file.sync_all()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(ArtifactError::io(format!("sync {}", path.display()), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_write_creates_its_directories_and_names_every_changed_one() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b/c.json");
        let changed = write_whole(&dest, b"{}", false).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"{}");
        assert!(changed.contains(&dir.path().to_path_buf()));
        assert!(changed.contains(&dir.path().join("a")));
        assert!(changed.contains(&dir.path().join("a/b")));
        // A second write into the same directory changes only that directory.
        let changed = write_whole(&dir.path().join("a/b/d.json"), b"[]", true).unwrap();
        assert_eq!(changed, vec![dir.path().join("a/b")]);
    }

    #[test]
    fn a_sync_empties_the_pending_set_and_skips_files_deleted_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let syncs = DeferredSyncs::default();
        for name in ["x.json", "y.json"] {
            let dest = dir.path().join(name);
            let dirs = write_whole(&dest, b"1", false).unwrap();
            syncs.add(dest, dirs);
        }
        std::fs::remove_file(dir.path().join("y.json")).unwrap();
        assert_eq!(syncs.len(), 2);
        assert_eq!(syncs.sync().unwrap(), 2);
        assert_eq!(syncs.len(), 0);
        assert_eq!(syncs.sync().unwrap(), 0);
    }
}
