//! One worker's websocket session: decode each frame, apply it to the scheduler, answer, and
//! forward feed events meant for this machine. A broken connection cancels nothing: the run's
//! heartbeat deadline decides (the worker reconnects and resumes).
//!
//! Deployments: the session remembers the deployments its machine holds (from the
//! `Assign(Work::Deployment)` replies it sends, and after a reconnect from the worker's
//! registration, heartbeats and terminal output), feeds their terminal output into the
//! [`TerminalHub`](crate::deployments::TerminalHub), forwards browser input for them as
//! [`ServerToWorker::TerminalInput`], and tells the worker to shut one down when the
//! scheduler ended it (feed event) or when the worker reports output for a deployment that
//! is no longer alive.

use crate::deployments::InputRoute;
use crate::scheduler::feed::FeedEvent;
use crate::scheduler::Scheduler;
use crate::AppContext;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, Session};
use base64::Engine as _;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use test_looper_core::protocol::{ServerToWorker, TerminalInput, Work, WorkerToServer};
use tokio::sync::mpsc;

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

async fn send_all(session: &mut Session, messages: Vec<ServerToWorker>) -> bool {
    for message in &messages {
        if !send(session, message).await {
            return false;
        }
    }
    true
}

async fn run_session(
    context: Arc<AppContext>,
    scheduler: Arc<Scheduler>,
    mut session: Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    let mut feed = scheduler.subscribe();
    let (route, mut inputs) = mpsc::unbounded_channel();
    let mut worker = WorkerSession {
        context,
        scheduler,
        machine_id: None,
        deployments: HashSet::new(),
        route,
    };
    loop {
        let replies = tokio::select! {
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { break };
                match frame {
                    AggregatedMessage::Text(text) => {
                        match serde_json::from_str::<WorkerToServer>(&text) {
                            Ok(message) => worker.handle(message).await,
                            Err(error) => {
                                tracing::warn!(%error, "undecodable worker message ignored");
                                continue;
                            }
                        }
                    }
                    AggregatedMessage::Ping(bytes) if session.pong(&bytes).await.is_err() => break,
                    AggregatedMessage::Close(_) => break,
                    _ => continue,
                }
            }
            event = feed.recv() => match event {
                Ok(event) => worker.feed_event(event).await,
                // Missed events: let the worker ask again, re-check its deployments.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let held: Vec<String> = worker.deployments.iter().cloned().collect();
                    let mut replies = worker.ended_deployments(&held).await;
                    replies.push(ServerToWorker::WorkAvailable);
                    replies
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            Some((deployment_id, input)) = inputs.recv() => worker.input(deployment_id, input),
        };
        if !send_all(&mut session, replies).await {
            break;
        }
    }
    tracing::info!(machine = ?worker.machine_id, "worker disconnected");
    worker.release_routes();
    if let Some(machine_id) = &worker.machine_id {
        if let Err(error) = worker.scheduler.machine_disconnected(machine_id).await {
            tracing::warn!(%error, %machine_id, "could not record a worker's disconnection");
        }
    }
    let _ = session.close(None).await;
}

/// What one session knows about its worker.
struct WorkerSession {
    context: Arc<AppContext>,
    scheduler: Arc<Scheduler>,
    machine_id: Option<String>,
    /// Deployments the machine holds (their input is routed to this session).
    deployments: HashSet<String>,
    route: InputRoute,
}

impl WorkerSession {
    /// Applies one message; returns the replies.
    async fn handle(&mut self, message: WorkerToServer) -> Vec<ServerToWorker> {
        let scheduler = self.scheduler.clone();
        match message {
            WorkerToServer::Register { machine } => {
                let id = machine.machine_id.clone();
                match scheduler.register_machine(machine).await {
                    Ok(()) => {
                        tracing::info!(machine = %id, "worker registered");
                        self.machine_id = Some(id);
                        self.claim_held_deployments().await;
                    }
                    Err(error) => tracing::error!(%error, "register failed"),
                }
                Vec::new()
            }
            WorkerToServer::RequestWork { machine_id: id } => {
                match scheduler.next_work(&id).await {
                    Ok(Some(work)) => {
                        if let Work::Deployment(deployment) = &work {
                            let deployment_id = deployment.deployment_id.clone();
                            self.context.deployments.announce(
                                &deployment_id,
                                &format!("Machine {id} accepting deployment."),
                            );
                            self.claim(&deployment_id);
                        }
                        vec![ServerToWorker::Assign(work)]
                    }
                    Ok(None) => vec![ServerToWorker::NoWork],
                    Err(error) => {
                        tracing::error!(%error, "next_work failed");
                        vec![ServerToWorker::NoWork]
                    }
                }
            }
            WorkerToServer::Heartbeat(heartbeat) => {
                if let Some(id) = &heartbeat.run_id {
                    if !self.deployments.contains(id) && self.alive_here(id).await == Some(true) {
                        self.claim(id);
                    }
                }
                match scheduler.heartbeat(&heartbeat).await {
                    Ok(reply) => vec![ServerToWorker::HeartbeatReply(reply)],
                    Err(error) => {
                        tracing::error!(%error, "heartbeat failed");
                        Vec::new()
                    }
                }
            }
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
                if let Err(error) = super::logs::append(
                    &self.context.redis,
                    &super::logs::LiveLogLimits::from_config(&self.context.config),
                    &run_id,
                    offset,
                    &text,
                )
                .await
                {
                    tracing::warn!(%error, %run_id, "could not store a log chunk");
                }
                Vec::new()
            }
            WorkerToServer::TerminalOutput {
                deployment_id,
                offset,
                data,
            } => self.terminal_output(deployment_id, offset, &data).await,
            WorkerToServer::DeploymentExited { deployment_id } => {
                tracing::info!(%deployment_id, machine = ?self.machine_id, "deployment exited");
                self.forget(&deployment_id);
                if let Err(error) = scheduler.shutdown_deployment(&deployment_id).await {
                    tracing::warn!(%error, %deployment_id, "could not end the exited deployment");
                }
                self.context.deployments.terminate(&deployment_id);
                Vec::new()
            }
        }
    }

    async fn terminal_output(
        &mut self,
        deployment_id: String,
        offset: u64,
        data: &str,
    ) -> Vec<ServerToWorker> {
        if !self.deployments.contains(&deployment_id) {
            match self.alive_here(&deployment_id).await {
                Some(true) => self.claim(&deployment_id),
                Some(false) => {
                    tracing::warn!(%deployment_id, machine = ?self.machine_id,
                        "terminal output for a deployment held by another machine ignored");
                    return Vec::new();
                }
                None => return vec![ServerToWorker::ShutdownDeployment { deployment_id }],
            }
        }
        match base64::engine::general_purpose::STANDARD.decode(data) {
            Ok(bytes) => {
                self.context
                    .deployments
                    .worker_output(&deployment_id, offset, &bytes);
            }
            Err(error) => tracing::warn!(%error, %deployment_id, "undecodable terminal output"),
        }
        Vec::new()
    }

    /// Feed events addressed to this machine.
    async fn feed_event(&mut self, event: FeedEvent) -> Vec<ServerToWorker> {
        match event {
            FeedEvent::WorkAvailable => vec![ServerToWorker::WorkAvailable],
            FeedEvent::RunCancelled {
                run_id,
                machine_id,
                reason,
            } if self.machine_id.as_deref() == Some(machine_id.as_str()) => {
                vec![ServerToWorker::Cancel { run_id, reason }]
            }
            FeedEvent::DeploymentsChanged { deployment_ids } => {
                let held: Vec<String> = deployment_ids
                    .into_iter()
                    .filter(|id| self.deployments.contains(id))
                    .collect();
                self.ended_deployments(&held).await
            }
            _ => Vec::new(),
        }
    }

    /// Browser input for a deployment this machine holds.
    fn input(&self, deployment_id: String, input: TerminalInput) -> Vec<ServerToWorker> {
        if self.deployments.contains(&deployment_id) {
            vec![ServerToWorker::TerminalInput {
                deployment_id,
                input,
            }]
        } else {
            Vec::new()
        }
    }

    /// Of `held`, those the scheduler has ended: the worker is told to shut them down.
    async fn ended_deployments(&mut self, held: &[String]) -> Vec<ServerToWorker> {
        let mut replies = Vec::new();
        for deployment_id in held {
            if self.alive_here(deployment_id).await != Some(true) {
                self.forget(deployment_id);
                self.context.deployments.terminate(deployment_id);
                replies.push(ServerToWorker::ShutdownDeployment {
                    deployment_id: deployment_id.clone(),
                });
            }
        }
        replies
    }

    /// `Some(true)`: alive on this machine; `Some(false)`: alive elsewhere or unassigned;
    /// `None`: unknown or ended.
    async fn alive_here(&self, deployment_id: &str) -> Option<bool> {
        let machine = self.machine_id.clone();
        self.scheduler
            .read(|engine| {
                let deployment = engine.deployment(deployment_id)?;
                deployment
                    .alive
                    .then(|| deployment.machine_id.is_some() && deployment.machine_id == machine)
            })
            .await
    }

    /// After a (re)registration: the deployments the scheduler says this machine holds.
    async fn claim_held_deployments(&mut self) {
        let machine = self.machine_id.clone();
        let held: Vec<String> = self
            .scheduler
            .read(|engine| {
                engine
                    .deployments()
                    .into_iter()
                    .filter(|d| d.alive && d.machine_id.is_some() && d.machine_id == machine)
                    .map(|d| d.deployment_id)
                    .collect()
            })
            .await;
        for deployment_id in held {
            self.claim(&deployment_id);
        }
    }

    fn claim(&mut self, deployment_id: &str) {
        if self.deployments.insert(deployment_id.to_string()) {
            self.context
                .deployments
                .route_input(deployment_id, self.route.clone());
        }
    }

    fn forget(&mut self, deployment_id: &str) {
        if self.deployments.remove(deployment_id) {
            self.context.deployments.unroute(deployment_id, &self.route);
        }
    }

    fn release_routes(&mut self) {
        for deployment_id in std::mem::take(&mut self.deployments) {
            self.context
                .deployments
                .unroute(&deployment_id, &self.route);
        }
    }
}
