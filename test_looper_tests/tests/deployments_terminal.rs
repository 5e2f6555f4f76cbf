//! Interactive deployments through the real server (scheduler over a real Redis, git feed
//! from a real repo): a deployment booted through the JSON API, a fake worker speaking the
//! worker protocol over the real worker websocket, and browser-terminal clients on the real
//! terminal websocket. Checks the client framing (the original's acceptance checks: a
//! resize split across three frames, type code 7 closes the socket, keyboard lengths in
//! UTF-8 bytes), the banners, worker output (resends deduplicated) reaching terminals,
//! resuming from an offset, the clients count, cross-origin refusal, shutdown by the user
//! and by the worker's exit, and that GETs to the action URLs change nothing.

mod ui_support;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use test_looper_core::protocol::{
    MachineInfo, OsConfig, ServerToWorker, TerminalInput, Work, WorkerToServer,
};
use test_looper_tests::{GitRepo, RedisServer};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use ui_support::{wait_until, LiveServer};

const DEFS: &str = r#"looper_version: 4
environments: {linux: {platform: linux, image: {dockerfile_contents: "FROM x"}}}
tests:
  shell/linux: {command: "./shell"}
  other/linux: {command: "./other"}
  huge/linux: {command: "./huge", min_cores: 100000}
"#;

/// Longest wait for one expected message (a hang guard, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(20);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Fixture {
    server: LiveServer,
    head: String,
    _dir: tempfile::TempDir,
    _redis: RedisServer,
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(adjust: impl FnOnce(&mut test_looper_server::config::Config)) -> Fixture {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    let head = repo
        .commit("master", "definitions", &[("testlooper.yml", DEFS)])
        .to_string();
    let server = LiveServer::start_with(dir.path(), &redis.url(), adjust).await;
    server.wait_for_branch("app", "master", &head).await;
    Fixture {
        server,
        head,
        _dir: dir,
        _redis: redis,
    }
}

impl Fixture {
    async fn test_hash(&self, name: &str) -> String {
        let (repo, head, name) = ("app", self.head.clone(), name.to_string());
        self.server
            .scheduler()
            .read(move |engine| {
                let (record, _, _) = engine.commit_record(repo, &head).expect("commit known");
                record.tests.get(&name).cloned().expect("test known")
            })
            .await
    }

    async fn boot(&self, name: &str) -> String {
        let hash = self.test_hash(name).await;
        let (status, body) = self
            .server
            .act("boot_deployment", json!({ "test_hash": hash }))
            .await;
        assert_eq!(status, 200, "{body}");
        let id = body["deployment_id"].as_str().expect("deployment id");
        assert_eq!(body["terminal"], format!("/deployments/{id}/terminal"));
        id.to_string()
    }

    async fn alive(&self, deployment_id: &str) -> bool {
        let id = deployment_id.to_string();
        self.server
            .scheduler()
            .read(move |engine| engine.deployment(&id).is_some_and(|d| d.alive))
            .await
    }

    fn ws_url(&self, path: &str) -> String {
        self.server.url(path).replacen("http://", "ws://", 1)
    }
}

/// A worker speaking the worker protocol over the real worker websocket.
struct FakeWorker {
    socket: Socket,
    machine_id: String,
}

impl FakeWorker {
    async fn register(f: &Fixture, machine_id: &str) -> FakeWorker {
        let request =
            test_looper_tests::server::worker_socket_request(&f.server.base_url, &f.server.context);
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("worker socket");
        let mut worker = FakeWorker {
            socket,
            machine_id: machine_id.to_string(),
        };
        worker
            .send(&WorkerToServer::Register {
                machine: MachineInfo {
                    machine_id: machine_id.into(),
                    cores: 2,
                    ram_gb: 2,
                    os: OsConfig::LinuxDocker,
                    shares_cores: false,
                },
            })
            .await;
        worker
    }

    async fn send(&mut self, message: &WorkerToServer) {
        let text = serde_json::to_string(message).unwrap();
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// The next message `pick` accepts (others, such as `WorkAvailable`, are skipped).
    async fn next<T>(&mut self, mut pick: impl FnMut(ServerToWorker) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("the expected message to the worker")
                .expect("worker socket open")
                .expect("worker frame");
            if let Message::Text(text) = frame {
                let message: ServerToWorker = serde_json::from_str(&text).unwrap();
                if let Some(found) = pick(message) {
                    return found;
                }
            }
        }
    }

    async fn take_deployment(&mut self) -> String {
        self.send(&WorkerToServer::RequestWork {
            machine_id: self.machine_id.clone(),
            holding: Vec::new(),
        })
        .await;
        self.next(|message| match message {
            ServerToWorker::Assign(Work::Deployment(deployment)) => {
                Some(deployment.deployment_id.clone())
            }
            ServerToWorker::Assign(other) => panic!("expected a deployment, got {other:?}"),
            _ => None,
        })
        .await
    }

    async fn next_input(&mut self) -> (String, TerminalInput) {
        self.next(|message| match message {
            ServerToWorker::TerminalInput {
                deployment_id,
                input,
            } => Some((deployment_id, input)),
            _ => None,
        })
        .await
    }

    async fn output(&mut self, deployment_id: &str, offset: u64, bytes: &[u8]) {
        self.send(&WorkerToServer::TerminalOutput {
            deployment_id: deployment_id.into(),
            offset,
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
        .await;
    }
}

/// A browser-terminal client of `/deployments/{id}/socket`.
struct TerminalClient {
    socket: Socket,
    /// Offset of the first byte of `received`, from the server's `{"offset": N}` frame.
    start: Option<u64>,
    received: Vec<u8>,
}

/// A keyboard record: type 0, the UTF-8 byte count, the bytes.
fn keys_record(text: &str) -> Vec<u8> {
    let mut record = Vec::new();
    record.extend_from_slice(&0i32.to_be_bytes());
    record.extend_from_slice(&(text.len() as i32).to_be_bytes());
    record.extend_from_slice(text.as_bytes());
    record
}

impl TerminalClient {
    async fn open(f: &Fixture, deployment_id: &str, offset: Option<u64>) -> TerminalClient {
        let mut url = f.ws_url(&format!("/deployments/{deployment_id}/socket"));
        if let Some(offset) = offset {
            url.push_str(&format!("?offset={offset}"));
        }
        let mut request = url.into_client_request().unwrap();
        let origin = f.server.base_url.clone();
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("terminal socket");
        TerminalClient {
            socket,
            start: None,
            received: Vec::new(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// Reads until the received text contains `needle`; returns the whole text.
    async fn read_until(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.text().contains(needle) {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("terminal never showed {needle:?}: {}", self.text()))
                .expect("terminal socket open")
                .expect("terminal frame");
            match frame {
                Message::Text(text) => {
                    let header: Value = serde_json::from_str(&text).unwrap();
                    let offset = header["offset"].as_u64().expect("offset header");
                    if self.start.is_none() {
                        self.start = Some(offset);
                    }
                }
                Message::Binary(bytes) => self.received.extend_from_slice(&bytes),
                Message::Close(frame) => panic!("closed ({frame:?}) before {needle:?}"),
                _ => {}
            }
        }
        self.text()
    }

    async fn send(&mut self, bytes: Vec<u8>) {
        self.socket.send(Message::binary(bytes)).await.unwrap();
    }

    /// Reads until the server closes the socket; returns the close code.
    async fn closed(&mut self) -> CloseCode {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("the server to close the terminal socket");
            match frame {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(CloseCode::Status, |f| f.code)
                }
                Some(Ok(Message::Binary(bytes))) => self.received.extend_from_slice(&bytes),
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("terminal socket failed instead of closing: {err}"),
                None => panic!("terminal socket ended without a close frame"),
            }
        }
    }
}

async fn deployments_json(f: &Fixture) -> Vec<Value> {
    f.server.get_json("/api/deployments").await["deployments"]
        .as_array()
        .unwrap()
        .clone()
}

async fn clients_listed(f: &Fixture, deployment_id: &str) -> Option<u64> {
    deployments_json(f)
        .await
        .iter()
        .find(|d| d["deployment"]["deployment_id"] == deployment_id)
        .map(|d| d["deployment"]["clients"].as_u64().unwrap())
}

#[actix_web::test]
async fn terminal_framing_reaches_the_worker_and_output_reaches_the_terminal() {
    let f = fixture().await;
    let id = f.boot("shell/linux").await;
    let mut terminal = TerminalClient::open(&f, &id, None).await;
    let waiting = terminal.read_until("Deployment for shell/linux (").await;
    assert_eq!(terminal.start, Some(0));
    terminal.read_until("waiting for hardware.").await;
    assert!(
        waiting.contains(" TestLooper> Deployment for shell/linux ("),
        "{waiting}"
    );
    wait_until("the terminal counts as a client", || async {
        clients_listed(&f, &id).await == Some(1)
    })
    .await;

    let mut worker = FakeWorker::register(&f, "fake-1").await;
    assert_eq!(worker.take_deployment().await, id);
    terminal
        .read_until("TestLooper> Machine fake-1 accepting deployment.")
        .await;

    // Acceptance check 11: 12 bytes split across three frames are one resize.
    terminal.send(1i32.to_be_bytes().to_vec()).await;
    terminal.send(80i32.to_be_bytes().to_vec()).await;
    terminal.send(24i32.to_be_bytes().to_vec()).await;
    assert_eq!(
        worker.next_input().await,
        (id.clone(), TerminalInput::Resize { cols: 80, rows: 24 })
    );
    // Acceptance check 10: the length counts UTF-8 bytes; records may be split anywhere.
    let typed = "echo héllo ✓ — 42\r";
    let record = keys_record(typed);
    assert_eq!(&record[4..8], &(typed.len() as i32).to_be_bytes());
    assert_ne!(typed.len(), typed.chars().count());
    let (first, rest) = record.split_at(6);
    terminal.send(first.to_vec()).await;
    terminal.send(rest.to_vec()).await;
    assert_eq!(
        worker.next_input().await,
        (id.clone(), TerminalInput::Keys { data: typed.into() })
    );

    // Worker output reaches the terminal; a resend overlapping it adds only its new part.
    worker.output(&id, 0, b"root@box:/# ").await;
    worker
        .output(&id, 0, b"root@box:/# echo hi\r\nhi\r\n")
        .await;
    let text = terminal.read_until("hi\r\nhi\r\n").await;
    assert_eq!(text.matches("root@box:/# ").count(), 1, "{text:?}");

    // A second terminal resuming from an offset gets exactly the bytes after it.
    let resume_at = terminal.received.len() as u64 - 4;
    let mut resumed = TerminalClient::open(&f, &id, Some(resume_at)).await;
    resumed.read_until("hi\r\n").await;
    assert_eq!(resumed.start, Some(resume_at));
    assert_eq!(resumed.text(), "hi\r\n");
    wait_until("two terminals attached", || async {
        clients_listed(&f, &id).await == Some(2)
    })
    .await;

    // Acceptance check 11: a record of type 7 closes the socket.
    resumed.send(7i32.to_be_bytes().to_vec()).await;
    assert_eq!(resumed.closed().await, CloseCode::Policy);
    wait_until("the closed terminal no longer counts", || async {
        clients_listed(&f, &id).await == Some(1)
    })
    .await;

    // The user shuts it down: the worker is told, the terminal sees the end.
    let (status, body) = f
        .server
        .act("shutdown_deployment", json!({ "deployment_id": id }))
        .await;
    assert_eq!(status, 200, "{body}");
    let stopped = worker
        .next(|message| match message {
            ServerToWorker::ShutdownDeployment { deployment_id } => Some(deployment_id),
            _ => None,
        })
        .await;
    assert_eq!(stopped, id);
    terminal.read_until("TestLooper> Session Terminated").await;
    assert_eq!(terminal.closed().await, CloseCode::Normal);
    assert!(!f.alive(&id).await);
    assert!(deployments_json(&f).await.is_empty());
}

#[actix_web::test]
async fn a_worker_reporting_the_exit_ends_the_deployment() {
    let f = fixture().await;
    let id = f.boot("shell/linux").await;
    let mut worker = FakeWorker::register(&f, "fake-2").await;
    assert_eq!(worker.take_deployment().await, id);
    let mut terminal = TerminalClient::open(&f, &id, None).await;
    worker.output(&id, 0, b"exit\r\n").await;
    terminal.read_until("exit\r\n").await;
    worker
        .send(&WorkerToServer::DeploymentExited {
            deployment_id: id.clone(),
        })
        .await;
    terminal.read_until("Session Terminated").await;
    assert_eq!(terminal.closed().await, CloseCode::Normal);
    wait_until("the scheduler ended the deployment", || async {
        !f.alive(&id).await
    })
    .await;
    // Output for a deployment that has ended is refused with a shutdown.
    worker.output(&id, 6, b"late").await;
    let stopped = worker
        .next(|message| match message {
            ServerToWorker::ShutdownDeployment { deployment_id } => Some(deployment_id),
            _ => None,
        })
        .await;
    assert_eq!(stopped, id);
}

#[actix_web::test]
async fn cross_origin_terminals_gets_and_bad_boots_are_refused() {
    let f = fixture().await;
    let id = f.boot("shell/linux").await;

    // Another origin cannot open the root shell.
    let mut request = f
        .ws_url(&format!("/deployments/{id}/socket"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("cross-origin upgrade accepted: {:?}", other.map(|r| r.1)),
    }
    // Unknown deployments have no terminal.
    let page = reqwest::get(f.server.url("/deployments/nope-dep1/terminal"))
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 404);

    // GETs to the action URLs change nothing.
    let hash = f.test_hash("shell/linux").await;
    for url in [
        format!("/actions/boot_deployment?test_hash={hash}"),
        format!("/api/actions/boot_deployment?test_hash={hash}"),
        format!("/actions/shutdown_deployment?deployment_id={id}"),
        format!("/api/actions/shutdown_deployment?deployment_id={id}"),
    ] {
        let response = reqwest::get(f.server.url(&url)).await.unwrap();
        assert_eq!(response.status().as_u16(), 405, "{url}");
    }
    let listed = deployments_json(&f).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["deployment"]["deployment_id"], id.as_str());
    assert!(f.alive(&id).await);

    // A form post without the CSRF token is refused.
    let response = reqwest::Client::new()
        .post(f.server.url("/actions/shutdown_deployment"))
        .form(&[("deployment_id", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(f.alive(&id).await);

    // Clear errors: an unknown definition, hardware no machine provides.
    let (status, body) = f
        .server
        .act("boot_deployment", json!({ "test_hash": "0".repeat(64) }))
        .await;
    assert_eq!(status, 404, "{body}");
    let huge = f.test_hash("huge/linux").await;
    let (status, body) = f
        .server
        .act("boot_deployment", json!({ "test_hash": huge }))
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("no machine can provide"), "{message}");
    let csrf = f.server.csrf().await;
    let page = reqwest::Client::new()
        .post(f.server.url("/actions/boot_deployment"))
        .form(&[("test_hash", huge.as_str()), ("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 400);
    let html = page.text().await.unwrap();
    assert!(html.contains("no machine can provide"), "{html}");
    assert_eq!(deployments_json(&f).await.len(), 1);
}

#[actix_web::test]
async fn boots_past_the_deployment_caps_are_refused_with_409() {
    let f = fixture_with(|config| {
        config.deployments.max_live = 2;
        config.deployments.max_live_per_test = 1;
    })
    .await;
    let first = f.boot("shell/linux").await;
    let shell = f.test_hash("shell/linux").await;
    let (status, body) = f
        .server
        .act("boot_deployment", json!({ "test_hash": shell }))
        .await;
    assert_eq!(status, 409, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("deployments.max_live_per_test"), "{body}");
    f.boot("other/linux").await;
    // The install cap: two are live.
    let other = f.test_hash("other/linux").await;
    let (status, body) = f
        .server
        .act("boot_deployment", json!({ "test_hash": other }))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("deployments.max_live "), "{body}");
    // The HTML form gets an error page with the same status.
    let client = reqwest::Client::new();
    let token = f.server.csrf().await;
    let page = client
        .post(f.server.url("/actions/boot_deployment"))
        .header("Origin", f.server.base_url.clone())
        .form(&[
            ("test_hash", other.as_str()),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 409);
    assert!(page.text().await.unwrap().contains("shut one down first"));
    // Once one is shut down, a boot is accepted again.
    let (status, body) = f
        .server
        .act("shutdown_deployment", json!({ "deployment_id": first }))
        .await;
    assert_eq!(status, 200, "{body}");
    f.boot("shell/linux").await;
}

#[actix_web::test]
async fn idle_and_old_deployments_are_shut_down_with_a_line_saying_why() {
    use test_looper_server::deployments::reaper::{reap_once, TimeLimits};
    let f = fixture().await;
    let id = f.boot("shell/linux").await;
    let mut worker = FakeWorker::register(&f, "fake-idle").await;
    assert_eq!(worker.take_deployment().await, id);
    let idle = TimeLimits {
        idle: Some(Duration::from_millis(300)),
        max_age: None,
    };
    // Attached: never idle, however long.
    let terminal = TerminalClient::open(&f, &id, None).await;
    wait_until("the terminal is counted", || async {
        clients_listed(&f, &id).await == Some(1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let context = &f.server.context;
    assert!(reap_once(context, f.server.scheduler(), &idle)
        .await
        .is_empty());
    assert!(f.alive(&id).await);
    // Detached for longer than the limit: shut down through the normal path.
    drop(terminal);
    wait_until("the terminal is gone", || async {
        clients_listed(&f, &id).await == Some(0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        reap_once(context, f.server.scheduler(), &idle).await,
        vec![id.clone()]
    );
    assert!(!f.alive(&id).await);
    let stopped = worker
        .next(|message| match message {
            ServerToWorker::ShutdownDeployment { deployment_id } => Some(deployment_id),
            _ => None,
        })
        .await;
    assert_eq!(stopped, id);
    let mut late = TerminalClient::open(&f, &id, None).await;
    let text = late.read_until("Session Terminated").await;
    assert!(
        text.contains("no terminal was attached for 0 seconds (deployments.idle_minutes)"),
        "{text}"
    );

    // Past its maximum age, even with a terminal attached.
    let old = f.boot("shell/linux").await;
    let _attached = TerminalClient::open(&f, &old, None).await;
    let aged = TimeLimits {
        idle: None,
        max_age: Some(Duration::from_millis(1)),
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        reap_once(context, f.server.scheduler(), &aged).await,
        vec![old.clone()]
    );
    let mut watcher = TerminalClient::open(&f, &old, None).await;
    let text = watcher.read_until("Session Terminated").await;
    assert!(text.contains("maximum age"), "{text}");
}
