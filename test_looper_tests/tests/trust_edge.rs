//! The web edge and the worker channel against the real server (scheduler over a real Redis,
//! git feed from a real repo, disk artifact store), over real HTTP and websockets:
//!
//! - Host allow-list (H3): a wrong `Host` (a DNS-rebinding page) is refused on pages, the
//!   API, the terminal socket and the log socket; cross-origin websockets and POSTs are
//!   refused against the allow-list, not against the request's own `Host` (L3).
//! - Security headers (M4) on pages, API, live log, artifact and error responses.
//! - Worker endpoints (H2, M7): any `Origin` is refused, the token is always required.
//! - Session binding (H2, L1): a worker session that registered machine A cannot request
//!   work, heartbeat, complete, upload or log for machine B or B's runs, cannot take over B
//!   while B's session is live, and a run id like `../x` never becomes a Redis key.

mod ui_support;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use test_looper_core::protocol::{
    ArtifactAck, ArtifactUploaded, Completion, CompletionAck, Heartbeat, MachineInfo, OsConfig,
    RunOutcome, RunResult, ServerToWorker, Work, WorkerToServer,
};
use test_looper_tests::server::worker_socket_request;
use test_looper_tests::{GitRepo, RedisServer};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use ui_support::{wait_until, LiveServer};

const DEFS: &str = r#"looper_version: 4
environments: {linux: {platform: linux, image: {dockerfile_contents: "FROM x"}}}
tests:
  one/linux: {command: "./one"}
  two/linux: {command: "./two"}
  shell/linux: {command: "./shell"}
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
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init_bare(&dir.path().join("repos/app"));
    let head = repo
        .commit("master", "definitions", &[("testlooper.yml", DEFS)])
        .to_string();
    let server = LiveServer::start(dir.path(), &redis.url()).await;
    server.wait_for_branch("app", "master", &head).await;
    Fixture {
        server,
        head,
        _dir: dir,
        _redis: redis,
    }
}

impl Fixture {
    /// `host:port` of the server.
    fn authority(&self) -> String {
        self.server
            .base_url
            .trim_start_matches("http://")
            .to_string()
    }

    fn port(&self) -> String {
        self.authority().rsplit_once(':').unwrap().1.to_string()
    }

    fn ws_request(&self, path: &str) -> Request {
        let url = self.server.url(path).replacen("http://", "ws://", 1);
        url.into_client_request().unwrap()
    }

    async fn enable(&self) {
        self.server
            .scheduler()
            .set_branch_under_test("app", "master", true)
            .await
            .unwrap();
    }

    async fn test_hash(&self, name: &str) -> String {
        let (head, name) = (self.head.clone(), name.to_string());
        self.server
            .scheduler()
            .read(move |engine| {
                let (record, _, _) = engine.commit_record("app", &head).expect("commit known");
                record.tests.get(&name).cloned().expect("test known")
            })
            .await
    }

    /// The run's machine and whether it is still active.
    async fn run_state(&self, run_id: &str) -> (String, bool) {
        let id = run_id.to_string();
        self.server
            .scheduler()
            .read(move |engine| {
                let run = engine.run(&id).expect("known run");
                (run.machine_id.clone(), run.state.is_active())
            })
            .await
    }
}

/// The status a websocket handshake is refused with (panics if it is accepted).
async fn refused_status(request: Request) -> u16 {
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("handshake failed without a status: {other}"),
        Ok(_) => panic!("handshake accepted"),
    }
}

/// A worker speaking the protocol over the real worker socket.
struct FakeWorker {
    socket: Socket,
}

impl FakeWorker {
    async fn connect(f: &Fixture) -> FakeWorker {
        let request = worker_socket_request(&f.server.base_url, &f.server.context);
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("worker socket");
        FakeWorker { socket }
    }

    async fn register(f: &Fixture, machine_id: &str) -> FakeWorker {
        let mut worker = Self::connect(f).await;
        worker.send(&register(machine_id)).await;
        wait_until("the machine is registered", || async {
            f.server.context.workers.has_live_session(machine_id)
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

    /// Asks for work as `machine_id`; the run id assigned.
    async fn take_run(&mut self, machine_id: &str) -> String {
        self.send(&WorkerToServer::RequestWork {
            machine_id: machine_id.into(),
            holding: Vec::new(),
        })
        .await;
        self.next(|message| match message {
            ServerToWorker::Assign(Work::Run(assignment)) => Some(assignment.run_id.clone()),
            ServerToWorker::Assign(other) => panic!("expected a run, got {other:?}"),
            ServerToWorker::NoWork => panic!("no work offered"),
            _ => None,
        })
        .await
    }

    /// A round trip (a heartbeat of our own machine) so that earlier messages were handled.
    async fn sync(&mut self, machine_id: &str) {
        self.send(&WorkerToServer::Heartbeat(Heartbeat {
            machine_id: machine_id.into(),
            run_id: None,
        }))
        .await;
        self.next(|message| match message {
            ServerToWorker::HeartbeatReply(_) => Some(()),
            _ => None,
        })
        .await;
    }

    /// Reads until the server closes the socket; returns the close code.
    async fn closed(&mut self) -> CloseCode {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("the server to close the worker socket");
            match frame {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(CloseCode::Status, |f| f.code)
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("worker socket failed instead of closing: {err}"),
                None => panic!("worker socket ended without a close frame"),
            }
        }
    }
}

fn register(machine_id: &str) -> WorkerToServer {
    WorkerToServer::Register {
        machine: MachineInfo {
            machine_id: machine_id.into(),
            cores: 2,
            ram_gb: 2,
            os: OsConfig::LinuxDocker,
            shares_cores: false,
        },
    }
}

fn passed(run_id: &str) -> WorkerToServer {
    WorkerToServer::Completed(Completion {
        run_id: run_id.into(),
        outcome: RunOutcome {
            result: RunResult::Passed,
            test_cases: Vec::new(),
            artifacts: Vec::new(),
        },
    })
}

fn assert_security_headers(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"))
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("object-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("base-uri 'none'"), "{what}: {csp}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
}

#[actix_web::test]
async fn wrong_hosts_are_refused_before_routing() {
    let f = fixture().await;
    let client = reqwest::Client::new();
    let rebind = format!("rebind.example:{}", f.port());
    for path in [
        "/repos",
        "/api/repos",
        "/api/machines",
        "/api/worker/source",
    ] {
        let response = client
            .get(f.server.url(path))
            .header("Host", &rebind)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 421, "{path}");
        assert_security_headers(&response, "a 421");
        let text = response.text().await.unwrap();
        assert!(text.contains("server.allowed_hosts"), "{text}");
    }
    // The server's own names on its port are answered.
    for host in [
        f.authority(),
        format!("localhost:{}", f.port()),
        format!("[::1]:{}", f.port()),
    ] {
        let response = client
            .get(f.server.url("/repos"))
            .header("Host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{host}");
    }
    // The same name on another port is another site.
    let response = client
        .get(f.server.url("/repos"))
        .header("Host", "127.0.0.1:1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 421);

    // A rebinding page cannot open the root shell either, with its own Origin matching Host.
    let hash = f.test_hash("shell/linux").await;
    let (status, body) = f
        .server
        .act("boot_deployment", json!({ "test_hash": hash }))
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["deployment_id"].as_str().unwrap().to_string();
    let mut request = f.ws_request(&format!("/deployments/{id}/socket"));
    request
        .headers_mut()
        .insert("Host", rebind.parse().unwrap());
    request
        .headers_mut()
        .insert("Origin", format!("http://{rebind}").parse().unwrap());
    assert_eq!(refused_status(request).await, 421);
    // With a good Host, an Origin off the allow-list is refused (not compared with Host).
    for origin in [
        format!("http://{rebind}"),
        "http://localhost:1".to_string(),
        "null".to_string(),
    ] {
        let mut request = f.ws_request(&format!("/deployments/{id}/socket"));
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        assert_eq!(refused_status(request).await, 403, "{origin}");
    }
    // The page's own origin (under any of the server's names) is accepted.
    let mut request = f.ws_request(&format!("/deployments/{id}/socket"));
    request.headers_mut().insert(
        "Origin",
        format!("http://localhost:{}", f.port()).parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("same-origin terminal");

    // A state-changing request from another origin is refused even with the CSRF token.
    let response = client
        .post(f.server.url("/api/actions/shutdown_deployment"))
        .header("X-CSRF-Token", f.server.csrf().await)
        .header("Origin", "http://evil.example")
        .json(&json!({ "deployment_id": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

#[actix_web::test]
async fn every_response_carries_the_security_headers() {
    let f = fixture().await;
    f.enable().await;
    f.server.register_machine("m1").await;
    let (run_id, hash, _) = f.server.take_work("m1").await.unwrap();
    f.server.append_log(&run_id, 0, "hello log\n").await;
    f.server
        .store_run_file(&hash, &run_id, "out.txt", b"artifact bytes")
        .await;
    let client = reqwest::Client::new();
    for path in [
        "/repos".to_string(),
        "/machines".to_string(),
        format!("/runs/{run_id}"),
        "/api/repos".to_string(),
        format!("/api/runs/{run_id}"),
        format!("/api/runs/{run_id}/log"),
        format!("/api/runs/{run_id}/artifacts/out.txt"),
        "/static/style.css".to_string(),
        "/no/such/page".to_string(),
    ] {
        let response = client.get(f.server.url(&path)).send().await.unwrap();
        assert_security_headers(&response, &path);
    }
    // The pages that embed xterm.js may use inline styles (it writes <style> elements);
    // no other page may.
    let run_page = client
        .get(f.server.url(&format!("/runs/{run_id}")))
        .send()
        .await
        .unwrap();
    let csp = run_page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("style-src 'self' 'unsafe-inline'"), "{csp}");
    let repos = client.get(f.server.url("/repos")).send().await.unwrap();
    let csp = repos.headers()["content-security-policy"].to_str().unwrap();
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    // L3: the log websocket checks Origin against the allow-list.
    let mut request = f.ws_request(&format!("/api/runs/{run_id}/log"));
    request
        .headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    assert_eq!(refused_status(request).await, 403);
    let mut request = f.ws_request(&format!("/api/runs/{run_id}/log"));
    request
        .headers_mut()
        .insert("Origin", f.server.base_url.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("same-origin log socket");
    let frame = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .expect("a log frame")
        .unwrap()
        .unwrap();
    assert!(frame.into_data().ends_with(b"hello log\n"));
}

#[actix_web::test]
async fn worker_endpoints_need_the_token_and_refuse_web_pages() {
    let f = fixture().await;
    let token = f.server.context.workers.token().to_string();
    assert!(token.len() >= 32, "a token is drawn at start");
    // No token, a wrong one, an empty one: 401 (also from loopback).
    assert_eq!(
        refused_status(f.ws_request("/api/worker/socket")).await,
        401
    );
    for bearer in ["Bearer wrong", "Bearer ", "Basic x"] {
        let mut request = f.ws_request("/api/worker/socket");
        request
            .headers_mut()
            .insert("Authorization", bearer.parse().unwrap());
        assert_eq!(refused_status(request).await, 401, "{bearer}");
    }
    // Any Origin, even the server's own, with the right token: 403.
    for origin in [f.server.base_url.clone(), "http://evil.example".into()] {
        let mut request = worker_socket_request(&f.server.base_url, &f.server.context);
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        assert_eq!(refused_status(request).await, 403, "{origin}");
    }
    let client = reqwest::Client::new();
    let source = f
        .server
        .url(&format!("/api/worker/source?repo=app&commit={}", f.head));
    let response = client.get(&source).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = client
        .get(&source)
        .bearer_auth(&token)
        .header("Origin", f.server.base_url.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let response = client
        .get(&source)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // With the token and no Origin the socket opens.
    FakeWorker::register(&f, "m-ok").await;
}

#[actix_web::test]
async fn a_session_acts_only_for_the_machine_it_registered() {
    let f = fixture().await;
    f.enable().await;
    let mut b = FakeWorker::register(&f, "machine-b").await;
    let b_run = b.take_run("machine-b").await;
    let mut a = FakeWorker::register(&f, "machine-a").await;

    // A cannot complete or report artifacts for B's run: refusing acks, nothing recorded.
    a.send(&passed(&b_run)).await;
    let ack = a
        .next(|message| match message {
            ServerToWorker::CompletionAck { run_id, ack } if run_id == b_run => Some(ack),
            _ => None,
        })
        .await;
    assert!(
        matches!(&ack, CompletionAck::Discarded { reason } if reason.contains("another machine")),
        "{ack:?}"
    );
    a.send(&WorkerToServer::ArtifactUploaded(ArtifactUploaded {
        run_id: b_run.clone(),
        artifact: "bin".into(),
    }))
    .await;
    let ack = a
        .next(|message| match message {
            ServerToWorker::ArtifactAck { run_id, ack } if run_id == b_run => Some(ack),
            _ => None,
        })
        .await;
    assert!(matches!(ack, ArtifactAck::Rejected { .. }), "{ack:?}");

    // Heartbeats naming B, or B's run, and work requests for B are refused; so are log
    // chunks for B's run and for run ids that are not run ids.
    a.send(&WorkerToServer::Heartbeat(Heartbeat {
        machine_id: "machine-b".into(),
        run_id: Some(b_run.clone()),
    }))
    .await;
    a.send(&WorkerToServer::Heartbeat(Heartbeat {
        machine_id: "machine-a".into(),
        run_id: Some(b_run.clone()),
    }))
    .await;
    a.send(&WorkerToServer::RequestWork {
        machine_id: "machine-b".into(),
        holding: Vec::new(),
    })
    .await;
    for run_id in [b_run.as_str(), "../x", "run:1", ""] {
        a.send(&WorkerToServer::Log {
            run_id: run_id.into(),
            offset: 0,
            text: "forged\n".into(),
        })
        .await;
    }
    a.sync("machine-a").await;
    let (holder, active) = f.run_state(&b_run).await;
    assert_eq!(holder, "machine-b");
    assert!(active, "B's run was ended by A");
    let log = reqwest::get(f.server.url(&format!("/api/runs/{b_run}/log")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!log.contains("forged"), "{log}");
    let mut redis = redis::Client::open(f._redis.url().as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut redis)
        .await
        .unwrap();
    for key in &keys {
        assert!(
            !key.contains("../x") && !key.contains("run:1") && !key.ends_with(':'),
            "{keys:?}"
        );
    }

    // B's own messages still work.
    b.send(&WorkerToServer::Log {
        run_id: b_run.clone(),
        offset: 0,
        text: "real\n".into(),
    })
    .await;
    b.send(&passed(&b_run)).await;
    let ack = b
        .next(|message| match message {
            ServerToWorker::CompletionAck { run_id, ack } if run_id == b_run => Some(ack),
            _ => None,
        })
        .await;
    assert_eq!(ack, CompletionAck::Recorded);

    // A second session cannot take over B while B's session is live, nor can A re-register
    // as B.
    let mut thief = FakeWorker::connect(&f).await;
    thief.send(&register("machine-b")).await;
    assert_eq!(thief.closed().await, CloseCode::Policy);
    a.send(&register("machine-b")).await;
    assert_eq!(a.closed().await, CloseCode::Policy);
    assert!(f.server.context.workers.has_live_session("machine-b"));

    // Once B's session ends, B may connect again.
    drop(b);
    let mut again = FakeWorker::register(&f, "machine-b").await;
    again.sync("machine-b").await;
}

#[actix_web::test]
async fn a_session_that_keeps_sending_refused_messages_is_closed() {
    let f = fixture().await;
    let mut worker = FakeWorker::connect(&f).await;
    // Nothing before the registration is accepted.
    for _ in 0..16 {
        worker
            .send(&WorkerToServer::RequestWork {
                machine_id: "m".into(),
                holding: Vec::new(),
            })
            .await;
    }
    assert_eq!(worker.closed().await, CloseCode::Policy);
}
