//! The scheduler lists a machine only while it is alive, against a real Redis with a fake
//! clock: a machine silent for the heartbeat timeout leaves (its run lost once and offered
//! again), a machine whose session closes leaves at once when it holds nothing and at its
//! deadline when it holds a run (a worker that reconnects in time keeps it), and machines
//! loaded at a restart get a fresh deadline.

mod scheduler_support;

use scheduler_support::*;
use test_looper_core::protocol::{Heartbeat, HeartbeatReply};
use test_looper_core::scheduling::RunState;
use test_looper_server::scheduler::Scheduler;

async fn machine_ids(scheduler: &Scheduler) -> Vec<String> {
    scheduler
        .read(|engine| {
            engine
                .machines()
                .into_iter()
                .map(|machine| machine.info.machine_id)
                .collect()
        })
        .await
}

async fn beat(scheduler: &Scheduler, machine: &str, run: Option<&str>) -> HeartbeatReply {
    scheduler
        .heartbeat(&Heartbeat {
            machine_id: machine.into(),
            run_id: run.map(str::to_string),
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_silent_idle_machine_leaves_at_the_deadline_and_a_beating_one_stays() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    scheduler.register_machine(linux("quiet", 2)).await.unwrap();
    scheduler.register_machine(linux("alive", 2)).await.unwrap();
    assert_eq!(scheduler.next_deadline().await, Some(T0 + 60_000));
    harness.set_secs(40);
    assert_eq!(
        beat(&scheduler, "alive", None).await,
        HeartbeatReply::Continue
    );
    harness.set_secs(59);
    scheduler.expire().await.unwrap();
    assert_eq!(machine_ids(&scheduler).await, ["alive", "quiet"]);
    harness.set_secs(60);
    scheduler.expire().await.unwrap();
    assert_eq!(machine_ids(&scheduler).await, ["alive"]);
    assert_eq!(scheduler.next_deadline().await, Some(T0 + 100_000));
    // A machine that was dropped and beats again is told to register.
    assert_eq!(
        beat(&scheduler, "quiet", None).await,
        HeartbeatReply::UnknownMachine
    );
}

#[tokio::test]
async fn a_silent_busy_machine_leaves_and_its_run_is_lost_once_and_retried() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    enable_one_test(&scheduler).await;
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let run = run_of(scheduler.next_work("m1").await.unwrap());
    harness.set_secs(30);
    // Another machine registers later and keeps beating.
    scheduler.register_machine(linux("m2", 2)).await.unwrap();
    harness.set_secs(61);
    scheduler.expire().await.unwrap();
    assert_eq!(machine_ids(&scheduler).await, ["m2"]);
    let lost = scheduler
        .read(|engine| engine.run(&run.run_id).cloned().unwrap())
        .await;
    assert_eq!(lost.state, RunState::Lost);
    scheduler.expire().await.unwrap();
    let retry = run_of(scheduler.next_work("m2").await.unwrap());
    assert_ne!(retry.run_id, run.run_id);
    finish(&scheduler, &retry, true).await;
    let t = test_of(&scheduler, "r", "c", "T").await;
    assert_eq!((t.counts.runs, t.counts.running), (1, 0));
}

#[tokio::test]
async fn a_closed_session_drops_an_idle_machine_at_once_and_a_busy_one_at_its_deadline() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    enable_one_test(&scheduler).await;
    scheduler.register_machine(linux("busy", 2)).await.unwrap();
    let run = run_of(scheduler.next_work("busy").await.unwrap());
    scheduler.register_machine(linux("idle", 2)).await.unwrap();

    scheduler.machine_disconnected("idle").await.unwrap();
    scheduler.machine_disconnected("busy").await.unwrap();
    assert_eq!(machine_ids(&scheduler).await, ["busy"]);

    // The busy worker reconnects in time and keeps its run.
    harness.set_secs(50);
    scheduler.register_machine(linux("busy", 2)).await.unwrap();
    assert_eq!(
        beat(&scheduler, "busy", Some(&run.run_id)).await,
        HeartbeatReply::Continue
    );
    harness.set_secs(100);
    scheduler.expire().await.unwrap();
    assert_eq!(machine_ids(&scheduler).await, ["busy"]);
    finish(&scheduler, &run, true).await;

    // Its session closes again, and it holds nothing now: it leaves at once.
    scheduler.machine_disconnected("busy").await.unwrap();
    assert!(machine_ids(&scheduler).await.is_empty());
    let t = test_of(&scheduler, "r", "c", "T").await;
    assert_eq!((t.counts.runs, t.counts.running), (1, 0));
}

#[tokio::test]
async fn machines_loaded_at_a_restart_get_a_fresh_deadline() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    drop(scheduler);
    harness.set_secs(600);
    let scheduler = harness.open().await;
    scheduler.expire().await.unwrap();
    assert_eq!(machine_ids(&scheduler).await, ["m1"]);
    harness.set_secs(661);
    scheduler.expire().await.unwrap();
    assert!(machine_ids(&scheduler).await.is_empty());
}
