//! The test sandbox against the real engine (H5, H6, L8, L12, L13): a job tries to escape
//! through its Docker socket (privileged create, host binds, host namespaces, the `Upgrade:`
//! first-request trick followed by pipelined requests, another job's containers) and through
//! links it plants in its directories (a `testSummary.json` naming a link to a host file, a
//! linked `testSummary.json`, a linked artifact directory, a link where a later script goes).
//! Every attempt is refused and no host file is read or written. Also: no socket without the
//! opt-in, none on a worker that forbids it, the opt-in socket still works for the job's own
//! containers, containers run with the sandbox's limits, oversized result files get a clear
//! note, and a character split across output chunks survives.

mod worker_support;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::io::Read;
use std::path::Path;
use std::time::Duration;
use test_looper_containers::RUN_LABEL;
use test_looper_core::definitions::{Artifact, ArtifactFormat, Stage};
use test_looper_core::protocol::{FailureReason, RunOutcome, RunResult};
use test_looper_tests::DockerEngine;
use test_looper_worker::executor::docker_proxy::{engine_socket_path, DockerProxy, ProxyScope};
use test_looper_worker::executor::sandbox::{DockerSocketPolicy, Sandbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BASE: &str = "test-looper/base:1";

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn stage(command: &str, cleanup: &str, artifacts: Vec<Artifact>) -> Stage {
    Stage {
        command: command.into(),
        cleanup: cleanup.into(),
        order: 0.0,
        artifacts,
    }
}

/// Runs the fixture's `pass/linux` test with `stages` instead of its own.
async fn run_stages(
    engine: &DockerEngine,
    dir: &Path,
    stages: Vec<Stage>,
    docker_socket: bool,
    sandbox: Sandbox,
) -> (RunOutcome, String) {
    let mut executor =
        worker_support::executor(engine.client(), dir, &unique("sandbox"), "machine-sb");
    executor.sandbox = sandbox;
    let resolved = worker_support::resolved_fixture();
    let mut assignment = worker_support::assignment(&resolved, "pass/linux", &unique("run-sb"));
    assignment.definition.stages = stages;
    assignment.definition.docker_socket = docker_socket;
    let (outcome, log, _) = worker_support::run(&executor, &assignment).await;
    (outcome, log)
}

/// Whether `needle` appears in any stored artifact (tarballs unpacked).
fn stored_artifacts_contain(root: &Path, needle: &[u8]) -> bool {
    let mut pending = vec![root.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let mut bytes = std::fs::read(&path).unwrap_or_default();
            if path.to_string_lossy().ends_with(".tar.gz") {
                let mut unpacked = Vec::new();
                let _ = flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut unpacked);
                bytes = unpacked;
            }
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
        }
    }
    false
}

fn refusal(error: bollard::errors::Error) -> (u16, String) {
    match error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => (status_code, message),
        other => panic!("not an engine-style refusal: {other}"),
    }
}

fn client_of(proxy: &DockerProxy) -> Docker {
    Docker::connect_with_unix(
        proxy.socket_path().to_str().unwrap(),
        60,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap()
}

fn plain(engine: &DockerEngine, cmd: &[&str]) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(BASE.into()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        labels: Some(engine.labels()),
        ..Default::default()
    }
}

/// Sends `bytes` on a fresh connection to `socket` and reads until the proxy closes it.
async fn raw_exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answers and closes")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn escapes_through_the_socket_are_refused() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let run_id = unique("escape-run");
    let proxy = DockerProxy::start(
        &dir.path().join("docker.sock"),
        engine_socket_path(),
        ProxyScope::new(&run_id, engine.labels()),
    )
    .unwrap();
    let client = client_of(&proxy);
    let attempts: Vec<(&str, HostConfig)> = vec![
        (
            "Privileged",
            HostConfig {
                privileged: Some(true),
                ..Default::default()
            },
        ),
        (
            "own directories",
            HostConfig {
                binds: Some(vec!["/:/host".into()]),
                ..Default::default()
            },
        ),
        (
            "own directories",
            HostConfig {
                mounts: Some(vec![Mount {
                    typ: Some(MountType::BIND),
                    source: Some("/etc".into()),
                    target: Some("/host-etc".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        ),
        (
            "PidMode",
            HostConfig {
                pid_mode: Some("host".into()),
                ..Default::default()
            },
        ),
        (
            "NetworkMode",
            HostConfig {
                network_mode: Some("host".into()),
                ..Default::default()
            },
        ),
        (
            "CapAdd",
            HostConfig {
                cap_add: Some(vec!["SYS_ADMIN".into()]),
                ..Default::default()
            },
        ),
        (
            "seccomp",
            HostConfig {
                security_opt: Some(vec!["seccomp=unconfined".into()]),
                ..Default::default()
            },
        ),
    ];
    for (expected, host_config) in attempts {
        let body = ContainerCreateBody {
            host_config: Some(host_config.clone()),
            ..plain(&engine, &["true"])
        };
        let error = client
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .expect_err(&format!("{host_config:?} must be refused"));
        let (status, message) = refusal(error);
        assert_eq!(status, 403, "{message}");
        assert!(message.contains(expected), "{expected}: {message}");
    }
    // A volume that binds a host path through driver options.
    let answer = raw_volume_create(proxy.socket_path()).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // Endpoints outside the allow-list.
    for (method, path) in [("GET", "/events"), ("POST", "/containers/x/update")] {
        let answer = raw_exchange(
            proxy.socket_path(),
            format!("{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.contains("\"message\""), "{answer}");
    }
    assert!(engine
        .containers_labelled(RUN_LABEL, &run_id)
        .await
        .is_empty());
    proxy.finish(engine.client()).await.unwrap();
}

async fn raw_volume_create(socket: &Path) -> String {
    let body = r#"{"Name":"tl-escape","DriverOpts":{"type":"none","o":"bind","device":"/"}}"#;
    raw_exchange(
        socket,
        format!(
            "POST /volumes/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
}

#[tokio::test]
async fn an_upgrade_header_never_turns_the_connection_into_a_raw_copy() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let run_id = unique("upgrade-run");
    let proxy = DockerProxy::start(
        &dir.path().join("docker.sock"),
        engine_socket_path(),
        ProxyScope::new(&run_id, engine.labels()),
    )
    .unwrap();
    let labels = serde_json::to_string(&engine.labels()).unwrap();
    let privileged =
        format!(r#"{{"Image":"{BASE}","Labels":{labels},"HostConfig":{{"Privileged":true}}}}"#);
    let allowed = format!(r#"{{"Image":"{BASE}","Cmd":["true"],"Labels":{labels}}}"#);
    // 1: a harmless request that asks for an upgrade; 2: a pipelined privileged create;
    // 3: a pipelined create with a chunked body (parsed and labelled, not copied raw).
    let mut bytes =
        String::from("GET /_ping HTTP/1.1\r\nHost: d\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n");
    bytes.push_str(&format!(
        "POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{privileged}",
        privileged.len()
    ));
    let (first, second) = allowed.split_at(allowed.len() / 2);
    bytes.push_str(&format!(
        "POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    ));
    let answer = raw_exchange(proxy.socket_path(), bytes.as_bytes()).await;
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answer[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, vec!["200", "403", "201"], "{answer}");
    assert!(answer.contains("Privileged"), "{answer}");
    // Exactly one container was created, and it carries the run's label.
    let created = engine
        .containers_labelled(
            test_looper_tests::docker_engine::SCOPE_LABEL,
            engine.scope(),
        )
        .await;
    assert_eq!(created.len(), 1, "{answer}");
    assert_eq!(
        engine.containers_labelled(RUN_LABEL, &run_id).await,
        created
    );
    assert_eq!(proxy.finish(engine.client()).await.unwrap(), 1);
}

#[tokio::test]
async fn a_job_sees_and_touches_only_its_own_containers() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let run_id = unique("own-run");
    let proxy = DockerProxy::start(
        &dir.path().join("docker.sock"),
        engine_socket_path(),
        ProxyScope::new(&run_id, engine.labels()),
    )
    .unwrap();
    let client = client_of(&proxy);
    // Another job's container, created directly on the engine.
    let mut other_labels = engine.labels();
    other_labels.insert(RUN_LABEL.into(), unique("other-run"));
    let other = engine
        .client()
        .create_container(
            None::<CreateContainerOptions>,
            ContainerCreateBody {
                labels: Some(other_labels),
                ..plain(&engine, &["sleep", "300"])
            },
        )
        .await
        .unwrap()
        .id;
    let (status, _) = refusal(
        client
            .inspect_container(&other, None::<InspectContainerOptions>)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);
    let remove = RemoveContainerOptionsBuilder::default().force(true).build();
    let (status, _) = refusal(
        client
            .remove_container(&other, Some(remove.clone()))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);
    let (status, _) = refusal(
        client
            .start_container(&other, None::<StartContainerOptions>)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);
    let exec = bollard::exec::CreateExecOptions::<String> {
        cmd: Some(vec!["true".into()]),
        ..Default::default()
    };
    let (status, _) = refusal(client.create_exec(&other, exec).await.unwrap_err());
    assert_eq!(status, 404);
    // Joining its namespaces is refused too.
    let body = ContainerCreateBody {
        host_config: Some(HostConfig {
            pid_mode: Some(format!("container:{other}")),
            ..Default::default()
        }),
        ..plain(&engine, &["true"])
    };
    let (status, _) = refusal(
        client
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);

    // Its own plain container: create, start, wait, logs, list, remove all work.
    let own = client
        .create_container(
            None::<CreateContainerOptions>,
            plain(&engine, &["sh", "-c", "echo hello from a sibling"]),
        )
        .await
        .unwrap()
        .id;
    client
        .start_container(&own, None::<StartContainerOptions>)
        .await
        .unwrap();
    let waited = client
        .wait_container(&own, None::<WaitContainerOptions>)
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waited.status_code, 0);
    let logs: Vec<String> = client
        .logs(
            &own,
            Some(LogsOptionsBuilder::default().stdout(true).build()),
        )
        .map(|chunk| chunk.unwrap().to_string())
        .collect()
        .await;
    assert!(logs.concat().contains("hello from a sibling"), "{logs:?}");
    let listed: Vec<String> = client
        .list_containers(Some(
            ListContainersOptionsBuilder::default().all(true).build(),
        ))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    assert_eq!(listed, vec![own.clone()]);
    client.remove_container(&own, Some(remove)).await.unwrap();

    // The other job's container is untouched.
    assert!(engine
        .client()
        .inspect_container(&other, None::<InspectContainerOptions>)
        .await
        .is_ok());
    proxy.finish(engine.client()).await.unwrap();
}

#[tokio::test]
async fn the_socket_is_given_only_to_jobs_that_ask_and_never_where_forbidden() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let check = "test ! -e /var/run/docker.sock && test -z \"${DOCKER_HOST:-}\" && echo no-socket";
    let (outcome, log) = run_stages(
        &engine,
        dir.path(),
        vec![stage(check, "", Vec::new())],
        false,
        Sandbox::default(),
    )
    .await;
    assert_eq!(outcome.result, RunResult::Passed, "log:\n{log}");
    assert!(log.contains("no-socket"), "{log}");

    let forbidding = Sandbox {
        docker_socket: DockerSocketPolicy::Forbidden,
        ..Sandbox::default()
    };
    let (outcome, log) = run_stages(
        &engine,
        dir.path(),
        vec![stage("echo must-not-run", "", Vec::new())],
        true,
        forbidding,
    )
    .await;
    match &outcome.result {
        RunResult::Failed { reason, message } => {
            assert_eq!(*reason, FailureReason::Infrastructure);
            assert!(message.contains("docker_socket: true"), "{message}");
            assert!(message.contains("forbid"), "{message}");
        }
        other => panic!("ran on a forbidding worker: {other:?}\n{log}"),
    }
    assert!(!log.contains("must-not-run\n"), "{log}");
}

#[tokio::test]
async fn containers_run_with_the_sandbox_limits_and_split_characters_survive() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let command = "grep NoNewPrivs /proc/self/status; \
                   echo pids=$(cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null); \
                   printf 'euro:\\342'; sleep 1; printf '\\202\\254.\\n'";
    let (outcome, log) = run_stages(
        &engine,
        dir.path(),
        vec![stage(command, "", Vec::new())],
        false,
        Sandbox::default(),
    )
    .await;
    assert_eq!(outcome.result, RunResult::Passed, "log:\n{log}");
    assert!(log.contains("NoNewPrivs:\t1"), "{log}");
    assert!(log.contains("pids=4096"), "{log}");
    assert!(log.contains("euro:€."), "{log}");
    assert!(!log.contains('\u{fffd}'), "{log}");
}

#[tokio::test]
async fn planted_links_are_never_followed() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let secret = unique("TL-SECRET");
    std::fs::write(host.path().join("secret.txt"), &secret).unwrap();
    std::fs::write(
        host.path().join("summary.json"),
        format!(r#"{{"leaked-{secret}": true}}"#),
    )
    .unwrap();
    let target = host.path().join("target.sh");
    std::fs::write(&target, "untouched").unwrap();
    let host_dir = host.path().display().to_string();

    // Run A: a summary naming links to host files, and a link where the cleanup script goes.
    let command = format!(
        "ln -s {host_dir}/secret.txt /test_looper/output/e; \
         ln -s {host_dir} /test_looper/output/d; \
         echo '{{\"t\":{{\"success\":true,\"logs\":[\"/test_looper/output/e\",\"/test_looper/output/d/secret.txt\"]}}}}' \
           > /test_looper/output/testSummary.json; \
         ln -sf {target} /test_looper/command/cleanup_0.sh || echo command-dir-is-read-only",
        target = target.display()
    );
    let (outcome, log) = run_stages(
        &engine,
        dir.path(),
        vec![stage(
            &command,
            "echo cleaned-by-the-real-script",
            Vec::new(),
        )],
        false,
        Sandbox::default(),
    )
    .await;
    assert_eq!(outcome.result, RunResult::Passed, "log:\n{log}");
    assert!(log.contains("command-dir-is-read-only"), "{log}");
    assert!(log.contains("cleaned-by-the-real-script"), "{log}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    assert_eq!(outcome.test_cases.len(), 1, "{log}");
    assert!(!outcome.test_cases[0].passed && !outcome.test_cases[0].has_logs);
    assert!(log.contains("symbolic link"), "{log}");
    assert!(!stored_artifacts_contain(
        &dir.path().join("artifacts"),
        secret.as_bytes()
    ));

    // Run B: a linked summary, and an artifact directory that is a link to a host directory.
    let command = format!(
        "ln -s {host_dir}/summary.json /test_looper/output/testSummary.json; \
         ln -s {host_dir} /test_looper/output/art"
    );
    let artifact = Artifact {
        name: "art".into(),
        directory: "/test_looper/output/art".into(),
        include_patterns: Vec::new(),
        exclude_patterns: Vec::new(),
        format: ArtifactFormat::Tar,
    };
    let (outcome, log) = run_stages(
        &engine,
        dir.path(),
        vec![stage(&command, "", vec![artifact])],
        false,
        Sandbox::default(),
    )
    .await;
    assert!(outcome.test_cases.is_empty(), "{:?}", outcome.test_cases);
    match &outcome.result {
        RunResult::Failed { message, .. } => {
            assert!(message.contains("symbolic link"), "{message}")
        }
        RunResult::Passed => panic!("a linked artifact directory was packed:\n{log}"),
    }
    assert!(log.contains("testSummary.json"), "{log}");
    assert!(!stored_artifacts_contain(
        &dir.path().join("artifacts"),
        secret.as_bytes()
    ));
}

#[tokio::test]
async fn oversized_result_files_get_a_clear_note() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let command = "head -c 17000000 /dev/zero > /test_looper/output/testSummary.json; \
                   head -c 17000000 /dev/zero > /test_looper/output/big.xml";
    let (outcome, log) = run_stages(
        &engine,
        dir.path(),
        vec![stage(command, "", Vec::new())],
        false,
        Sandbox::default(),
    )
    .await;
    assert_eq!(outcome.result, RunResult::Passed, "log:\n{log}");
    assert!(outcome.test_cases.is_empty());
    assert!(
        log.contains("testSummary.json is larger than 16 MiB: individual results ignored"),
        "{log}"
    );
    assert!(
        log.contains("big.xml is larger than 16 MiB; ignored"),
        "{log}"
    );
}
