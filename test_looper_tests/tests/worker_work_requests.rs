//! The worker daemon keeps at most one request for work unanswered. A `WorkAvailable` push
//! that arrives while the daemon's request is on its way must not send a second one: the
//! server would answer the first with a run, then read the second as the machine having
//! dropped that run (lost, run again) and assign another that the busy worker ignores. The
//! real daemon talks to a scripted server socket on loopback here.

mod worker_support;

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use test_looper_core::protocol::{
    MachineInfo, OsConfig, ServerToWorker, WorkerToServer, HEARTBEAT_INTERVAL_SECONDS,
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

#[tokio::test]
async fn a_push_while_a_request_is_unanswered_sends_no_second_request() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let machine_id = "requests-m1";
    let settings = DaemonSettings {
        socket_url: format!("ws://{address}/api/worker/socket"),
        token: None,
        machine: MachineInfo {
            machine_id: machine_id.into(),
            cores: 1,
            ram_gb: 1,
            os: OsConfig::LinuxDocker,
        },
        idle_exit: None,
        heartbeat: Duration::from_secs(HEARTBEAT_INTERVAL_SECONDS),
    };
    let executor = worker_support::executor(engine.client(), dir.path(), "requests", machine_id);
    let daemon = tokio::spawn(run_daemon(settings, executor));

    let (stream, _) = listener.accept().await.unwrap();
    let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
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
    let (stream, _) = listener.accept().await.unwrap();
    let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
    assert_eq!(
        requests_within(&mut socket, Duration::from_secs(2)).await,
        1
    );
    daemon.abort();
}
