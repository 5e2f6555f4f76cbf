//! Shared pieces of the worker tests: the `worker_suite` fixture resolved into assignments,
//! an executor on a temp dir, and a source fetcher that packs the fixture directory.

#![allow(dead_code)]

use futures_util::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use test_looper_artifacts::{ArtifactStore, DiskStore};
use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef, ResolvedCommit};
use test_looper_core::protocol::{Assignment, RunOutcome, SourceCommit};
use test_looper_worker::executor::{
    image::ImageCache, package::pack_directory, run_assignment, Executor, RunEvent, SourceFetcher,
};
use tokio_util::sync::CancellationToken;

pub const REPO: &str = "worker_suite";
pub const COMMIT: &str = "1111111111111111111111111111111111111111";

/// The fixture project's directory.
pub fn fixture_dir() -> PathBuf {
    test_looper_tests::paths::workspace_root().join("test_looper_tests/test_projects/worker_suite")
}

/// Every file of a directory, relative paths to text.
fn files_of(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((relative, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out
}

/// The fixture resolved at [`COMMIT`].
pub fn resolved_fixture() -> ResolvedCommit {
    let mut source = MemorySource::new();
    for (path, text) in files_of(&fixture_dir()) {
        source.add_file(REPO, COMMIT, &path, &text);
    }
    resolve_commit(&CommitRef::new(REPO, COMMIT), &source).expect("fixture resolves")
}

/// An assignment of definition `name` of the fixture.
pub fn assignment(resolved: &ResolvedCommit, name: &str, run_id: &str) -> Assignment {
    let definition = resolved.definitions.get(name).cloned().unwrap_or_else(|| {
        panic!(
            "no {name} in {:?} ({:?})",
            resolved.definitions.keys().collect::<Vec<_>>(),
            resolved.definitions_path
        )
    });
    Assignment {
        run_id: run_id.into(),
        test_hash: definition.hash.clone(),
        attempt: 1,
        source: SourceCommit {
            repo: REPO.into(),
            commit: COMMIT.into(),
        },
        artifacts: definition
            .artifact_names()
            .into_iter()
            .map(str::to_string)
            .collect(),
        timeout_seconds: definition.timeout,
        cores: 1,
        ram_gb: 1,
        definition,
    }
}

/// Packs the fixture directory as the source of any commit; counts fetches.
pub struct FixtureSources {
    pub fetches: std::sync::atomic::AtomicUsize,
}

impl SourceFetcher for FixtureSources {
    fn fetch<'a>(
        &'a self,
        repo: &'a str,
        commit: &'a str,
        _path: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if repo != REPO || commit != COMMIT {
                return Err(format!("unknown commit {repo}/{commit}"));
            }
            self.fetches
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            pack_directory(&fixture_dir(), &[], &[], dest).map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}

/// An executor on `dir` with a disk artifact store under `dir/artifacts`.
pub fn executor(docker: &bollard::Docker, dir: &Path, scope: &str, machine_id: &str) -> Executor {
    let store: Arc<dyn ArtifactStore> = Arc::new(DiskStore::new(dir.join("artifacts")));
    Executor {
        docker: docker.clone(),
        store,
        sources: Arc::new(FixtureSources {
            fetches: Default::default(),
        }),
        storage: dir.join("worker"),
        scope: scope.into(),
        machine_id: machine_id.into(),
        images: ImageCache::default(),
        vm_ami: None,
        sandbox: Default::default(),
    }
}

/// Runs an assignment and collects its events.
pub async fn run(
    executor: &Executor,
    assignment: &Assignment,
) -> (RunOutcome, String, Vec<String>) {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let outcome = run_assignment(executor, assignment, sender, CancellationToken::new()).await;
    let mut log = String::new();
    let mut artifacts = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        match event {
            RunEvent::Log(text) => log.push_str(&text),
            RunEvent::ArtifactUploaded(name) => artifacts.push(name),
        }
    }
    (outcome, log, artifacts)
}
