//! The scheduler's side of a deployment's liveness, against a real Redis with a fake clock:
//! deployments of builds, tests and deployment definitions are assigned, and a heartbeat
//! naming a deployment is answered `Continue` only while it is alive and bound to the machine
//! that sends it.

mod scheduler_support;

use scheduler_support::*;
use test_looper_core::definitions::DefinitionKind;
use test_looper_core::protocol::{DeploymentAssignment, Heartbeat, HeartbeatReply, Work};
use test_looper_server::scheduler::Scheduler;

/// A build, a test and a deployment (with a command and a port) in one commit.
fn three_kinds() -> String {
    definitions(concat!(
        "builds:\n  B:\n    environment: linux\n    command: \"make\"\n",
        "tests:\n  T:\n    environment: linux\n    command: \"test\"\n",
        "deployments:\n  D:\n    environment: linux\n    command: \"echo up\"\n",
        "    variables:\n      WHO: me\n    portExpose:\n      http: 80\n",
    ))
}

fn deployment_of(work: Option<Work>) -> DeploymentAssignment {
    match work {
        Some(Work::Deployment(assignment)) => *assignment,
        other => panic!("expected a deployment, got {other:?}"),
    }
}

async fn beat(scheduler: &Scheduler, machine: &str, id: &str) -> HeartbeatReply {
    scheduler
        .heartbeat(&Heartbeat {
            machine_id: machine.into(),
            run_id: Some(id.into()),
        })
        .await
        .unwrap()
}

fn cancel_reason(reply: HeartbeatReply, id: &str) -> String {
    match reply {
        HeartbeatReply::Cancel { run_id, reason } => {
            assert_eq!(run_id, id);
            reason
        }
        other => panic!("expected Cancel for {id}, got {other:?}"),
    }
}

#[tokio::test]
async fn deployments_of_every_kind_are_assigned_with_their_definition() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    world.commit("r", "c", &[], &three_kinds());
    scheduler
        .ingest_branch_scan("r", "main", "c", world.infos("r", &["c"]))
        .await
        .unwrap();
    scheduler.register_machine(linux("m1", 2)).await.unwrap();

    for (name, kind) in [
        ("B", DefinitionKind::Build),
        ("T", DefinitionKind::Test),
        ("D", DefinitionKind::Deployment),
    ] {
        let hash = test_of(&scheduler, "r", "c", name).await.hash;
        let id = scheduler.create_deployment(&hash).await.unwrap();
        let assignment = deployment_of(scheduler.next_work("m1").await.unwrap());
        assert_eq!(assignment.deployment_id, id);
        assert_eq!(assignment.test_hash, hash);
        assert_eq!(assignment.definition.name, name);
        assert_eq!(assignment.definition.kind, kind);
        assert_eq!(assignment.source.repo, "r");
        assert_eq!(assignment.source.commit, "c");
        if kind == DefinitionKind::Deployment {
            assert_eq!(assignment.definition.port_expose.get("http"), Some(&80));
            assert_eq!(assignment.definition.stages.len(), 1);
            assert_eq!(assignment.definition.stages[0].command, "echo up");
            assert_eq!(assignment.definition.variables.get("WHO").unwrap(), "me");
        }
        assert_eq!(beat(&scheduler, "m1", &id).await, HeartbeatReply::Continue);
        scheduler.shutdown_deployment(&id).await.unwrap();
    }
    assert!(
        scheduler.next_work("m1").await.unwrap().is_none(),
        "nothing is enabled, and every deployment is shut down"
    );
}

#[tokio::test]
async fn a_deployment_heartbeat_continues_only_on_its_machine_while_alive() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    world.commit("r", "c", &[], &three_kinds());
    scheduler
        .ingest_branch_scan("r", "main", "c", world.infos("r", &["c"]))
        .await
        .unwrap();
    let hash = test_of(&scheduler, "r", "c", "D").await.hash;
    let id = scheduler.create_deployment(&hash).await.unwrap();
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    scheduler.register_machine(linux("m2", 2)).await.unwrap();

    // Not assigned yet: no machine may keep it.
    let reason = cancel_reason(beat(&scheduler, "m2", &id).await, &id);
    assert!(reason.contains("not assigned"), "{reason}");

    let assignment = deployment_of(scheduler.next_work("m1").await.unwrap());
    assert_eq!(assignment.deployment_id, id);

    // The bound machine keeps it, and its machine heartbeat is refreshed.
    harness.set_secs(30);
    assert_eq!(beat(&scheduler, "m1", &id).await, HeartbeatReply::Continue);
    let seen = scheduler
        .read(|e| e.machine("m1").unwrap().last_heartbeat)
        .await;
    assert_eq!(seen, T0 + 30_000);
    assert!(
        scheduler
            .read(|e| e.machine("m1").unwrap().holds_item(&id))
            .await,
        "the machine holds the deployment"
    );

    // Another machine is told to stop it.
    let reason = cancel_reason(beat(&scheduler, "m2", &id).await, &id);
    assert!(reason.contains("belongs to machine m1"), "{reason}");
    assert_eq!(beat(&scheduler, "m1", &id).await, HeartbeatReply::Continue);

    // After a shutdown the bound machine is told to stop too, and is free for other work.
    scheduler.shutdown_deployment(&id).await.unwrap();
    let reason = cancel_reason(beat(&scheduler, "m1", &id).await, &id);
    assert!(reason.contains("shut down"), "{reason}");
    assert!(
        scheduler.read(|e| e.machine("m1").unwrap().is_idle()).await,
        "the machine is free"
    );

    // An id nobody knows is cancelled; an unknown machine must register again.
    let reason = cancel_reason(beat(&scheduler, "m1", "dep-nope").await, "dep-nope");
    assert!(reason.contains("unknown"), "{reason}");
    assert_eq!(
        beat(&scheduler, "ghost", &id).await,
        HeartbeatReply::UnknownMachine
    );
}
