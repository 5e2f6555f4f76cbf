//! One worker's websocket session: decode each frame, apply it to the scheduler, answer, and
//! forward feed events meant for this machine. A broken connection cancels nothing: the run's
//! heartbeat deadline decides (the worker reconnects and resumes).

use crate::scheduler::feed::FeedEvent;
use crate::scheduler::Scheduler;
use crate::AppContext;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, Session};
use futures_util::StreamExt;
use std::sync::Arc;
use test_looper_core::protocol::{ServerToWorker, WorkerToServer};

/// Largest frame accepted from a worker (log chunks are far smaller).
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

pub async fn worker_socket(
    context: web::Data<AppContext>,
    req: HttpRequest,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    if let Err(response) = super::check_auth(&context, &req) {
        return Ok(*response);
    }
    let Some(scheduler) = context.workers.scheduler().cloned() else {
        return Ok(HttpResponse::ServiceUnavailable().body("the scheduler is not running yet"));
    };
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    actix_web::rt::spawn(run_session(
        context.into_inner(),
        scheduler,
        session,
        stream,
    ));
    Ok(response)
}

async fn send(session: &mut Session, message: &ServerToWorker) -> bool {
    match serde_json::to_string(message) {
        Ok(text) => session.text(text).await.is_ok(),
        Err(error) => {
            tracing::error!(%error, "could not encode a message to a worker");
            true
        }
    }
}

async fn run_session(
    context: Arc<AppContext>,
    scheduler: Arc<Scheduler>,
    mut session: Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    let mut feed = scheduler.subscribe();
    let mut machine_id: Option<String> = None;
    loop {
        tokio::select! {
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { break };
                match frame {
                    AggregatedMessage::Text(text) => {
                        let message: WorkerToServer = match serde_json::from_str(&text) {
                            Ok(message) => message,
                            Err(error) => {
                                tracing::warn!(%error, "undecodable worker message ignored");
                                continue;
                            }
                        };
                        let replies = handle(&context, &scheduler, &mut machine_id, message).await;
                        for reply in replies {
                            if !send(&mut session, &reply).await {
                                break;
                            }
                        }
                    }
                    AggregatedMessage::Ping(bytes) if session.pong(&bytes).await.is_err() => break,
                    AggregatedMessage::Close(_) => break,
                    _ => {}
                }
            }
            event = feed.recv() => {
                let reply = match event {
                    Ok(FeedEvent::WorkAvailable) => Some(ServerToWorker::WorkAvailable),
                    Ok(FeedEvent::RunCancelled { run_id, machine_id: target, reason })
                        if machine_id.as_deref() == Some(target.as_str()) =>
                    {
                        Some(ServerToWorker::Cancel { run_id, reason })
                    }
                    Ok(_) => None,
                    // Missed events: let the worker ask again.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        Some(ServerToWorker::WorkAvailable)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                if let Some(reply) = reply {
                    if !send(&mut session, &reply).await {
                        break;
                    }
                }
            }
        }
    }
    tracing::info!(machine = ?machine_id, "worker disconnected");
    let _ = session.close(None).await;
}

/// Applies one message; returns the replies.
async fn handle(
    context: &AppContext,
    scheduler: &Scheduler,
    machine_id: &mut Option<String>,
    message: WorkerToServer,
) -> Vec<ServerToWorker> {
    match message {
        WorkerToServer::Register { machine } => {
            let id = machine.machine_id.clone();
            match scheduler.register_machine(machine).await {
                Ok(()) => {
                    tracing::info!(machine = %id, "worker registered");
                    *machine_id = Some(id);
                }
                Err(error) => tracing::error!(%error, "register failed"),
            }
            Vec::new()
        }
        WorkerToServer::RequestWork { machine_id: id } => match scheduler.next_work(&id).await {
            Ok(Some(work)) => vec![ServerToWorker::Assign(work)],
            Ok(None) => vec![ServerToWorker::NoWork],
            Err(error) => {
                tracing::error!(%error, "next_work failed");
                vec![ServerToWorker::NoWork]
            }
        },
        WorkerToServer::Heartbeat(heartbeat) => match scheduler.heartbeat(&heartbeat).await {
            Ok(reply) => vec![ServerToWorker::HeartbeatReply(reply)],
            Err(error) => {
                tracing::error!(%error, "heartbeat failed");
                Vec::new()
            }
        },
        WorkerToServer::ArtifactUploaded(uploaded) => {
            let run_id = uploaded.run_id.clone();
            match scheduler.artifact_uploaded(&uploaded).await {
                Ok(ack) => vec![ServerToWorker::ArtifactAck { run_id, ack }],
                Err(error) => {
                    tracing::error!(%error, "artifact_uploaded failed");
                    Vec::new()
                }
            }
        }
        WorkerToServer::Completed(completion) => {
            let run_id = completion.run_id.clone();
            match scheduler.record_completion(&completion).await {
                Ok(ack) => vec![ServerToWorker::CompletionAck { run_id, ack }],
                Err(error) => {
                    // No ack: the worker keeps the outcome and resends it.
                    tracing::error!(%error, "record_completion failed");
                    Vec::new()
                }
            }
        }
        WorkerToServer::Log {
            run_id,
            offset,
            text,
        } => {
            if let Err(error) = super::logs::append(&context.redis, &run_id, offset, &text).await {
                tracing::warn!(%error, %run_id, "could not store a log chunk");
            }
            Vec::new()
        }
        WorkerToServer::TerminalOutput { deployment_id, .. } => {
            tracing::debug!(%deployment_id, "terminal output for a deployment nobody watches");
            Vec::new()
        }
        WorkerToServer::DeploymentExited { deployment_id } => {
            tracing::info!(%deployment_id, "deployment exited");
            Vec::new()
        }
    }
}
