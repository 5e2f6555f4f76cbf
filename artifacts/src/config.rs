//! Which backend to open, as a serializable value the server can hand to its local workers.

use crate::disk::DiskStore;
use crate::error::ArtifactError;
use crate::s3::S3Store;
use crate::store::ArtifactStore;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// A backend and its settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreConfig {
    LocalDisk {
        path: PathBuf,
    },
    S3 {
        bucket: String,
        region: String,
        #[serde(default)]
        key_prefix: String,
        #[serde(default)]
        endpoint_url: Option<String>,
        /// `(access key id, secret)`; the standard AWS environment when absent.
        #[serde(default)]
        credentials: Option<(String, String)>,
    },
}

/// Opens the configured store. For S3 with a custom endpoint (an emulator), the bucket is
/// created when missing.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn ArtifactStore>, ArtifactError> {
    match config {
        StoreConfig::LocalDisk { path } => Ok(Arc::new(DiskStore::new(path.clone()))),
        StoreConfig::S3 {
            bucket,
            region,
            key_prefix,
            endpoint_url,
            credentials,
        } => {
            let settings = test_looper_aws::AwsSettings {
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
                credentials: credentials
                    .as_ref()
                    .map(|(id, secret)| test_looper_aws::StaticKeys {
                        access_key_id: id.clone(),
                        secret_access_key: secret.clone(),
                    }),
            };
            let sdk = test_looper_aws::sdk_config(&settings).await;
            let client = test_looper_aws::s3_client(&sdk, endpoint_url.is_some());
            let store = S3Store::new(client, bucket.clone(), key_prefix);
            if endpoint_url.is_some() {
                store.ensure_bucket().await?;
            }
            Ok(Arc::new(store))
        }
    }
}
