//! The Docker executor against the real engine: the `worker_suite` fixture's build and tests
//! run in containers of an image built from its Dockerfile, with artifacts in a real store.

mod worker_support;

use test_looper_artifacts::{ArtifactKey, ArtifactPrefix};
use test_looper_containers::SCOPE_LABEL;
use test_looper_core::protocol::{FailureReason, RunResult};
use test_looper_tests::DockerEngine;
use worker_support::{assignment, executor, resolved_fixture, run};

fn reason(result: &RunResult) -> Option<FailureReason> {
    match result {
        RunResult::Passed => None,
        RunResult::Failed { reason, .. } => Some(*reason),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

#[tokio::test]
async fn build_then_dependent_test_with_staged_artifacts() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let scope = unique("wexec_build");
    let exec = executor(engine.client(), dir.path(), &scope, "machine-a");
    let resolved = resolved_fixture();

    let build = assignment(&resolved, "build/linux", "run-build-1");
    let (outcome, log, reported) = run(&exec, &build).await;
    assert_eq!(outcome.result, RunResult::Passed, "log:\n{log}");
    assert_eq!(reported, vec!["headers", "libs"]);
    assert_eq!(outcome.artifacts, vec!["headers", "libs"]);
    assert!(
        log.contains("built headers") && log.contains("built libs"),
        "{log}"
    );
    let stored = exec
        .store
        .list(&ArtifactPrefix::build(&build.test_hash).unwrap())
        .await
        .unwrap();
    let names: Vec<&str> = stored.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "build_s_linux_s_headers.tar.gz",
            "build_s_linux_s_libs.tar.gz"
        ]
    );

    // The same build again is skipped: its artifacts exist for its hash.
    let (again, log, reported) =
        run(&exec, &assignment(&resolved, "build/linux", "run-build-2")).await;
    assert_eq!(again.result, RunResult::Passed);
    assert!(log.contains("Build already exists"), "{log}");
    assert_eq!(reported, vec!["headers", "libs"]);

    // A test that needs the build's `libs` artifact gets it (without the excluded file).
    let test = assignment(&resolved, "uses_build/linux", "run-uses-1");
    let (outcome, log, _) = run(&exec, &test).await;
    assert_eq!(outcome.result, RunResult::Passed, "log:\n{log}");
    assert!(log.contains("suite library, cores=1"), "{log}");
    assert!(log.contains("library ok"));

    // The run log is stored with the run; no container and no run directory is left.
    let log_key = ArtifactKey::run(&test.test_hash, "run-uses-1", "test_looper_log.txt").unwrap();
    let stored_log =
        String::from_utf8(exec.store.get_bytes(&log_key, 1 << 20).await.unwrap()).unwrap();
    assert!(stored_log.contains("library ok"));
    assert!(engine
        .containers_labelled(SCOPE_LABEL, &scope)
        .await
        .is_empty());
    assert!(!dir.path().join("worker/runs/run-uses-1").exists());
}

#[tokio::test]
async fn outcomes_reasons_cases_and_output_files() {
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let scope = unique("wexec_tests");
    let exec = executor(engine.client(), dir.path(), &scope, "machine-b");
    let resolved = resolved_fixture();

    // Passing test: runtime contract holds; its output file is kept as a run artifact.
    let pass = assignment(&resolved, "pass/linux", "run-pass");
    let (outcome, log, reported) = run(&exec, &pass).await;
    assert_eq!(outcome.result, RunResult::Passed, "log:\n{log}");
    assert!(
        log.contains("hello from run-pass in /test_looper/test_inputs"),
        "{log}"
    );
    assert!(log.contains("TEST_RAM_GB_AVAILABLE=1"));
    assert_eq!(reported, vec![""]);
    let kept = exec
        .store
        .list(&ArtifactPrefix::run(&pass.test_hash, "run-pass").unwrap())
        .await
        .unwrap();
    let names: Vec<&str> = kept.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "output/report.txt",
            "pass_s_linux.tar.gz",
            "test_looper_log.txt"
        ]
    );

    // Failing test: typed reason, exit code in the message, and its cleanup still ran.
    let fail = assignment(&resolved, "fail/linux", "run-fail");
    let (outcome, log, _) = run(&exec, &fail).await;
    match &outcome.result {
        RunResult::Failed { reason, message } => {
            assert_eq!(*reason, FailureReason::TestFailure);
            assert!(message.contains("exit code 3"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(log.contains("expected 4, got 5"));
    let cleanup = ArtifactKey::run(&fail.test_hash, "run-fail", "output/cleanup.txt").unwrap();
    assert_eq!(
        exec.store.get_bytes(&cleanup, 100).await.unwrap(),
        b"cleanup ran\n"
    );

    // Timeout: killed after its 3 s.
    let started = std::time::Instant::now();
    let (outcome, log, _) = run(
        &exec,
        &assignment(&resolved, "timeout/linux", "run-timeout"),
    )
    .await;
    assert_eq!(
        reason(&outcome.result),
        Some(FailureReason::Timeout),
        "{log}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(log.contains("started"));

    // testSummary.json: per-case results and the individual log.
    let summary = assignment(&resolved, "summary/linux", "run-summary");
    let (outcome, log, _) = run(&exec, &summary).await;
    assert_eq!(outcome.result, RunResult::Passed, "{log}");
    let cases: Vec<(&str, bool, bool)> = outcome
        .test_cases
        .iter()
        .map(|c| (c.name.as_str(), c.passed, c.has_logs))
        .collect();
    assert_eq!(
        cases,
        vec![
            ("Group1.addition", true, false),
            ("Group1.subtraction", true, false),
            ("Group2.division", false, true)
        ]
    );
    let case_log = ArtifactKey::run(
        &summary.test_hash,
        "run-summary",
        "individual_test_logs/Group2.division/division.log",
    )
    .unwrap();
    assert_eq!(
        exec.store.get_bytes(&case_log, 100).await.unwrap(),
        b"division by zero\n"
    );

    // JUnit XML.
    let (outcome, _, _) = run(&exec, &assignment(&resolved, "junit/linux", "run-junit")).await;
    let cases: Vec<(&str, bool)> = outcome
        .test_cases
        .iter()
        .map(|c| (c.name.as_str(), c.passed))
        .collect();
    assert_eq!(
        cases,
        vec![
            ("parser.Lexer.tokens", true),
            ("parser.Lexer.unicode", false),
            ("parser.Tree.nesting", true)
        ]
    );

    // A Dockerfile that does not build is an environment error with the build log.
    let (outcome, log, _) = run(
        &exec,
        &assignment(&resolved, "broken_image/linux", "run-img"),
    )
    .await;
    assert_eq!(
        reason(&outcome.result),
        Some(FailureReason::EnvironmentError),
        "{log}"
    );
    assert!(
        log.contains("RUN exit 3") || log.contains("exit 3"),
        "{log}"
    );

    // A test whose build dependency was never built: environment error, nothing run.
    let (outcome, log, _) = run(
        &exec,
        &assignment(&resolved, "uses_build/linux", "run-nodep"),
    )
    .await;
    assert_eq!(
        reason(&outcome.result),
        Some(FailureReason::EnvironmentError)
    );
    assert!(log.contains("doesn't exist"), "{log}");

    assert!(engine
        .containers_labelled(SCOPE_LABEL, &scope)
        .await
        .is_empty());
}

#[tokio::test]
async fn leftovers_of_a_killed_worker_are_reaped_at_start() {
    use bollard::models::ContainerCreateBody;
    let engine = DockerEngine::connect().await;
    let dir = tempfile::tempdir().unwrap();
    let scope = unique("wexec_reap");
    let exec = executor(engine.client(), dir.path(), &scope, "machine-killed");
    // What a `kill -9` mid-run leaves: a running container with the worker's labels and a
    // run directory.
    let labels = test_looper_containers::container_labels(
        &scope,
        "machine-killed",
        "run-x",
        &engine.labels(),
    );
    let body = ContainerCreateBody {
        image: Some(test_looper_tests::docker_engine::BASE_IMAGE.into()),
        cmd: Some(vec!["sleep".into(), "600".into()]),
        labels: Some(labels),
        ..Default::default()
    };
    let created = engine.client().create_container(None, body).await.unwrap();
    engine
        .client()
        .start_container(
            &created.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    std::fs::create_dir_all(dir.path().join("worker/runs/run-x/output")).unwrap();

    let removed = exec.reap_leftovers().await.unwrap();
    assert_eq!(removed, 1);
    assert!(engine
        .containers_labelled(SCOPE_LABEL, &scope)
        .await
        .is_empty());
    assert!(!dir.path().join("worker/runs").exists());
}
