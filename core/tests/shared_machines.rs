//! Machines that share their cores (`MachineInfo::shares_cores`): the engine gives such a
//! machine several runs at once, each on its `min_cores` and a share of the RAM, while they
//! fit; deployments still get a machine to themselves; a machine that asks for work without
//! a run it holds has dropped it; and records of older servers still load.

use test_looper_core::definitions::memory::MemorySource;
use test_looper_core::definitions::{resolve_commit, CommitRef};
use test_looper_core::protocol::{
    Assignment, Completion, CompletionAck, MachineInfo, OsConfig, RunOutcome, RunResult, Work,
};
use test_looper_core::scheduling::{
    CommitInfo, Engine, MachineRecord, ParseOutcome, RunState, SchedulerConfig,
};

const REPO: &str = "app";
const HEAD: &str = "0000000000000000000000000000000000000001";

/// One commit: `small` (1 core, 20 runs wanted), `wide` (3 cores, 2 GB) and a deployment.
fn engine() -> Engine {
    let yaml = "looper_version: 4\nenvironments:\n  linux:\n    platform: linux\n    \
                image: {dockerfile_contents: \"FROM test-looper/base:1\"}\ntests:\n  \
                small/linux: {command: ./small, min_cores: 1}\n  \
                wide/linux: {command: ./wide, min_cores: 3, min_ram_gb: 2}\n\
                deployments:\n  shell/linux: {command: bash}\n";
    let mut source = MemorySource::new();
    source.add_file(REPO, HEAD, ".testlooper.yml", yaml);
    let resolved = resolve_commit(&CommitRef::new(REPO, HEAD), &source).expect("resolves");
    let info = CommitInfo {
        hash: HEAD.into(),
        parents: vec![],
        author: "dev".into(),
        timestamp: 1_700_000_000,
        subject: "one".into(),
        parse: ParseOutcome::Ok(Box::new(resolved)),
    };
    let mut engine = Engine::new(SchedulerConfig::default());
    engine.ingest_branch_scan(REPO, "main", HEAD, vec![info], 1_000);
    engine
        .set_branch_under_test(REPO, "main", true, 1_000)
        .unwrap();
    engine
        .set_runs_desired(REPO, HEAD, "small/linux", 20, 1_000)
        .unwrap();
    engine
}

fn machine(id: &str, cores: u32, ram_gb: u32, shares_cores: bool) -> MachineInfo {
    MachineInfo {
        machine_id: id.into(),
        cores,
        ram_gb,
        os: OsConfig::LinuxDocker,
        shares_cores,
    }
}

fn run(work: Option<Work>) -> Option<Assignment> {
    match work {
        Some(Work::Run(assignment)) => Some(*assignment),
        Some(other) => panic!("expected a run, got {other:?}"),
        None => None,
    }
}

fn pass(engine: &mut Engine, run_id: &str, now: u64) {
    let completion = Completion {
        run_id: run_id.into(),
        outcome: RunOutcome {
            result: RunResult::Passed,
            test_cases: vec![],
            artifacts: vec![],
        },
    };
    assert_eq!(
        engine.record_completion(&completion, now),
        CompletionAck::Recorded
    );
}

/// Asks for work, as a worker does, listing everything it holds.
fn ask(engine: &mut Engine, id: &str, holding: &[Assignment], now: u64) -> Option<Assignment> {
    let ids: Vec<String> = holding.iter().map(|a| a.run_id.clone()).collect();
    run(engine.next_work_holding(id, &ids, now).unwrap())
}

#[test]
fn a_shared_machine_runs_several_items_each_on_its_minimum_cores() {
    let mut engine = engine();
    engine.register_machine(machine("big", 8, 32, true), 1_000);
    let mut held: Vec<Assignment> = Vec::new();
    while let Some(assignment) = ask(&mut engine, "big", &held, 2_000) {
        held.push(assignment);
    }
    let cores: u32 = held.iter().map(|a| a.cores).sum();
    assert!(held.len() > 1, "several items at once: {held:?}");
    assert!(cores <= 8, "never more cores than the machine: {cores}");
    for assignment in &held {
        let wide = assignment.definition.name.starts_with("wide");
        assert_eq!(assignment.cores, if wide { 3 } else { 1 });
        // RAM goes with the cores (4 GB per core here), at least the minimum.
        assert_eq!(assignment.ram_gb, assignment.cores * 4);
    }
    let record = engine.machine("big").unwrap();
    assert_eq!(record.holds.len(), held.len());
    assert_eq!(record.free().0, 8 - cores);

    // A finished run frees its share: the next request gets another item.
    let done = held.remove(0);
    pass(&mut engine, &done.run_id, 3_000);
    let next = ask(&mut engine, "big", &held, 3_000).expect("room again");
    assert!(next.cores <= done.cores);
    // Every held run is still going.
    for assignment in &held {
        assert!(engine.run(&assignment.run_id).unwrap().state.is_active());
    }
}

#[test]
fn a_machine_that_does_not_share_runs_one_item_on_all_its_cores() {
    let mut engine = engine();
    engine.register_machine(machine("solo", 8, 32, false), 1_000);
    let first = ask(&mut engine, "solo", &[], 2_000).expect("work");
    assert_eq!((first.cores, first.ram_gb), (8, 32));
    // It still holds the run: nothing more, and the run goes on.
    assert!(ask(&mut engine, "solo", std::slice::from_ref(&first), 2_100).is_none());
    assert!(engine.run(&first.run_id).unwrap().state.is_active());
}

#[test]
fn a_run_missing_from_the_holding_list_was_dropped_and_is_lost_once() {
    let mut engine = engine();
    engine.register_machine(machine("big", 4, 16, true), 1_000);
    let a = ask(&mut engine, "big", &[], 2_000).expect("a");
    let b = ask(&mut engine, "big", std::slice::from_ref(&a), 2_000).expect("b");
    // The worker restarted and remembers only `b`.
    let c = ask(&mut engine, "big", std::slice::from_ref(&b), 3_000).expect("c");
    assert_eq!(engine.run(&a.run_id).unwrap().state, RunState::Lost);
    assert!(engine.run(&b.run_id).unwrap().state.is_active());
    assert!(engine.run(&c.run_id).unwrap().state.is_active());
    let holds: Vec<&str> = engine
        .machine("big")
        .unwrap()
        .holds
        .iter()
        .map(|held| held.id.as_str())
        .collect();
    assert!(!holds.contains(&a.run_id.as_str()), "{holds:?}");
}

#[test]
fn an_item_that_does_not_fit_in_the_free_cores_waits_for_them() {
    let mut engine = engine();
    // 4 cores: whatever the queue order, the runs fill them and then nothing more fits.
    engine.register_machine(machine("box", 4, 16, true), 1_000);
    let mut held = Vec::new();
    while let Some(assignment) = ask(&mut engine, "box", &held, 2_000) {
        held.push(assignment);
    }
    let used: u32 = held.iter().map(|a| a.cores).sum();
    assert_eq!(used, 4, "{held:?}");
    assert!(ask(&mut engine, "box", &held, 2_500).is_none());
}

#[test]
fn a_deployment_takes_only_an_idle_shared_machine_and_all_of_it() {
    let mut engine = engine();
    engine.register_machine(machine("big", 8, 32, true), 1_000);
    let first = ask(&mut engine, "big", &[], 2_000).expect("a run");
    let shell = engine.commit_record(REPO, HEAD).unwrap().0.tests["shell/linux"].clone();
    let deployment = engine.create_deployment(&shell, 2_100).expect("deployment");
    // Busy with a run: the deployment waits, other runs still come.
    let second = run(engine
        .next_work_holding("big", std::slice::from_ref(&first.run_id), 2_200)
        .unwrap())
    .expect("another run");
    assert!(engine.deployment(&deployment).unwrap().machine_id.is_none());
    pass(&mut engine, &first.run_id, 2_300);
    pass(&mut engine, &second.run_id, 2_300);
    match engine.next_work_holding("big", &[], 2_400).unwrap() {
        Some(Work::Deployment(assignment)) => {
            assert_eq!((assignment.cores, assignment.ram_gb), (8, 32));
        }
        other => panic!("expected the deployment, got {other:?}"),
    }
    // Serving a deployment: nothing else.
    assert!(engine
        .next_work_holding("big", &[], 2_500)
        .unwrap()
        .is_none());
}

#[test]
fn a_record_of_an_older_server_reads_as_one_item_holding_the_machine() {
    let old = r#"{"info":{"machine_id":"m1","cores":4,"ram_gb":16,"os":{"kind":"linux_docker"}},
                  "registered":1,"last_heartbeat":2,"busy_with":"run-7"}"#;
    let record: MachineRecord = serde_json::from_str(old).unwrap();
    assert!(!record.info.shares_cores);
    assert_eq!(record.holds.len(), 1);
    assert_eq!(record.holds[0].id, "run-7");
    let idle = old.replace(r#""busy_with":"run-7""#, r#""busy_with":null"#);
    let record: MachineRecord = serde_json::from_str(&idle).unwrap();
    assert!(record.is_idle());
    let round_trip: MachineRecord =
        serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
    assert_eq!(round_trip, record);
}
