//! End to end against real Redis, git and Docker: a repo holding a build and tests that pass,
//! fail, flake, time out, report testSummary.json and JUnit cases, and depend on a build
//! stage's artifact. The server scans it, the branch is enabled with 10 runs per test, the
//! local pool's worker processes run everything in containers, and the recorded counts,
//! results, logs and artifacts are exactly what the commands did. A worker killed with
//! `kill -9` mid-run loses that run, which is retried and counted once, with no container
//! left behind.

use std::collections::BTreeMap;
use std::time::Duration;
use test_looper_artifacts::ArtifactPrefix;
use test_looper_core::protocol::{FailureReason, RunResult, TestCaseResult};
use test_looper_core::scheduling::{RunRecord, RunState, TestView};
use test_looper_server::logs::intake as logs;
use test_looper_tests::install::{make_repo, suite_files, wait_until, Install, PoolOptions};
use test_looper_tests::DockerEngine;

const SUITE_YML: &str = r#"
looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile: docker/Dockerfile
    variables:
      GREETING: hello
builds:
  build/linux:
    environment: linux
    dependencies:
      src: HEAD
    stages:
      - command: bash src/build.sh headers
        artifacts: [{name: headers, directory: headers}]
      - command: bash src/build.sh libs
        artifacts: [{name: libs, directory: libs, exclude_patterns: ["*.tmp"]}]
tests:
  pass/linux:
    environment: linux
    command: bash src/tests/pass.sh
    dependencies: {src: HEAD}
  fail/linux:
    environment: linux
    command: bash src/tests/fail.sh
    cleanup: echo "cleanup ran" > $TEST_OUTPUT_DIR/cleanup.txt
    dependencies: {src: HEAD}
  flaky/linux:
    environment: linux
    command: bash src/tests/flaky.sh 30
    dependencies: {src: HEAD}
  timeout/linux:
    environment: linux
    command: echo started; sleep 600
    timeout: 2
  summary/linux:
    environment: linux
    command: bash src/tests/summary.sh
    dependencies: {src: HEAD}
  junit/linux:
    environment: linux
    command: bash src/tests/junit.sh
    dependencies: {src: HEAD}
  uses_build/linux:
    environment: linux
    command: bash src/tests/uses_build.sh
    dependencies:
      src: HEAD
      libs: build/linux/libs
"#;

const RUNS: u64 = 10;

struct Observed {
    view: TestView,
    runs: Vec<RunRecord>,
}

async fn observe(install: &Install, repo: &str, commit: &str) -> BTreeMap<String, Observed> {
    install
        .scheduler()
        .read(|engine| {
            let commit = engine.commit_view(repo, commit).expect("commit known");
            commit
                .tests
                .into_iter()
                .map(|view| {
                    let runs = engine
                        .runs_of(&view.hash)
                        .into_iter()
                        .cloned()
                        .collect::<Vec<_>>();
                    (view.name.clone(), Observed { view, runs })
                })
                .collect()
        })
        .await
}

async fn run_log(install: &Install, run_id: &str) -> String {
    logs::read_from(&install.context.redis, run_id, 0)
        .await
        .expect("live log")
}

/// Whether `log` holds `line` as a whole line of the command's output (the stage header
/// that names the command does not count).
fn printed(log: &str, line: &str) -> bool {
    log.lines().any(|l| l.trim_end() == line)
}

async fn run_files(install: &Install, hash: &str, run_id: &str) -> Vec<String> {
    install
        .services
        .artifacts
        .list(&ArtifactPrefix::run(hash, run_id).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|object| object.name)
        .collect()
}

fn case(name: &str, passed: bool, has_logs: bool) -> TestCaseResult {
    TestCaseResult {
        name: name.into(),
        passed,
        has_logs,
    }
}

fn reason(run: &RunRecord) -> Option<FailureReason> {
    match &run.result {
        Some(RunResult::Failed { reason, .. }) => Some(*reason),
        _ => None,
    }
}

#[actix_web::test]
async fn a_suite_runs_ten_times_per_test_with_exact_results() {
    let engine = DockerEngine::connect().await;
    let (redis, dir) = Install::prepare();
    let mut files = suite_files();
    files.push(("testlooper.yml".into(), SUITE_YML.into()));
    let (_repo, commit) = make_repo(dir.path(), "suite", &files);
    let install = Install::start(redis, dir, "e2e_suite", PoolOptions::default()).await;
    install.wait_for_branch("suite", "master").await;
    let scheduler = install.scheduler().clone();
    scheduler
        .set_branch_default_runs("suite", "master", RUNS as u32)
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("suite", "master", true)
        .await
        .unwrap();

    wait_until(
        Duration::from_secs(400),
        "every test to finish its runs",
        || async {
            let observed = observe(&install, "suite", &commit).await;
            observed.len() == 8
                && observed.values().all(|o| {
                    let wanted = if o.view.name == "build/linux" {
                        1
                    } else {
                        RUNS
                    };
                    o.view.counts.runs >= wanted && o.view.counts.running == 0
                })
        },
    )
    .await;
    let observed = observe(&install, "suite", &commit).await;

    // Exactly the wanted runs, none lost or cancelled, none running.
    for (name, o) in &observed {
        let wanted = if name == "build/linux" { 1 } else { RUNS };
        assert_eq!(o.view.counts.runs, wanted, "{name}: {:?}", o.view);
        assert_eq!(o.runs.len() as u64, wanted, "{name}: {:?}", o.runs);
        assert!(
            o.runs.iter().all(|r| r.state.counts()),
            "{name}: {:?}",
            o.runs
        );
    }

    let build = &observed["build/linux"];
    assert_eq!(build.view.counts.failures, 0);
    assert_eq!(build.runs[0].artifacts, vec!["headers", "libs"]);

    // Passing test: runtime contract in its log, its output file kept.
    let pass = &observed["pass/linux"];
    assert_eq!(pass.view.counts.failures, 0);
    for run in &pass.runs {
        assert_eq!(run.state, RunState::Passed);
        let log = run_log(&install, &run.run_id).await;
        assert!(log.contains(&format!("hello from {}", run.run_id)), "{log}");
        assert!(log.contains("pass ok"), "{log}");
        let stored = run_files(&install, &pass.view.hash, &run.run_id).await;
        assert!(
            stored.contains(&"output/report.txt".to_string()),
            "{stored:?}"
        );
        assert!(
            stored.contains(&"test_looper_log.txt".to_string()),
            "{stored:?}"
        );
    }

    // Failing test: typed failure, its message in the log, the cleanup ran every time.
    let fail = &observed["fail/linux"];
    assert_eq!(fail.view.counts.failures, RUNS);
    for run in &fail.runs {
        assert_eq!(run.state, RunState::Failed);
        assert_eq!(reason(run), Some(FailureReason::TestFailure));
        let log = run_log(&install, &run.run_id).await;
        assert!(log.contains("expected 4, got 5"), "{log}");
        let stored = run_files(&install, &fail.view.hash, &run.run_id).await;
        assert!(
            stored.contains(&"output/cleanup.txt".to_string()),
            "{stored:?}"
        );
    }

    // Flaky test: the recorded failures are exactly the runs whose roll was below 30.
    let flaky = &observed["flaky/linux"];
    let mut rolled_low = 0;
    for run in &flaky.runs {
        let log = run_log(&install, &run.run_id).await;
        let roll: u32 = log
            .lines()
            .find_map(|line| line.strip_prefix("rolled "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no roll in {log}"));
        let failed = roll < 30;
        rolled_low += u64::from(failed);
        assert_eq!(run.state == RunState::Failed, failed, "{roll}: {run:?}");
    }
    assert_eq!(flaky.view.counts.failures, rolled_low);

    // Timeout: killed after 2 s, typed as a timeout, counted as a failure.
    let timeout = &observed["timeout/linux"];
    assert_eq!(timeout.view.counts.failures, RUNS);
    for run in &timeout.runs {
        assert_eq!(run.state, RunState::TimedOut);
        assert_eq!(reason(run), Some(FailureReason::Timeout));
        let log = run_log(&install, &run.run_id).await;
        assert!(printed(&log, "started"), "{log}");
        assert!(log.contains("timed out after 2 s"), "{log}");
        assert!(run.ended - run.started < 30_000, "{run:?}");
    }

    // testSummary.json: per-case results, the failing case's own log stored.
    let summary = &observed["summary/linux"];
    assert_eq!(summary.view.counts.failures, 0);
    assert_eq!(summary.view.counts.cases, 3 * RUNS);
    assert_eq!(summary.view.counts.failed_cases, RUNS);
    for run in &summary.runs {
        assert_eq!(
            run.test_cases,
            vec![
                case("Group1.addition", true, false),
                case("Group1.subtraction", true, false),
                case("Group2.division", false, true),
            ]
        );
        let stored = run_files(&install, &summary.view.hash, &run.run_id).await;
        assert!(
            stored.contains(&"individual_test_logs/Group2.division/division.log".to_string()),
            "{stored:?}"
        );
    }

    // JUnit XML: per-case results, the report kept as an artifact.
    let junit = &observed["junit/linux"];
    assert_eq!(junit.view.counts.failures, 0);
    assert_eq!(junit.view.counts.failed_cases, RUNS);
    for run in &junit.runs {
        assert_eq!(
            run.test_cases,
            vec![
                case("parser.Lexer.tokens", true, false),
                case("parser.Lexer.unicode", false, false),
                case("parser.Tree.nesting", true, false),
            ]
        );
        let stored = run_files(&install, &junit.view.hash, &run.run_id).await;
        assert!(
            stored.contains(&"output/reports/junit.xml".to_string()),
            "{stored:?}"
        );
    }

    // The dependent test got the build's `libs` artifact (without the excluded file).
    let uses_build = &observed["uses_build/linux"];
    assert_eq!(uses_build.view.counts.failures, 0);
    for run in &uses_build.runs {
        let log = run_log(&install, &run.run_id).await;
        assert!(log.contains("suite library, cores=1"), "{log}");
        assert!(log.contains("library ok"), "{log}");
        assert!(run.started >= build.runs[0].ended - 1, "{run:?}");
    }

    // Nothing of the install is left in the engine, even with the workers still idle.
    assert!(!install.services.pool().unwrap().workers().is_empty());
    assert_eq!(
        install.scope_containers(&engine).await,
        Vec::<String>::new()
    );
    install.shutdown().await;
}

const SLOW_YML: &str = r#"
looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile_contents: |
        FROM test-looper/base:1
tests:
  slow/linux:
    environment: linux
    command: echo started; sleep 3; echo finished
"#;

#[actix_web::test]
async fn a_worker_killed_mid_run_loses_it_and_the_retry_counts_once() {
    let engine = DockerEngine::connect().await;
    let (redis, dir) = Install::prepare();
    let (_repo, commit) = make_repo(
        dir.path(),
        "slow",
        &[("testlooper.yml".to_string(), SLOW_YML.to_string())],
    );
    let install = Install::start(
        redis,
        dir,
        "e2e_kill",
        PoolOptions {
            max_workers: 1,
            ..PoolOptions::default()
        },
    )
    .await;
    install.wait_for_branch("slow", "master").await;
    install
        .scheduler()
        .set_branch_under_test("slow", "master", true)
        .await
        .unwrap();

    // Wait until the command runs in its container.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let first = loop {
        let observed = observe(&install, "slow", &commit).await;
        let run = observed
            .get("slow/linux")
            .and_then(|o| o.runs.first().cloned());
        if let Some(run) = run {
            if printed(&run_log(&install, &run.run_id).await, "started") {
                break run;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let victim = install
        .services
        .pool()
        .unwrap()
        .workers()
        .into_iter()
        .find(|w| w.machine_id == first.machine_id)
        .expect("the worker running the first run");
    let running = engine
        .containers_labelled("test-looper.worker", &victim.machine_id)
        .await;
    assert_eq!(running.len(), 1, "the command's container runs");
    // SAFETY: kill(2) with a pid this test's pool spawned.
    let killed = unsafe { libc::kill(victim.pid.unwrap() as i32, libc::SIGKILL) };
    assert_eq!(killed, 0);

    // The run is lost (after the killed worker's containers were removed) and retried.
    wait_until(Duration::from_secs(60), "the run to be lost", || async {
        install
            .scheduler()
            .read(|engine| engine.run(&first.run_id).map(|r| r.state))
            .await
            == Some(RunState::Lost)
    })
    .await;
    assert!(engine
        .containers_labelled("test-looper.worker", &victim.machine_id)
        .await
        .is_empty());
    wait_until(Duration::from_secs(120), "the retry to finish", || async {
        let observed = observe(&install, "slow", &commit).await;
        observed["slow/linux"].view.counts.runs >= 1
    })
    .await;
    let observed = observe(&install, "slow", &commit).await;
    let slow = &observed["slow/linux"];
    assert_eq!(slow.view.counts.runs, 1);
    assert_eq!(slow.view.counts.failures, 0);
    let states: Vec<RunState> = slow.runs.iter().map(|r| r.state).collect();
    assert_eq!(states, vec![RunState::Lost, RunState::Passed]);
    assert_ne!(slow.runs[1].machine_id, victim.machine_id);
    let log = run_log(&install, &slow.runs[1].run_id).await;
    assert!(printed(&log, "finished"), "{log}");
    assert_eq!(
        install.scope_containers(&engine).await,
        Vec::<String>::new()
    );
    install.shutdown().await;
}
