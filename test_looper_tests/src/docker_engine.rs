//! The machine's real Docker engine, with the project's locally built base image.
//!
//! Containers a test starts carry the label `test-looper.harness=<scope>`; dropping the
//! [`DockerEngine`] force-removes every container with its scope.

use crate::paths::workspace_root;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;

/// The base image every test project builds `FROM`.
pub const BASE_IMAGE: &str = "test-looper/base:1";

/// Label key marking containers started under a harness scope.
pub const SCOPE_LABEL: &str = "test-looper.harness";

/// A connection to the engine, scoped for cleanup.
pub struct DockerEngine {
    docker: Docker,
    scope: String,
}

impl DockerEngine {
    /// Connects to the local engine and makes sure the base image exists.
    pub async fn connect() -> Self {
        let docker = Docker::connect_with_local_defaults().expect("docker client");
        docker
            .ping()
            .await
            .unwrap_or_else(|err| panic!("the Docker engine does not answer: {err}"));
        ensure_base_image();
        let scope = format!("harness-{}-{}", std::process::id(), next_scope_number());
        Self { docker, scope }
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The scope label value of this engine handle.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Labels to put on containers so that this handle cleans them up.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(SCOPE_LABEL.to_string(), self.scope.clone())])
    }

    /// Ids of the containers (running or not) carrying `label=value`.
    pub async fn containers_labelled(&self, label: &str, value: &str) -> Vec<String> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .expect("list containers")
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    }

    async fn remove_scope(docker: &Docker, scope: &str) {
        let filters =
            HashMap::from([("label".to_string(), vec![format!("{SCOPE_LABEL}={scope}")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(containers) = docker.list_containers(Some(options)).await else {
            return;
        };
        for id in containers.into_iter().filter_map(|c| c.id) {
            let options = RemoveContainerOptionsBuilder::default().force(true).build();
            let _ = docker.remove_container(&id, Some(options)).await;
        }
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let scope = self.scope.clone();
        // Drop may run inside a runtime; clean up on a thread with its own.
        let cleanup = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(Self::remove_scope(&docker, &scope));
        });
        let _ = cleanup.join();
    }
}

fn next_scope_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Builds the base image once per process with `deploy/build_base_image.sh` (idempotent).
pub fn ensure_base_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = workspace_root().join("deploy/build_base_image.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(BASE_IMAGE)
            .status()
            .expect("run build_base_image.sh");
        assert!(status.success(), "{} failed", script.display());
    });
}
