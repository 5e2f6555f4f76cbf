//! The Docker executor: runs one [`Assignment`] to a [`RunOutcome`].
//!
//! Steps: fresh run directories; the environment image (built once per Dockerfile hash); the
//! dependencies unpacked into `TEST_INPUTS` (source tarballs from a [`SourceFetcher`], build
//! outputs from artifact storage, both cached on the worker's disk); each stage's command and
//! then its cleanup (always) in a new container; each stage's artifacts packed and uploaded as
//! soon as the stage ends (builds: only when it passed; tests: always) and reported through
//! [`RunEvent::ArtifactUploaded`]; per-case results from `testSummary.json` and JUnit XML;
//! every file of `TEST_OUTPUT_DIR` and the run's log stored as run artifacts. Containers and
//! directories are removed on every path.
//!
//! Deployments ([`run_deployment`]) share the preparation (`prepare.rs`) and then serve one
//! interactive container (`deployment.rs`, `tty_container.rs`).

pub mod confined;
pub mod container;
pub mod deployment;
pub mod dirs;
pub mod docker_policy;
pub mod docker_proxy;
pub mod host;
pub mod image;
pub mod inputs;
pub mod package;
pub mod prepare;
pub mod results;
mod run;
pub mod sandbox;
pub mod tty_container;
pub mod utf8_stream;

pub use deployment::{run_deployment, DeploymentEnd, DeploymentEvent};
pub use inputs::SourceFetcher;
pub use run::run_assignment;

use bollard::Docker;
use std::path::PathBuf;
use std::sync::Arc;
use test_looper_artifacts::ArtifactStore;
use test_looper_containers::{remove_labelled, remove_labelled_networks_and_volumes, WORKER_LABEL};

/// Default seconds a run may take when its definition gives no timeout.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 3600;
/// Seconds a cleanup command may take (on top of the run's timeout, so cleanups always run).
pub const CLEANUP_TIMEOUT_SECONDS: u64 = 300;

/// What the executor reports while a run goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// Output of the run (preamble, commands, notes), in order.
    Log(String),
    /// One declared artifact is stored (in declaration order).
    ArtifactUploaded(String),
}

/// The executor's fixed settings and shared services.
#[derive(Clone)]
pub struct Executor {
    pub docker: Docker,
    pub store: Arc<dyn ArtifactStore>,
    pub sources: Arc<dyn SourceFetcher>,
    /// Worker storage root: `runs/` (per-run dirs) and `cache/` live here.
    pub storage: PathBuf,
    /// Install scope (label `test-looper.scope`, container name prefix).
    pub scope: String,
    pub machine_id: String,
    pub images: image::ImageCache,
    /// The Docker socket policy and container limits of this worker.
    pub sandbox: sandbox::Sandbox,
    /// `Some(ami)`: this worker is a one-shot VM booted from `ami` (a naked AMI): it runs the
    /// jobs of environments with that `base_ami` on the machine itself (`host.rs`).
    pub vm_ami: Option<String>,
}

impl Executor {
    /// Removes what a previous incarnation of this worker left behind: its containers
    /// (by label) and its run directories. Call once at start.
    pub async fn reap_leftovers(&self) -> Result<usize, bollard::errors::Error> {
        let removed = remove_labelled(&self.docker, WORKER_LABEL, &self.machine_id).await?;
        remove_labelled_networks_and_volumes(&self.docker, WORKER_LABEL, &self.machine_id).await;
        let runs = self.storage.join("runs");
        if let Err(error) = dirs::remove_tree(&runs) {
            tracing::warn!(%error, path = %runs.display(), "could not remove old run directories");
        }
        Ok(removed)
    }
}
