//! One worker's websocket session: decode each frame, apply it to the scheduler, answer, and
//! forward feed events meant for this machine. A broken connection cancels nothing: the run's
//! heartbeat deadline decides (the worker reconnects and resumes).
//!
//! Binding (H2, L1): a session acts for the one machine it registered, and only while no other
//! live session holds that machine id. Messages before the registration, naming another
//! machine, or about runs and deployments assigned to another machine are refused and logged
//! (a completion or artifact report gets a refusing ack); after [`MAX_REFUSALS`] the session
//! is closed. Run ids in `Log` are validated and must name a run of this machine before they
//! become Redis keys. The server pings the worker and closes a session that stays silent for
//! [`SILENCE_LIMIT`], so a half-open connection does not hold its machine id for long.
//!
//! Deployments: the session remembers the deployments its machine holds (from the
//! `Assign(Work::Deployment)` replies it sends, and after a reconnect from the worker's
//! registration, heartbeats and terminal output), feeds their terminal output into the
//! [`TerminalHub`](crate::deployments::TerminalHub), forwards browser input for them as
//! [`ServerToWorker::TerminalInput`], and tells the worker to shut one down when the
//! scheduler ended it (feed event) or when the worker reports output for a deployment that
//! is no longer alive.

use super::auth::WorkerCredential;
use super::sessions::{MachineClaim, TAKEOVER_WAIT};
use crate::deployments::{InputRoute, INPUT_QUEUE};
use crate::scheduler::feed::FeedEvent;
use crate::scheduler::Scheduler;
use crate::views::paths;
use crate::AppContext;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use base64::Engine as _;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use test_looper_core::protocol::{
    ArtifactAck, CompletionAck, ServerToWorker, TerminalInput, Work, WorkerToServer,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Largest frame accepted from a worker (log chunks are far smaller).
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Refused messages after which the session is closed.
pub const MAX_REFUSALS: u32 = 16;
/// How often the server pings the worker.
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A session that sends nothing (not even a pong) for this long is closed.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(75);
/// Longest machine id accepted.
const MAX_MACHINE_ID_CHARS: usize = 200;

pub async fn worker_socket(
    context: web::Data<AppContext>,
    req: HttpRequest,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let credential = match super::check_auth(&context, &req) {
        Ok(credential) => credential,
        Err(response) => return Ok(*response),
    };
    let scheduler = match context.running_scheduler() {
        Ok(scheduler) => scheduler.clone(),
        Err(not_started) => {
            return Ok(HttpResponse::ServiceUnavailable().body(not_started.to_string()));
        }
    };
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    actix_web::rt::spawn(run_session(
        context.into_inner(),
        scheduler,
        credential,
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
    credential: WorkerCredential,
    mut session: Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    let mut feed = scheduler.subscribe();
    let (route, mut inputs) = mpsc::channel(INPUT_QUEUE);
    let mut worker = WorkerSession {
        context,
        scheduler,
        credential,
        claim: None,
        refused: 0,
        deployments: HashSet::new(),
        route,
    };
    let mut last_heard = Instant::now();
    let mut pings = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let close = loop {
        let reply = tokio::select! {
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { break None };
                last_heard = Instant::now();
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
                    AggregatedMessage::Ping(bytes) if session.pong(&bytes).await.is_err() => break None,
                    AggregatedMessage::Close(_) => break None,
                    _ => continue,
                }
            }
            event = feed.recv() => Reply::Send(match event {
                Ok(event) => worker.feed_event(event).await,
                // Missed events: let the worker ask again, re-check its deployments.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let held: Vec<String> = worker.deployments.iter().cloned().collect();
                    let mut replies = worker.ended_deployments(&held).await;
                    replies.push(ServerToWorker::WorkAvailable);
                    replies
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break None,
            }),
            Some((deployment_id, input)) = inputs.recv() => Reply::Send(worker.input(deployment_id, input)),
            _ = pings.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    tracing::warn!(machine = ?worker.machine_id(), "worker silent: session closed");
                    break Some(reason(CloseCode::Away, "no answer to pings"));
                }
                if session.ping(b"").await.is_err() {
                    break None;
                }
                continue;
            }
        };
        match reply {
            Reply::Send(replies) => {
                if !send_all(&mut session, replies).await {
                    break None;
                }
            }
            Reply::Close(why) => break Some(reason(CloseCode::Policy, &why)),
        }
    };
    tracing::info!(machine = ?worker.machine_id(), "worker disconnected");
    worker.release_routes();
    if let Some(machine_id) = worker.machine_id().map(str::to_string) {
        if let Err(error) = worker.scheduler.machine_disconnected(&machine_id).await {
            tracing::warn!(%error, %machine_id, "could not record a worker's disconnection");
        }
    }
    let _ = session.close(close).await;
    // The machine id is free for a new session only once this one is closed.
    drop(worker);
}

fn reason(code: CloseCode, text: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(text.to_string()),
    }
}

/// What a message leads to.
enum Reply {
    Send(Vec<ServerToWorker>),
    /// Close the session (1008) with this reason.
    Close(String),
}

/// Who a run or deployment is assigned to, as this session sees it.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    ThisMachine,
    /// Another machine, or nobody (an unassigned deployment).
    Elsewhere,
    /// The scheduler does not know the id.
    Unknown,
}

/// What one session knows about its worker.
struct WorkerSession {
    context: Arc<AppContext>,
    scheduler: Arc<Scheduler>,
    /// What the session authenticated with; a machine token allows one machine id only.
    credential: WorkerCredential,
    /// The machine this session registered (and holds against other sessions).
    claim: Option<MachineClaim>,
    /// Messages refused so far.
    refused: u32,
    /// Deployments the machine holds (their input is routed to this session).
    deployments: HashSet<String>,
    route: InputRoute,
}

impl WorkerSession {
    fn machine_id(&self) -> Option<&str> {
        self.claim.as_ref().map(MachineClaim::machine_id)
    }

    /// Logs a refused message; closes the session once too many were refused.
    fn refuse(&mut self, what: &str, replies: Vec<ServerToWorker>) -> Reply {
        self.refused += 1;
        tracing::warn!(machine = ?self.machine_id(), refused = self.refused,
            "worker message refused: {what}");
        if self.refused >= MAX_REFUSALS {
            Reply::Close(format!("{MAX_REFUSALS} messages refused; last: {what}"))
        } else {
            Reply::Send(replies)
        }
    }

    /// Whether `machine_id` is the one this session registered.
    fn is_mine(&self, machine_id: &str) -> bool {
        self.machine_id() == Some(machine_id)
    }

    /// Who holds the run or deployment `id`.
    async fn owner(&self, id: &str) -> Owner {
        let Some(mine) = self.machine_id().map(str::to_string) else {
            return Owner::Elsewhere;
        };
        let id = id.to_string();
        self.scheduler
            .read(move |engine| {
                let holder = if let Some(run) = engine.run(&id) {
                    Some(run.machine_id.clone())
                } else if let Some(deployment) = engine.deployment(&id) {
                    deployment.machine_id.clone()
                } else {
                    return Owner::Unknown;
                };
                if holder.as_deref() == Some(mine.as_str()) {
                    Owner::ThisMachine
                } else {
                    Owner::Elsewhere
                }
            })
            .await
    }

    /// Binds the session to the registered machine id, if it may have it.
    async fn bind(&mut self, machine_id: &str) -> Result<(), String> {
        if let Some(bound) = self.machine_id() {
            if bound == machine_id {
                return Ok(());
            }
            return Err(format!(
                "this session is machine {bound}; it cannot register as {machine_id}"
            ));
        }
        if machine_id.is_empty()
            || machine_id.chars().count() > MAX_MACHINE_ID_CHARS
            || machine_id.chars().any(char::is_control)
        {
            return Err("invalid machine id".into());
        }
        if let WorkerCredential::Machine(allowed) = &self.credential {
            if allowed != machine_id {
                return Err(format!(
                    "this session's machine token is for {allowed}; it cannot register as {machine_id}"
                ));
            }
        }
        match self
            .context
            .workers
            .sessions
            .claim(machine_id, TAKEOVER_WAIT)
            .await
        {
            Some(claim) => {
                self.claim = Some(claim);
                Ok(())
            }
            None => Err(format!(
                "machine {machine_id} already has a live worker session"
            )),
        }
    }

    /// Applies one message; returns the replies.
    async fn handle(&mut self, message: WorkerToServer) -> Reply {
        let scheduler = self.scheduler.clone();
        if self.claim.is_none() && !matches!(message, WorkerToServer::Register { .. }) {
            return self.refuse("message before the registration", Vec::new());
        }
        Reply::Send(match message {
            WorkerToServer::Register { machine } => {
                let id = machine.machine_id.clone();
                if let Err(why) = self.bind(&id).await {
                    tracing::warn!(machine = %id, "registration refused: {why}");
                    return Reply::Close(why);
                }
                match scheduler.register_machine(machine).await {
                    Ok(()) => {
                        tracing::info!(machine = %id, "worker registered");
                        self.claim_held_deployments().await;
                    }
                    Err(error) => tracing::error!(%error, "register failed"),
                }
                Vec::new()
            }
            WorkerToServer::RequestWork {
                machine_id: id,
                holding,
            } => {
                if !self.is_mine(&id) {
                    return self.refuse(&format!("work requested for machine {id}"), Vec::new());
                }
                match scheduler.next_work_holding(&id, holding).await {
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
                if !self.is_mine(&heartbeat.machine_id) {
                    let what = format!("heartbeat for machine {}", heartbeat.machine_id);
                    return self.refuse(&what, Vec::new());
                }
                if let Some(id) = &heartbeat.run_id {
                    let owner = self.owner(id).await;
                    if owner == Owner::Elsewhere {
                        let what = format!("heartbeat for {id} of another machine");
                        return self.refuse(&what, Vec::new());
                    }
                    if owner == Owner::ThisMachine
                        && !self.deployments.contains(id)
                        && self.alive_here(id).await == Some(true)
                    {
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
                if self.owner(&run_id).await == Owner::Elsewhere {
                    let ack = ArtifactAck::Rejected {
                        reason: "the run is assigned to another machine".into(),
                    };
                    let what = format!("artifact of {run_id} of another machine");
                    return self.refuse(&what, vec![ServerToWorker::ArtifactAck { run_id, ack }]);
                }
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
                if self.owner(&run_id).await == Owner::Elsewhere {
                    let ack = CompletionAck::Discarded {
                        reason: "the run is assigned to another machine".into(),
                    };
                    let what = format!("completion of {run_id} of another machine");
                    return self.refuse(&what, vec![ServerToWorker::CompletionAck { run_id, ack }]);
                }
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
                if paths::run_id(&run_id).is_err() {
                    return self.refuse("log chunk with an invalid run id", Vec::new());
                }
                if self.owner(&run_id).await != Owner::ThisMachine {
                    let what = format!("log chunk for {run_id}, not a run of this machine");
                    return self.refuse(&what, Vec::new());
                }
                if let Err(error) = crate::logs::intake::append(
                    &self.context.redis,
                    &crate::logs::intake::LiveLogLimits::from_config(&self.context.config),
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
                if !self.deployments.contains(&deployment_id)
                    && self.owner(&deployment_id).await != Owner::ThisMachine
                {
                    let what = format!("exit of {deployment_id}, not a deployment of this machine");
                    return self.refuse(&what, Vec::new());
                }
                tracing::info!(%deployment_id, machine = ?self.machine_id(), "deployment exited");
                self.forget(&deployment_id);
                if let Err(error) = scheduler.shutdown_deployment(&deployment_id).await {
                    tracing::warn!(%error, %deployment_id, "could not end the exited deployment");
                }
                self.context.deployments.terminate(&deployment_id);
                Vec::new()
            }
        })
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
                    tracing::warn!(%deployment_id, machine = ?self.machine_id(),
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
            } if self.is_mine(&machine_id) => {
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
        let machine = self.machine_id().map(str::to_string);
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
        let machine = self.machine_id().map(str::to_string);
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
