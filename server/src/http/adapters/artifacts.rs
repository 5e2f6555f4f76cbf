//! [`ArtifactFiles`] over the artifact store: a run's files are the objects under
//! `runs/<test hash>/<run id>/` ([`ArtifactPrefix::run`]): its declared artifacts (tarballs),
//! kept output files, individual test logs and `test_looper_log.txt`. Downloads stream,
//! never read whole.

use super::super::read_model::{ArtifactDownload, ArtifactFiles, ReadError, StoredFile};
use crate::AppContext;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use test_looper_artifacts::{ArtifactError, ArtifactKey, ArtifactPrefix, ArtifactStore};

/// Downloads from the configured artifact store.
pub struct StoredArtifacts {
    context: Arc<AppContext>,
}

impl StoredArtifacts {
    pub fn new(context: Arc<AppContext>) -> Self {
        StoredArtifacts { context }
    }
}

fn read_error(err: ArtifactError) -> ReadError {
    match err {
        ArtifactError::NotFound(what) => ReadError::NotFound(what),
        ArtifactError::InvalidKey { .. } => ReadError::NotFound(err.to_string()),
        other => ReadError::Unavailable(other.to_string()),
    }
}

impl StoredArtifacts {
    fn store(&self) -> Result<&Arc<dyn ArtifactStore>, ReadError> {
        self.context
            .artifacts
            .get()
            .ok_or_else(|| ReadError::Unavailable("the artifact store is not open yet".into()))
    }
}

impl ArtifactFiles for StoredArtifacts {
    fn list<'a>(
        &'a self,
        test_hash: &'a str,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredFile>, ReadError>> {
        Box::pin(async move {
            let store = self.store()?;
            let prefix = ArtifactPrefix::run(test_hash, run_id).map_err(read_error)?;
            let objects = store.list(&prefix).await.map_err(read_error)?;
            Ok(objects
                .into_iter()
                .map(|object| StoredFile {
                    name: object.name,
                    size: object.size,
                })
                .collect())
        })
    }

    fn open<'a>(
        &'a self,
        test_hash: &'a str,
        run_id: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ArtifactDownload, ReadError>> {
        Box::pin(async move {
            let store = self.store()?;
            let key = ArtifactKey::run(test_hash, run_id, name).map_err(read_error)?;
            let size = store.size(&key).await.map_err(read_error)?;
            if size.is_none() {
                return Err(ReadError::NotFound(format!(
                    "artifact {name} of run {run_id}"
                )));
            }
            let reader = store.get_reader(&key).await.map_err(read_error)?;
            Ok(ArtifactDownload { size, reader })
        })
    }
}
