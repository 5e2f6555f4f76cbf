//! Artifact storage of test-looper: build outputs, per-run artifacts, result records and source
//! tarballs, under one key layout ([`ArtifactKey`]) on a local directory ([`DiskStore`]) or S3
//! ([`S3Store`]).
//!
//! Uploads and downloads stream from and to files (or async readers); nothing large is ever held
//! whole in memory. Keys are validated piece by piece, so a key can never name a path outside the
//! store. Writes are atomic and idempotent: concurrent builders of the same artifact both succeed.

mod config;
mod disk;
mod error;
mod key;
mod s3;
mod small_writes;
mod store;

pub use config::{open_store, StoreConfig};
pub use disk::DiskStore;
pub use error::ArtifactError;
pub use key::{content_type_for, sanitize_name, unsanitize_name, ArtifactKey, ArtifactPrefix};
pub use s3::S3Store;
pub use store::{ArtifactReader, ArtifactStore, KeepFilter, Removed, StoredObject};
