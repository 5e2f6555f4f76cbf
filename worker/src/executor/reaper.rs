//! Container labels that identify what a worker started, and the reaper that removes
//! leftovers (after a `kill -9` of the worker, its containers outlive it).

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use std::collections::HashMap;

/// Install-wide scope label (`looper_ctl.sh stop` removes every container carrying it).
pub const SCOPE_LABEL: &str = "test-looper.scope";
/// The worker (machine id) that started the container.
pub const WORKER_LABEL: &str = "test-looper.worker";
/// The run the container belongs to.
pub const RUN_LABEL: &str = "test-looper.run";

/// Labels for a container of `run_id` started by `machine_id`.
pub fn container_labels(
    scope: &str,
    machine_id: &str,
    run_id: &str,
    extra: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut labels = extra.clone();
    labels.insert(SCOPE_LABEL.into(), scope.into());
    labels.insert(WORKER_LABEL.into(), machine_id.into());
    labels.insert(RUN_LABEL.into(), run_id.into());
    labels
}

/// Force-removes every container (running or not) with `label=value`; returns how many.
pub async fn remove_labelled(
    docker: &Docker,
    label: &str,
    value: &str,
) -> Result<usize, bollard::errors::Error> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker.list_containers(Some(options)).await?;
    let mut removed = 0;
    for id in containers.into_iter().filter_map(|c| c.id) {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(&id, Some(options)).await {
            Ok(()) => removed += 1,
            Err(error) => tracing::warn!(%id, %error, "could not remove leftover container"),
        }
    }
    Ok(removed)
}
