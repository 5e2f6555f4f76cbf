//! Git scans reach the real scheduler (on a real Redis): branches and new commits with their
//! tests, force pushes orphaning commits, and a commit pending on a repo that appears later
//! being parsed again and delivered.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_looper_core::scheduling::{ParseRecord, SchedulerConfig};
use test_looper_server::git::service::ServiceOptions;
use test_looper_server::git::{GitService, RepoStore};
use test_looper_server::scheduler::clock::SystemClock;
use test_looper_server::scheduler::ingest::spawn_scheduler_feed;
use test_looper_server::scheduler::results::ArtifactResultStore;
use test_looper_server::scheduler::Scheduler;
use test_looper_tests::{GitRepo, RedisServer};

const DEFINITIONS: &str = "looper_version: 4
environments:
  linux:
    platform: linux
    image:
      dockerfile_contents: \"FROM test-looper/base:1\"
tests:
  unit/linux:
    command: \"true\"
";

/// Polls `check` on the scheduler state until it holds.
async fn eventually(
    scheduler: &Scheduler,
    what: &str,
    check: impl Fn(&test_looper_core::scheduling::Engine) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if scheduler.read(&check).await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn make_lib(path: &Path) -> (GitRepo, git2::Oid) {
    let lib = GitRepo::init_bare(path);
    let head = lib.commit("master", "lib", &[("lib/x.txt", "x")]);
    (lib, head)
}

#[tokio::test]
async fn scans_reach_the_scheduler() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repos");
    // The lib's hash is known before it exists (the harness is deterministic).
    let (_, lib_head) = make_lib(&dir.path().join("scratch/lib.git"));
    let app = GitRepo::init_bare(&root.join("app.git"));
    let c1 = app.commit("master", "one", &[("testlooper.yml", DEFINITIONS)]);
    let c2 = app.commit("master", "two", &[("a", "a")]);
    let waiting = format!(
        "{DEFINITIONS}    dependencies:\n      code: lib/source/lib\nrepos:\n  lib: lib/{lib_head}\n"
    );
    app.commit_with(
        "feature",
        &[c2],
        "needs lib",
        &[test_looper_tests::git_repo::FileChange::Write(
            "testlooper.yml",
            waiting.as_bytes(),
        )],
    );
    let pending = app.branch_head("feature").unwrap().to_string();

    let git = GitService::start(
        RepoStore::local(&root),
        dir.path().join("data"),
        ServiceOptions {
            poll_interval: Some(Duration::from_millis(100)),
            fetch_interval: None,
            lister: None,
            auto_pins: true,
        },
    );
    let scheduler = Scheduler::open(
        &redis.client(),
        Arc::new(ArtifactResultStore::local(dir.path().join("results"))),
        SchedulerConfig {
            id_prefix: "feed".into(),
            ..SchedulerConfig::default()
        },
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let _feed = spawn_scheduler_feed(git.clone(), scheduler.clone());

    let c2_text = c2.to_string();
    eventually(&scheduler, "master ingested", |e| {
        e.branch("app", "master").and_then(|b| b.head.clone()) == Some(c2_text.clone())
    })
    .await;
    let c1_view = scheduler
        .read(|e| e.commit_view("app", &c1.to_string()))
        .await
        .unwrap();
    assert_eq!(c1_view.record.parse, ParseRecord::Ok);
    assert_eq!(c1_view.tests.len(), 1);
    assert!(c1_view.reached_by.is_some());
    let pending_view = scheduler
        .read(|e| e.commit_view("app", &pending))
        .await
        .unwrap();
    assert!(
        matches!(pending_view.record.parse, ParseRecord::Pending { .. }),
        "{:?}",
        pending_view.record.parse
    );

    // A push reaches the scheduler (the local poll is 100 ms).
    let c3 = app.commit("master", "three", &[("b", "b")]).to_string();
    let took = eventually(&scheduler, "push ingested", |e| {
        e.branch("app", "master").and_then(|b| b.head.clone()) == Some(c3.clone())
    })
    .await;
    println!("push → scheduler: {took:?}");

    // Force push: c3 is orphaned.
    app.set_branch("master", c1);
    eventually(&scheduler, "c3 orphaned", |e| {
        e.commit_view("app", &c3)
            .is_some_and(|v| v.reached_by.is_none())
    })
    .await;

    // The missing repo appears: the pending commit is parsed again.
    make_lib(&root.join("lib.git"));
    eventually(&scheduler, "pending commit resolved", |e| {
        e.commit_view("app", &pending)
            .is_some_and(|v| v.record.parse == ParseRecord::Ok)
    })
    .await;
}
