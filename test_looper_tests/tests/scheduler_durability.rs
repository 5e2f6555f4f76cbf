//! Durability and exactly-once accounting of the scheduler against a real Redis: a restart
//! loses nothing, an emptied Redis is rebuilt from the result records, and concurrent
//! completions and cancellations count each run once.

mod scheduler_support;

use std::sync::Arc;
use std::time::Duration;

use scheduler_support::*;
use test_looper_artifacts::DiskStore;
use test_looper_core::protocol::{Completion, CompletionAck, Heartbeat, HeartbeatReply};
use test_looper_core::scheduling::{RunState, TestCounts};
use test_looper_server::scheduler::results::{ArtifactResultStore, ResultStore, StoreError};
use test_looper_server::scheduler::{Scheduler, StartMode};

fn world() -> World {
    let mut world = World::new();
    world
        .commit("r", "c1", &[], &build_and_test())
        .commit(
            "r",
            "c2",
            &["c1"],
            &definitions("builds:\n  B:\n    environment: linux\n    command: \"make\"\ntests:\n  T:\n    environment: linux\n    command: \"test v2\"\n    dependencies:\n      b: B\n"),
        );
    world
}

async fn counts(scheduler: &Scheduler) -> Vec<(String, String, TestCounts)> {
    scheduler
        .read(|engine| {
            ["c1", "c2"]
                .iter()
                .filter_map(|commit| engine.commit_view("r", commit))
                .flat_map(|view| {
                    let commit = view.record.hash.clone();
                    view.tests
                        .into_iter()
                        .map(move |test| (commit.clone(), test.name, test.counts))
                })
                .collect()
        })
        .await
}

/// Ingests the world, enables both commits and runs: B passes, T on c2 runs 3 times
/// (pass, fail, pass), T on c1 once (fail). Returns one in-flight run of c2's T.
async fn populate(scheduler: &Scheduler, world: &World) -> (String, Vec<String>) {
    scheduler
        .ingest_branch_scan("r", "main", "c2", world.infos("r", &["c1", "c2"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
    scheduler.set_commit_priority("r", "c1", 1).await.unwrap();
    scheduler.set_runs_desired("r", "c2", "T", 4).await.unwrap();
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    scheduler.register_machine(linux("m2", 2)).await.unwrap();
    let mut outcomes = vec![true, false, true, false].into_iter();
    loop {
        let run = run_of(scheduler.next_work("m1").await.unwrap());
        if run.definition.name == "B" {
            finish(scheduler, &run, true).await;
            continue;
        }
        match outcomes.next() {
            Some(success) => {
                finish(scheduler, &run, success).await;
            }
            None => return (run.run_id, run.artifacts),
        }
    }
}

#[tokio::test]
async fn a_restarted_server_loses_nothing_and_counts_nothing_twice() {
    let harness = Harness::new();
    let world = world();
    let scheduler = harness.open().await;
    let (in_flight, artifacts) = populate(&scheduler, &world).await;
    let before = counts(&scheduler).await;
    drop(scheduler); // the process dies: only Redis and the result store remain

    harness.clock.advance_secs(20);
    let scheduler = harness.open().await;
    assert_eq!(scheduler.start_mode(), StartMode::Loaded);
    assert_eq!(counts(&scheduler).await, before);
    let c2 = scheduler.read(|e| e.commit_view("r", "c2").unwrap()).await;
    assert_eq!(c2.settings.runs_desired.get("T"), Some(&4));
    assert!(
        scheduler
            .read(|e| e.branch("r", "main").unwrap().under_test)
            .await
    );

    // The in-flight run was kept: its worker reconnects and finishes it, once.
    let beat = Heartbeat {
        machine_id: "m1".into(),
        run_id: Some(in_flight.clone()),
    };
    assert_eq!(
        scheduler.heartbeat(&beat).await.unwrap(),
        HeartbeatReply::Continue
    );
    let completion = Completion {
        run_id: in_flight.clone(),
        outcome: passed(artifacts),
    };
    assert_eq!(
        scheduler.record_completion(&completion).await.unwrap(),
        CompletionAck::Recorded
    );
    drop(scheduler);
    let scheduler = harness.open().await;
    assert_eq!(
        scheduler.record_completion(&completion).await.unwrap(),
        CompletionAck::AlreadyRecorded,
        "a resend after another restart counts nothing"
    );
    let t = test_of(&scheduler, "r", "c2", "T").await;
    let (_, _, old) = before
        .iter()
        .find(|(commit, name, _)| commit == "c2" && name == "T")
        .cloned()
        .unwrap();
    assert_eq!(old.running, 1);
    assert_eq!(
        (t.counts.runs, t.counts.failures, t.counts.running),
        (old.runs + 1, old.failures, 0),
        "the resumed run passed"
    );
    assert_eq!(t.counts.runs, 4, "runs desired reached");
}

#[tokio::test]
async fn runs_in_flight_at_startup_are_lost_if_their_worker_stays_silent() {
    let harness = Harness::new();
    let world = world();
    let scheduler = harness.open().await;
    let (in_flight, _) = populate(&scheduler, &world).await;
    drop(scheduler);
    harness.clock.advance_secs(600);
    let scheduler = harness.open().await;
    // Reconciled at startup: the run gets a fresh deadline rather than being lost at once.
    assert!(
        scheduler
            .read(|e| e.run(&in_flight).unwrap().state.is_active())
            .await
    );
    harness.clock.advance_secs(61);
    scheduler.expire().await.unwrap();
    let run = scheduler
        .read(|e| e.run(&in_flight).cloned().unwrap())
        .await;
    assert_eq!(run.state, RunState::Lost);
    assert_eq!(test_of(&scheduler, "r", "c2", "T").await.counts.running, 0);
}

#[tokio::test]
async fn an_emptied_redis_is_rebuilt_from_result_records() {
    let harness = Harness::new();
    let store = harness.store();
    rebuild_after_flush(&harness, store).await;
}

#[tokio::test]
async fn an_emptied_redis_is_rebuilt_from_result_records_in_s3() {
    use test_looper_artifacts::{ArtifactStore, S3Store};
    let moto = test_looper_tests::MotoServer::start();
    let sdk = test_looper_aws::sdk_config(&moto.aws_settings()).await;
    let client = test_looper_aws::s3_client(&sdk, true);
    client
        .create_bucket()
        .bucket("results")
        .send()
        .await
        .unwrap();
    let s3: Arc<dyn ArtifactStore> = Arc::new(S3Store::new(client.clone(), "results", "install/"));
    let harness = Harness::new();
    rebuild_after_flush(&harness, Arc::new(ArtifactResultStore::new(s3))).await;
    let listed = client
        .list_objects_v2()
        .bucket("results")
        .prefix("install/scheduler/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        keys.contains(&"install/scheduler/settings.json"),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("install/scheduler/results/") && k.ends_with(".json")),
        "{keys:?}"
    );
}

/// Runs work, flushes Redis, and checks that a scheduler over the same result store
/// rebuilds identical counts and settings.
async fn rebuild_after_flush(harness: &Harness, results: Arc<dyn ResultStore>) {
    let world = world();
    let scheduler = harness.open_with(results.clone()).await;
    let (in_flight, artifacts) = populate(&scheduler, &world).await;
    let completion = Completion {
        run_id: in_flight,
        outcome: passed(artifacts),
    };
    scheduler.record_completion(&completion).await.unwrap();
    let before = counts(&scheduler).await;
    let finished = scheduler
        .read(|e| e.all_runs().filter(|r| r.counted()).count())
        .await;
    drop(scheduler);

    let mut connection = harness.redis.client().get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut connection).unwrap();

    let scheduler = harness.open_with(results.clone()).await;
    assert_eq!(
        scheduler.start_mode(),
        StartMode::Rebuilt { runs: finished }
    );
    // Git ingestion re-delivers the commits, as after any start.
    scheduler
        .ingest_branch_scan("r", "main", "c2", world.infos("r", &["c1", "c2"]))
        .await
        .unwrap();
    assert_eq!(counts(&scheduler).await, before);
    let c2 = scheduler.read(|e| e.commit_view("r", "c2").unwrap()).await;
    assert_eq!(c2.settings.runs_desired.get("T"), Some(&4));
    assert_eq!(c2.priority, 1);
    let c1 = scheduler.read(|e| e.commit_view("r", "c1").unwrap()).await;
    assert_eq!(c1.settings.user_priority, 1);

    // And the rebuilt state is in Redis: another restart loads the same counts.
    drop(scheduler);
    let scheduler = harness.open_with(results.clone()).await;
    assert_eq!(scheduler.start_mode(), StartMode::Loaded);
    assert_eq!(counts(&scheduler).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_completion_and_cancellation_count_each_run_once() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    enable_one_test(&scheduler).await;
    scheduler
        .set_runs_desired("r", "c", "T", 1000)
        .await
        .unwrap();
    let machines = 40;
    for i in 0..machines {
        scheduler
            .register_machine(linux(&format!("m{i}"), 2))
            .await
            .unwrap();
    }
    let mut runs = Vec::new();
    for i in 0..machines {
        runs.push(run_of(scheduler.next_work(&format!("m{i}")).await.unwrap()));
    }
    let mut tasks = Vec::new();
    for run in &runs {
        let completion = Completion {
            run_id: run.run_id.clone(),
            outcome: passed(run.artifacts.clone()),
        };
        let (a, b, c) = (
            Arc::clone(&scheduler),
            Arc::clone(&scheduler),
            Arc::clone(&scheduler),
        );
        let (first, second) = (completion.clone(), completion);
        let run_id = run.run_id.clone();
        tasks.push(tokio::spawn(async move {
            Outcome::Completion(a.record_completion(&first).await.unwrap())
        }));
        tasks.push(tokio::spawn(async move {
            Outcome::Completion(b.record_completion(&second).await.unwrap())
        }));
        tasks.push(tokio::spawn(async move {
            Outcome::Cancel(c.cancel_run(&run_id, "user").await.unwrap())
        }));
    }
    let mut recorded = 0;
    let mut cancelled = 0;
    for task in tasks {
        match task.await.unwrap() {
            Outcome::Completion(CompletionAck::Recorded) => recorded += 1,
            Outcome::Cancel(true) => cancelled += 1,
            _ => {}
        }
    }
    assert_eq!(recorded + cancelled, machines, "each run ends exactly once");
    let t = test_of(&scheduler, "r", "c", "T").await;
    assert_eq!((t.counts.runs, t.counts.running), (recorded as u64, 0));
    // Redis agrees with memory.
    drop(scheduler);
    let scheduler = harness.open().await;
    let t = test_of(&scheduler, "r", "c", "T").await;
    assert_eq!((t.counts.runs, t.counts.running), (recorded as u64, 0));
    let stored = std::fs::read_dir(harness.dir.path().join("scheduler/results"))
        .unwrap()
        .count();
    assert_eq!(stored, 1, "one test hash directory");
}

enum Outcome {
    Completion(CompletionAck),
    Cancel(bool),
}

#[tokio::test]
async fn the_deadline_timer_declares_silent_runs_lost_without_polling() {
    let harness = Harness::with_config(test_looper_core::scheduling::SchedulerConfig {
        heartbeat_timeout_ms: 300,
        id_prefix: "t".into(),
        ..Default::default()
    });
    let scheduler = Scheduler::open(
        &harness.redis.client(),
        harness.store(),
        harness.config.clone(),
        Arc::new(test_looper_server::scheduler::clock::SystemClock),
    )
    .await
    .unwrap();
    let timer = scheduler.spawn_deadline_timer();
    enable_one_test(&scheduler).await;
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let mut feed = scheduler.subscribe();
    let run = run_of(scheduler.next_work("m1").await.unwrap());
    let lost = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            if let Ok(test_looper_server::scheduler::feed::FeedEvent::RunCancelled {
                run_id, ..
            }) = feed.recv().await
            {
                break run_id;
            }
        }
    })
    .await
    .expect("the timer fires on its own");
    assert_eq!(lost, run.run_id);
    let state = scheduler.read(|e| e.run(&run.run_id).unwrap().state).await;
    assert_eq!(state, RunState::Lost);
    // The same notice is in the Redis stream for other processes.
    let mut connection = harness.redis.client().get_connection().unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("tl:feed")
        .arg("-")
        .arg("+")
        .query(&mut connection)
        .unwrap();
    assert!(entries.iter().any(|(_, fields)| fields
        .iter()
        .any(|(_, v)| v.contains("run_cancelled") && v.contains(&run.run_id))));
    timer.abort();
}

// --- Redis lost while the server runs (review M1) ----------------------------------------

fn flushall(harness: &Harness) {
    let mut connection = harness.redis.client().get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut connection).unwrap();
}

fn run_ids(harness: &Harness) -> Vec<String> {
    let mut connection = harness.redis.client().get_connection().unwrap();
    redis::cmd("HKEYS")
        .arg("tl:runs")
        .query(&mut connection)
        .unwrap()
}

/// Retries `step` while the scheduler recovers (it refuses steps until Redis answers).
async fn until_accepted<T, F, Fut>(mut step: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, test_looper_server::scheduler::SchedulerError>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match step().await {
            Ok(value) => return value,
            Err(err) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "never accepted: {err}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// After Redis lost its state under a running scheduler: the in-flight run still finishes
/// once, new run ids are new, and a restarted server loads every run and setting.
async fn nothing_was_lost(
    harness: &Harness,
    scheduler: Arc<Scheduler>,
    issued: &[String],
    (in_flight, artifacts): (String, Vec<String>),
) {
    let completion = Completion {
        run_id: in_flight,
        outcome: passed(artifacts),
    };
    assert_eq!(
        scheduler.record_completion(&completion).await.unwrap(),
        CompletionAck::Recorded
    );
    scheduler.set_runs_desired("r", "c1", "T", 3).await.unwrap();
    let run = run_of(scheduler.next_work("m2").await.unwrap());
    assert!(
        !issued.contains(&run.run_id),
        "run id {} was issued before",
        run.run_id
    );
    let live = counts(&scheduler).await;
    drop(scheduler);
    let scheduler = harness.open().await;
    assert_eq!(scheduler.start_mode(), StartMode::Loaded);
    assert_eq!(counts(&scheduler).await, live);
    assert!(
        scheduler
            .read(|e| e.branch("r", "main").unwrap().under_test)
            .await,
        "the branch under test is remembered"
    );
    let c1 = scheduler.read(|e| e.commit_view("r", "c1").unwrap()).await;
    assert_eq!(c1.settings.user_priority, 1);
    assert_eq!(
        scheduler
            .read(|e| e.run(&run.run_id).map(|r| r.state))
            .await,
        Some(RunState::Assigned)
    );
}

#[tokio::test]
async fn a_redis_flushed_while_running_is_rewritten_at_the_next_step() {
    let harness = Harness::new();
    let world = world();
    let scheduler = harness.open().await;
    let in_flight = populate(&scheduler, &world).await;
    let issued = run_ids(&harness);
    let before = counts(&scheduler).await;

    flushall(&harness);
    // One action, as a user would make: it finds the store lost and rewrites it whole.
    scheduler.set_runs_desired("r", "c1", "T", 2).await.unwrap();
    let mut stored = run_ids(&harness);
    stored.sort();
    let mut expected = issued.clone();
    expected.sort();
    assert_eq!(stored, expected, "every run is back in redis");
    let mut after = counts(&scheduler).await;
    after.retain(|(commit, name, _)| !(commit == "c1" && name == "T"));
    let mut unchanged = before.clone();
    unchanged.retain(|(commit, name, _)| !(commit == "c1" && name == "T"));
    assert_eq!(after, unchanged);
    nothing_was_lost(&harness, scheduler, &issued, in_flight).await;
}

#[tokio::test]
async fn a_redis_flushed_while_idle_is_rewritten_by_the_store_check() {
    let harness = Harness::new();
    let world = world();
    let scheduler = harness.open().await;
    let in_flight = populate(&scheduler, &world).await;
    let issued = run_ids(&harness);
    flushall(&harness);
    scheduler.check_store().await.unwrap();
    assert_eq!(run_ids(&harness).len(), issued.len());
    nothing_was_lost(&harness, scheduler, &issued, in_flight).await;
}

#[tokio::test]
async fn a_redis_restarted_empty_while_running_loses_nothing() {
    let mut harness = Harness::new();
    let world = world();
    let scheduler = harness.open().await;
    let in_flight = populate(&scheduler, &world).await;
    let issued = run_ids(&harness);
    harness.redis.restart_empty();
    until_accepted(|| scheduler.set_runs_desired("r", "c1", "T", 2)).await;
    assert_eq!(run_ids(&harness).len(), issued.len());
    nothing_was_lost(&harness, scheduler, &issued, in_flight).await;
}

/// A result store whose writes fail while `failing` is set.
struct FlakyStore {
    inner: Arc<ArtifactResultStore>,
    failing: std::sync::atomic::AtomicBool,
}

impl ResultStore for FlakyStore {
    fn write_result<'a>(
        &'a self,
        record: &'a test_looper_core::scheduling::ResultRecord,
    ) -> futures_util::future::BoxFuture<'a, Result<(), StoreError>> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::Other("disk full".into())) });
        }
        self.inner.write_result(record)
    }
    fn list_results(
        &self,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<Vec<test_looper_core::scheduling::ResultRecord>, StoreError>,
    > {
        self.inner.list_results()
    }
    fn write_settings<'a>(
        &'a self,
        settings: &'a test_looper_core::scheduling::UserSettings,
    ) -> futures_util::future::BoxFuture<'a, Result<(), StoreError>> {
        self.inner.write_settings(settings)
    }
    fn read_settings(
        &self,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<Option<test_looper_core::scheduling::UserSettings>, StoreError>,
    > {
        self.inner.read_settings()
    }
}

#[tokio::test]
async fn a_completion_whose_durable_record_fails_is_not_taken_and_counts_once_when_resent() {
    let harness = Harness::new();
    let store = Arc::new(FlakyStore {
        inner: harness.store(),
        failing: false.into(),
    });
    let scheduler = harness.open_with(store.clone()).await;
    enable_one_test(&scheduler).await;
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let run = run_of(scheduler.next_work("m1").await.unwrap());
    let completion = Completion {
        run_id: run.run_id.clone(),
        outcome: passed(run.artifacts.clone()),
    };
    store
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(scheduler.record_completion(&completion).await.is_err());
    store
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let state = scheduler.read(|e| e.run(&run.run_id).unwrap().state).await;
    assert!(
        state.is_active(),
        "memory did not keep the unstored step: {state:?}"
    );
    // The worker resends until acknowledged.
    let ack = until_accepted(|| scheduler.record_completion(&completion)).await;
    assert_eq!(ack, CompletionAck::Recorded);
    let t = test_of(&scheduler, "r", "c", "T").await;
    assert_eq!((t.counts.runs, t.counts.running), (1, 0));
    let records = std::fs::read_dir(harness.dir.path().join("scheduler/results"))
        .unwrap()
        .flat_map(|dir| std::fs::read_dir(dir.unwrap().path()).unwrap())
        .count();
    assert_eq!(records, 1);
}

#[tokio::test]
async fn a_resent_completion_writes_a_missing_durable_record_again() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    enable_one_test(&scheduler).await;
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let run = run_of(scheduler.next_work("m1").await.unwrap());
    let completion = Completion {
        run_id: run.run_id.clone(),
        outcome: passed(run.artifacts.clone()),
    };
    scheduler.record_completion(&completion).await.unwrap();
    let results = harness.dir.path().join("scheduler/results");
    std::fs::remove_dir_all(&results).unwrap();
    assert_eq!(
        scheduler.record_completion(&completion).await.unwrap(),
        CompletionAck::AlreadyRecorded
    );
    assert_eq!(std::fs::read_dir(&results).unwrap().count(), 1);
}

#[tokio::test]
async fn an_undecodable_record_is_set_aside_and_the_rest_loads() {
    let harness = Harness::new();
    let world = world();
    let scheduler = harness.open().await;
    populate(&scheduler, &world).await;
    let before = counts(&scheduler).await;
    drop(scheduler);
    let mut connection = harness.redis.client().get_connection().unwrap();
    redis::cmd("HSET")
        .arg("tl:runs")
        .arg("t-run999")
        .arg("{not json")
        .query::<()>(&mut connection)
        .unwrap();
    let scheduler = harness.open().await;
    assert_eq!(scheduler.start_mode(), StartMode::Loaded);
    assert_eq!(counts(&scheduler).await, before);
    let set_aside: Option<String> = redis::cmd("HGET")
        .arg("tl:quarantine")
        .arg("tl:runs\nt-run999")
        .query(&mut connection)
        .unwrap();
    assert_eq!(set_aside.as_deref(), Some("{not json"));
}

#[tokio::test]
async fn a_deferred_record_is_on_disk_when_acknowledged_and_synced_within_the_interval() {
    for interval in [Duration::ZERO, Duration::from_millis(50)] {
        let harness = Harness::new();
        let disk = DiskStore::new(harness.dir.path());
        let store = ArtifactResultStore::new(Arc::new(disk.clone())).with_deferred_sync(interval);
        let scheduler = harness.open_with(Arc::new(store)).await;
        enable_one_test(&scheduler).await;
        scheduler.register_machine(linux("m1", 2)).await.unwrap();
        let run = run_of(scheduler.next_work("m1").await.unwrap());
        let completion = Completion {
            run_id: run.run_id.clone(),
            outcome: passed(run.artifacts.clone()),
        };
        scheduler.record_completion(&completion).await.unwrap();
        // Acknowledged: another process (here, a fresh store) reads the record at once.
        let records = ArtifactResultStore::local(harness.dir.path())
            .list_results()
            .await
            .unwrap();
        assert_eq!(records.len(), 1, "{interval:?}");
        if interval.is_zero() {
            assert_eq!(disk.unsynced(), 0, "synced before the acknowledgement");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while disk.unsynced() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the deferred record was not synced within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
