//! Durable result records: every finished run is written to artifact storage as one JSON
//! document, plus one small document of user settings, so an empty Redis can be rebuilt
//! with nothing lost. [`ResultStore`] is the seam where the S3 artifact store plugs in;
//! [`LocalResultStore`] keeps them in a directory:
//!
//! ```text
//! <root>/results/<test hash>/<run id>.json   one ResultRecord per finished run
//! <root>/settings.json                       UserSettings
//! ```
//!
//! Every file is written to a temporary name and renamed into place, so a reader never sees
//! a partial document and a rewrite (e.g. a run cleared by "restart test") is atomic.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use test_looper_core::scheduling::{ResultRecord, UserSettings};
use thiserror::Error;

/// A storage failure.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("result store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt result document {path}: {source}")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
    #[error("result store: {0}")]
    Other(String),
}

/// Write, list and read result records and the settings document.
pub trait ResultStore: Send + Sync {
    /// Writes (or atomically replaces) the record of one run.
    fn write_result<'a>(
        &'a self,
        record: &'a ResultRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Every stored record (order unspecified).
    fn list_results(&self) -> BoxFuture<'_, Result<Vec<ResultRecord>, StoreError>>;
    /// Replaces the settings document.
    fn write_settings<'a>(
        &'a self,
        settings: &'a UserSettings,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The settings document, if one was ever written.
    fn read_settings(&self) -> BoxFuture<'_, Result<Option<UserSettings>, StoreError>>;
}

/// Result records in a local directory.
#[derive(Debug, Clone)]
pub struct LocalResultStore {
    root: PathBuf,
}

impl LocalResultStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalResultStore {
        LocalResultStore { root: root.into() }
    }

    fn result_path(&self, record: &ResultRecord) -> PathBuf {
        self.root
            .join("results")
            .join(sanitize(&record.run.test_hash))
            .join(format!("{}.json", sanitize(&record.run.run_id)))
    }
}

/// Keeps path components inside their directory.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    path: path.display().to_string(),
                    source,
                })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error(path)(err)),
    }
}

impl ResultStore for LocalResultStore {
    fn write_result<'a>(
        &'a self,
        record: &'a ResultRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let bytes =
                serde_json::to_vec(record).map_err(|err| StoreError::Other(err.to_string()))?;
            write_atomically(&self.result_path(record), &bytes)
        })
    }

    fn list_results(&self) -> BoxFuture<'_, Result<Vec<ResultRecord>, StoreError>> {
        Box::pin(async move {
            let dir = self.root.join("results");
            let mut records = Vec::new();
            let tests = match std::fs::read_dir(&dir) {
                Ok(tests) => tests,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(records),
                Err(err) => return Err(io_error(&dir)(err)),
            };
            for test in tests {
                let test = test.map_err(io_error(&dir))?.path();
                let runs = std::fs::read_dir(&test).map_err(io_error(&test))?;
                for run in runs {
                    let run = run.map_err(io_error(&test))?.path();
                    if run.extension().is_some_and(|ext| ext == "json") {
                        if let Some(record) = read_json(&run)? {
                            records.push(record);
                        }
                    }
                }
            }
            Ok(records)
        })
    }

    fn write_settings<'a>(
        &'a self,
        settings: &'a UserSettings,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let bytes = serde_json::to_vec_pretty(settings)
                .map_err(|err| StoreError::Other(err.to_string()))?;
            write_atomically(&self.root.join("settings.json"), &bytes)
        })
    }

    fn read_settings(&self) -> BoxFuture<'_, Result<Option<UserSettings>, StoreError>> {
        Box::pin(async move { read_json(&self.root.join("settings.json")) })
    }
}
