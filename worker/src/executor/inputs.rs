//! Dependencies of a run, placed at `TEST_INPUTS/<name>`: source trees (tarballs obtained
//! through a [`SourceFetcher`], normally the server) and build artifacts (from artifact
//! storage). Both are cached on the worker's disk under `cache/` by content key.

use super::package::extract_tarball;
use futures_util::future::BoxFuture;
use std::path::{Path, PathBuf};
use test_looper_artifacts::{sanitize_name, ArtifactError, ArtifactKey, ArtifactStore};
use test_looper_core::definitions::ResolvedDependency;

/// Where source tarballs come from.
pub trait SourceFetcher: Send + Sync {
    /// Writes the `.tar.gz` of `path` (empty: the whole tree) of `repo` at `commit` to `dest`.
    fn fetch<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
        path: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Why an input could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The dependency does not exist (a missing build artifact, an unknown commit): the
    /// run's environment is broken.
    #[error("{0}")]
    Missing(String),
    /// Storage, network or disk failed: try again elsewhere.
    #[error("{0}")]
    Infrastructure(String),
}

/// The storage key of a build's artifact: `sanitize("name" or "name/artifact").tar.gz`.
pub fn build_artifact_file(build_name: &str, artifact: &str) -> String {
    let logical = if artifact.is_empty() {
        build_name.to_string()
    } else {
        format!("{build_name}/{artifact}")
    };
    format!("{}.tar.gz", sanitize_name(&logical))
}

/// Places one dependency at `inputs/<name>`.
pub async fn provide(
    name: &str,
    dependency: &ResolvedDependency,
    inputs: &Path,
    cache: &Path,
    store: &dyn ArtifactStore,
    sources: &dyn SourceFetcher,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), InputError> {
    let target = super::dirs::join_inside(inputs, name)
        .ok_or_else(|| InputError::Missing(format!("invalid input name {name:?}")))?;
    let tarball = match dependency {
        ResolvedDependency::Source { repo, commit, path } => {
            let cached = cache
                .join("sources")
                .join(sanitize_name(repo))
                .join(commit)
                .join(format!(
                    "{}.tar.gz",
                    sanitize_name(if path.is_empty() { "_root" } else { path })
                ));
            if cached.is_file() {
                log(&format!(
                    "Using cached source of {repo} at {commit} for {name}\n"
                ));
            } else {
                log(&format!(
                    "Downloading source of {repo} at {commit} for {name}\n"
                ));
                create_parent(&cached)?;
                let temp = temp_path(&cached);
                sources
                    .fetch(repo, commit, path, &temp)
                    .await
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&temp);
                        InputError::Missing(format!("source {repo}/{commit}: {e}"))
                    })?;
                std::fs::rename(&temp, &cached)
                    .map_err(|e| InputError::Infrastructure(format!("cache source: {e}")))?;
            }
            cached
        }
        ResolvedDependency::Build {
            name: build,
            hash,
            artifact,
            ..
        } => {
            let file = build_artifact_file(build, artifact);
            let cached = cache.join("builds").join(hash).join(&file);
            if cached.is_file() {
                log(&format!("Using cached artifact {file} of build {build}\n"));
            } else {
                log(&format!("Downloading artifact {file} of build {build}\n"));
                create_parent(&cached)?;
                let key = ArtifactKey::build(hash, &file)
                    .map_err(|e| InputError::Missing(e.to_string()))?;
                match store.get_to_file(&key, &cached).await {
                    Ok(_) => {}
                    Err(ArtifactError::NotFound(_)) => {
                        return Err(InputError::Missing(format!(
                            "dependent build {build} (artifact {file}, hash {hash}) doesn't exist"
                        )))
                    }
                    Err(e) => return Err(InputError::Infrastructure(e.to_string())),
                }
            }
            cached
        }
    };
    log(&format!("Extracting {name}\n"));
    let dest = target.clone();
    tokio::task::spawn_blocking(move || extract_tarball(&tarball, &dest))
        .await
        .map_err(|e| InputError::Infrastructure(e.to_string()))?
        .map_err(|e| InputError::Missing(format!("extract {name}: {e}")))
}

fn create_parent(path: &Path) -> Result<(), InputError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| InputError::Infrastructure(format!("create {}: {e}", parent.display())))?;
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let nonce: u64 = rand_nonce();
    path.with_extension(format!("partial-{nonce:016x}"))
}

fn rand_nonce() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
