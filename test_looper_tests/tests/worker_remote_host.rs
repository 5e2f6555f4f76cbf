//! A worker on another network host, started by hand as `docs/workers.md` describes.
//!
//! The "other host" is a network namespace joined to this one by a veth pair with private
//! addresses (10.231.X.1 here, 10.231.X.2 there). The real `test-looper-server` binary listens
//! on 10.231.X.1 only, with `auth.mode: write`, a configured `auth.worker_token` and no
//! machine pool (`machine_management` without `local_docker`), so nothing runs unless the
//! remote worker does. Artifacts go to S3 on a moto server also listening on 10.231.X.1 (no
//! shared directory). Redis stays on the host's loopback.
//!
//! From inside the namespace: the worker with a wrong token is refused (401) and never
//! registers, a raw request with the wrong token gets 401 and one with the right token gets
//! the source tarball, and the host's loopback-only Redis cannot be reached. Then
//! `test-looper-worker` runs inside the namespace (`ip netns exec`) with the token and the
//! store settings by environment; the branch is enabled with an operator's bearer token, the
//! test (which builds its image from the repo's Dockerfile and reads its sources, both fetched
//! over the network) passes on that worker's machine id, and its log and output file are read
//! back through the server. Finally the worker is stopped with `SIGTERM` (as `systemctl stop`
//! does): it exits and leaves the machine list.

use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use test_looper_tests::install::{make_repo, suite_files, worker_binary};
use test_looper_tests::process::ServiceProcess;
use test_looper_tests::server_process::ServerProcess;
use test_looper_tests::{DockerEngine, MotoServer, RedisServer};

const REPO: &str = "remote";
const TEST: &str = "pass/linux";

const YML: &str = r#"
looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile: docker/Dockerfile
    variables:
      GREETING: hello
tests:
  pass/linux:
    environment: linux
    command: bash src/tests/pass.sh
    dependencies: {src: HEAD}
"#;

/// The worker token of the server (at least 32 characters).
const WORKER_TOKEN: &str = "remote-worker-token-0123456789abcdef0123456789";
/// An operator's static API token (bearer tokens start with `tl_`).
const OPERATOR_TOKEN: &str = "tl_static-remote-operator-0123456789abcdef";

/// Runs `ip ARGS`, panicking with its error output when it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("ip {}: {err}", args.join(" ")));
    assert!(
        output.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether the `ip` tool (iproute2) is installed.
fn ip_available() -> bool {
    Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A network namespace joined to this one by a veth pair; both are removed on drop (the
/// host end's deletion removes its peer).
struct OtherHost {
    namespace: String,
    host_link: String,
    host_ip: String,
    worker_ip: String,
}

impl OtherHost {
    fn create() -> OtherHost {
        let pid = std::process::id();
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        // 10.231.X.0/24 with X from the process id, skipping subnets already in use.
        let subnet = (0..250)
            .map(|step| (pid + step) % 250 + 1)
            .find(|x| !used.contains(&format!(" 10.231.{x}.")))
            .expect("a free 10.231.X.0/24 subnet");
        let other = OtherHost {
            namespace: format!("tlremote{pid}"),
            host_link: format!("tlh{pid}"),
            host_ip: format!("10.231.{subnet}.1"),
            worker_ip: format!("10.231.{subnet}.2"),
        };
        let peer = format!("tlp{pid}");
        // From here on, drop cleans up whatever was created.
        ip(&["netns", "add", &other.namespace]);
        ip(&[
            "link",
            "add",
            &other.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &other.namespace,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", other.host_ip),
            "dev",
            &other.host_link,
        ]);
        ip(&["link", "set", &other.host_link, "up"]);
        let ns = other.namespace.as_str();
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", other.worker_ip),
            "dev",
            &peer,
        ]);
        ip(&["-n", ns, "link", "set", &peer, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        other
    }

    /// Runs `f` on a thread that has joined the namespace's network (its connections leave
    /// from the other host).
    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.namespace);
        std::thread::spawn(move || {
            let namespace = std::fs::File::open(&path).expect("open the namespace");
            // SAFETY: setns(2) on a namespace file we hold open; it changes only this
            // thread's network namespace.
            let joined = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the thread in the other host's namespace panicked")
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .stderr(Stdio::null())
            .status();
    }
}

/// A plain HTTP/1.0 GET of `path` from `addr` with a bearer token; the status line and body.
fn raw_get(addr: SocketAddr, host: &str, path: &str, token: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `test-looper-worker` started by hand inside the other host's namespace, as in
/// `docs/workers.md`: the token and the store settings (without credentials) by environment,
/// S3 credentials as the standard AWS variables.
struct RemoteWorker {
    process: ServiceProcess,
    log: std::path::PathBuf,
}

impl RemoteWorker {
    #[allow(clippy::too_many_arguments)]
    fn start(
        other: &OtherHost,
        server_url: &str,
        token: &str,
        machine_id: &str,
        scope: &str,
        storage: &Path,
        artifacts: &str,
        log: std::path::PathBuf,
    ) -> RemoteWorker {
        let file = std::fs::File::create(&log).expect("worker log");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &other.namespace])
            .arg(worker_binary())
            .args(["--server-url", server_url, "--machine-id", machine_id])
            .arg("--storage")
            .arg(storage)
            .args(["--scope", scope, "--cores", "1", "--ram-gb", "1"])
            .args(["--heartbeat-seconds", "2"])
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/bin".into()),
            )
            .env("HOME", storage)
            .env("RUST_LOG", "info")
            .env("TEST_LOOPER_WORKER_TOKEN", token)
            .env("TEST_LOOPER_ARTIFACTS", artifacts)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file);
        if let Some(docker_host) = std::env::var_os("DOCKER_HOST") {
            command.env("DOCKER_HOST", docker_host);
        }
        let process =
            ServiceProcess::spawn("test-looper-worker", command).expect("start the worker");
        RemoteWorker { process, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The machine ids `/api/machines` lists.
async fn machine_ids(server: &ServerProcess) -> Vec<String> {
    let Some(view) = server.get_json("/api/machines").await else {
        return Vec::new();
    };
    view["machines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["machine"]["info"]["machine_id"].as_str())
        .map(str::to_string)
        .collect()
}

/// Polls `check` every 250 ms; after `limit`, panics naming `what` with the logs' tails.
async fn wait_for<F, Fut>(
    what: &str,
    limit: Duration,
    server: &ServerProcess,
    worker_log: &Path,
    mut check: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        if Instant::now() > deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}\n--- server log:\n{}\n--- worker log:\n{}",
                tail(&server.log_text()),
                tail(&std::fs::read_to_string(worker_log).unwrap_or_default())
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_worker_on_another_network_host_runs_the_tests_with_the_token() {
    if !ip_available() {
        eprintln!(
            "SKIPPED: the `ip` tool (iproute2) is missing, so no network namespace can stand in \
             for another host; install iproute2 to run this test"
        );
        return;
    }
    let engine = DockerEngine::connect().await;
    let other = OtherHost::create();
    let redis = RedisServer::start();
    let moto = MotoServer::start_on(&other.host_ip);
    let dir = tempfile::tempdir().unwrap();
    let mut files = suite_files();
    files.push(("testlooper.yml".into(), YML.into()));
    let (_repo, commit) = make_repo(dir.path(), REPO, &files);
    let scope = format!("remote_{}", std::process::id());
    let bucket = format!("remote-{}", std::process::id());
    let operator_sha256 = test_looper_auth::tokens::token_sha256(OPERATOR_TOKEN);
    let config = format!(
        r#"redis:
  url: {redis}
source_control:
  local:
    path_to_repos: {dir}/repos
    poll_interval_ms: 100
artifacts:
  s3:
    bucket: {bucket}
    region: us-east-1
    endpoint_url: {moto}
    credentials: {{access_key_id: testing, secret_access_key: testing}}
machine_management:
  heartbeat_timeout_seconds: 30
auth:
  mode: write
  worker_token: {WORKER_TOKEN}
  static_tokens:
    - {{name: remote-operator, role: operator, sha256: {operator_sha256}}}
"#,
        redis = redis.url(),
        dir = dir.path().display(),
        moto = moto.endpoint_url(),
    );
    let server = ServerProcess::start_on(dir.path(), &other.host_ip, "", &config);
    let server_url = server.url("");
    let server_addr: SocketAddr = format!("{}:{}", other.host_ip, server.port())
        .parse()
        .unwrap();
    let host_header = format!("{}:{}", other.host_ip, server.port());
    let artifacts = json!({
        "kind": "s3",
        "bucket": bucket,
        "region": "us-east-1",
        "endpoint_url": moto.endpoint_url(),
    })
    .to_string();
    let machine_id = format!("remote-{}", std::process::id());
    let storage = tempfile::tempdir().unwrap();
    let worker_log = dir.path().join("worker.log");

    wait_for(
        "the branch to be scanned",
        Duration::from_secs(60),
        &server,
        &worker_log,
        || async {
            server
                .get_json(&format!("/api/branch?repo={REPO}&branch=master"))
                .await
                .is_some()
        },
    )
    .await;

    // From the other host: the wrong token is refused, the right one fetches sources, and
    // the server's loopback-only Redis is out of reach.
    let source = format!("/api/worker/source?repo={REPO}&commit={commit}");
    let redis_port = redis.port();
    let (wrong, right, redis_loopback, redis_host) = other.inside({
        let (source, host_header, host_ip) =
            (source.clone(), host_header.clone(), other.host_ip.clone());
        move || {
            let wrong = raw_get(server_addr, &host_header, &source, "not-the-worker-token")
                .expect("the server is reachable from the other host");
            let right = raw_get(server_addr, &host_header, &source, WORKER_TOKEN)
                .expect("the server is reachable from the other host");
            let loopback: SocketAddr = format!("127.0.0.1:{redis_port}").parse().unwrap();
            let via_link: SocketAddr = format!("{host_ip}:{redis_port}").parse().unwrap();
            let reach = |addr: &SocketAddr| {
                TcpStream::connect_timeout(addr, Duration::from_secs(3)).is_ok()
            };
            (wrong, right, reach(&loopback), reach(&via_link))
        }
    });
    let status = |answer: &str| answer.lines().next().unwrap_or("").to_string();
    assert!(status(&wrong).contains(" 401 "), "{}", status(&wrong));
    assert!(status(&right).contains(" 200 "), "{}", status(&right));
    assert!(
        !redis_loopback && !redis_host,
        "the other host reached Redis on the server's loopback"
    );

    // The worker with a wrong token: refused (401), never registered.
    {
        let bad_log = dir.path().join("worker-bad-token.log");
        let mut bad = RemoteWorker::start(
            &other,
            &server_url,
            "a-wrong-token-that-is-long-enough-0123456789",
            &machine_id,
            &scope,
            storage.path(),
            &artifacts,
            bad_log.clone(),
        );
        wait_for(
            "the worker with a wrong token to be refused twice",
            Duration::from_secs(60),
            &server,
            &bad_log,
            || async { bad.log_text().matches("401").count() >= 2 },
        )
        .await;
        bad.process
            .check_alive()
            .expect("a refused worker keeps retrying");
        assert!(
            !machine_ids(&server).await.contains(&machine_id),
            "a worker with a wrong token registered"
        );
        bad.process.kill();
    }

    let worker = RemoteWorker::start(
        &other,
        &server_url,
        WORKER_TOKEN,
        &machine_id,
        &scope,
        storage.path(),
        &artifacts,
        worker_log.clone(),
    );
    wait_for(
        "the remote worker to register",
        Duration::from_secs(60),
        &server,
        &worker_log,
        || async { machine_ids(&server).await.contains(&machine_id) },
    )
    .await;

    // Enable the branch as an operator (bearer token; the worker channel never sees it).
    let http = reqwest::Client::new();
    let refused = http
        .post(server.url("/api/actions/branch"))
        .json(&json!({"repo": REPO, "branch": "master", "under_test": "true"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "mode write: acting needs a login");
    let enabled = http
        .post(server.url("/api/actions/branch"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"repo": REPO, "branch": "master", "under_test": "true"}))
        .send()
        .await
        .unwrap();
    let status_code = enabled.status();
    assert!(
        status_code.is_success(),
        "{status_code}: {}",
        enabled.text().await.unwrap_or_default()
    );

    wait_for(
        "the test's run to finish on the remote worker",
        Duration::from_secs(300),
        &server,
        &worker_log,
        || async {
            server
                .runs_of(REPO, &commit, TEST)
                .await
                .iter()
                .any(|run| run["state"] != "running" && run["state"] != "assigned")
        },
    )
    .await;
    let runs = server.runs_of(REPO, &commit, TEST).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert_eq!(
        run["state"],
        "passed",
        "{run:#}\n{}",
        tail(&worker.log_text())
    );
    assert_eq!(run["machine_id"], machine_id.as_str(), "{run:#}");
    let run_id = run["run_id"].as_str().expect("run id").to_string();

    // The run page names the machine and lists what the worker stored in S3.
    let page = server
        .get_json(&format!("/api/runs/{run_id}"))
        .await
        .expect("the run page");
    assert_eq!(page["run"]["machine_id"], machine_id.as_str(), "{page:#}");
    let stored: Vec<&str> = page["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(stored.contains(&"output/report.txt"), "{stored:?}");
    assert!(stored.contains(&"test_looper_log.txt"), "{stored:?}");
    let report = http
        .get(server.url(&format!("/api/runs/{run_id}/artifacts/output/report.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 200);
    assert_eq!(report.text().await.unwrap(), "report\n");
    let stored_log = http
        .get(server.url(&format!("/api/runs/{run_id}/artifacts/test_looper_log.txt")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stored_log.contains("pass ok"), "{stored_log}");
    assert!(
        stored_log.contains(&format!("hello from {run_id}")),
        "{stored_log}"
    );
    let live_log = http
        .get(server.url(&format!("/api/runs/{run_id}/log")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(live_log.contains("pass ok"), "{live_log}");

    // The worker removed its run's containers.
    assert_eq!(
        engine
            .containers_labelled("test-looper.scope", &scope)
            .await,
        Vec::<String>::new()
    );

    // Stopped as systemd stops it (SIGTERM): it exits, and the idle machine leaves the list.
    let mut worker = worker;
    worker.process.signal(libc::SIGTERM);
    assert!(
        worker.process.wait_exit(Duration::from_secs(30)),
        "the worker did not exit on SIGTERM:\n{}",
        tail(&worker.log_text())
    );
    assert!(
        worker
            .log_text()
            .contains("SIGTERM: removing containers and exiting"),
        "{}",
        tail(&worker.log_text())
    );
    wait_for(
        "the stopped worker to leave /api/machines",
        Duration::from_secs(60),
        &server,
        &worker_log,
        || async { !machine_ids(&server).await.contains(&machine_id) },
    )
    .await;
    drop(server);
}
