//! Flake hunts and quarantine survive restarts through the real scheduler store: a server
//! restart with Redis intact (`tl:hunts`, `tl:quarantined_tests`, `tl:quarantine_log`) and an
//! emptied Redis (rebuilt from the durable settings document and result records), after
//! which the hunt goes on and ends.

mod scheduler_support;

use scheduler_support::*;
use test_looper_core::scheduling::{HuntSpec, HuntState};
use test_looper_server::scheduler::{Scheduler, StartMode};

const COMMITS: usize = 12;
const CHANGE: usize = 7;

fn commit(i: usize) -> String {
    format!("c{i:02}")
}

/// `COMMITS` commits in a first-parent chain; the test's command changes at every commit.
fn world() -> World {
    let mut world = World::new();
    for i in 0..COMMITS {
        let parents = if i == 0 { vec![] } else { vec![commit(i - 1)] };
        let parents: Vec<&str> = parents.iter().map(String::as_str).collect();
        world.commit(
            "r",
            &commit(i),
            &parents,
            &definitions(&format!(
                "tests:\n  T:\n    environment: linux\n    command: \"t {i}\"\n"
            )),
        );
    }
    world
}

async fn scan(scheduler: &Scheduler, world: &World) {
    let hashes: Vec<String> = (0..COMMITS).map(commit).collect();
    let hashes: Vec<&str> = hashes.iter().map(String::as_str).collect();
    scheduler
        .ingest_branch_scan("r", "main", &commit(COMMITS - 1), world.infos("r", &hashes))
        .await
        .unwrap();
}

/// Runs work on one machine for at most `rounds` assignments; commits from `CHANGE` on fail
/// every run, older ones pass.
async fn work(scheduler: &Scheduler, rounds: usize) {
    let _ = scheduler.register_machine(linux("m", 2)).await;
    for _ in 0..rounds {
        let Some(work) = scheduler.next_work("m").await.unwrap() else {
            return;
        };
        let assignment = run_of(Some(work));
        let index = scheduler
            .read(|engine| {
                (0..COMMITS).find(|i| {
                    engine
                        .commit_view("r", &commit(*i))
                        .is_some_and(|c| c.tests.iter().any(|t| t.hash == assignment.test_hash))
                })
            })
            .await
            .unwrap();
        finish(scheduler, &assignment, index < CHANGE).await;
    }
}

fn spec() -> HuntSpec {
    HuntSpec {
        repo: "r".into(),
        branch: "main".into(),
        test: "T".into(),
        case: None,
        budget_runs: 300,
        from: None,
        to: None,
        priority: 1,
        batch_runs: 4,
        target_probability: 0.95,
    }
}

#[tokio::test]
async fn a_hunt_and_the_quarantine_survive_a_restart_and_an_emptied_redis() {
    let harness = Harness::new();
    let world = world();
    let scheduler = harness.open().await;
    scan(&scheduler, &world).await;
    let hunt_id = scheduler.start_hunt(spec()).await.unwrap();
    scheduler
        .set_quarantine("r", "T", true, "alice")
        .await
        .unwrap();
    work(&scheduler, 6).await;
    let before = scheduler.read(|e| e.hunt(&hunt_id).cloned()).await.unwrap();
    assert_eq!(before.state, HuntState::Running);
    assert!(before.runs_used > 0);
    drop(scheduler);

    // Restart with Redis intact: loaded as it was.
    let scheduler = harness.open().await;
    assert_eq!(scheduler.start_mode(), StartMode::Loaded);
    let loaded = scheduler.read(|e| e.hunt(&hunt_id).cloned()).await.unwrap();
    assert_eq!(loaded, before);
    assert!(scheduler.read(|e| e.is_quarantined("r", "T")).await);
    drop(scheduler);

    // Redis emptied: rebuilt from the durable records, commits re-delivered by the scan.
    let mut connection = harness.redis.client().get_connection().unwrap();
    redis::cmd("FLUSHALL").query::<()>(&mut connection).unwrap();
    let scheduler = harness.open().await;
    assert!(matches!(scheduler.start_mode(), StartMode::Rebuilt { .. }));
    scan(&scheduler, &world).await;
    let rebuilt = scheduler.read(|e| e.hunt(&hunt_id).cloned()).await.unwrap();
    assert_eq!(rebuilt.runs_used, before.runs_used);
    assert!(scheduler.read(|e| e.is_quarantined("r", "T")).await);
    let log = scheduler
        .read(|e| e.quarantine_log().cloned().collect::<Vec<_>>())
        .await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].by, "alice");

    // The hunt goes on from where it was and names the commit.
    work(&scheduler, 400).await;
    let hunt = scheduler.read(|e| e.hunt(&hunt_id).cloned()).await.unwrap();
    assert_eq!(hunt.state, HuntState::Found, "{hunt:?}");
    assert_eq!(hunt.culprit.unwrap().commit, commit(CHANGE));
    assert!(hunt.runs_used <= 300);
}
