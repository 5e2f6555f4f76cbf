//! Deployments for the UI: the scheduler's deployment records with the definition's name and
//! commit and the number of attached browser terminals; booting writes the "waiting for
//! hardware" banner into the new deployment's terminal, shutting down the "Session
//! Terminated" one.

use crate::deployments::TerminalHub;
use crate::reads::action_error;
use crate::reads::model::{ActionError, DeploymentView};
use crate::scheduler::SchedulerError;
use crate::AppContext;
use test_looper_core::scheduling::{DeploymentOwner, DeploymentRecord, Engine, SchedulingError};

/// One deployment as the UI shows it.
pub fn deployment_view(
    engine: &Engine,
    hub: &TerminalHub,
    record: &DeploymentRecord,
) -> DeploymentView {
    let definition = engine.test_record(&record.test_hash);
    DeploymentView {
        deployment_id: record.deployment_id.clone(),
        test_hash: record.test_hash.clone(),
        test_name: definition
            .map(|d| d.definition.name.clone())
            .unwrap_or_default(),
        repo: definition
            .map(|d| d.source.repo.clone())
            .unwrap_or_default(),
        commit: definition
            .map(|d| d.source.commit.clone())
            .unwrap_or_default(),
        machine_id: record.machine_id.clone(),
        created: record.created,
        alive: record.alive,
        clients: hub.clients(&record.deployment_id),
        booted_by: record.booted_by.clone(),
    }
}

/// Alive deployments, oldest first.
pub fn alive_deployments(engine: &Engine, hub: &TerminalHub) -> Vec<DeploymentView> {
    let mut views: Vec<DeploymentView> = engine
        .deployments()
        .iter()
        .filter(|record| record.alive)
        .map(|record| deployment_view(engine, hub, record))
        .collect();
    views.sort_by(|a, b| (a.created, &a.deployment_id).cmp(&(b.created, &b.deployment_id)));
    views
}

/// Boots a deployment of `test_hash` and announces it in its terminal.
pub async fn boot(
    context: &AppContext,
    test_hash: &str,
    booted_by: Option<DeploymentOwner>,
) -> Result<String, ActionError> {
    let scheduler = context.running_scheduler()?;
    let deployment_id = scheduler
        .create_deployment_by(test_hash, booted_by)
        .await
        .map_err(|err| match err {
            // A cap (M6): a conflict with the current state, not a bad request.
            SchedulerError::Scheduling(SchedulingError::LimitReached(message)) => {
                ActionError::Conflict(message)
            }
            other => action_error(other),
        })?;
    let name = scheduler
        .read(|engine| {
            engine
                .test_record(test_hash)
                .map(|record| record.definition.name.clone())
        })
        .await
        .unwrap_or_default();
    let short = test_hash.get(..8).unwrap_or(test_hash);
    context.deployments.announce(
        &deployment_id,
        &format!("Deployment for {name} ({short}) waiting for hardware."),
    );
    tracing::info!(%deployment_id, %name, "deployment booted");
    Ok(deployment_id)
}

/// Shuts a deployment down and ends its terminal stream.
pub async fn shutdown(context: &AppContext, deployment_id: &str) -> Result<(), ActionError> {
    crate::deployments::shutdown_with(
        context.running_scheduler()?,
        &context.deployments,
        deployment_id,
    )
    .await
    .map_err(action_error)
}
