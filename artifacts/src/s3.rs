//! The S3 backend: `<key prefix>/<key>` in one bucket. Small objects go up in one PUT; larger
//! ones as a multipart upload of fixed-size parts, so memory stays bounded by one part.
//! Downloads stream the response body.

use crate::error::ArtifactError;
use crate::key::{content_type_for, ArtifactKey, ArtifactPrefix};
use crate::store::{ArtifactReader, ArtifactStore, KeepFilter, Removed, StoredObject};
use futures_util::future::BoxFuture;
use std::time::SystemTime;
use test_looper_aws::s3::primitives::ByteStream;
use test_looper_aws::s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
};
use test_looper_aws::s3::Client;
use tokio::io::AsyncReadExt;

/// Size of one multipart part (S3 needs at least 5 MiB for all but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Artifacts in an S3 bucket.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    key_prefix: String,
}

impl S3Store {
    /// A store in `bucket`, under `key_prefix` (may be empty).
    pub fn new(client: Client, bucket: impl Into<String>, key_prefix: &str) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            key_prefix: key_prefix.trim_matches('/').to_string(),
        }
    }

    /// Creates the bucket when it does not exist yet (demos and tests).
    pub async fn ensure_bucket(&self) -> Result<(), ArtifactError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| s3_error("create-bucket", &self.bucket, e))?;
        Ok(())
    }

    fn full_key(&self, relative: &str) -> String {
        if self.key_prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.key_prefix)
        }
    }

    async fn multipart(
        &self,
        key: &str,
        first_part: Vec<u8>,
        reader: &mut ArtifactReader,
    ) -> Result<u64, ArtifactError> {
        let (content_type, encoding) = content_type_for(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_content_encoding(encoding.map(str::to_string))
            .send()
            .await
            .map_err(|e| s3_error("create-multipart-upload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut parts = Vec::new();
            let mut total = 0u64;
            let mut buffer = first_part;
            loop {
                let number = parts.len() as i32 + 1;
                total += buffer.len() as u64;
                let uploaded = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(std::mem::take(&mut buffer)))
                    .send()
                    .await
                    .map_err(|e| s3_error("upload-part", key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(uploaded.e_tag().map(str::to_string))
                        .build(),
                );
                buffer = read_part(reader, key).await?;
                if buffer.is_empty() {
                    break;
                }
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| s3_error("complete-multipart-upload", key, e))?;
            Ok(total)
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

/// Reads up to one part from `reader` (less only at the end).
async fn read_part(reader: &mut ArtifactReader, key: &str) -> Result<Vec<u8>, ArtifactError> {
    let mut buffer = Vec::with_capacity(PART_SIZE);
    reader
        .take(PART_SIZE as u64)
        .read_to_end(&mut buffer)
        .await
        .map_err(|e| ArtifactError::io(format!("read upload source for {key}"), e))?;
    Ok(buffer)
}

fn s3_error(
    operation: &'static str,
    key: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> ArtifactError {
    ArtifactError::S3 {
        operation,
        key: key.to_string(),
        message: test_looper_aws::s3::error::DisplayErrorContext(error).to_string(),
    }
}

impl ArtifactStore for S3Store {
    fn put_reader<'a>(
        &'a self,
        key: &'a ArtifactKey,
        mut reader: ArtifactReader,
    ) -> BoxFuture<'a, Result<u64, ArtifactError>> {
        Box::pin(async move {
            let full = self.full_key(key.as_str());
            let first = read_part(&mut reader, &full).await?;
            if first.len() < PART_SIZE {
                let len = first.len() as u64;
                let (content_type, encoding) = content_type_for(&full);
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&full)
                    .content_type(content_type)
                    .set_content_encoding(encoding.map(str::to_string))
                    .body(ByteStream::from(first))
                    .send()
                    .await
                    .map_err(|e| s3_error("put-object", &full, e))?;
                return Ok(len);
            }
            self.multipart(&full, first, &mut reader).await
        })
    }

    fn get_reader<'a>(
        &'a self,
        key: &'a ArtifactKey,
    ) -> BoxFuture<'a, Result<ArtifactReader, ArtifactError>> {
        Box::pin(async move {
            let full = self.full_key(key.as_str());
            match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
            {
                Ok(object) => Ok(Box::pin(object.body.into_async_read()) as ArtifactReader),
                Err(e) => {
                    let service = e.into_service_error();
                    if service.is_no_such_key() {
                        Err(ArtifactError::NotFound(key.to_string()))
                    } else {
                        Err(s3_error("get-object", &full, service))
                    }
                }
            }
        })
    }

    fn size<'a>(
        &'a self,
        key: &'a ArtifactKey,
    ) -> BoxFuture<'a, Result<Option<u64>, ArtifactError>> {
        Box::pin(async move {
            let full = self.full_key(key.as_str());
            match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
            {
                Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
                Err(e) => {
                    let service = e.into_service_error();
                    if service.is_not_found() {
                        Ok(None)
                    } else {
                        Err(s3_error("head-object", &full, service))
                    }
                }
            }
        })
    }

    fn list<'a>(
        &'a self,
        prefix: &'a ArtifactPrefix,
    ) -> BoxFuture<'a, Result<Vec<StoredObject>, ArtifactError>> {
        Box::pin(async move {
            let full_prefix = format!("{}/", self.full_key(prefix.as_str()));
            let mut found = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full_prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| s3_error("list-objects", &full_prefix, e))?;
                for object in page.contents() {
                    if let Some(name) = object.key().and_then(|k| k.strip_prefix(&full_prefix)) {
                        found.push(StoredObject {
                            name: name.to_string(),
                            size: object.size().unwrap_or(0).max(0) as u64,
                        });
                    }
                }
                match page.next_continuation_token() {
                    Some(next) if page.is_truncated().unwrap_or(false) => {
                        token = Some(next.to_string())
                    }
                    _ => break,
                }
            }
            found.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(found)
        })
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key_prefix)
    }

    fn delete<'a>(&'a self, key: &'a ArtifactKey) -> BoxFuture<'a, Result<bool, ArtifactError>> {
        Box::pin(async move {
            if self.size(key).await?.is_none() {
                return Ok(false);
            }
            let full = self.full_key(key.as_str());
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
                .map_err(|e| s3_error("delete-object", &full, e))?;
            Ok(true)
        })
    }

    fn remove_older_than<'a>(
        &'a self,
        prefix: &'a ArtifactPrefix,
        cutoff: SystemTime,
        keep: KeepFilter<'a>,
    ) -> BoxFuture<'a, Result<Removed, ArtifactError>> {
        Box::pin(async move {
            let full_prefix = format!("{}/", self.full_key(prefix.as_str()));
            let mut removed = Removed::default();
            let mut token: Option<String> = None;
            loop {
                // One page (at most 1,000 keys) at a time: listed, then deleted in one call.
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full_prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| s3_error("list-objects", &full_prefix, e))?;
                let mut doomed = Vec::new();
                let mut bytes = 0u64;
                for object in page.contents() {
                    let Some(key) = object.key() else { continue };
                    let Some(name) = key.strip_prefix(&full_prefix) else {
                        continue;
                    };
                    let old = object
                        .last_modified()
                        .and_then(|time| SystemTime::try_from(*time).ok())
                        .is_some_and(|modified| modified < cutoff);
                    if old && !keep(name) {
                        bytes += object.size().unwrap_or(0).max(0) as u64;
                        doomed.push(
                            ObjectIdentifier::builder()
                                .key(key)
                                .build()
                                .map_err(|e| s3_error("delete-objects", key, e))?,
                        );
                    }
                }
                if !doomed.is_empty() {
                    let count = doomed.len() as u64;
                    let answer = self
                        .client
                        .delete_objects()
                        .bucket(&self.bucket)
                        .delete(
                            Delete::builder()
                                .set_objects(Some(doomed))
                                .quiet(true)
                                .build()
                                .map_err(|e| s3_error("delete-objects", &full_prefix, e))?,
                        )
                        .send()
                        .await
                        .map_err(|e| s3_error("delete-objects", &full_prefix, e))?;
                    if let Some(failed) = answer.errors().first() {
                        return Err(ArtifactError::S3 {
                            operation: "delete-objects",
                            key: failed.key().unwrap_or_default().to_string(),
                            message: failed.message().unwrap_or("refused").to_string(),
                        });
                    }
                    removed.objects += count;
                    removed.bytes += bytes;
                }
                match page.next_continuation_token() {
                    Some(next) if page.is_truncated().unwrap_or(false) => {
                        token = Some(next.to_string())
                    }
                    _ => break,
                }
            }
            Ok(removed)
        })
    }
}
