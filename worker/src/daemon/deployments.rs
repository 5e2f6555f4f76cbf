//! Serving a deployment on the session's side: the executor's deployment runs in the
//! background; its terminal output is numbered, its tail kept in the [`WorkerState`] and sent
//! as `TerminalOutput` (base64 chunks with absolute offsets). When it ends the worker reports
//! `DeploymentExited` (unless the server shut it down), forgets it and asks for work again.

use super::state::{CurrentDeployment, WorkerState};
use super::terminal_tail::MAX_CHUNK_BYTES;
use crate::executor::{run_deployment, DeploymentEnd, DeploymentEvent, Executor};
use base64::Engine as _;
use std::sync::Arc;
use test_looper_core::protocol::{DeploymentAssignment, TerminalInput, WorkerToServer};
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

/// Takes on `assignment` unless the worker is busy (then `false`): records it in the state
/// and starts serving it in the background.
pub async fn start(
    executor: Arc<Executor>,
    assignment: DeploymentAssignment,
    state: Arc<Mutex<WorkerState>>,
) -> bool {
    let mut guard = state.lock().await;
    if guard.is_busy() {
        return false;
    }
    let (controls, receiver) = mpsc::unbounded_channel::<TerminalInput>();
    let shutdown = CancellationToken::new();
    guard.exited_deployment = None;
    guard.deployment = Some(CurrentDeployment {
        assignment: assignment.clone(),
        output: Default::default(),
        controls,
        shutdown: shutdown.clone(),
    });
    drop(guard);
    tokio::spawn(serve(executor, assignment, state, receiver, shutdown));
    true
}

async fn serve(
    executor: Arc<Executor>,
    assignment: DeploymentAssignment,
    state: Arc<Mutex<WorkerState>>,
    controls: mpsc::UnboundedReceiver<TerminalInput>,
    shutdown: CancellationToken,
) {
    let id = assignment.deployment_id.clone();
    let machine_id = executor.machine_id.clone();
    let (events, mut received) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        run_deployment(&executor, &assignment, events, controls, shutdown).await
    });
    while let Some(DeploymentEvent::Output(mut data)) = received.recv().await {
        // Coalesce whatever else is queued.
        while data.len() < MAX_CHUNK_BYTES {
            match received.try_recv() {
                Ok(DeploymentEvent::Output(more)) => data.extend(more),
                Err(_) => break,
            }
        }
        let mut guard = state.lock().await;
        let Some(current) = guard
            .deployment
            .as_mut()
            .filter(|d| d.assignment.deployment_id == id)
        else {
            continue;
        };
        let chunks = current.output.push(&data);
        let outbox = guard.outbox.clone();
        drop(guard);
        // Waits for room in the session's queue (never holding the state): a slow link
        // slows the reading of the container's output instead of growing a queue. Without
        // a session the tail is resent after the reconnect.
        if let Some(outbox) = outbox {
            for (offset, chunk) in chunks {
                if outbox
                    .send(terminal_output(&id, offset, &chunk))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    let end = task.await.unwrap_or_else(|error| DeploymentEnd::Failed {
        message: format!("the deployment crashed: {error}"),
    });
    tracing::info!(deployment_id = %id, ?end, "deployment ended");
    let mut guard = state.lock().await;
    if guard.deployment(&id).is_some() {
        guard.deployment = None;
    }
    if end.reports_exit() {
        guard.exited_deployment = Some(id.clone());
        guard.send(WorkerToServer::DeploymentExited { deployment_id: id });
    }
    guard.request_work(&machine_id);
}

/// One `TerminalOutput` message.
pub fn terminal_output(deployment_id: &str, offset: u64, chunk: &[u8]) -> WorkerToServer {
    WorkerToServer::TerminalOutput {
        deployment_id: deployment_id.to_string(),
        offset,
        data: base64::engine::general_purpose::STANDARD.encode(chunk),
    }
}
