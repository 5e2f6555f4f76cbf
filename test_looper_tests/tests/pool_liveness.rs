//! The local pool keeps serving work whatever its workers do, against real Redis, git,
//! Docker and `test-looper-worker` processes:
//! - a worker that reaches its idle timeout exits as a process, leaves the scheduler and
//!   `/api/machines`, and new work then gets a new worker that completes it (issue 12: the
//!   idle worker's process used to hang on a read of stdin, and the pool kept counting it);
//! - a worker that stops heartbeating (SIGSTOP) is killed and replaced, and its run is lost
//!   once and retried once;
//! - a worker's command line holds no store settings, and its environment none of the
//!   server's unrelated variables (M5, H6).

use std::time::Duration;
use test_looper_core::scheduling::{RunRecord, RunState, TestView};
use test_looper_tests::install::{one_test_yml, wait_until, Install, PoolOptions};
use test_looper_tests::DockerEngine;

async fn test_runs(install: &Install, repo: &str, commit: &str) -> (TestView, Vec<RunRecord>) {
    install
        .scheduler()
        .read(|engine| {
            let view = engine
                .commit_view(repo, commit)
                .expect("commit known")
                .tests
                .into_iter()
                .next()
                .expect("one test");
            let runs = engine.runs_of(&view.hash).into_iter().cloned().collect();
            (view, runs)
        })
        .await
}

/// The machine ids `/api/machines` lists.
async fn listed_machines(install: &Install) -> Vec<String> {
    let view: serde_json::Value = reqwest::get(format!("{}/api/machines", install.base_url))
        .await
        .expect("GET /api/machines")
        .json()
        .await
        .expect("machines JSON");
    view["machines"]
        .as_array()
        .expect("machines list")
        .iter()
        .map(|row| {
            row["machine"]["info"]["machine_id"]
                .as_str()
                .expect("machine id")
                .to_string()
        })
        .collect()
}

async fn engine_machines(install: &Install) -> Vec<String> {
    install
        .scheduler()
        .read(|engine| {
            engine
                .machines()
                .into_iter()
                .map(|machine| machine.info.machine_id)
                .collect()
        })
        .await
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.contains(") Z "))
}

#[actix_web::test]
async fn an_idle_worker_exits_and_new_work_gets_a_new_worker() {
    let _engine = DockerEngine::connect().await;
    let (install, commit) = Install::start_enabled(
        "quick",
        &one_test_yml("quick", "echo done"),
        "pool_idle",
        PoolOptions {
            max_workers: 1,
            idle_timeout_seconds: 1,
            heartbeat_timeout_seconds: 10,
            ..PoolOptions::default()
        },
    )
    .await;
    wait_until(Duration::from_secs(120), "the first run", || async {
        test_runs(&install, "quick", &commit).await.0.counts.runs >= 1
    })
    .await;
    let (_, runs) = test_runs(&install, "quick", &commit).await;
    let first_machine = runs[0].machine_id.clone();

    // Idle past its timeout: the process ends, and the machine leaves the scheduler and the
    // API.
    let pool = install.services.pool().unwrap();
    wait_until(
        Duration::from_secs(60),
        "the idle worker's process to exit",
        || async { pool.workers().is_empty() },
    )
    .await;
    assert!(!engine_machines(&install).await.contains(&first_machine));
    assert!(!listed_machines(&install).await.contains(&first_machine));

    // New work: a new worker is started and completes it.
    install
        .scheduler()
        .set_runs_desired("quick", &commit, "quick/linux", 2)
        .await
        .unwrap();
    wait_until(Duration::from_secs(120), "the second run", || async {
        test_runs(&install, "quick", &commit).await.0.counts.runs >= 2
    })
    .await;
    let (view, runs) = test_runs(&install, "quick", &commit).await;
    assert_eq!((view.counts.runs, view.counts.failures), (2, 0));
    let states: Vec<RunState> = runs.iter().map(|run| run.state).collect();
    assert_eq!(states, vec![RunState::Passed, RunState::Passed]);
    assert_ne!(runs[1].machine_id, first_machine);
    install.shutdown().await;
}

#[actix_web::test]
async fn a_worker_that_stops_heartbeating_is_replaced_and_its_run_retried_once() {
    let engine = DockerEngine::connect().await;
    let (install, commit) = Install::start_enabled(
        "slow",
        &one_test_yml("slow", "echo started; sleep 3; echo finished"),
        "pool_silent",
        PoolOptions {
            max_workers: 1,
            heartbeat_timeout_seconds: 10,
            ..PoolOptions::default()
        },
    )
    .await;
    wait_until(
        Duration::from_secs(120),
        "the first run to start",
        || async {
            let (_, runs) = test_runs(&install, "slow", &commit).await;
            runs.first()
                .is_some_and(|run| run.state == RunState::Running)
        },
    )
    .await;
    let (_, runs) = test_runs(&install, "slow", &commit).await;
    let first = runs[0].clone();
    let victim = install
        .services
        .pool()
        .unwrap()
        .workers()
        .into_iter()
        .find(|w| w.machine_id == first.machine_id)
        .expect("the worker running the first run");
    let pid = victim.pid.expect("worker pid");

    // M5 / H6: no store settings on the command line, none of the server's variables in
    // the environment (this test process's CARGO_* variables stand for them).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(!cmdline.contains("--artifacts"), "{cmdline}");
    assert!(!cmdline.contains("local_disk"), "{cmdline}");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|byte| *byte == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            entry.split_once('=').map(|(name, _)| name.to_string())
        })
        .collect();
    assert!(
        names.contains(&"TEST_LOOPER_ARTIFACTS".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"PATH".to_string()), "{names:?}");
    assert!(std::env::vars().any(|(name, _)| name.starts_with("CARGO_")));
    assert!(
        !names.iter().any(|name| name.starts_with("CARGO_")),
        "{names:?}"
    );

    // SAFETY: kill(2) with a pid this test's pool spawned.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);

    // Lost at its heartbeat deadline, the silent worker killed and replaced, the run
    // retried once and counted once.
    wait_until(Duration::from_secs(120), "the retry to finish", || async {
        test_runs(&install, "slow", &commit).await.0.counts.runs >= 1
    })
    .await;
    let (view, runs) = test_runs(&install, "slow", &commit).await;
    assert_eq!((view.counts.runs, view.counts.failures), (1, 0));
    let states: Vec<RunState> = runs.iter().map(|run| run.state).collect();
    assert_eq!(states, vec![RunState::Lost, RunState::Passed]);
    assert_ne!(runs[1].machine_id, victim.machine_id);
    assert!(!process_exists(pid), "the stopped worker was killed");
    assert!(!engine_machines(&install).await.contains(&victim.machine_id));
    assert!(!listed_machines(&install).await.contains(&victim.machine_id));
    assert!(engine
        .containers_labelled("test-looper.worker", &victim.machine_id)
        .await
        .is_empty());
    install.shutdown().await;
}
