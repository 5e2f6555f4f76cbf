//! A completion the server does not acknowledge (it could not store it, M3) is resent by
//! the worker every heartbeat interval until it is acknowledged, the run is heartbeated
//! meanwhile (so it is not declared lost), it is counted once, and the worker then takes
//! new work. The real worker daemon runs a real assignment in Docker against the real
//! server, through a relay on loopback that withholds the first `CompletionAck`s.

use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_looper_artifacts::DiskStore;
use test_looper_core::protocol::{MachineInfo, OsConfig, ServerToWorker, WorkerToServer};
use test_looper_core::scheduling::RunState;
use test_looper_tests::install::{one_test_yml, wait_until, Install, PoolOptions};
use test_looper_tests::DockerEngine;
use test_looper_worker::daemon::http_sources::HttpSources;
use test_looper_worker::daemon::{run_daemon, DaemonSettings};
use test_looper_worker::executor::{image::ImageCache, Executor};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// What the relay saw.
#[derive(Default, Clone)]
struct Seen {
    /// Run ids of the `Completed` messages the worker sent, in order.
    completions: Vec<String>,
    /// Heartbeats naming a run after its first completion was sent.
    beats_after_completion: usize,
    /// Work requests after the relay let an acknowledgement through.
    requests_after_ack: usize,
    acks_withheld: usize,
    acks_passed: usize,
}

/// Acknowledgements the relay drops before it lets one through.
const WITHHELD: usize = 3;

/// Relays worker sessions to `upstream`, dropping the first [`WITHHELD`] `CompletionAck`s.
async fn relay(listener: TcpListener, upstream: String, seen: Arc<Mutex<Seen>>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(relay_one(stream, upstream.clone(), seen.clone()));
    }
}

#[allow(clippy::result_large_err)] // the callback's error type is tungstenite's
async fn relay_one(stream: TcpStream, upstream: String, seen: Arc<Mutex<Seen>>) {
    let authorization = Arc::new(Mutex::new(None));
    let header = authorization.clone();
    let Ok(worker) = tokio_tungstenite::accept_hdr_async(
        stream,
        move |request: &Request, response: Response| {
            *header.lock().unwrap() = request.headers().get("authorization").cloned();
            Ok(response)
        },
    )
    .await
    else {
        return;
    };
    let mut request = upstream.into_client_request().unwrap();
    if let Some(value) = authorization.lock().unwrap().take() {
        request.headers_mut().insert("authorization", value);
    }
    let (server, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect to the server");
    let (mut to_worker, mut from_worker) = worker.split();
    let (mut to_server, mut from_server) = server.split();
    loop {
        tokio::select! {
            frame = from_worker.next() => {
                let Some(Ok(frame)) = frame else { break };
                if let Message::Text(text) = &frame {
                    let message: WorkerToServer = serde_json::from_str(text).unwrap();
                    let mut seen = seen.lock().unwrap();
                    match message {
                        WorkerToServer::Completed(completion) => {
                            seen.completions.push(completion.run_id);
                        }
                        WorkerToServer::Heartbeat(beat)
                            if beat.run_id.is_some() && !seen.completions.is_empty() =>
                        {
                            seen.beats_after_completion += 1;
                        }
                        WorkerToServer::RequestWork { .. } if seen.acks_passed > 0 => {
                            seen.requests_after_ack += 1;
                        }
                        _ => {}
                    }
                }
                if to_server.send(frame).await.is_err() {
                    break;
                }
            }
            frame = from_server.next() => {
                let Some(Ok(frame)) = frame else { break };
                if let Message::Text(text) = &frame {
                    let message: ServerToWorker = serde_json::from_str(text).unwrap();
                    if let ServerToWorker::CompletionAck { .. } = message {
                        let mut seen = seen.lock().unwrap();
                        if seen.acks_withheld < WITHHELD {
                            seen.acks_withheld += 1;
                            continue;
                        }
                        seen.acks_passed += 1;
                    }
                }
                if to_worker.send(frame).await.is_err() {
                    break;
                }
            }
        }
    }
}

#[actix_web::test]
async fn an_unacknowledged_completion_is_resent_until_acknowledged_and_counted_once() {
    let engine = DockerEngine::connect().await;
    // No pool: the only worker is the daemon below (the run waits for it).
    let (install, commit) = Install::start_enabled(
        "quick",
        &one_test_yml("quick", "echo done"),
        "resend",
        PoolOptions {
            start_pool: false,
            ..PoolOptions::default()
        },
    )
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let upstream = format!(
        "{}/api/worker/socket",
        install.base_url.replacen("http://", "ws://", 1)
    );
    tokio::spawn(relay(listener, upstream, seen.clone()));

    let storage = tempfile::tempdir().unwrap();
    let machine_id = format!("{}-w1", install.scope);
    let executor = Executor {
        docker: engine.client().clone(),
        store: Arc::new(DiskStore::new(install.artifacts_dir())),
        sources: Arc::new(HttpSources {
            client: reqwest::Client::new(),
            base_url: install.base_url.clone(),
            token: Some(install.context.workers.token().to_string()),
        }),
        storage: storage.path().to_path_buf(),
        scope: install.scope.clone(),
        machine_id: machine_id.clone(),
        images: ImageCache::default(),
        vm_ami: None,
        sandbox: Default::default(),
    };
    let settings = DaemonSettings {
        socket_url: format!("ws://{relay_address}/api/worker/socket"),
        token: Some(install.context.workers.token().to_string()),
        machine: MachineInfo {
            machine_id: machine_id.clone(),
            cores: 1,
            ram_gb: 1,
            os: OsConfig::LinuxDocker,
            shares_cores: false,
        },
        idle_exit: None,
        heartbeat: Duration::from_secs(1),
    };
    let daemon = tokio::spawn(run_daemon(settings, executor));

    wait_until(
        Duration::from_secs(120),
        "the completion to be resent and acknowledged",
        || async {
            let seen = seen.lock().unwrap();
            seen.completions.len() > WITHHELD && seen.acks_passed >= 1
        },
    )
    .await;
    // Not wedged: it asks for work again.
    wait_until(Duration::from_secs(30), "a request for work", || async {
        seen.lock().unwrap().requests_after_ack >= 1
    })
    .await;

    let (counts, runs) = install
        .scheduler()
        .read(|engine| {
            let view = engine.commit_view("quick", &commit).unwrap().tests[0].clone();
            let runs: Vec<_> = engine.runs_of(&view.hash).into_iter().cloned().collect();
            (view.counts, runs)
        })
        .await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].state, RunState::Passed);
    assert_eq!((counts.runs, counts.failures), (1, 0));
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.completions.iter().all(|id| *id == runs[0].run_id),
        "{:?}",
        seen.completions
    );
    assert_eq!(seen.acks_withheld, WITHHELD);
    // Heartbeated while unacknowledged (one beat per interval, and the resends are one
    // interval apart).
    assert!(
        seen.beats_after_completion >= WITHHELD - 1,
        "{}",
        seen.beats_after_completion
    );
    drop(seen);
    daemon.abort();
    install.shutdown().await;
}
