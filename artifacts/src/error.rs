//! Errors of artifact storage.

use thiserror::Error;

/// What can go wrong storing or fetching an artifact.
#[derive(Debug, Error)]
pub enum ArtifactError {
    /// A key part is empty, contains a separator, `..`, or characters outside the allowed set.
    #[error("invalid artifact key part {part:?}: {reason}")]
    InvalidKey { part: String, reason: &'static str },
    /// The artifact does not exist.
    #[error("artifact {0} not found")]
    NotFound(String),
    /// Local file system failure.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The S3 service failed or rejected the request.
    #[error("s3 {operation} {key}: {message}")]
    S3 {
        operation: &'static str,
        key: String,
        message: String,
    },
}

impl ArtifactError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
