//! Environment images: built from Dockerfile text, tagged by the SHA-256 of that text, and
//! reused whenever an image with the tag exists. Concurrent requests for one image build once.

use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Label on every image the worker builds.
pub const IMAGE_LABEL: &str = "test-looper.image";

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The Dockerfile did not build: an environment error; `log` is the build output.
    #[error("the environment image failed to build: {message}")]
    BuildFailed { message: String, log: String },
    /// The engine could not be reached or misbehaved: an infrastructure error.
    #[error("docker engine: {0}")]
    Engine(#[from] bollard::errors::Error),
}

/// Builds and caches environment images.
#[derive(Clone, Default)]
pub struct ImageCache {
    building: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

/// The tag of the image for `dockerfile`.
pub fn image_tag(dockerfile: &str) -> String {
    let digest = hex::encode(Sha256::digest(dockerfile.as_bytes()));
    format!("test-looper-env:{}", &digest[..32])
}

impl ImageCache {
    /// The tag of an image for `dockerfile`, building it when absent. Build output goes to
    /// `log` line by line. Returns `(tag, was_cached)`.
    pub async fn ensure(
        &self,
        docker: &Docker,
        dockerfile: &str,
        log: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(String, bool), ImageError> {
        let tag = image_tag(dockerfile);
        if docker.inspect_image(&tag).await.is_ok() {
            return Ok((tag, true));
        }
        let lock = {
            let mut building = self.building.lock().await;
            building.entry(tag.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if docker.inspect_image(&tag).await.is_ok() {
            return Ok((tag, true));
        }
        log(&format!("building environment image {tag}\n"));
        let context = dockerfile_context(dockerfile).map_err(|e| ImageError::BuildFailed {
            message: e.to_string(),
            log: String::new(),
        })?;
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(&tag)
            .rm(true)
            .forcerm(true)
            .labels(&HashMap::from([(IMAGE_LABEL, "1")]))
            .build();
        let mut stream =
            docker.build_image(options, None, Some(bollard::body_full(context.into())));
        let mut build_log = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref() {
                        build_log.push_str(text);
                        log(text);
                    }
                    if let Some(detail) = info.error_detail {
                        let message = detail.message.unwrap_or_else(|| "build failed".into());
                        log(&format!("{message}\n"));
                        return Err(ImageError::BuildFailed {
                            message,
                            log: build_log,
                        });
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    log(&format!("{error}\n"));
                    return Err(ImageError::BuildFailed {
                        message: error,
                        log: build_log,
                    });
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code,
                    message,
                }) if status_code < 500 => {
                    log(&format!("{message}\n"));
                    return Err(ImageError::BuildFailed {
                        message,
                        log: build_log,
                    });
                }
                Err(other) => return Err(ImageError::Engine(other)),
            }
        }
        if docker.inspect_image(&tag).await.is_err() {
            return Err(ImageError::BuildFailed {
                message: "the build produced no image".into(),
                log: build_log,
            });
        }
        Ok((tag, false))
    }
}

/// A tar archive holding just the Dockerfile.
fn dockerfile_context(dockerfile: &str) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    builder.into_inner()
}
