//! Scoped Docker (runtime spec 5.8; `docker_socket: true`) against the real engine: a client talking to a run's proxy
//! socket creates and starts a container, execs into it with stdin and stdout over the hijacked
//! stream, the container carries the run's labels, and ending the run removes it. Through the
//! executor: a run's command sees the socket and `DOCKER_HOST`, and a container started through
//! the run's socket while it runs is gone when the run ends.

mod worker_support;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, StartContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use test_looper_containers::{RUN_LABEL, SCOPE_LABEL};
use test_looper_core::definitions::Stage;
use test_looper_core::protocol::RunResult;
use test_looper_tests::DockerEngine;
use test_looper_worker::executor::docker_proxy::{engine_socket_path, DockerProxy, ProxyScope};
use tokio::io::AsyncWriteExt;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn containers_started_through_the_proxy_are_labelled_usable_and_removed() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let run_id = unique("scoped-run");
    let scope = unique("scoped-scope");
    let socket = dir.path().join("docker.sock");
    let proxy = DockerProxy::start(
        &socket,
        engine_socket_path(),
        ProxyScope::new(
            &run_id,
            HashMap::from([(SCOPE_LABEL.to_string(), scope.clone())]),
        ),
    )
    .unwrap();

    let client = Docker::connect_with_unix(
        proxy.socket_path().to_str().unwrap(),
        60,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();
    // Harness labels too, so the harness cleans up if the test dies half-way.
    let body = ContainerCreateBody {
        image: Some("test-looper/base:1".into()),
        cmd: Some(vec!["sleep".into(), "300".into()]),
        labels: Some(engine.labels()),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default()
        .name(&unique("scoped-child"))
        .build();
    let id = client
        .create_container(Some(options), body)
        .await
        .unwrap()
        .id;
    client
        .start_container(&id, None::<StartContainerOptions>)
        .await
        .unwrap();

    // The run's labels were added by the proxy, the client's own kept.
    let inspected = engine.client().inspect_container(&id, None).await.unwrap();
    let labels = inspected.config.unwrap().labels.unwrap();
    assert_eq!(labels.get(RUN_LABEL), Some(&run_id));
    assert_eq!(labels.get(SCOPE_LABEL), Some(&scope));
    for (name, value) in engine.labels() {
        assert_eq!(labels.get(&name), Some(&value));
    }

    // Exec through the proxy: stdin goes in and stdout comes back over the hijacked stream.
    let exec = client
        .create_exec(
            &id,
            CreateExecOptions {
                cmd: Some(vec!["sh", "-c", "read line; echo got:$line"]),
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = client.start_exec(&exec, None).await.unwrap()
    else {
        panic!("exec did not attach");
    };
    input.write_all(b"ping\n").await.unwrap();
    input.flush().await.unwrap();
    let mut received = String::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = output.next().await {
            received.push_str(&String::from_utf8_lossy(&chunk.unwrap().into_bytes()));
            if received.contains("got:ping") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "exec output timed out: {received:?}");
    assert!(received.contains("got:ping"), "{received:?}");

    // Ending the run removes the container and closes the socket.
    let removed = proxy.finish(engine.client()).await.unwrap();
    assert_eq!(removed, 1);
    assert!(engine
        .containers_labelled(RUN_LABEL, &run_id)
        .await
        .is_empty());
    assert!(!socket.exists());
}

#[tokio::test]
async fn a_runs_sibling_containers_are_removed_when_the_run_ends() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let scope = unique("scoped-exec");
    let exec = worker_support::executor(engine.client(), dir.path(), &scope, "machine-s");
    let resolved = worker_support::resolved_fixture();
    let run_id = unique("run-scoped");
    let mut assignment = worker_support::assignment(&resolved, "pass/linux", &run_id);
    assignment.definition.docker_socket = true;
    // The command reports the socket, then waits (bounded) for the test's go-ahead.
    assignment.definition.stages = vec![Stage {
        command: "test -S /var/run/docker.sock && echo \"socket at $DOCKER_HOST\"; \
                  i=0; while [ ! -f /test_looper/scratch/go ] && [ $i -lt 600 ]; \
                  do sleep 0.1; i=$((i+1)); done"
            .into(),
        cleanup: String::new(),
        order: 0.0,
        artifacts: Vec::new(),
    }];
    let run = tokio::spawn({
        let exec = exec.clone();
        let assignment = assignment.clone();
        async move { worker_support::run(&exec, &assignment).await }
    });

    let run_dir = dir.path().join("worker").join("runs").join(&run_id);
    let socket = run_dir.join("docker").join("docker.sock");
    let started = std::time::Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no docker socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client =
        Docker::connect_with_unix(socket.to_str().unwrap(), 60, bollard::API_DEFAULT_VERSION)
            .unwrap();
    let body = ContainerCreateBody {
        image: Some("test-looper/base:1".into()),
        cmd: Some(vec!["sleep".into(), "300".into()]),
        labels: Some(engine.labels()),
        ..Default::default()
    };
    let id = client
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .unwrap()
        .id;
    client
        .start_container(&id, None::<StartContainerOptions>)
        .await
        .unwrap();
    // Labelled with the run (like the run's own command container).
    assert!(engine
        .containers_labelled(RUN_LABEL, &run_id)
        .await
        .contains(&id));
    std::fs::write(run_dir.join("scratch").join("go"), b"").unwrap();

    let (outcome, log, _) = run.await.unwrap();
    assert_eq!(outcome.result, RunResult::Passed, "log:\n{log}");
    assert!(
        log.contains("socket at unix:///var/run/docker.sock"),
        "{log}"
    );
    assert!(
        log.contains("removed 1 container(s) the run started through docker"),
        "{log}"
    );
    assert!(engine.client().inspect_container(&id, None).await.is_err());
    assert!(engine
        .containers_labelled(RUN_LABEL, &run_id)
        .await
        .is_empty());
}
