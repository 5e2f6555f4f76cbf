//! The worker daemon's requests for work. It keeps at most one request unanswered: a
//! `WorkAvailable` push that arrives while the daemon's request is on its way must not send a
//! second one (the server would answer the first with a run, then read the second as the
//! machine having dropped that run, lost and run again, and assign another that the busy
//! worker ignores). A worker that shares its cores asks again while it has cores left,
//! listing the runs it holds, and runs its jobs at once. The real daemon talks to a scripted
//! server socket on loopback here.

mod worker_support;

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use test_looper_core::protocol::{
    CompletionAck, MachineInfo, OsConfig, ServerToWorker, Work, WorkerToServer,
    HEARTBEAT_INTERVAL_SECONDS,
};
use test_looper_tests::DockerEngine;
use test_looper_worker::daemon::{run_daemon, DaemonSettings};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn send(socket: &mut Socket, message: &ServerToWorker) {
    let text = serde_json::to_string(message).unwrap();
    socket.send(Message::text(text)).await.unwrap();
}

/// The work requests the daemon sends within `window` (other messages are skipped).
async fn requests_within(socket: &mut Socket, window: Duration) -> usize {
    let mut requests = 0;
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, socket.next()).await {
        if let Message::Text(text) = frame.unwrap() {
            let message: WorkerToServer = serde_json::from_str(&text).unwrap();
            if matches!(message, WorkerToServer::RequestWork { .. }) {
                requests += 1;
            }
        }
    }
    requests
}

/// A real daemon for `machine` talking to a scripted socket on loopback.
struct ScriptedWorker {
    engine: DockerEngine,
    _dir: tempfile::TempDir,
    listener: TcpListener,
    daemon: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl ScriptedWorker {
    async fn start(machine: MachineInfo, scope: &str) -> ScriptedWorker {
        let engine = DockerEngine::connect().await;
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let executor =
            worker_support::executor(engine.client(), dir.path(), scope, &machine.machine_id);
        let settings = DaemonSettings {
            socket_url: format!("ws://{address}/api/worker/socket"),
            token: None,
            machine,
            idle_exit: None,
            heartbeat: Duration::from_secs(HEARTBEAT_INTERVAL_SECONDS),
        };
        let daemon = tokio::spawn(run_daemon(settings, executor));
        ScriptedWorker {
            engine,
            _dir: dir,
            listener,
            daemon,
        }
    }

    /// The daemon's next session.
    async fn accept(&self) -> Socket {
        let (stream, _) = self.listener.accept().await.unwrap();
        tokio_tungstenite::accept_async(stream).await.unwrap()
    }
}

fn linux_machine(machine_id: &str, cores: u32, shares_cores: bool) -> MachineInfo {
    MachineInfo {
        machine_id: machine_id.into(),
        cores,
        ram_gb: cores,
        os: OsConfig::LinuxDocker,
        shares_cores,
    }
}

#[tokio::test]
async fn a_push_while_a_request_is_unanswered_sends_no_second_request() {
    let worker = ScriptedWorker::start(linux_machine("requests-m1", 1, false), "requests").await;
    let mut socket = worker.accept().await;
    // Registration and the first request come at once.
    assert_eq!(
        requests_within(&mut socket, Duration::from_secs(2)).await,
        1
    );
    // Pushes before the answer: the request is still out, nothing more is asked.
    for _ in 0..3 {
        send(&mut socket, &ServerToWorker::WorkAvailable).await;
    }
    assert_eq!(
        requests_within(&mut socket, Duration::from_millis(500)).await,
        0,
        "a second request while the first is unanswered"
    );
    // Answered: the next push asks again, once.
    send(&mut socket, &ServerToWorker::NoWork).await;
    send(&mut socket, &ServerToWorker::WorkAvailable).await;
    send(&mut socket, &ServerToWorker::WorkAvailable).await;
    assert_eq!(
        requests_within(&mut socket, Duration::from_millis(500)).await,
        1
    );

    // A new session forgets the old session's request: it asks again at once.
    drop(socket);
    let mut socket = worker.accept().await;
    assert_eq!(
        requests_within(&mut socket, Duration::from_secs(2)).await,
        1
    );
    worker.daemon.abort();
}

/// The next message from the daemon that `pick` accepts, within `limit`.
async fn next_matching<T>(
    socket: &mut Socket,
    limit: Duration,
    mut pick: impl FnMut(&WorkerToServer) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, socket.next()).await {
        if let Message::Text(text) = frame.unwrap() {
            let message: WorkerToServer = serde_json::from_str(&text).unwrap();
            if let Some(found) = pick(&message) {
                return Some(found);
            }
        }
    }
    None
}

fn holding_of(message: &WorkerToServer) -> Option<Vec<String>> {
    match message {
        WorkerToServer::RequestWork { holding, .. } => Some(holding.clone()),
        _ => None,
    }
}

/// A worker that shares its cores takes a second run while the first goes on, on one core
/// each, listing what it holds with every request; with its cores all granted it asks for
/// nothing, and an acknowledged completion frees the room again.
#[tokio::test]
async fn a_sharing_worker_runs_two_jobs_at_once_and_lists_what_it_holds() {
    let machine_id = "sharing-m1";
    let worker = ScriptedWorker::start(linux_machine(machine_id, 2, true), "sharing").await;
    let mut socket = worker.accept().await;

    let resolved = worker_support::resolved_fixture();
    let first = worker_support::assignment(&resolved, "timeout/linux", "run-share-a");
    let second = worker_support::assignment(&resolved, "timeout/linux", "run-share-b");
    let wait = Duration::from_secs(5);
    assert_eq!(
        next_matching(&mut socket, wait, holding_of).await,
        Some(vec![])
    );
    send(
        &mut socket,
        &ServerToWorker::Assign(Work::Run(Box::new(first))),
    )
    .await;
    // One of its two cores is granted: it asks again at once, holding the first run.
    assert_eq!(
        next_matching(&mut socket, wait, holding_of).await,
        Some(vec!["run-share-a".to_string()])
    );
    send(
        &mut socket,
        &ServerToWorker::Assign(Work::Run(Box::new(second))),
    )
    .await;

    // Both commands run at the same time (each sleeps for ten minutes once started); the
    // worker asks for nothing more meanwhile.
    let mut started = std::collections::BTreeSet::new();
    let mut asked = false;
    next_matching(&mut socket, Duration::from_secs(180), |message| {
        match message {
            WorkerToServer::Log { run_id, text, .. }
                if text.lines().any(|line| line.trim() == "started") =>
            {
                started.insert(run_id.clone());
            }
            WorkerToServer::RequestWork { .. } => asked = true,
            _ => {}
        }
        (started.len() == 2).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("both runs should be going, started: {started:?}"));
    assert!(!asked, "asked for work with both cores granted");
    // Two containers, each held to the one core granted to its run.
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("test-looper.worker={machine_id}")],
    )]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .filters(&filters)
        .build();
    let containers = worker
        .engine
        .client()
        .list_containers(Some(options))
        .await
        .unwrap();
    assert_eq!(containers.len(), 2, "{containers:?}");
    for container in containers {
        let id = container.id.unwrap();
        let inspected = worker
            .engine
            .client()
            .inspect_container(
                &id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .unwrap();
        let nano_cpus = inspected.host_config.and_then(|config| config.nano_cpus);
        assert_eq!(nano_cpus, Some(1_000_000_000), "{id}");
    }

    // The first run is cancelled; once its completion is acknowledged there is room again.
    send(
        &mut socket,
        &ServerToWorker::Cancel {
            run_id: "run-share-a".into(),
            reason: "test".into(),
        },
    )
    .await;
    let completed = next_matching(
        &mut socket,
        Duration::from_secs(60),
        |message| match message {
            WorkerToServer::Completed(completion) => Some(completion.run_id.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(completed.as_deref(), Some("run-share-a"));
    send(
        &mut socket,
        &ServerToWorker::CompletionAck {
            run_id: "run-share-a".into(),
            ack: CompletionAck::Discarded {
                reason: "cancelled".into(),
            },
        },
    )
    .await;
    assert_eq!(
        next_matching(&mut socket, wait, holding_of).await,
        Some(vec!["run-share-b".to_string()])
    );

    send(
        &mut socket,
        &ServerToWorker::Cancel {
            run_id: "run-share-b".into(),
            reason: "test".into(),
        },
    )
    .await;
    next_matching(&mut socket, Duration::from_secs(60), |message| {
        matches!(message, WorkerToServer::Completed(c) if c.run_id == "run-share-b").then_some(())
    })
    .await
    .expect("the second run ends");
    worker.daemon.abort();
}
