//! One websocket session: register, replay the runs or the deployment, then serve
//! assignments, cancellations, terminal input and acknowledgements until the connection drops.
//! Heartbeats go out every interval: one per run (also a finished one whose completion is
//! not acknowledged yet), the deployment, or one naming nothing when idle (so the server
//! can tell a live idle machine from a gone one). Each run's log is pulled from [`RunLog`]
//! as the link accepts it, and its completion is sent once its log is out, then resent
//! every interval until acknowledged (M3). A machine that shares its cores asks for more
//! work while it has cores not granted to a run.

use super::deployments::{self, terminal_output};
use super::run_log::RunLog;
use super::state::{CurrentRun, WorkerState, OUTBOX_CAPACITY};
use super::DaemonSettings;
use crate::executor::{run_assignment, Executor, RunEvent};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use test_looper_core::protocol::{
    ArtifactUploaded, Assignment, Completion, CompletionAck, Heartbeat, HeartbeatReply,
    ServerToWorker, Work, WorkerToServer,
};
use tokio::sync::{mpsc, Mutex, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Log frames written per turn of the session loop (the rest on the next turns, so that
/// a long replay does not hold up heartbeats and replies).
const LOG_FRAMES_PER_TURN: usize = 4;
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
    // Control messages go through one bounded queue, drained by the select loop; log text
    // is pulled from the state by `pump`.
    let (outbox, mut outgoing) = mpsc::channel::<WorkerToServer>(OUTBOX_CAPACITY);
    let machine_id = settings.machine.machine_id.clone();
    let wake = state.lock().await.wake.clone();

    outbox.try_send(WorkerToServer::Register {
        machine: settings.machine.clone(),
    })?;
    replay(&state, outbox, &machine_id).await;
    tracing::info!(url = %settings.socket_url, "connected to the server");

    let mut heartbeat = tokio::time::interval(settings.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_since = Instant::now();
    let mut last_request = Instant::now();
    loop {
        tokio::select! {
            Some(message) = outgoing.recv() => write(&state, &mut sink, message).await?,
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
                handle(message, settings, &executor, &state).await;
                if state.lock().await.is_busy() {
                    idle_since = Instant::now();
                }
            }
            _ = heartbeat.tick() => {
                let mut guard = state.lock().await;
                let busy = guard.is_busy();
                if busy {
                    // Idle time counts from the end of the work, not from its start.
                    idle_since = Instant::now();
                }
                let ids = guard.heartbeat_ids();
                if ids.is_empty() {
                    // Idle machines beat too: the server drops a machine that stays silent.
                    guard.send(WorkerToServer::Heartbeat(Heartbeat {
                        machine_id: machine_id.clone(),
                        run_id: None,
                    }));
                }
                for id in ids {
                    guard.send(WorkerToServer::Heartbeat(Heartbeat {
                        machine_id: machine_id.clone(),
                        run_id: Some(id),
                    }));
                }
                if !busy {
                    if let Some(limit) = settings.idle_exit {
                        if idle_since.elapsed() >= limit {
                            drop(guard);
                            let _ = sink.send(Message::Close(None)).await;
                            return Ok(SessionEnd::IdleExit);
                        }
                    }
                }
                if guard.has_room() && last_request.elapsed() >= IDLE_REQUEST_INTERVAL {
                    last_request = Instant::now();
                    guard.request_work(&machine_id);
                }
            }
            _ = wake.notified() => {}
        }
        if state.lock().await.outbox_overflowed {
            anyhow::bail!("the outgoing queue overflowed");
        }
        pump(&state, &mut sink, &mut outgoing, settings.heartbeat, &wake).await?;
    }
}

/// Writes one message to the link (noting a heartbeat's log offset, see
/// [`WorkerState::beat_sent`]).
async fn write<S>(
    state: &Mutex<WorkerState>,
    sink: &mut S,
    message: WorkerToServer,
) -> anyhow::Result<()>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    if let WorkerToServer::Heartbeat(beat) = &message {
        state.lock().await.beat_sent(beat.run_id.as_deref());
    }
    sink.send(Message::text(serde_json::to_string(&message)?))
        .await?;
    Ok(())
}

/// Writes the runs' unsent log (a few frames per turn, taken from the runs in turn), then, once the
/// queued reports are out, the completion of each run whose log is out, if it was not sent
/// within the last `resend_after`.
async fn pump<S>(
    state: &Mutex<WorkerState>,
    sink: &mut S,
    outgoing: &mut mpsc::Receiver<WorkerToServer>,
    resend_after: Duration,
    wake: &Notify,
) -> anyhow::Result<()>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let frames = {
        let mut guard = state.lock().await;
        let mut frames = Vec::new();
        // Round robin: one run's flood of output does not hold up another's log.
        'rounds: while frames.len() < LOG_FRAMES_PER_TURN {
            let before = frames.len();
            for run in guard.runs.values_mut() {
                if frames.len() == LOG_FRAMES_PER_TURN {
                    break 'rounds;
                }
                if let Some((offset, text)) = run.log.next_frame() {
                    frames.push(WorkerToServer::Log {
                        run_id: run.assignment.run_id.clone(),
                        offset,
                        text,
                    });
                }
            }
            if frames.len() == before {
                break;
            }
        }
        frames
    };
    for frame in frames {
        sink.send(Message::text(serde_json::to_string(&frame)?))
            .await?;
    }
    let completions = {
        let mut guard = state.lock().await;
        let mut more_log = false;
        let mut completions = Vec::new();
        for run in guard.runs.values_mut() {
            if !run.log.drained() {
                more_log = true;
                continue;
            }
            let due = run
                .completion_sent
                .is_none_or(|sent| sent.elapsed() >= resend_after);
            if let (Some(outcome), true) = (&run.outcome, due) {
                if run.completion_sent.is_some() {
                    tracing::info!(run_id = %run.assignment.run_id, "completion not acknowledged yet: resending it");
                }
                run.completion_sent = Some(Instant::now());
                completions.push(WorkerToServer::Completed(Completion {
                    run_id: run.assignment.run_id.clone(),
                    outcome: outcome.clone(),
                }));
            }
        }
        if more_log {
            // More log next turn.
            wake.notify_one();
        }
        completions
    };
    if completions.is_empty() {
        return Ok(());
    }
    // Artifact reports queued before the outcomes go first.
    while let Ok(message) = outgoing.try_recv() {
        write(state, sink, message).await?;
    }
    for completion in completions {
        write(state, sink, completion).await?;
    }
    Ok(())
}

/// After (re)connecting: each run's heartbeat, artifacts, log (from what the server is known
/// to have) and outcome; or the current deployment's heartbeat and output tail; or (a
/// reported deployment exit and) a request for work (also with runs, while there is room).
async fn replay(
    state: &Mutex<WorkerState>,
    outbox: mpsc::Sender<WorkerToServer>,
    machine_id: &str,
) {
    let mut guard = state.lock().await;
    guard.outbox = Some(outbox);
    guard.outbox_overflowed = false;
    guard.beats.clear();
    guard.beats_untracked = false;
    // A request sent on an earlier session is answered on none.
    guard.work_requested = false;
    if let Some(deployment) = &guard.deployment {
        let deployment_id = deployment.assignment.deployment_id.clone();
        let resend: Vec<WorkerToServer> = deployment
            .output
            .resend()
            .into_iter()
            .map(|(offset, chunk)| terminal_output(&deployment_id, offset, &chunk))
            .collect();
        guard.send(WorkerToServer::Heartbeat(Heartbeat {
            machine_id: machine_id.to_string(),
            run_id: Some(deployment_id),
        }));
        for message in resend {
            guard.send(message);
        }
        return;
    }
    if guard.runs.is_empty() {
        if let Some(deployment_id) = guard.exited_deployment.clone() {
            guard.send(WorkerToServer::DeploymentExited { deployment_id });
        }
        guard.request_work(machine_id);
        return;
    }
    let mut replayed = Vec::new();
    for run in guard.runs.values_mut() {
        run.log.rewind();
        run.completion_sent = None;
        let run_id = run.assignment.run_id.clone();
        replayed.push(WorkerToServer::Heartbeat(Heartbeat {
            machine_id: machine_id.to_string(),
            run_id: Some(run_id.clone()),
        }));
        for artifact in &run.artifacts {
            replayed.push(WorkerToServer::ArtifactUploaded(ArtifactUploaded {
                run_id: run_id.clone(),
                artifact: artifact.clone(),
            }));
        }
    }
    for message in replayed {
        guard.send(message);
    }
    guard.request_work(machine_id);
    guard.wake.notify_one();
}

async fn handle(
    message: ServerToWorker,
    settings: &DaemonSettings,
    executor: &Arc<Executor>,
    state: &Arc<Mutex<WorkerState>>,
) {
    let machine_id = settings.machine.machine_id.clone();
    match message {
        ServerToWorker::Assign(Work::Run(assignment)) => {
            let mut guard = state.lock().await;
            guard.work_answered();
            if !guard.has_room() || guard.runs.contains_key(&assignment.run_id) {
                tracing::warn!(offered = %assignment.run_id, "assignment without room ignored");
                return;
            }
            guard.exited_deployment = None;
            let cancel = CancellationToken::new();
            guard.runs.insert(
                assignment.run_id.clone(),
                CurrentRun {
                    assignment: (*assignment).clone(),
                    log: RunLog::new(Some(run_log_file(&executor.storage, &assignment.run_id))),
                    artifacts: Vec::new(),
                    outcome: None,
                    completion_sent: None,
                    cancel: cancel.clone(),
                },
            );
            guard.send(WorkerToServer::Heartbeat(Heartbeat {
                machine_id: machine_id.clone(),
                run_id: Some(assignment.run_id.clone()),
            }));
            // A machine sharing its cores takes more while it has room.
            guard.request_work(&machine_id);
            drop(guard);
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
                state
                    .lock()
                    .await
                    .send(WorkerToServer::Heartbeat(Heartbeat {
                        machine_id,
                        run_id: Some(deployment_id),
                    }));
            } else {
                tracing::warn!(%deployment_id, "deployment while busy ignored");
            }
        }
        ServerToWorker::NoWork => state.lock().await.work_answered(),
        ServerToWorker::WorkAvailable => state.lock().await.request_work(&machine_id),
        ServerToWorker::HeartbeatReply(HeartbeatReply::Continue) => {
            state.lock().await.beat_answered();
        }
        ServerToWorker::HeartbeatReply(HeartbeatReply::UnknownMachine) => {
            let mut guard = state.lock().await;
            guard.beat_answered();
            // Dropped by the server (silent too long, or its session closed): register
            // again, and ask for work if idle.
            guard.send(WorkerToServer::Register {
                machine: settings.machine.clone(),
            });
            guard.request_work(&machine_id);
        }
        ServerToWorker::HeartbeatReply(HeartbeatReply::Cancel { run_id, reason }) => {
            let mut guard = state.lock().await;
            guard.beat_answered();
            cancel(&guard, &run_id, &reason);
        }
        ServerToWorker::Cancel { run_id, reason } => {
            cancel(&*state.lock().await, &run_id, &reason);
        }
        ServerToWorker::ArtifactAck { run_id, ack } => {
            tracing::debug!(%run_id, ?ack, "artifact acknowledged");
        }
        ServerToWorker::CompletionAck { run_id, ack } => {
            let mut guard = state.lock().await;
            let finished = guard
                .runs
                .get(&run_id)
                .is_some_and(|run| run.outcome.is_some());
            if finished {
                if let CompletionAck::Discarded { reason } = &ack {
                    tracing::info!(%run_id, %reason, "completion discarded by the server");
                }
                guard.runs.remove(&run_id);
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

/// The server cancelled `run_id` (a run or a deployment) with `reason`. A finished run
/// has nothing left to stop (its completion is still sent until acknowledged).
fn cancel(state: &WorkerState, run_id: &str, reason: &str) {
    if let Some(run) = state.runs.get(run_id).filter(|run| run.outcome.is_none()) {
        tracing::info!(%run_id, %reason, "run cancelled by the server");
        run.cancel.cancel();
    } else if let Some(deployment) = state.deployment(run_id) {
        tracing::info!(deployment_id = %run_id, %reason, "deployment cancelled by the server");
        deployment.shutdown.cancel();
    }
}

/// Where the executor keeps the whole log of `run_id` while it runs (`run.rs`); the live
/// log replays bytes older than its in-memory tail from there.
fn run_log_file(storage: &std::path::Path, run_id: &str) -> std::path::PathBuf {
    storage
        .join("runs")
        .join(run_id)
        .join("test_looper_log.txt")
}

/// Runs an assignment, mirroring its events into the state (log text into the run's
/// [`RunLog`], pulled by the session; artifact reports into the outbox).
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
    // Unbounded, but drained at once into the bounded log tail: this loop never waits on
    // the network.
    while let Some(first) = received.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = received.try_recv() {
            batch.push(more);
        }
        let mut guard = state.lock().await;
        let Some(current) = guard.runs.get_mut(&run_id) else {
            continue;
        };
        let mut reports = Vec::new();
        for event in batch {
            match event {
                RunEvent::Log(text) => current.log.push(&text),
                RunEvent::ArtifactUploaded(name) => {
                    current.artifacts.push(name.clone());
                    reports.push(WorkerToServer::ArtifactUploaded(ArtifactUploaded {
                        run_id: run_id.clone(),
                        artifact: name,
                    }));
                }
            }
        }
        for report in reports {
            guard.send(report);
        }
        guard.wake.notify_one();
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
    // The session sends the completion once the log is out (and again until acknowledged).
    let mut guard = state.lock().await;
    if let Some(current) = guard.runs.get_mut(&run_id) {
        current.outcome = Some(outcome);
    }
    guard.wake.notify_one();
}
