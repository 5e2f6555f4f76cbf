//! Retention against the real scheduler over a real Redis, with result records and artifacts
//! in a real local artifact store: a result record of a commit still shown is kept however
//! old; one whose commit is no longer reachable from any branch is removed (and the scheduler
//! forgets the run, in Redis too, so a rebuild agrees); artifacts older than the limit go
//! whatever the run; ended deployments are forgotten; nothing recent is touched.

mod scheduler_support;

use scheduler_support::{definitions, finish, linux, run_of, test_of, Harness, World};
use std::sync::Arc;
use test_looper_artifacts::{ArtifactKey, ArtifactStore, DiskStore};
use test_looper_server::config::RetentionSection;
use test_looper_server::retention::sweep;
use test_looper_server::scheduler::Scheduler;

const DAY_MS: u64 = 24 * 3600 * 1000;

fn real_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn policy() -> RetentionSection {
    RetentionSection {
        artifact_days: Some(30),
        result_days: Some(30),
        ended_deployment_days: Some(7),
        ..RetentionSection::default()
    }
}

/// Repo `r`: `main` at `c1` declaring T (one command), `feature` at `f1` (a child of `c1`)
/// declaring T with another command, so another definition. Both branches under test.
async fn two_branches(scheduler: &Scheduler) {
    let mut world = World::new();
    let body = |command: &str| {
        definitions(&format!(
            "tests:\n  T:\n    environment: linux\n    command: \"{command}\"\n"
        ))
    };
    world.commit("r", "c1", &[], &body("main"));
    world.commit("r", "f1", &["c1"], &body("feature"));
    scheduler
        .ingest_branch_scan("r", "main", "c1", world.infos("r", &["c1"]))
        .await
        .unwrap();
    scheduler
        .ingest_branch_scan("r", "feature", "f1", world.infos("r", &["f1"]))
        .await
        .unwrap();
    for branch in ["main", "feature"] {
        scheduler
            .set_branch_under_test("r", branch, true)
            .await
            .unwrap();
    }
}

/// Runs every offered test to a pass and stores a log artifact for each; returns
/// (test hash, run id) of every run.
async fn run_everything(scheduler: &Scheduler, store: &dyn ArtifactStore) -> Vec<(String, String)> {
    scheduler.register_machine(linux("m1", 4)).await.unwrap();
    let mut runs = Vec::new();
    while let Some(work) = scheduler.next_work("m1").await.unwrap() {
        let assignment = run_of(Some(work));
        let key = ArtifactKey::run(
            &assignment.test_hash,
            &assignment.run_id,
            "test_looper_log.txt",
        )
        .unwrap();
        store.put_bytes(&key, b"log\n".to_vec()).await.unwrap();
        finish(scheduler, &assignment, true).await;
        runs.push((assignment.test_hash.clone(), assignment.run_id.clone()));
    }
    runs
}

fn record_path(harness: &Harness, test_hash: &str, run_id: &str) -> std::path::PathBuf {
    harness
        .dir
        .path()
        .join(format!("scheduler/results/{test_hash}/{run_id}.json"))
}

#[tokio::test]
async fn records_of_shown_commits_are_kept_and_unreachable_ones_removed() {
    let harness = Harness::new();
    let start = real_now();
    harness.clock.set(start);
    let scheduler = harness.open().await;
    let store: Arc<dyn ArtifactStore> = Arc::new(DiskStore::new(harness.dir.path()));
    two_branches(&scheduler).await;
    let shown_hash = test_of(&scheduler, "r", "c1", "T").await.hash;
    let gone_hash = test_of(&scheduler, "r", "f1", "T").await.hash;
    assert_ne!(shown_hash, gone_hash);
    let runs = run_everything(&scheduler, store.as_ref()).await;
    let run_of_hash = |hash: &str| {
        runs.iter()
            .find(|(h, _)| h == hash)
            .map(|(_, run)| run.clone())
            .expect("a run of the test")
    };
    let (shown_run, gone_run) = (run_of_hash(&shown_hash), run_of_hash(&gone_hash));
    assert!(record_path(&harness, &shown_hash, &shown_run).is_file());
    assert!(record_path(&harness, &gone_hash, &gone_run).is_file());

    // Ten days later nothing is old enough.
    let early = sweep(&scheduler, store.as_ref(), &policy(), start + 10 * DAY_MS).await;
    assert_eq!(
        early.runs_forgotten + early.run_objects_removed,
        0,
        "{early:?}"
    );

    // The feature branch is deleted: its commit is no longer shown.
    scheduler.branch_deleted("r", "feature").await.unwrap();
    harness.clock.set(start + 40 * DAY_MS);
    let report = sweep(&scheduler, store.as_ref(), &policy(), start + 40 * DAY_MS).await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.runs_forgotten, 1, "{report:?}");
    assert_eq!(report.result_records_removed, 1, "{report:?}");
    assert_eq!(
        report.run_objects_removed, 2,
        "both logs are old: {report:?}"
    );

    // The shown commit's record and count stay; the other run is gone everywhere.
    assert!(record_path(&harness, &shown_hash, &shown_run).is_file());
    assert!(!record_path(&harness, &gone_hash, &gone_run).exists());
    assert_eq!(test_of(&scheduler, "r", "c1", "T").await.counts.runs, 1);
    let (kept, forgotten) = scheduler
        .read(|engine| {
            (
                engine.run(&shown_run).is_some(),
                engine.run(&gone_run).is_none(),
            )
        })
        .await;
    assert!(kept && forgotten);
    let log = |hash: &str, run: &str| ArtifactKey::run(hash, run, "test_looper_log.txt").unwrap();
    assert!(!store.exists(&log(&shown_hash, &shown_run)).await.unwrap());

    // Redis agrees (a restart loads the same), and so does a rebuild from the records.
    drop(scheduler);
    let reloaded = harness.open().await;
    let (kept, forgotten) = reloaded
        .read(|engine| {
            (
                engine.run(&shown_run).is_some(),
                engine.run(&gone_run).is_none(),
            )
        })
        .await;
    assert!(kept && forgotten, "redis still holds the forgotten run");
    drop(reloaded);
    let mut connection = harness.redis.client().get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut connection).unwrap();
    let rebuilt = harness.open().await;
    let runs_back: Vec<String> = rebuilt
        .read(|engine| engine.all_runs().map(|run| run.run_id.clone()).collect())
        .await;
    assert_eq!(runs_back, vec![shown_run]);
}

#[tokio::test]
async fn runs_of_definitions_no_known_commit_declares_are_kept() {
    // After an empty Redis is rebuilt, definitions come back only as branches are scanned:
    // until then retention must not take their runs for unshown ones.
    let harness = Harness::new();
    let start = real_now();
    harness.clock.set(start);
    let scheduler = harness.open().await;
    let store: Arc<dyn ArtifactStore> = Arc::new(DiskStore::new(harness.dir.path()));
    two_branches(&scheduler).await;
    let runs = run_everything(&scheduler, store.as_ref()).await;
    drop(scheduler);
    let mut connection = harness.redis.client().get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut connection).unwrap();
    harness.clock.set(start + 400 * DAY_MS);
    let rebuilt = harness.open().await;
    let report = sweep(&rebuilt, store.as_ref(), &policy(), start + 400 * DAY_MS).await;
    assert_eq!(report.runs_forgotten, 0, "{report:?}");
    for (hash, run) in &runs {
        assert!(record_path(&harness, hash, run).is_file());
    }
}

#[tokio::test]
async fn ended_deployments_are_forgotten_after_their_retention() {
    let harness = Harness::new();
    let start = real_now();
    harness.clock.set(start);
    let scheduler = harness.open().await;
    let store: Arc<dyn ArtifactStore> = Arc::new(DiskStore::new(harness.dir.path()));
    two_branches(&scheduler).await;
    let hash = test_of(&scheduler, "r", "c1", "T").await.hash;
    let ended = scheduler.create_deployment(&hash).await.unwrap();
    scheduler.shutdown_deployment(&ended).await.unwrap();
    let alive = scheduler.create_deployment(&hash).await.unwrap();

    let report = sweep(&scheduler, store.as_ref(), &policy(), start + 6 * DAY_MS).await;
    assert_eq!(report.deployments_forgotten, 0);
    let report = sweep(&scheduler, store.as_ref(), &policy(), start + 8 * DAY_MS).await;
    assert_eq!(report.deployments_forgotten, 1, "{report:?}");
    drop(scheduler);
    let reloaded = harness.open().await;
    let (ended_known, alive_known) = reloaded
        .read(|engine| {
            (
                engine.deployment(&ended).is_some(),
                engine.deployment(&alive).is_some(),
            )
        })
        .await;
    assert!(!ended_known, "the ended deployment is still in redis");
    assert!(alive_known, "a live deployment is never forgotten");
}
