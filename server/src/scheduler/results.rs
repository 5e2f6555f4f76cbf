//! Durable result records: every finished run is written to artifact storage as one JSON
//! document, plus one small document of user settings, so an empty Redis can be rebuilt
//! with nothing lost. [`ArtifactResultStore`] keeps them in the install's artifact store
//! (local disk or S3), next to the artifacts:
//!
//! ```text
//! scheduler/results/<test hash>/<run id>.json   one ResultRecord per finished run
//! scheduler/settings.json                       UserSettings
//! ```
//!
//! Artifact stores write atomically, so a reader never sees a partial document and a rewrite
//! (e.g. a run cleared by "restart test") replaces the old one whole.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use test_looper_artifacts::{ArtifactError, ArtifactKey, ArtifactPrefix, ArtifactStore, DiskStore};
use test_looper_core::scheduling::{ResultRecord, UserSettings};
use thiserror::Error;

/// A storage failure.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("result store: {0}")]
    Storage(#[from] ArtifactError),
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
    /// How often [`ResultStore::sync`] must run, when result writes are acknowledged before
    /// they are synced (`None`: each write is durable when it returns).
    fn sync_interval(&self) -> Option<Duration> {
        None
    }
    /// Makes every result written so far durable; returns how many it synced.
    fn sync(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async { Ok(0) })
    }
}

/// Result records in an artifact store.
#[derive(Clone)]
pub struct ArtifactResultStore {
    store: Arc<dyn ArtifactStore>,
    /// `Some`: records are written with [`ArtifactStore::put_bytes_deferred`] and synced this
    /// often by the scheduler (see `docs/durability.md`).
    deferred_sync: Option<Duration>,
}

/// The largest result document read back (records are a few KB).
const MAX_DOCUMENT_BYTES: u64 = 16 * 1024 * 1024;

const SETTINGS: &str = "settings.json";

impl ArtifactResultStore {
    /// Records synced one by one before each write returns.
    pub fn new(store: Arc<dyn ArtifactStore>) -> ArtifactResultStore {
        ArtifactResultStore {
            store,
            deferred_sync: None,
        }
    }

    /// Records acknowledged once every process can read them (they survive any process
    /// crash) and synced to the disk within `interval` (a machine crash can lose at most
    /// that much). A zero interval keeps each write synced before it returns.
    pub fn with_deferred_sync(mut self, interval: Duration) -> ArtifactResultStore {
        self.deferred_sync = (!interval.is_zero()).then_some(interval);
        self
    }

    /// Records in a local directory (an artifact store rooted there).
    pub fn local(root: impl Into<PathBuf>) -> ArtifactResultStore {
        Self::new(Arc::new(DiskStore::new(root)))
    }

    fn result_key(record: &ResultRecord) -> Result<ArtifactKey, ArtifactError> {
        ArtifactKey::scheduler(&format!(
            "results/{}/{}.json",
            record.run.test_hash, record.run.run_id
        ))
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &ArtifactKey,
    ) -> Result<Option<T>, StoreError> {
        match self.store.get_bytes(key, MAX_DOCUMENT_BYTES).await {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StoreError::Corrupt {
                        path: key.to_string(),
                        source,
                    })
            }
            Err(ArtifactError::NotFound(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}

impl ResultStore for ArtifactResultStore {
    fn write_result<'a>(
        &'a self,
        record: &'a ResultRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let bytes =
                serde_json::to_vec(record).map_err(|err| StoreError::Other(err.to_string()))?;
            let key = Self::result_key(record)?;
            if self.deferred_sync.is_some() {
                self.store.put_bytes_deferred(&key, bytes).await?;
            } else {
                self.store.put_bytes(&key, bytes).await?;
            }
            Ok(())
        })
    }

    fn list_results(&self) -> BoxFuture<'_, Result<Vec<ResultRecord>, StoreError>> {
        Box::pin(async move {
            let prefix = ArtifactPrefix::scheduler("results")?;
            let mut records = Vec::new();
            for object in self.store.list(&prefix).await? {
                if !object.name.ends_with(".json") {
                    continue;
                }
                let key = ArtifactKey::scheduler(&format!("results/{}", object.name))?;
                if let Some(record) = self.read_json(&key).await? {
                    records.push(record);
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
            self.store
                .put_bytes(&ArtifactKey::scheduler(SETTINGS)?, bytes)
                .await?;
            Ok(())
        })
    }

    fn read_settings(&self) -> BoxFuture<'_, Result<Option<UserSettings>, StoreError>> {
        Box::pin(async move { self.read_json(&ArtifactKey::scheduler(SETTINGS)?).await })
    }

    fn sync_interval(&self) -> Option<Duration> {
        self.deferred_sync
    }

    fn sync(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move { Ok(self.store.sync_deferred().await?) })
    }
}
