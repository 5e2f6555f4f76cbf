//! Scheduler acceptance scenarios (those of the original system's specification) against a
//! real Redis, with a fake clock.

mod scheduler_support;

use scheduler_support::*;
use test_looper_core::protocol::{
    ArtifactAck, ArtifactUploaded, Completion, CompletionAck, Heartbeat, HeartbeatReply, OsConfig,
    Work,
};
use test_looper_core::scheduling::{HardwareConfig, SchedulerConfig, TestState};
use test_looper_server::scheduler::feed::FeedEvent;

#[tokio::test]
async fn s1_enabling_a_branch_schedules_only_its_head() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    world
        .commit("r", "c1", &[], &build_and_test())
        .commit("r", "c2", &["c1"], &build_and_test());
    scheduler
        .ingest_branch_scan("r", "main", "c2", world.infos("r", &["c1", "c2"]))
        .await
        .unwrap();
    assert_eq!(
        scheduler.read(|e| e.queue_len()).await,
        0,
        "nothing enabled yet"
    );
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();

    let queue = scheduler.read(|e| e.queue(10)).await;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].test.name, "B");
    assert_eq!(queue[0].test.state, TestState::FirstBuild);
    let c1 = scheduler.read(|e| e.commit_view("r", "c1").unwrap()).await;
    assert_eq!(c1.settings.user_priority, 0);
    let t = test_of(&scheduler, "r", "c2", "T").await;
    assert!(
        matches!(t.state, TestState::WaitingOnBuilds { .. }),
        "{:?}",
        t.state
    );

    // A new commit pushed to the enabled branch is enabled too.
    world.commit(
        "r",
        "c3",
        &["c2"],
        &definitions("tests:\n  U:\n    environment: linux\n    command: \"u\"\n"),
    );
    scheduler
        .ingest_branch_scan("r", "main", "c3", world.infos("r", &["c3"]))
        .await
        .unwrap();
    let c3 = scheduler.read(|e| e.commit_view("r", "c3").unwrap()).await;
    assert_eq!(c3.priority, 1);
    assert_eq!(c3.tests[0].state, TestState::FirstTest);
}

#[tokio::test]
async fn s2_s3_dependent_starts_on_stage_artifact_and_out_of_order_is_rejected() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    world.commit(
        "r",
        "c1",
        &[],
        &definitions(concat!(
            "builds:\n",
            "  B:\n    environment: linux\n    stages:\n",
            "    - command: \"one\"\n      artifacts:\n      - name: s1\n        directory: out1\n",
            "    - command: \"two\"\n      artifacts:\n      - name: s2\n        directory: out2\n",
            "  D:\n    environment: linux\n    command: \"d\"\n    dependencies:\n      first: B/s1\n",
        )),
    );
    scheduler
        .ingest_branch_scan("r", "main", "c1", world.infos("r", &["c1"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
    for id in ["m1", "m2"] {
        scheduler.register_machine(linux(id, 4)).await.unwrap();
    }
    let b = run_of(scheduler.next_work("m1").await.unwrap());
    assert_eq!(b.definition.name, "B");
    assert_eq!(&b.artifacts[..2], ["s1", "s2"]);
    assert!(
        scheduler.next_work("m2").await.unwrap().is_none(),
        "D waits for s1"
    );

    // Scenario 3: s2 first is rejected, nothing recorded.
    let ack = scheduler
        .artifact_uploaded(&ArtifactUploaded {
            run_id: b.run_id.clone(),
            artifact: "s2".into(),
        })
        .await
        .unwrap();
    assert!(matches!(ack, ArtifactAck::Rejected { .. }), "{ack:?}");
    assert!(
        scheduler
            .read(|e| e.run(&b.run_id).unwrap().artifacts.is_empty())
            .await
    );

    // Scenario 2: s1 uploaded while B still runs → D is assignable at once.
    let ack = scheduler
        .artifact_uploaded(&ArtifactUploaded {
            run_id: b.run_id.clone(),
            artifact: "s1".into(),
        })
        .await
        .unwrap();
    assert_eq!(ack, ArtifactAck::Recorded);
    assert_eq!(
        test_of(&scheduler, "r", "c1", "D").await.state,
        TestState::FirstBuild
    );
    let d = run_of(scheduler.next_work("m2").await.unwrap());
    assert_eq!(d.definition.name, "D");
    assert!(
        scheduler
            .read(|e| e.run(&b.run_id).unwrap().state.is_active())
            .await
    );
}

#[tokio::test]
async fn s4_priority_flows_to_a_build_of_another_repo() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    world.commit(
        "lib",
        "l1",
        &[],
        &definitions("builds:\n  X:\n    environment: linux\n    command: \"x\"\n"),
    );
    world.commit(
        "app",
        "a1",
        &[],
        "looper_version: 4\nrepos:\n  lib: lib/l1\nenvironments:\n  linux:\n    platform: linux\n    image:\n      dockerfile_contents: \"FROM test-looper/base:1\"\ntests:\n  T:\n    environment: linux\n    command: \"t\"\n    dependencies:\n      x: lib/X\n",
    );
    scheduler
        .ingest_branch_scan("lib", "main", "l1", world.infos("lib", &["l1"]))
        .await
        .unwrap();
    scheduler
        .ingest_branch_scan("app", "main", "a1", world.infos("app", &["a1"]))
        .await
        .unwrap();
    scheduler.set_commit_priority("app", "a1", 3).await.unwrap();
    let x = test_of(&scheduler, "lib", "l1", "X").await;
    assert_eq!(
        x.priority, 3,
        "X gets T's priority though lib/l1 is not enabled"
    );
    assert_eq!(x.state, TestState::FirstBuild);
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let first = run_of(scheduler.next_work("m1").await.unwrap());
    assert_eq!(first.definition.name, "X");
    assert_eq!(
        finish(&scheduler, &first, true).await,
        CompletionAck::Recorded
    );
    let second = run_of(scheduler.next_work("m1").await.unwrap());
    assert_eq!(second.definition.name, "T");
}

#[tokio::test]
async fn s5_failed_dependency_blocks_with_reason() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    world.commit("r", "c1", &[], &build_and_test());
    scheduler
        .ingest_branch_scan("r", "main", "c1", world.infos("r", &["c1"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let b = run_of(scheduler.next_work("m1").await.unwrap());
    finish(&scheduler, &b, false).await;
    let t = test_of(&scheduler, "r", "c1", "T").await;
    match &t.state {
        TestState::DependencyFailed { reason } => assert!(reason.contains("B failed"), "{reason}"),
        other => panic!("expected DependencyFailed, got {other:?}"),
    }
    assert!(scheduler.next_work("m1").await.unwrap().is_none());
    let demand = scheduler.read(|e| e.demand()).await;
    assert!(
        demand.is_empty(),
        "blocked work wants no machine: {demand:?}"
    );
}

#[tokio::test]
async fn s6_build_retries_honour_the_wait() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    world.commit(
        "r",
        "c1",
        &[],
        &definitions("builds:\n  X:\n    environment: linux\n    command: \"x\"\n    max_retries: 3\n    retry_wait_seconds: 60\ntests:\n  T:\n    environment: linux\n    command: \"t\"\n    dependencies:\n      x: X\n"),
    );
    scheduler
        .ingest_branch_scan("r", "main", "c1", world.infos("r", &["c1"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    harness.set_secs(90);
    let first = run_of(scheduler.next_work("m1").await.unwrap());
    harness.set_secs(100);
    finish(&scheduler, &first, false).await;
    harness.set_secs(130);
    scheduler.expire().await.unwrap();
    let x = test_of(&scheduler, "r", "c1", "X").await;
    assert_eq!(
        x.state,
        TestState::WaitingToRetry {
            until: T0 + 160_000
        }
    );
    assert!(scheduler.next_work("m1").await.unwrap().is_none());
    assert_eq!(scheduler.next_deadline().await, Some(T0 + 160_000));
    harness.set_secs(161);
    scheduler.expire().await.unwrap();
    assert_eq!(
        test_of(&scheduler, "r", "c1", "X").await.state,
        TestState::FirstBuild
    );
    let second = run_of(scheduler.next_work("m1").await.unwrap());
    assert_eq!(second.attempt, 2);
    harness.set_secs(170);
    finish(&scheduler, &second, false).await;
    // The idle worker keeps beating (a silent machine is dropped at the heartbeat timeout).
    harness.set_secs(200);
    idle_beat(&scheduler, "m1").await;
    harness.set_secs(240);
    scheduler.expire().await.unwrap();
    let third = run_of(scheduler.next_work("m1").await.unwrap());
    finish(&scheduler, &third, false).await;
    harness.set_secs(400);
    scheduler.expire().await.unwrap();
    let x = test_of(&scheduler, "r", "c1", "X").await;
    assert_eq!(x.state, TestState::NoMoreTests);
    assert_eq!((x.counts.runs, x.counts.failures), (3, 3));
    let t = test_of(&scheduler, "r", "c1", "T").await;
    assert!(
        matches!(t.state, TestState::DependencyFailed { .. }),
        "{:?}",
        t.state
    );
}

#[tokio::test]
async fn s7_runs_desired_drives_repeats_spread_over_commits() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    let only_test = |command: &str| {
        definitions(&format!(
            "tests:\n  T:\n    environment: linux\n    command: \"{command}\"\n"
        ))
    };
    world.commit("r", "c1", &[], &only_test("a"));
    world.commit("r", "c2", &["c1"], &only_test("b"));
    scheduler
        .ingest_branch_scan("r", "main", "c2", world.infos("r", &["c1", "c2"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
    scheduler.set_runs_desired("r", "c2", "T", 3).await.unwrap();
    for id in ["m1", "m2", "m3", "m4"] {
        scheduler.register_machine(linux(id, 2)).await.unwrap();
    }
    let mut runs = Vec::new();
    for id in ["m1", "m2", "m3"] {
        runs.push(run_of(scheduler.next_work(id).await.unwrap()));
    }
    assert!(
        scheduler.next_work("m4").await.unwrap().is_none(),
        "fourth poll gets nothing"
    );
    for (i, run) in runs.iter().enumerate() {
        finish(&scheduler, run, i == 0).await;
    }
    let t = test_of(&scheduler, "r", "c2", "T").await;
    assert_eq!(t.state, TestState::NoMoreTests);
    assert_eq!(
        (t.counts.runs, t.counts.failures, t.counts.running),
        (3, 2, 0)
    );
    assert!(t.failure_rate.low < 0.67 && t.failure_rate.high > 0.67);

    // Repeats are spread over commits: c1 enabled with the branch default (4 runs).
    scheduler.set_commit_priority("r", "c1", 1).await.unwrap();
    scheduler
        .set_branch_default_runs("r", "main", 4)
        .await
        .unwrap();
    scheduler.set_runs_desired("r", "c2", "T", 5).await.unwrap();
    let mut names = Vec::new();
    for _ in 0..4 {
        let run = run_of(scheduler.next_work("m1").await.unwrap());
        names.push(run.source.commit.clone());
        finish(&scheduler, &run, true).await;
    }
    // c1 has 0 runs and c2 has 3: the commit with the fewest runs goes first.
    assert_eq!(names[..3], ["c1", "c1", "c1"]);
}

#[tokio::test]
async fn s8_work_no_machine_can_provide_is_reported() {
    let harness = Harness::with_config(SchedulerConfig {
        hardware: vec![
            HardwareConfig {
                cores: 2,
                ram_gb: 4,
            },
            HardwareConfig {
                cores: 4,
                ram_gb: 16,
            },
            HardwareConfig {
                cores: 32,
                ram_gb: 244,
            },
        ],
        id_prefix: "t".into(),
        ..SchedulerConfig::default()
    });
    let scheduler = harness.open().await;
    let mut world = World::new();
    world.commit(
        "r",
        "c1",
        &[],
        &definitions("tests:\n  huge:\n    environment: linux\n    command: \"h\"\n    min_cores: 64\n  small:\n    environment: linux\n    command: \"s\"\n    min_cores: 3\n"),
    );
    scheduler
        .ingest_branch_scan("r", "main", "c1", world.infos("r", &["c1"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
    let huge = test_of(&scheduler, "r", "c1", "huge").await;
    assert!(
        matches!(huge.state, TestState::NoViableHardware { .. }),
        "{:?}",
        huge.state
    );
    let unrunnable = scheduler.read(|e| e.unrunnable()).await;
    assert_eq!(unrunnable.len(), 1);
    let demand = scheduler.read(|e| e.demand()).await;
    assert_eq!(
        demand,
        vec![(
            HardwareConfig {
                cores: 4,
                ram_gb: 16
            },
            OsConfig::LinuxDocker,
            1
        )]
    );
    // A 2-core machine cannot take `small`.
    scheduler.register_machine(linux("m2", 2)).await.unwrap();
    assert!(scheduler.next_work("m2").await.unwrap().is_none());
    scheduler.register_machine(linux("m4", 4)).await.unwrap();
    let run = run_of(scheduler.next_work("m4").await.unwrap());
    assert_eq!(run.definition.name, "small");
}

#[tokio::test]
async fn s9_force_push_cancels_orphaned_work_and_resumes_when_reachable() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut feed = scheduler.subscribe();
    let mut world = World::new();
    world.commit(
        "r",
        "c",
        &[],
        &definitions("tests:\n  T:\n    environment: linux\n    command: \"c\"\n"),
    );
    world.commit(
        "r",
        "d",
        &[],
        &definitions("tests:\n  U:\n    environment: linux\n    command: \"d\"\n"),
    );
    scheduler
        .ingest_branch_scan("r", "main", "c", world.infos("r", &["c"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let run = run_of(scheduler.next_work("m1").await.unwrap());
    scheduler
        .ingest_branch_scan("r", "main", "d", world.infos("r", &["d"]))
        .await
        .unwrap();
    let c = scheduler.read(|e| e.commit_view("r", "c").unwrap()).await;
    assert_eq!(c.priority, 0);
    assert_eq!(c.settings.user_priority, 1, "user priority kept");
    let state = scheduler.read(|e| e.run(&run.run_id).unwrap().state).await;
    assert_eq!(state, test_looper_core::scheduling::RunState::Cancelled);
    let reply = scheduler
        .heartbeat(&Heartbeat {
            machine_id: "m1".into(),
            run_id: Some(run.run_id.clone()),
        })
        .await
        .unwrap();
    assert!(matches!(reply, HeartbeatReply::Cancel { .. }), "{reply:?}");
    let mut saw_cancel = false;
    while let Ok(event) = feed.try_recv() {
        if let FeedEvent::RunCancelled {
            run_id, machine_id, ..
        } = event
        {
            saw_cancel |= run_id == run.run_id && machine_id == "m1";
        }
    }
    assert!(saw_cancel, "the feed carries the cancellation notice");
    // Re-pointing main at c resumes it.
    scheduler
        .ingest_branch_scan("r", "main", "c", vec![])
        .await
        .unwrap();
    let t = test_of(&scheduler, "r", "c", "T").await;
    assert_eq!((t.priority, t.state), (1, TestState::FirstTest));
    // Deleting the branch orphans it again.
    scheduler.branch_deleted("r", "main").await.unwrap();
    assert_eq!(test_of(&scheduler, "r", "c", "T").await.priority, 0);
}

#[tokio::test]
async fn s10_shared_test_survives_orphaning_of_one_commit() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    let same = definitions("tests:\n  T:\n    environment: linux\n    command: \"same\"\n");
    world
        .commit("r", "c", &[], &same)
        .commit("r", "e", &[], &same);
    scheduler
        .ingest_branch_scan("r", "one", "c", world.infos("r", &["c"]))
        .await
        .unwrap();
    scheduler
        .ingest_branch_scan("r", "two", "e", world.infos("r", &["e"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "one", true)
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "two", true)
        .await
        .unwrap();
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let run = run_of(scheduler.next_work("m1").await.unwrap());
    scheduler.branch_deleted("r", "one").await.unwrap();
    assert_eq!(test_of(&scheduler, "r", "e", "T").await.priority, 1);
    assert!(
        scheduler
            .read(|e| e.run(&run.run_id).unwrap().state.is_active())
            .await
    );
}

#[tokio::test]
async fn s11_silent_run_is_lost_once_and_retried() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    enable_one_test(&scheduler).await;
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    scheduler.register_machine(linux("m2", 2)).await.unwrap();
    let run = run_of(scheduler.next_work("m1").await.unwrap());
    harness.set_secs(30);
    let beat = Heartbeat {
        machine_id: "m1".into(),
        run_id: Some(run.run_id.clone()),
    };
    assert_eq!(
        scheduler.heartbeat(&beat).await.unwrap(),
        HeartbeatReply::Continue
    );
    idle_beat(&scheduler, "m2").await;
    assert_eq!(scheduler.next_deadline().await, Some(T0 + 90_000));
    harness.set_secs(89);
    idle_beat(&scheduler, "m2").await;
    scheduler.expire().await.unwrap();
    assert_eq!(test_of(&scheduler, "r", "c", "T").await.counts.running, 1);
    harness.set_secs(91);
    scheduler.expire().await.unwrap();
    scheduler.expire().await.unwrap();
    let t = test_of(&scheduler, "r", "c", "T").await;
    assert_eq!((t.counts.running, t.counts.runs), (0, 0));
    assert_eq!(t.state, TestState::FirstTest, "offered again");
    // A late completion of the lost run counts nothing.
    let ack = finish(&scheduler, &run, true).await;
    assert!(matches!(ack, CompletionAck::Discarded { .. }), "{ack:?}");
    let retry = run_of(scheduler.next_work("m2").await.unwrap());
    assert_ne!(retry.run_id, run.run_id);
}

#[tokio::test]
async fn s14_one_shot_vm_machines_run_exactly_one_job() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    world.commit(
        "r",
        "c",
        &[],
        "looper_version: 4\nenvironments:\n  win:\n    platform: windows\n    image:\n      base_ami: ami-1\n      setup_script_contents: \"echo\"\ntests:\n  A:\n    environment: win\n    command: \"a\"\n  B:\n    environment: win\n    command: \"b\"\n",
    );
    scheduler
        .ingest_branch_scan("r", "main", "c", world.infos("r", &["c"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
    let mut vm = linux("vm1", 4);
    vm.os = OsConfig::WindowsVm {
        ami: "ami-1".into(),
    };
    scheduler.register_machine(vm).await.unwrap();
    let run = run_of(scheduler.next_work("vm1").await.unwrap());
    finish(&scheduler, &run, true).await;
    assert!(scheduler.next_work("vm1").await.unwrap().is_none());
    assert!(scheduler.read(|e| e.machine("vm1").unwrap().retired).await);
    // A deployment of a naked-AMI environment is refused, not left waiting.
    let error = scheduler
        .create_deployment(&run.test_hash)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("naked-AMI"), "{error}");
}

#[tokio::test]
async fn s16_deployments_go_before_any_test() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    enable_one_test(&scheduler).await;
    let hash = test_of(&scheduler, "r", "c", "T").await.hash;
    let deployment = scheduler.create_deployment(&hash).await.unwrap();
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    match scheduler.next_work("m1").await.unwrap() {
        Some(Work::Deployment(assignment)) => assert_eq!(assignment.deployment_id, deployment),
        other => panic!("expected the deployment, got {other:?}"),
    }
    assert!(
        scheduler.next_work("m1").await.unwrap().is_none(),
        "busy with the deployment"
    );
    scheduler.shutdown_deployment(&deployment).await.unwrap();
    let run = run_of(scheduler.next_work("m1").await.unwrap());
    assert_eq!(run.definition.name, "T");
}

#[tokio::test]
async fn s18_duplicate_completion_counts_once() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    enable_one_test(&scheduler).await;
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let run = run_of(scheduler.next_work("m1").await.unwrap());
    assert_eq!(
        finish(&scheduler, &run, false).await,
        CompletionAck::Recorded
    );
    let before = test_of(&scheduler, "r", "c", "T").await.counts;
    let again = scheduler
        .record_completion(&Completion {
            run_id: run.run_id.clone(),
            outcome: passed(run.artifacts.clone()),
        })
        .await
        .unwrap();
    assert_eq!(again, CompletionAck::AlreadyRecorded);
    let after = test_of(&scheduler, "r", "c", "T").await.counts;
    assert_eq!(before, after);
    assert_eq!((after.runs, after.failures, after.running), (1, 1, 0));
}

#[tokio::test]
async fn restart_test_unblocks_dependents_and_reruns() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    world.commit("r", "c1", &[], &build_and_test());
    scheduler
        .ingest_branch_scan("r", "main", "c1", world.infos("r", &["c1"]))
        .await
        .unwrap();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let b = run_of(scheduler.next_work("m1").await.unwrap());
    finish(&scheduler, &b, false).await;
    let build_hash = test_of(&scheduler, "r", "c1", "B").await.hash;
    scheduler.restart_test(&build_hash).await.unwrap();
    let b2 = run_of(scheduler.next_work("m1").await.unwrap());
    assert_eq!(b2.definition.name, "B");
    finish(&scheduler, &b2, true).await;
    let t = run_of(scheduler.next_work("m1").await.unwrap());
    assert_eq!(t.definition.name, "T");
    let b = test_of(&scheduler, "r", "c1", "B").await;
    assert_eq!(
        (b.counts.runs, b.counts.failures),
        (1, 0),
        "the cleared failure no longer counts"
    );
}

#[tokio::test]
async fn priority_zero_cancels_running_work_of_a_disabled_commit() {
    let harness = Harness::new();
    let scheduler = harness.open().await;
    let mut world = World::new();
    world.commit("r", "c1", &[], &build_and_test());
    scheduler
        .ingest_branch_scan("r", "main", "c1", world.infos("r", &["c1"]))
        .await
        .unwrap();
    scheduler.set_commit_priority("r", "c1", 2).await.unwrap();
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let b = run_of(scheduler.next_work("m1").await.unwrap());
    scheduler.set_commit_priority("r", "c1", 0).await.unwrap();
    let run = scheduler.read(|e| e.run(&b.run_id).cloned().unwrap()).await;
    assert_eq!(run.state, test_looper_core::scheduling::RunState::Cancelled);
    assert!(scheduler.read(|e| e.machine("m1").unwrap().is_idle()).await);
    assert_eq!(scheduler.read(|e| e.queue_len()).await, 0);
}

#[tokio::test]
async fn infrastructure_failures_are_retried_not_counted_up_to_a_bound() {
    use test_looper_core::protocol::{FailureReason, RunOutcome, RunResult};
    use test_looper_core::scheduling::MAX_INFRASTRUCTURE_RETRIES;
    let harness = Harness::new();
    let scheduler = harness.open().await;
    enable_one_test(&scheduler).await;
    scheduler.register_machine(linux("m1", 2)).await.unwrap();
    let broken = RunOutcome {
        result: RunResult::Failed {
            reason: FailureReason::Infrastructure,
            message: "docker daemon went away".into(),
        },
        test_cases: Vec::new(),
        artifacts: Vec::new(),
    };
    for attempt in 1..=MAX_INFRASTRUCTURE_RETRIES {
        let run = run_of(scheduler.next_work("m1").await.unwrap());
        let ack = scheduler
            .record_completion(&Completion {
                run_id: run.run_id.clone(),
                outcome: broken.clone(),
            })
            .await
            .unwrap();
        assert_eq!(ack, CompletionAck::Recorded);
        let counts = test_of(&scheduler, "r", "c", "T").await.counts;
        assert_eq!(
            (counts.runs, counts.failures),
            (0, 0),
            "infrastructure failure {attempt} is retried, not counted"
        );
    }
    // The next one counts: a machine that keeps breaking is marked, not retried forever.
    let run = run_of(scheduler.next_work("m1").await.unwrap());
    scheduler
        .record_completion(&Completion {
            run_id: run.run_id.clone(),
            outcome: broken.clone(),
        })
        .await
        .unwrap();
    let counts = test_of(&scheduler, "r", "c", "T").await.counts;
    assert_eq!((counts.runs, counts.failures), (1, 1));
    assert!(
        scheduler.next_work("m1").await.unwrap().is_none(),
        "runs-desired 1 is met"
    );
}

#[tokio::test]
async fn state_versions_name_only_the_parts_a_step_touched() {
    use test_looper_core::scheduling::StatePart;
    let harness = Harness::new();
    let scheduler = harness.open().await;
    // `own` depends on the commit's source (one per commit); `shared` does not (one
    // definition declared by both commits).
    let yaml = definitions(
        "tests:\n  own:\n    environment: linux\n    command: \"o\"\n    dependencies:\n      src: HEAD\n  shared:\n    environment: linux\n    command: \"s\"\n",
    );
    let mut world = World::new();
    world
        .commit("r", "c1", &[], &yaml)
        .commit("r", "c2", &["c1"], &yaml);
    scheduler
        .ingest_branch_scan("r", "main", "c2", world.infos("r", &["c1", "c2"]))
        .await
        .unwrap();
    scheduler.set_commit_priority("r", "c1", 1).await.unwrap();
    scheduler.set_commit_priority("r", "c2", 1).await.unwrap();
    scheduler.register_machine(linux("m1", 8)).await.unwrap();
    let commit = |hash: &str| StatePart::Commit {
        repo: "r".into(),
        hash: hash.into(),
    };
    let test = |hash: &str| StatePart::Test { hash: hash.into() };
    let own_c1 = test_of(&scheduler, "r", "c1", "own").await.hash;
    let shared = test_of(&scheduler, "r", "c1", "shared").await.hash;
    assert_eq!(test_of(&scheduler, "r", "c2", "shared").await.hash, shared);

    for _ in 0..3 {
        let run = run_of(scheduler.next_work("m1").await.unwrap());
        let before = scheduler.state_version();
        finish(&scheduler, &run, true).await;
        assert!(scheduler.state_version() > before);
        let changed = |parts: &[StatePart]| scheduler.changed_since(parts, before);
        assert!(changed(&[test(&run.test_hash)]));
        if run.test_hash == shared {
            assert!(changed(&[commit("c1")]) && changed(&[commit("c2")]));
            assert!(!changed(&[test(&own_c1)]));
        } else {
            let (mine, other) = if run.source.commit == "c1" {
                ("c1", "c2")
            } else {
                ("c2", "c1")
            };
            assert!(changed(&[commit(mine)]), "the run's commit changed");
            assert!(!changed(&[commit(other)]), "the other commit did not");
            assert!(!changed(&[test(&shared)]));
            assert!(changed(&[commit(other), commit(mine)]));
        }
        assert!(!changed(&[StatePart::Branches { repo: "r".into() }]));
    }
    let before = scheduler.state_version();
    scheduler
        .set_branch_under_test("r", "main", true)
        .await
        .unwrap();
    assert!(scheduler.changed_since(&[StatePart::Branches { repo: "r".into() }], before));
}

/// An idle worker's heartbeat.
async fn idle_beat(scheduler: &test_looper_server::scheduler::Scheduler, machine: &str) {
    let beat = Heartbeat {
        machine_id: machine.into(),
        run_id: None,
    };
    assert_eq!(
        scheduler.heartbeat(&beat).await.unwrap(),
        HeartbeatReply::Continue
    );
}
