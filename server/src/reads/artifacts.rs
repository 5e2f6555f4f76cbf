//! The files a run stored, over the artifact store: a run's files are the objects under
//! `runs/<test hash>/<run id>/` ([`ArtifactPrefix::run`]): its declared artifacts (tarballs),
//! kept output files, individual test logs and `test_looper_log.txt`. Downloads stream,
//! never read whole.

use crate::reads::model::{ArtifactDownload, ReadError, StoredFile};
use crate::AppContext;
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

impl StoredArtifacts {
    pub async fn list(&self, test_hash: &str, run_id: &str) -> Result<Vec<StoredFile>, ReadError> {
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
    }

    pub async fn open(
        &self,
        test_hash: &str,
        run_id: &str,
        name: &str,
    ) -> Result<ArtifactDownload, ReadError> {
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
    }
}
