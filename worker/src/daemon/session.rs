//! One websocket session: register, replay the current run or deployment, then serve
//! assignments, cancellations, terminal input and acknowledgements until the connection drops.

use super::deployments::{self, terminal_output};
use super::state::{CurrentRun, WorkerState};
use super::DaemonSettings;
use crate::executor::{run_assignment, Executor, RunEvent};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use test_looper_core::protocol::{
    ArtifactUploaded, Assignment, Completion, CompletionAck, Heartbeat, HeartbeatReply,
    ServerToWorker, Work, WorkerToServer, HEARTBEAT_INTERVAL_SECONDS,
};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Largest log text sent in one frame.
const MAX_LOG_FRAME: usize = 1024 * 1024;
/// While idle, ask for work this often even without a `WorkAvailable` push (safety net).
const IDLE_REQUEST_INTERVAL: Duration = Duration::from_secs(10);

/// How a session ended without an error.
pub enum SessionEnd {
    IdleExit,
    Closed,
}

/// Connects and serves one session.
pub async fn run_session(
    settings: &DaemonSettings,
    executor: Arc<Executor>,
    state: Arc<Mutex<WorkerState>>,
) -> anyhow::Result<SessionEnd> {
    let mut request = settings.socket_url.as_str().into_client_request()?;
    if let Some(token) = &settings.token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    let (mut sink, mut stream) = socket.split();
    // Everything the session sends goes through one queue, drained by the select loop.
    let (outbox, mut outgoing) = mpsc::unbounded_channel::<WorkerToServer>();
    let machine_id = settings.machine.machine_id.clone();

    outbox.send(WorkerToServer::Register {
        machine: settings.machine.clone(),
    })?;
    replay(&state, &outbox, &machine_id).await;
    tracing::info!(url = %settings.socket_url, "connected to the server");

    let mut heartbeat = tokio::time::interval(Duration::from_secs(HEARTBEAT_INTERVAL_SECONDS));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_since = Instant::now();
    let mut last_request = Instant::now();
    loop {
        tokio::select! {
            Some(message) = outgoing.recv() => {
                let text = serde_json::to_string(&message)?;
                sink.send(Message::text(text)).await?;
            }
            frame = stream.next() => {
                let Some(frame) = frame else { return Ok(SessionEnd::Closed) };
                let text = match frame? {
                    Message::Text(text) => text,
                    Message::Close(_) => return Ok(SessionEnd::Closed),
                    _ => continue,
                };
                let message: ServerToWorker = match serde_json::from_str(&text) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(%error, "undecodable server message ignored");
                        continue;
                    }
                };
                handle(message, settings, &executor, &state, &outbox).await;
                if state.lock().await.is_busy() {
                    idle_since = Instant::now();
                }
            }
            _ = heartbeat.tick() => {
                let guard = state.lock().await;
                match (guard.heartbeat_id(), guard.is_busy()) {
                    (Some(run_id), _) => {
                        // Idle time counts from the end of the work, not from its start.
                        idle_since = Instant::now();
                        outbox.send(WorkerToServer::Heartbeat(Heartbeat {
                            machine_id: machine_id.clone(),
                            run_id: Some(run_id),
                        }))?;
                    }
                    (None, true) => idle_since = Instant::now(),
                    (None, false) => {
                        drop(guard);
                        if let Some(limit) = settings.idle_exit {
                            if idle_since.elapsed() >= limit {
                                let _ = sink.send(Message::Close(None)).await;
                                return Ok(SessionEnd::IdleExit);
                            }
                        }
                        if last_request.elapsed() >= IDLE_REQUEST_INTERVAL {
                            last_request = Instant::now();
                            state.lock().await.request_work(&machine_id);
                        }
                    }
                }
            }
        }
    }
}

/// After (re)connecting: the current run's heartbeat, log, artifacts and outcome; or the
/// current deployment's heartbeat and output tail; or (a reported deployment exit and) a
/// request for work.
async fn replay(
    state: &Mutex<WorkerState>,
    outbox: &mpsc::UnboundedSender<WorkerToServer>,
    machine_id: &str,
) {
    let mut guard = state.lock().await;
    guard.outbox = Some(outbox.clone());
    // A request sent on an earlier session is answered on none.
    guard.work_requested = false;
    if let Some(deployment) = &guard.deployment {
        let deployment_id = deployment.assignment.deployment_id.clone();
        let _ = outbox.send(WorkerToServer::Heartbeat(Heartbeat {
            machine_id: machine_id.to_string(),
            run_id: Some(deployment_id.clone()),
        }));
        for (offset, chunk) in deployment.output.resend() {
            let _ = outbox.send(terminal_output(&deployment_id, offset, &chunk));
        }
        return;
    }
    let Some(run) = &guard.current else {
        if let Some(deployment_id) = &guard.exited_deployment {
            let _ = outbox.send(WorkerToServer::DeploymentExited {
                deployment_id: deployment_id.clone(),
            });
        }
        guard.request_work(machine_id);
        return;
    };
    let run_id = run.assignment.run_id.clone();
    if run.outcome.is_none() {
        let _ = outbox.send(WorkerToServer::Heartbeat(Heartbeat {
            machine_id: machine_id.to_string(),
            run_id: Some(run_id.clone()),
        }));
    }
    for (offset, text) in log_frames(&run.log) {
        let _ = outbox.send(WorkerToServer::Log {
            run_id: run_id.clone(),
            offset,
            text,
        });
    }
    for artifact in &run.artifacts {
        let _ = outbox.send(WorkerToServer::ArtifactUploaded(ArtifactUploaded {
            run_id: run_id.clone(),
            artifact: artifact.clone(),
        }));
    }
    if let Some(outcome) = &run.outcome {
        let _ = outbox.send(WorkerToServer::Completed(Completion {
            run_id,
            outcome: outcome.clone(),
        }));
    }
}

/// `log` cut into frames at char boundaries, with their byte offsets.
fn log_frames(log: &str) -> Vec<(u64, String)> {
    let mut frames = Vec::new();
    let mut start = 0;
    while start < log.len() {
        let mut end = (start + MAX_LOG_FRAME).min(log.len());
        while !log.is_char_boundary(end) {
            end -= 1;
        }
        frames.push((start as u64, log[start..end].to_string()));
        start = end;
    }
    frames
}

async fn handle(
    message: ServerToWorker,
    settings: &DaemonSettings,
    executor: &Arc<Executor>,
    state: &Arc<Mutex<WorkerState>>,
    outbox: &mpsc::UnboundedSender<WorkerToServer>,
) {
    let machine_id = settings.machine.machine_id.clone();
    match message {
        ServerToWorker::Assign(Work::Run(assignment)) => {
            let mut guard = state.lock().await;
            guard.work_answered();
            if guard.is_busy() {
                tracing::warn!(offered = %assignment.run_id, "assignment while busy ignored");
                return;
            }
            guard.exited_deployment = None;
            let cancel = CancellationToken::new();
            guard.current = Some(CurrentRun {
                assignment: (*assignment).clone(),
                log: String::new(),
                artifacts: Vec::new(),
                outcome: None,
                cancel: cancel.clone(),
            });
            drop(guard);
            let _ = outbox.send(WorkerToServer::Heartbeat(Heartbeat {
                machine_id,
                run_id: Some(assignment.run_id.clone()),
            }));
            tokio::spawn(execute(
                executor.clone(),
                *assignment,
                state.clone(),
                cancel,
            ));
        }
        ServerToWorker::Assign(Work::Deployment(deployment)) => {
            state.lock().await.work_answered();
            let deployment_id = deployment.deployment_id.clone();
            if deployments::start(executor.clone(), *deployment, state.clone()).await {
                tracing::info!(%deployment_id, "deployment started");
                let _ = outbox.send(WorkerToServer::Heartbeat(Heartbeat {
                    machine_id,
                    run_id: Some(deployment_id),
                }));
            } else {
                tracing::warn!(%deployment_id, "deployment while busy ignored");
            }
        }
        ServerToWorker::NoWork => state.lock().await.work_answered(),
        ServerToWorker::WorkAvailable => state.lock().await.request_work(&machine_id),
        ServerToWorker::HeartbeatReply(HeartbeatReply::Continue) => {}
        ServerToWorker::HeartbeatReply(HeartbeatReply::UnknownMachine) => {
            let _ = outbox.send(WorkerToServer::Register {
                machine: settings.machine.clone(),
            });
        }
        ServerToWorker::HeartbeatReply(HeartbeatReply::Cancel { run_id, reason })
        | ServerToWorker::Cancel { run_id, reason } => {
            let guard = state.lock().await;
            if let Some(run) = guard
                .current
                .as_ref()
                .filter(|r| r.assignment.run_id == run_id)
            {
                tracing::info!(%run_id, %reason, "run cancelled by the server");
                run.cancel.cancel();
            } else if let Some(deployment) = guard.deployment(&run_id) {
                tracing::info!(deployment_id = %run_id, %reason, "deployment cancelled by the server");
                deployment.shutdown.cancel();
            }
        }
        ServerToWorker::ArtifactAck { run_id, ack } => {
            tracing::debug!(%run_id, ?ack, "artifact acknowledged");
        }
        ServerToWorker::CompletionAck { run_id, ack } => {
            let mut guard = state.lock().await;
            let finished = guard
                .current
                .as_ref()
                .is_some_and(|r| r.assignment.run_id == run_id && r.outcome.is_some());
            if finished {
                if let CompletionAck::Discarded { reason } = &ack {
                    tracing::info!(%run_id, %reason, "completion discarded by the server");
                }
                guard.current = None;
                guard.request_work(&machine_id);
            }
        }
        ServerToWorker::ShutdownDeployment { deployment_id } => {
            match state.lock().await.deployment(&deployment_id) {
                Some(deployment) => {
                    tracing::info!(%deployment_id, "deployment shut down by the server");
                    deployment.shutdown.cancel();
                }
                None => tracing::debug!(%deployment_id, "shutdown of a deployment not served here"),
            }
        }
        ServerToWorker::TerminalInput {
            deployment_id,
            input,
        } => match state.lock().await.deployment(&deployment_id) {
            Some(deployment) => {
                let _ = deployment.controls.send(input);
            }
            None => tracing::debug!(%deployment_id, "input for a deployment not served here"),
        },
    }
}

/// Runs an assignment, mirroring its events into the state and the outbox.
async fn execute(
    executor: Arc<Executor>,
    assignment: Assignment,
    state: Arc<Mutex<WorkerState>>,
    cancel: CancellationToken,
) {
    let run_id = assignment.run_id.clone();
    let (events, mut received) = mpsc::unbounded_channel();
    let run = {
        let executor = executor.clone();
        let assignment = assignment.clone();
        tokio::spawn(async move { run_assignment(&executor, &assignment, events, cancel).await })
    };
    while let Some(first) = received.recv().await {
        // Coalesce whatever is queued into as few frames as possible.
        let mut batch = vec![first];
        while let Ok(more) = received.try_recv() {
            batch.push(more);
        }
        let mut guard = state.lock().await;
        let mut messages = Vec::new();
        let Some(current) = guard.current.as_mut() else {
            continue;
        };
        let mut pending_log = String::new();
        let mut log_offset = current.log.len() as u64;
        for event in batch {
            match event {
                RunEvent::Log(text) => {
                    current.log.push_str(&text);
                    pending_log.push_str(&text);
                }
                RunEvent::ArtifactUploaded(name) => {
                    if !pending_log.is_empty() {
                        let text = std::mem::take(&mut pending_log);
                        let len = text.len() as u64;
                        messages.push(WorkerToServer::Log {
                            run_id: run_id.clone(),
                            offset: log_offset,
                            text,
                        });
                        log_offset += len;
                    }
                    current.artifacts.push(name.clone());
                    messages.push(WorkerToServer::ArtifactUploaded(ArtifactUploaded {
                        run_id: run_id.clone(),
                        artifact: name,
                    }));
                }
            }
        }
        if !pending_log.is_empty() {
            messages.push(WorkerToServer::Log {
                run_id: run_id.clone(),
                offset: log_offset,
                text: pending_log,
            });
        }
        for message in messages {
            guard.send(message);
        }
    }
    let outcome = match run.await {
        Ok(outcome) => outcome,
        Err(error) => test_looper_core::protocol::RunOutcome {
            result: test_looper_core::protocol::RunResult::Failed {
                reason: test_looper_core::protocol::FailureReason::Infrastructure,
                message: format!("the executor crashed: {error}"),
            },
            test_cases: Vec::new(),
            artifacts: Vec::new(),
        },
    };
    let mut guard = state.lock().await;
    if let Some(current) = guard
        .current
        .as_mut()
        .filter(|r| r.assignment.run_id == run_id)
    {
        current.outcome = Some(outcome.clone());
    }
    guard.send(WorkerToServer::Completed(Completion { run_id, outcome }));
}
