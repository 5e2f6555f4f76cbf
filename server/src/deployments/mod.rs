//! Interactive deployments, server side: the [`TerminalHub`] that carries each deployment's
//! terminal between the worker that runs it and the browser terminals attached to it, and
//! the browser terminal's client→server [`framing`]. The worker socket
//! (`crate::workers`) feeds worker output in and takes input out; the HTTP side
//! (`crate::web::terminal`) attaches browsers.

pub mod framing;
mod hub;
pub mod reaper;
pub mod scrollback;

use crate::scheduler::{Scheduler, SchedulerError};

pub use hub::{
    banner, InputRoute, InputSent, OutputChunk, TerminalHub, TerminalSubscription, INPUT_QUEUE,
    SCROLLBACK_BYTES,
};

/// Shuts a deployment down through `scheduler` and ends its terminal stream (the user's
/// shutdown action and the deployment reaper).
pub async fn shutdown_with(
    scheduler: &Scheduler,
    hub: &TerminalHub,
    deployment_id: &str,
) -> Result<(), SchedulerError> {
    scheduler.shutdown_deployment(deployment_id).await?;
    hub.terminate(deployment_id);
    tracing::info!(%deployment_id, "deployment shut down");
    Ok(())
}
