//! Docker objects test-looper owns, shared by the worker and the server's local machine pool
//! (so neither links the other): the container labels that identify what a worker started,
//! and the reaper that removes leftovers (after a `kill -9` of the worker, its containers
//! outlive it), and the networks and volumes jobs created through their scoped socket.

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
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

/// Rounds of [`remove_labelled`]: a busy engine can fail to kill a container in time
/// ("did not receive an exit event") and succeed a moment later.
const REMOVAL_ROUNDS: u32 = 5;

/// Force-removes every container (running or not) with `label=value`; returns how many.
/// Containers that fail to go are tried again (listing afresh) for a few rounds, with a
/// growing pause, before the failure is only logged.
pub async fn remove_labelled(
    docker: &Docker,
    label: &str,
    value: &str,
) -> Result<usize, bollard::errors::Error> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
    let mut removed = 0;
    for round in 1..=REMOVAL_ROUNDS {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = docker.list_containers(Some(options)).await?;
        let mut failed = 0;
        for id in containers.into_iter().filter_map(|c| c.id) {
            let options = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match docker.remove_container(&id, Some(options)).await {
                Ok(()) => removed += 1,
                // Gone meanwhile (removed by someone else): nothing left to do for it.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(error) => {
                    failed += 1;
                    tracing::warn!(%id, %error, round, "could not remove leftover container");
                }
            }
        }
        if failed == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250 * u64::from(round))).await;
    }
    Ok(removed)
}

/// Removes every network and volume with `label=value` (what a job created through its
/// scoped socket). Failures are only logged: they hold no running process.
pub async fn remove_labelled_networks_and_volumes(docker: &Docker, label: &str, value: &str) {
    let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
    let options = ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    match docker.list_networks(Some(options)).await {
        Ok(networks) => {
            for id in networks.into_iter().filter_map(|n| n.id) {
                if let Err(error) = docker.remove_network(&id).await {
                    tracing::warn!(%id, %error, "could not remove a job's network");
                }
            }
        }
        Err(error) => tracing::warn!(%error, "could not list a job's networks"),
    }
    let options = ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    match docker.list_volumes(Some(options)).await {
        Ok(listed) => {
            for volume in listed.volumes.unwrap_or_default() {
                let options = RemoveVolumeOptionsBuilder::default().force(true).build();
                if let Err(error) = docker.remove_volume(&volume.name, Some(options)).await {
                    tracing::warn!(name = %volume.name, %error, "could not remove a job's volume");
                }
            }
        }
        Err(error) => tracing::warn!(%error, "could not list a job's volumes"),
    }
}
