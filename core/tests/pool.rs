//! The EC2 pool's reconciler step: one test per rule of `docs/ec2_pool.md`, then a seeded
//! property run of the simulated region (thousands of steps) checking the pool's promises at
//! every step.

use test_looper_core::pool::packing::Room;
use test_looper_core::pool::sim::{CloudBehaviour, SimCloud, SimJob, SimRng};
use test_looper_core::pool::{
    reconcile, Decision, Demand, DemandKind, InstanceState, InstanceTags, InstanceType,
    LaunchErrorKind, LaunchFailure, Limit, Observation, ObservedInstance, Occupancy, Packing,
    PoolLimits, PoolSettings, Purchase, RegisteredWorker, SettingsError, TerminateReason,
};
use test_looper_core::scheduling::HardwareConfig;

const MINUTE: u64 = 60_000;
const NOW: u64 = 1_000 * MINUTE;
const WORKER_AMI: &str = "ami-worker";

fn instance_type(
    name: &str,
    cores: u32,
    ram_gb: u32,
    price: f64,
    spot: Option<f64>,
) -> InstanceType {
    InstanceType {
        name: name.into(),
        cores,
        ram_gb,
        disk_gb: 100,
        on_demand_price_per_hour: price,
        spot_price_per_hour: spot,
    }
}

fn settings() -> PoolSettings {
    PoolSettings {
        owner_id: "install-1".into(),
        worker_name: "looper".into(),
        worker_ami: WORKER_AMI.into(),
        instance_types: vec![
            instance_type("small", 2, 4, 0.10, Some(0.03)),
            instance_type("medium", 4, 8, 0.20, None),
            instance_type("big", 8, 16, 0.36, Some(0.12)),
        ],
        limits: PoolLimits::default(),
        idle_timeout_ms: 5 * MINUTE,
        boot_timeout_ms: 5 * MINUTE,
        heartbeat_timeout_ms: MINUTE,
        spot: false,
        launch_failure_backoff_ms: 5 * MINUTE,
        drain_to_make_room: true,
        packing: Packing::SharedCores,
    }
}

fn owned_tags() -> InstanceTags {
    InstanceTags {
        worker_name: Some("looper".into()),
        owner: Some("install-1".into()),
    }
}

fn instance(id: &str, type_name: &str, state: InstanceState, launched_at: u64) -> ObservedInstance {
    ObservedInstance {
        instance_id: id.into(),
        instance_type: type_name.into(),
        state,
        launched_at,
        purchase: Purchase::OnDemand,
        image_id: WORKER_AMI.into(),
        tags: owned_tags(),
    }
}

fn running(id: &str, type_name: &str) -> ObservedInstance {
    instance(id, type_name, InstanceState::Running, NOW - 60 * MINUTE)
}

fn worker(id: &str, cores: u32, ram_gb: u32) -> RegisteredWorker {
    RegisteredWorker {
        machine_id: id.into(),
        hardware: HardwareConfig { cores, ram_gb },
        last_heartbeat: NOW - 1_000,
        busy: Occupancy::default(),
        idle_since: NOW - MINUTE,
        retired: false,
    }
}

fn busy(mut worker: RegisteredWorker, cores: u32) -> RegisteredWorker {
    worker.busy = Occupancy {
        items: 1,
        cores,
        ram_gb: 1,
        disk_gb: 1,
    };
    worker
}

fn runs(count: u64, min_cores: u32, min_ram_gb: u32) -> Demand {
    Demand {
        min_cores,
        min_ram_gb,
        min_disk_gb: 0,
        count,
        kind: DemandKind::Run,
        one_shot_ami: None,
    }
}

fn observe(
    instances: Vec<ObservedInstance>,
    workers: Vec<RegisteredWorker>,
    demand: Vec<Demand>,
) -> Observation {
    Observation {
        now: NOW,
        pool_started_at: 0,
        instances,
        workers,
        demand,
        launch_failures: vec![],
    }
}

fn launched(decision: &Decision) -> Vec<(String, Purchase, u32)> {
    decision
        .launches
        .iter()
        .map(|l| (l.instance_type.clone(), l.purchase, l.count))
        .collect()
}

fn terminated(decision: &Decision) -> Vec<(String, TerminateReason)> {
    decision
        .terminations
        .iter()
        .map(|t| (t.instance_id.clone(), t.reason))
        .collect()
}

fn od(name: &str, count: u32) -> (String, Purchase, u32) {
    (name.into(), Purchase::OnDemand, count)
}

// --- capacity counting -------------------------------------------------------------------

#[test]
fn registered_idle_capacity_serves_demand_without_launching() {
    let observation = observe(
        vec![running("i-1", "big")],
        vec![worker("i-1", 8, 16)],
        vec![runs(8, 1, 1)],
    );
    let decision = reconcile(&settings(), &observation);
    assert!(decision.launches.is_empty(), "{}", decision.explanation);
    assert_eq!(decision.census.served_by_existing, 8);
}

#[test]
fn booting_capacity_counts_and_only_the_rest_is_launched() {
    let booting = instance("i-1", "small", InstanceState::Pending, NOW - MINUTE);
    let decision = reconcile(
        &settings(),
        &observe(vec![booting.clone()], vec![], vec![runs(2, 1, 1)]),
    );
    assert!(decision.launches.is_empty(), "{}", decision.explanation);
    assert_eq!(decision.census.booting, 1);
    let decision = reconcile(
        &settings(),
        &observe(vec![booting], vec![], vec![runs(3, 1, 1)]),
    );
    assert_eq!(launched(&decision), vec![od("small", 1)]);
}

#[test]
fn what_a_step_launched_is_not_launched_again_by_the_next() {
    let settings = settings();
    let demand = vec![runs(3, 4, 4), runs(5, 1, 1)];
    let first = reconcile(&settings, &observe(vec![], vec![], demand.clone()));
    assert!(first.launched_instances() > 0);
    let mut instances = Vec::new();
    for (n, launch) in first.launches.iter().enumerate() {
        for k in 0..launch.count {
            instances.push(instance(
                &format!("i-{n}-{k}"),
                &launch.instance_type,
                InstanceState::Pending,
                NOW,
            ));
        }
    }
    let second = reconcile(&settings, &observe(instances, vec![], demand));
    assert!(second.launches.is_empty(), "{}", second.explanation);
    assert_eq!(second.census.served_by_existing, 8);
}

#[test]
fn a_busy_workers_free_cores_take_small_items_when_packing() {
    let workers = vec![busy(worker("i-1", 8, 16), 2)];
    let decision = reconcile(
        &settings(),
        &observe(
            vec![running("i-1", "big")],
            workers.clone(),
            vec![runs(6, 1, 1)],
        ),
    );
    assert!(decision.launches.is_empty(), "{}", decision.explanation);
    let one_each = PoolSettings {
        packing: Packing::OneItemPerInstance,
        ..settings()
    };
    let decision = reconcile(
        &one_each,
        &observe(vec![running("i-1", "big")], workers, vec![runs(6, 1, 1)]),
    );
    assert_eq!(launched(&decision), vec![od("small", 6)]);
}

// --- instance choice ---------------------------------------------------------------------

#[test]
fn one_item_gets_the_smallest_type_that_fits_cores_ram_and_disk() {
    let decision = reconcile(&settings(), &observe(vec![], vec![], vec![runs(1, 1, 1)]));
    assert_eq!(launched(&decision), vec![od("small", 1)]);
    let decision = reconcile(&settings(), &observe(vec![], vec![], vec![runs(1, 3, 1)]));
    assert_eq!(launched(&decision), vec![od("medium", 1)]);
    let decision = reconcile(&settings(), &observe(vec![], vec![], vec![runs(1, 1, 12)]));
    assert_eq!(launched(&decision), vec![od("big", 1)]);
    let mut with_disk = settings();
    with_disk.instance_types[2].disk_gb = 500;
    let mut needs_disk = runs(1, 1, 1);
    needs_disk.min_disk_gb = 300;
    let decision = reconcile(&with_disk, &observe(vec![], vec![], vec![needs_disk]));
    assert_eq!(launched(&decision), vec![od("big", 1)]);
}

#[test]
fn many_one_core_tests_go_onto_a_big_box_when_it_is_cheaper_per_core() {
    // big: $0.045 per core-hour, small: $0.05.
    let decision = reconcile(&settings(), &observe(vec![], vec![], vec![runs(16, 1, 1)]));
    assert_eq!(launched(&decision), vec![od("big", 2)]);
    // Nine: one big box, and the ninth alone on the cheapest box.
    let decision = reconcile(&settings(), &observe(vec![], vec![], vec![runs(9, 1, 1)]));
    assert_eq!(launched(&decision), vec![od("big", 1), od("small", 1)]);
    // When the big box is dearer per core, small boxes.
    // (medium ties small at $0.05 per core and serves more items per box).
    let mut dear_big = settings();
    dear_big.instance_types[2].on_demand_price_per_hour = 0.48;
    let decision = reconcile(&dear_big, &observe(vec![], vec![], vec![runs(8, 1, 1)]));
    assert_eq!(launched(&decision), vec![od("medium", 2)]);
    dear_big.instance_types[1].on_demand_price_per_hour = 0.24;
    let decision = reconcile(&dear_big, &observe(vec![], vec![], vec![runs(8, 1, 1)]));
    assert_eq!(launched(&decision), vec![od("small", 4)]);
}

#[test]
fn builds_and_tests_share_boxes_first_fit_decreasing() {
    // Two 6-core builds and four 1-core tests: two big boxes, the tests in the leftover cores.
    let decision = reconcile(
        &settings(),
        &observe(vec![], vec![], vec![runs(4, 1, 1), runs(2, 6, 8)]),
    );
    assert_eq!(launched(&decision), vec![od("big", 2)]);
    assert_eq!(decision.census.served_by_launches, 6);
}

#[test]
fn an_item_no_type_fits_is_reported_not_launched() {
    let decision = reconcile(&settings(), &observe(vec![], vec![], vec![runs(2, 64, 1)]));
    assert!(decision.launches.is_empty());
    assert_eq!(decision.census.blocked, vec![(Limit::NoFittingType, 2)]);
}

#[test]
fn deployments_come_first_and_get_a_box_of_their_own() {
    let deployment = Demand {
        kind: DemandKind::Deployment,
        ..runs(1, 1, 1)
    };
    let decision = reconcile(
        &settings(),
        &observe(vec![], vec![], vec![runs(8, 1, 1), deployment.clone()]),
    );
    assert_eq!(launched(&decision), vec![od("big", 1), od("small", 1)]);
    // With room for one box only, the deployment gets it.
    let mut one_box = settings();
    one_box.limits.max_workers = 1;
    let decision = reconcile(
        &one_box,
        &observe(vec![], vec![], vec![runs(8, 1, 1), deployment]),
    );
    assert_eq!(launched(&decision), vec![od("small", 1)]);
    assert_eq!(decision.census.blocked, vec![(Limit::MaxWorkers, 8)]);
}

// --- limits ------------------------------------------------------------------------------

#[test]
fn max_workers_cores_and_ram_hold_counting_every_held_instance() {
    let mut limited = settings();
    limited.limits = PoolLimits {
        max_workers: 3,
        max_cores: 0,
        max_ram_gb: 0,
        max_hourly_spend: None,
    };
    let decision = reconcile(&limited, &observe(vec![], vec![], vec![runs(10, 8, 1)]));
    assert_eq!(launched(&decision), vec![od("big", 3)]);
    assert_eq!(decision.census.blocked, vec![(Limit::MaxWorkers, 7)]);

    limited.limits.max_workers = 0;
    limited.limits.max_cores = 12;
    // A shutting-down big box still holds its 8 cores: only 4 are left.
    let ending = instance("i-1", "big", InstanceState::ShuttingDown, NOW - 60 * MINUTE);
    let decision = reconcile(
        &limited,
        &observe(
            vec![ending.clone()],
            vec![],
            vec![runs(1, 8, 1), runs(2, 1, 1)],
        ),
    );
    assert_eq!(launched(&decision), vec![od("small", 1)]);
    assert_eq!(decision.held.cores, 10);
    assert_eq!(decision.census.blocked, vec![(Limit::MaxCores, 1)]);
    // Once EC2 reports it terminated, its cores are free.
    let gone = ObservedInstance {
        state: InstanceState::Terminated,
        ..ending
    };
    let decision = reconcile(&limited, &observe(vec![gone], vec![], vec![runs(1, 8, 1)]));
    assert_eq!(launched(&decision), vec![od("big", 1)]);

    limited.limits.max_cores = 0;
    limited.limits.max_ram_gb = 20;
    let decision = reconcile(&limited, &observe(vec![], vec![], vec![runs(3, 8, 8)]));
    assert_eq!(launched(&decision), vec![od("big", 1)]);
    assert!(decision.held.ram_gb <= 20);
}

#[test]
fn the_hourly_spend_cap_uses_the_price_table() {
    let mut capped = settings();
    capped.limits.max_hourly_spend = Some(0.50);
    // One big box is $0.36/h; a second does not fit the cap, a small box ($0.10) does.
    let decision = reconcile(
        &capped,
        &observe(
            vec![running("i-1", "big")],
            vec![busy(worker("i-1", 8, 16), 8)],
            vec![runs(8, 1, 1)],
        ),
    );
    assert_eq!(launched(&decision), vec![od("small", 1)]);
    assert!(decision.held.hourly_spend <= 0.50 + 1e-9);
    assert!(decision
        .census
        .blocked
        .contains(&(Limit::MaxHourlySpend, 6)));
}

#[test]
fn idle_workers_in_the_way_of_blocked_demand_are_drained_at_once() {
    let mut limited = settings();
    limited.limits.max_cores = 8;
    let mut recently_idle = worker("i-1", 2, 4);
    recently_idle.idle_since = NOW - 1_000;
    let observation = observe(
        vec![running("i-1", "small")],
        vec![recently_idle],
        vec![runs(1, 8, 1)],
    );
    let decision = reconcile(&limited, &observation);
    assert_eq!(decision.drains, vec!["i-1".to_string()]);
    limited.drain_to_make_room = false;
    assert!(reconcile(&limited, &observation).drains.is_empty());
}

#[test]
fn a_one_shot_item_starving_behind_busy_workers_gets_room_by_draining_one() {
    let mut limited = settings();
    limited.limits.max_workers = 2;
    let one_shot = Demand {
        one_shot_ami: Some("ami-naked".into()),
        ..runs(1, 1, 1)
    };
    let demand = vec![one_shot, runs(20, 1, 1)];
    let instances = vec![running("i-1", "big"), running("i-2", "small")];
    let workers = vec![busy(worker("i-1", 8, 16), 2), busy(worker("i-2", 2, 4), 2)];
    let decision = reconcile(
        &limited,
        &observe(instances.clone(), workers.clone(), demand.clone()),
    );
    // The small box runs the fewest items (queued tests fill the big one's free cores): it
    // is drained, not terminated, and finishes its work first.
    assert_eq!(decision.drains, vec!["i-2".to_string()]);
    assert!(decision.terminations.is_empty() && decision.launches.is_empty());
    // Once it is idle it ends, although queued tests would take it: the one-shot item gets
    // its room.
    let mut drained = worker("i-2", 2, 4);
    drained.retired = true;
    let decision = reconcile(
        &limited,
        &observe(instances, vec![workers[0].clone(), drained], demand),
    );
    assert_eq!(
        terminated(&decision),
        vec![("i-2".into(), TerminateReason::Drained)]
    );
    assert!(decision.undrains.is_empty());
}

#[test]
fn busy_workers_are_drained_for_a_big_item_only_when_that_makes_room() {
    let mut limited = settings();
    limited.limits.max_cores = 6;
    let instances = vec![
        running("i-1", "small"),
        running("i-2", "small"),
        running("i-3", "small"),
    ];
    let workers: Vec<RegisteredWorker> = ["i-1", "i-2", "i-3"]
        .iter()
        .map(|id| busy(worker(id, 2, 4), 1))
        .collect();
    // A 4-core build needs two small boxes' room: both are drained, the third is not.
    let decision = reconcile(
        &limited,
        &observe(
            instances.clone(),
            workers.clone(),
            vec![runs(1, 4, 1), runs(9, 1, 1)],
        ),
    );
    assert_eq!(decision.drains, vec!["i-1".to_string(), "i-2".to_string()]);
    // An 8-core build can never fit under a 6-core cap: nothing is drained for it.
    let decision = reconcile(
        &limited,
        &observe(instances.clone(), workers.clone(), vec![runs(1, 8, 1)]),
    );
    assert!(decision.drains.is_empty(), "{}", decision.explanation);
    // A 2-core item a busy box will serve when done: it waits, nothing is drained.
    let decision = reconcile(&limited, &observe(instances, workers, vec![runs(1, 2, 1)]));
    assert!(decision.drains.is_empty(), "{}", decision.explanation);
}

// --- ownership and restarts --------------------------------------------------------------

#[test]
fn instances_without_this_pools_tags_are_ignored_and_reported() {
    let mut untagged = instance("i-untagged", "big", InstanceState::Running, 0);
    untagged.tags = InstanceTags::default();
    let mut other = instance("i-other", "big", InstanceState::Stopped, 0);
    other.tags.owner = Some("install-2".into());
    let mut name_only = instance("i-name-only", "big", InstanceState::Running, 0);
    name_only.tags.owner = None;
    let decision = reconcile(
        &settings(),
        &observe(vec![untagged, other, name_only], vec![], vec![]),
    );
    assert!(decision.terminations.is_empty(), "{}", decision.explanation);
    assert_eq!(decision.census.foreign, 3);
    assert_eq!(decision.held.instances, 0);
    let ignored: Vec<&str> = decision
        .ignored
        .iter()
        .map(|i| i.instance_id.as_str())
        .collect();
    assert_eq!(ignored, ["i-name-only", "i-other", "i-untagged"]);
    assert!(
        decision.explanation.contains("install-2"),
        "{}",
        decision.explanation
    );
}

#[test]
fn after_a_restart_registering_instances_are_adopted_and_silent_ones_ended() {
    let started = NOW - MINUTE;
    let old_a = instance("i-a", "big", InstanceState::Running, NOW - 600 * MINUTE);
    let old_b = instance("i-b", "big", InstanceState::Running, NOW - 600 * MINUTE);
    let mut observation = observe(
        vec![old_a, old_b],
        vec![worker("i-a", 8, 16)],
        vec![runs(4, 1, 1)],
    );
    observation.pool_started_at = started;
    // Within the boot timeout of the restart: both kept, i-a adopted and serving demand.
    let decision = reconcile(&settings(), &observation);
    assert!(decision.terminations.is_empty(), "{}", decision.explanation);
    assert!(decision.launches.is_empty());
    // A boot timeout after the restart, the one that never registered is ended.
    observation.now = started + 5 * MINUTE;
    observation.workers[0].last_heartbeat = observation.now;
    let decision = reconcile(&settings(), &observation);
    assert_eq!(
        terminated(&decision),
        vec![("i-b".into(), TerminateReason::NeverRegistered)]
    );
}

#[test]
fn workers_whose_instance_is_gone_are_reported() {
    let gone = instance("i-2", "small", InstanceState::Terminated, 0);
    let mut foreign = running("i-3", "small");
    foreign.tags = InstanceTags::default();
    let decision = reconcile(
        &settings(),
        &observe(
            vec![gone, foreign],
            vec![
                worker("i-1", 2, 4),
                worker("i-2", 2, 4),
                worker("i-3", 2, 4),
            ],
            vec![],
        ),
    );
    // i-1 is unknown to EC2, i-2 terminated; i-3 is alive but not the pool's: left alone.
    assert_eq!(
        decision.workers_gone,
        vec!["i-1".to_string(), "i-2".to_string()]
    );
    assert!(decision
        .explanation
        .contains("worker i-3 runs on an instance without"));
}

#[test]
fn beyond_the_planning_horizon_every_demand_entry_is_still_planned() {
    let mut idle = worker("i-1", 2, 4);
    idle.idle_since = 0;
    let huge_one_shot = Demand {
        one_shot_ami: Some("ami-naked".into()),
        ..runs(1_000_000, 1, 1)
    };
    // Whichever entry comes first, the pooled item keeps the idle worker busy.
    for demand in [
        vec![runs(1, 1, 1), huge_one_shot.clone()],
        vec![huge_one_shot.clone(), runs(1, 1, 1)],
    ] {
        let decision = reconcile(
            &settings(),
            &observe(vec![running("i-1", "small")], vec![idle.clone()], demand),
        );
        assert!(decision.drains.is_empty(), "{}", decision.explanation);
        assert_eq!(decision.census.served_by_existing, 1);
        assert!(decision.explanation.contains("beyond the planning horizon"));
    }
}

#[test]
fn idle_workers_are_drained_after_the_idle_timeout_then_terminated_once_drained() {
    let mut idle = worker("i-1", 8, 16);
    idle.idle_since = NOW - 4 * MINUTE;
    let instances = vec![running("i-1", "big")];
    let decision = reconcile(
        &settings(),
        &observe(instances.clone(), vec![idle.clone()], vec![]),
    );
    assert!(decision.is_empty(), "{}", decision.explanation);
    idle.idle_since = NOW - 5 * MINUTE;
    let decision = reconcile(
        &settings(),
        &observe(instances.clone(), vec![idle.clone()], vec![]),
    );
    assert_eq!(decision.drains, vec!["i-1".to_string()]);
    assert!(decision.terminations.is_empty());
    idle.retired = true;
    let decision = reconcile(&settings(), &observe(instances, vec![idle], vec![]));
    assert_eq!(
        terminated(&decision),
        vec![("i-1".into(), TerminateReason::Drained)]
    );
}

#[test]
fn a_busy_worker_is_never_scaled_in() {
    let mut draining_busy = busy(worker("i-1", 8, 16), 8);
    draining_busy.retired = true;
    draining_busy.idle_since = 0;
    let mut busy_long = busy(worker("i-2", 8, 16), 8);
    busy_long.idle_since = 0;
    let decision = reconcile(
        &settings(),
        &observe(
            vec![running("i-1", "big"), running("i-2", "big")],
            vec![draining_busy, busy_long],
            vec![],
        ),
    );
    assert!(decision.is_empty(), "{}", decision.explanation);
}

#[test]
fn an_idle_worker_demand_needs_is_neither_drained_nor_terminated() {
    let mut idle = worker("i-1", 8, 16);
    idle.idle_since = 0;
    let instances = vec![running("i-1", "big")];
    let decision = reconcile(
        &settings(),
        &observe(instances.clone(), vec![idle.clone()], vec![runs(1, 1, 1)]),
    );
    assert!(decision.is_empty(), "{}", decision.explanation);
    // Drained, idle, and wanted again: undrained, not terminated, nothing launched.
    idle.retired = true;
    let decision = reconcile(
        &settings(),
        &observe(instances, vec![idle], vec![runs(1, 1, 1)]),
    );
    assert_eq!(decision.undrains, vec!["i-1".to_string()]);
    assert!(decision.terminations.is_empty());
    assert!(decision.launches.is_empty());
}

#[test]
fn naked_ami_items_get_one_shot_instances_ended_after_their_item() {
    let one_shot = Demand {
        one_shot_ami: Some("ami-naked".into()),
        ..runs(2, 1, 1)
    };
    let mut pooled_idle = worker("i-pooled", 8, 16);
    pooled_idle.idle_since = NOW;
    // A pooled worker does not serve a one-shot item; one-shot items are never packed.
    let decision = reconcile(
        &settings(),
        &observe(
            vec![running("i-pooled", "big")],
            vec![pooled_idle],
            vec![one_shot],
        ),
    );
    assert_eq!(decision.launches.len(), 1);
    let launch = &decision.launches[0];
    assert_eq!((launch.instance_type.as_str(), launch.count), ("small", 2));
    assert_eq!(launch.image_id, "ami-naked");
    assert!(launch.one_shot);
    // Its job done (the scheduler retires one-shot machines), the machine ends.
    let mut done = instance("i-vm", "small", InstanceState::Running, NOW - 10 * MINUTE);
    done.image_id = "ami-naked".into();
    let mut vm = worker("i-vm", 2, 4);
    vm.retired = true;
    let decision = reconcile(&settings(), &observe(vec![done], vec![vm], vec![]));
    assert_eq!(
        terminated(&decision),
        vec![("i-vm".into(), TerminateReason::OneShotFinished)]
    );
}

// --- failures ----------------------------------------------------------------------------

#[test]
fn an_instance_silent_past_the_boot_timeout_is_terminated_and_replaced_in_the_same_step() {
    let booting = instance("i-1", "small", InstanceState::Running, NOW - 4 * MINUTE);
    let decision = reconcile(
        &settings(),
        &observe(vec![booting.clone()], vec![], vec![runs(1, 1, 1)]),
    );
    assert!(decision.is_empty(), "{}", decision.explanation);
    let stuck = ObservedInstance {
        launched_at: NOW - 5 * MINUTE,
        ..booting
    };
    let decision = reconcile(
        &settings(),
        &observe(vec![stuck], vec![], vec![runs(1, 1, 1)]),
    );
    assert_eq!(
        terminated(&decision),
        vec![("i-1".into(), TerminateReason::NeverRegistered)]
    );
    assert_eq!(launched(&decision), vec![od("small", 1)]);
}

#[test]
fn a_worker_whose_heartbeats_stop_is_terminated_even_when_busy() {
    let mut silent = busy(worker("i-1", 8, 16), 8);
    silent.last_heartbeat = NOW - MINUTE;
    let decision = reconcile(
        &settings(),
        &observe(vec![running("i-1", "big")], vec![silent], vec![]),
    );
    assert_eq!(
        terminated(&decision),
        vec![("i-1".into(), TerminateReason::HeartbeatLost)]
    );
}

#[test]
fn a_stopped_owned_instance_is_terminated() {
    let stopped = instance("i-1", "big", InstanceState::Stopped, 0);
    let decision = reconcile(&settings(), &observe(vec![stopped], vec![], vec![]));
    assert_eq!(
        terminated(&decision),
        vec![("i-1".into(), TerminateReason::Stopped)]
    );
}

#[test]
fn spot_falls_back_to_on_demand_after_a_capacity_error_or_an_interruption() {
    let spot = PoolSettings {
        spot: true,
        ..settings()
    };
    let demand = vec![runs(1, 1, 1)];
    let decision = reconcile(&spot, &observe(vec![], vec![], demand.clone()));
    assert_eq!(
        launched(&decision),
        vec![("small".into(), Purchase::Spot, 1)]
    );
    // A spot big box ($0.12) beats an on-demand medium one ($0.20) for a 3-core item; types
    // without a spot price are bought on demand.
    let decision = reconcile(&spot, &observe(vec![], vec![], vec![runs(1, 3, 1)]));
    assert_eq!(launched(&decision), vec![("big".into(), Purchase::Spot, 1)]);
    let mut no_big_spot = spot.clone();
    no_big_spot.instance_types[2].spot_price_per_hour = None;
    let decision = reconcile(&no_big_spot, &observe(vec![], vec![], vec![runs(1, 3, 1)]));
    assert_eq!(launched(&decision), vec![od("medium", 1)]);
    for error in [
        LaunchErrorKind::InsufficientCapacity,
        LaunchErrorKind::SpotInterruption,
    ] {
        let mut observation = observe(vec![], vec![], demand.clone());
        observation.launch_failures = vec![LaunchFailure {
            instance_type: "big".into(),
            purchase: Purchase::Spot,
            error,
            at: NOW - 10_000,
        }];
        let decision = reconcile(&spot, &observation);
        assert_eq!(launched(&decision), vec![od("small", 1)], "{error:?}");
        assert!(decision.explanation.contains("spot avoided"));
        // After the backoff, spot again.
        observation.now = NOW + 5 * MINUTE;
        let decision = reconcile(&spot, &observation);
        assert_eq!(
            launched(&decision),
            vec![("small".into(), Purchase::Spot, 1)]
        );
    }
}

#[test]
fn a_type_that_failed_on_demand_is_avoided_for_the_backoff() {
    let mut observation = observe(vec![], vec![], vec![runs(8, 1, 1)]);
    observation.launch_failures = vec![LaunchFailure {
        instance_type: "big".into(),
        purchase: Purchase::OnDemand,
        error: LaunchErrorKind::InsufficientCapacity,
        at: NOW - 10_000,
    }];
    let decision = reconcile(&settings(), &observation);
    assert_eq!(launched(&decision), vec![od("medium", 2)]);
    // Nothing else fits: blocked, reported.
    observation.demand = vec![runs(1, 8, 1)];
    let decision = reconcile(&settings(), &observation);
    assert_eq!(decision.census.blocked, vec![(Limit::LaunchFailures, 1)]);
}

#[test]
fn duplicate_reports_merge_on_the_safe_side_whatever_their_order() {
    // A worker reported twice, once busy: not scaled in, in either order.
    let mut stale_idle = worker("i-1", 8, 16);
    stale_idle.retired = true;
    stale_idle.idle_since = 0;
    let mut busy_retired = busy(worker("i-1", 8, 16), 8);
    busy_retired.retired = true;
    for workers in [
        vec![stale_idle.clone(), busy_retired.clone()],
        vec![busy_retired.clone(), stale_idle.clone()],
    ] {
        let decision = reconcile(
            &settings(),
            &observe(vec![running("i-1", "big")], workers, vec![]),
        );
        assert!(decision.terminations.is_empty(), "{}", decision.explanation);
    }
    // An instance reported with conflicting ownership tags is never touched.
    let owned = instance("i-2", "big", InstanceState::Stopped, 0);
    let untagged = ObservedInstance {
        tags: InstanceTags::default(),
        ..owned.clone()
    };
    for instances in [vec![owned.clone(), untagged.clone()], vec![untagged, owned]] {
        let decision = reconcile(&settings(), &observe(instances, vec![], vec![]));
        assert!(decision.terminations.is_empty(), "{}", decision.explanation);
        assert_eq!(decision.census.foreign, 1);
    }
    // The most advanced state wins: a terminated report frees the capacity.
    let mut limited = settings();
    limited.limits.max_workers = 1;
    let pending = instance("i-3", "big", InstanceState::Pending, NOW);
    let gone = ObservedInstance {
        state: InstanceState::Terminated,
        ..pending.clone()
    };
    let decision = reconcile(
        &limited,
        &observe(vec![gone, pending], vec![], vec![runs(1, 1, 1)]),
    );
    assert_eq!(launched(&decision), vec![od("small", 1)]);
}

// --- determinism, explanation, settings --------------------------------------------------

#[test]
fn the_step_is_deterministic_and_ignores_input_order() {
    let mut instances = vec![
        running("i-1", "big"),
        running("i-2", "small"),
        instance("i-3", "medium", InstanceState::Pending, NOW - MINUTE),
        instance("i-4", "big", InstanceState::Running, NOW - 10 * MINUTE),
    ];
    let mut idle = worker("i-2", 2, 4);
    idle.idle_since = 0;
    let mut workers = vec![busy(worker("i-1", 8, 16), 4), idle];
    let demand = vec![runs(5, 1, 1), runs(1, 6, 8)];
    let first = reconcile(
        &settings(),
        &observe(instances.clone(), workers.clone(), demand.clone()),
    );
    instances.reverse();
    workers.reverse();
    let second = reconcile(&settings(), &observe(instances, workers, demand));
    assert_eq!(first, second);
    assert!(!first.is_empty());
}

#[test]
fn the_explanation_says_what_was_counted_and_decided() {
    let mut limited = settings();
    limited.limits.max_cores = 8;
    let decision = reconcile(&limited, &observe(vec![], vec![], vec![runs(12, 1, 1)]));
    let text = &decision.explanation;
    for expected in [
        "12 queued items",
        "8 by new launches",
        "4 blocked by MaxCores",
        "launch 1 x big",
        "(max 8)",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn settings_are_validated() {
    assert_eq!(settings().validate(), Ok(()));
    let mut bad = settings();
    bad.owner_id.clear();
    assert_eq!(bad.validate(), Err(SettingsError::EmptyOwnerId));
    let mut bad = settings();
    bad.instance_types.push(bad.instance_types[0].clone());
    assert_eq!(
        bad.validate(),
        Err(SettingsError::DuplicateInstanceType("small".into()))
    );
    let mut bad = settings();
    bad.instance_types[1].on_demand_price_per_hour = f64::NAN;
    assert!(matches!(
        bad.validate(),
        Err(SettingsError::InvalidPrice { .. })
    ));
    let mut bad = settings();
    bad.instance_types.clear();
    assert_eq!(bad.validate(), Err(SettingsError::NoInstanceTypes));
    let mut bad = settings();
    bad.boot_timeout_ms = 0;
    assert_eq!(
        bad.validate(),
        Err(SettingsError::ZeroTimeout("boot_timeout_ms"))
    );
}

// --- the simulated region ----------------------------------------------------------------

#[test]
fn the_simulator_flags_broken_promises() {
    let mut sim = SimCloud::new(settings(), CloudBehaviour::default(), 1, NOW);
    sim.add_foreign_instance("i-foreign", InstanceTags::default());
    let bad = Decision {
        terminations: vec![test_looper_core::pool::Termination {
            instance_id: "i-foreign".into(),
            reason: TerminateReason::Drained,
        }],
        launches: vec![test_looper_core::pool::Launch {
            instance_type: "small".into(),
            purchase: Purchase::OnDemand,
            image_id: WORKER_AMI.into(),
            one_shot: false,
            count: 1,
        }],
        ..Decision::default()
    };
    sim.apply(&bad);
    assert_eq!(sim.violations.len(), 1, "{:?}", sim.violations);
    // The launched instance's worker registers after its boot delay (45–180 s) and is then
    // healthy; terminating it for a lost heartbeat is flagged.
    for _ in 0..180 {
        sim.advance(1_000);
    }
    let registered = sim.observe().workers;
    assert_eq!(registered.len(), 1);
    sim.apply(&Decision {
        terminations: vec![test_looper_core::pool::Termination {
            instance_id: registered[0].machine_id.clone(),
            reason: TerminateReason::HeartbeatLost,
        }],
        ..Decision::default()
    });
    assert_eq!(sim.violations.len(), 2, "{:?}", sim.violations);
}

fn random_job(rng: &mut SimRng, id: u64) -> SimJob {
    let roll = rng.uniform();
    let (cores, duration_ms, kind, one_shot_ami) = if roll < 0.10 {
        (
            rng.between(4, 8) as u32,
            rng.between(2, 15) * MINUTE,
            DemandKind::Run,
            None,
        )
    } else if roll < 0.13 {
        (1, rng.between(5, 40) * MINUTE, DemandKind::Deployment, None)
    } else if roll < 0.17 {
        (
            rng.between(1, 2) as u32,
            rng.between(1, 5) * MINUTE,
            DemandKind::Run,
            Some("ami-naked".to_string()),
        )
    } else {
        (1, rng.between(10, 300) * 1_000, DemandKind::Run, None)
    };
    SimJob {
        id,
        need: Room {
            cores,
            ram_gb: cores * 2,
            disk_gb: rng.between(0, 20) as u32,
        },
        duration_ms,
        kind,
        one_shot_ami,
        queued_at: 0,
    }
}

/// Random bursts of work against a hostile region: instances that never register, workers
/// that hang, spot interruptions and capacity errors, server restarts after which some
/// workers never reconnect, and foreign instances. After every step: limits hold, no busy
/// worker is scaled in, no healthy worker is killed, no foreign instance is touched, no
/// owned instance stays unregistered beyond the boot timeout plus one step, and no spot
/// launch follows a spot failure.
#[test]
fn property_the_pools_promises_hold_at_every_step_of_a_hostile_simulation() {
    let mut totals = std::collections::BTreeMap::new();
    let mut completed = 0;
    for seed in 1..=4u64 {
        let mut rng = SimRng::new(seed * 7919);
        let mut pool = settings();
        pool.spot = true;
        pool.limits = PoolLimits {
            max_workers: rng.between(4, 8) as u32,
            max_cores: rng.between(16, 40) as u32,
            max_ram_gb: rng.between(40, 80) as u32,
            max_hourly_spend: if seed % 2 == 0 { Some(1.2) } else { None },
        };
        pool.packing = if seed == 3 {
            Packing::OneItemPerInstance
        } else {
            Packing::SharedCores
        };
        pool.idle_timeout_ms = rng.between(1, 5) * MINUTE;
        let behaviour = CloudBehaviour {
            never_registers: 0.05,
            hang_rate_per_hour: 0.5,
            spot_interruption_rate_per_hour: 1.0,
            spot_capacity_error: 0.2,
            on_demand_capacity_error: 0.02,
            never_reconnects: 0.2,
            ..CloudBehaviour::default()
        };
        let mut sim = SimCloud::new(pool, behaviour, seed, NOW);
        sim.add_foreign_instance("i-untagged", InstanceTags::default());
        sim.add_foreign_instance(
            "i-other-owner",
            InstanceTags {
                worker_name: Some("looper".into()),
                owner: Some("install-2".into()),
            },
        );
        let mut next_job = 0;
        for step in 0..2_000u64 {
            // Bursty arrivals: quiet stretches, then bursts.
            let burst = (step / 100) % 3 != 2;
            let arrivals = if burst {
                u64::from(rng.chance(0.3))
            } else {
                u64::from(rng.chance(0.05))
            };
            for _ in 0..arrivals {
                next_job += 1;
                let job = random_job(&mut rng, next_job);
                sim.enqueue(job);
            }
            if rng.chance(0.002) {
                sim.restart_server();
            }
            for _ in 0..10 {
                sim.advance(1_000);
            }
            sim.reconcile_step();
            assert!(
                sim.violations.is_empty(),
                "seed {seed}, step {step}: {:?}\nlast decision:\n{}",
                sim.violations,
                sim.last_decision
                    .as_ref()
                    .map(|d| d.explanation.as_str())
                    .unwrap_or("")
            );
        }
        // Then the work stops: everything drains away.
        for _ in 0..5_000 {
            if sim.queue_len() == 0 && sim.running_jobs() == 0 && sim.owned_instances() == 0 {
                break;
            }
            for _ in 0..10 {
                sim.advance(1_000);
            }
            sim.reconcile_step();
        }
        assert!(
            sim.violations.is_empty(),
            "seed {seed}: {:?}",
            sim.violations
        );
        assert_eq!(
            sim.queue_len(),
            0,
            "seed {seed}: work left queued; {:?}; {:?}; last decision:\n{}",
            sim.queued()
                .map(|j| (j.need.cores, j.kind, j.one_shot_ami.is_some(), j.queued_at))
                .collect::<Vec<_>>(),
            (
                sim.metrics.jobs_completed,
                sim.metrics.jobs_lost,
                sim.metrics.launched,
                &sim.metrics.terminated,
                sim.metrics.spot_interruptions,
                sim.metrics.launch_failures,
                sim.metrics.busy_instance_ms / 60_000,
                sim.metrics.idle_instance_ms / 60_000,
                sim.metrics.booting_or_ending_ms / 60_000
            ),
            sim.last_decision
                .as_ref()
                .map(|d| d.explanation.as_str())
                .unwrap_or("")
        );
        assert_eq!(
            sim.owned_instances(),
            0,
            "seed {seed}: instances left after the work"
        );
        completed += sim.metrics.jobs_completed;
        for (reason, count) in &sim.metrics.terminated {
            *totals.entry(*reason).or_insert(0) += count;
        }
    }
    // The run exercised every termination path.
    for reason in [
        TerminateReason::Drained,
        TerminateReason::OneShotFinished,
        TerminateReason::NeverRegistered,
        TerminateReason::HeartbeatLost,
    ] {
        assert!(
            totals.get(&reason).copied().unwrap_or(0) > 0,
            "{reason:?} never happened: {totals:?}"
        );
    }
    assert!(completed > 1_000, "only {completed} jobs completed");
}

mod any_input {
    //! Arbitrary observations, well-formed or not: the step never panics, never launches past
    //! a limit, only terminates owned instances, and never scales in a busy worker.

    use super::*;
    use proptest::prelude::*;

    fn arb_instance() -> impl Strategy<Value = ObservedInstance> {
        (
            0u8..12,
            prop::sample::select(vec!["small", "medium", "big", "x9.mystery"]),
            prop::sample::select(vec![
                InstanceState::Pending,
                InstanceState::Running,
                InstanceState::ShuttingDown,
                InstanceState::Stopped,
                InstanceState::Terminated,
            ]),
            prop::sample::select(vec![0, NOW - 60 * MINUTE, NOW - MINUTE, NOW, u64::MAX]),
            any::<bool>(),
            prop::sample::select(vec![WORKER_AMI, "ami-naked", "ami-other"]),
            0u8..4,
        )
            .prop_map(|(id, type_name, state, launched_at, spot, image, tags)| {
                ObservedInstance {
                    instance_id: format!("i-{id}"),
                    instance_type: type_name.into(),
                    state,
                    launched_at,
                    purchase: if spot {
                        Purchase::Spot
                    } else {
                        Purchase::OnDemand
                    },
                    image_id: image.into(),
                    tags: match tags {
                        0 => InstanceTags::default(),
                        1 => InstanceTags {
                            owner: Some("install-2".into()),
                            ..owned_tags()
                        },
                        _ => owned_tags(),
                    },
                }
            })
    }

    fn arb_worker() -> impl Strategy<Value = RegisteredWorker> {
        (
            0u8..14,
            0u32..20,
            0u32..40,
            prop::sample::select(vec![0, NOW - 2 * MINUTE, NOW - 1_000, NOW, u64::MAX]),
            0u32..4,
            0u32..24,
            prop::sample::select(vec![0, NOW - 10 * MINUTE, NOW, u64::MAX]),
            any::<bool>(),
        )
            .prop_map(
                |(id, cores, ram_gb, last_heartbeat, items, busy_cores, idle_since, retired)| {
                    RegisteredWorker {
                        machine_id: format!("i-{id}"),
                        hardware: HardwareConfig { cores, ram_gb },
                        last_heartbeat,
                        busy: Occupancy {
                            items,
                            cores: busy_cores,
                            ram_gb: busy_cores,
                            disk_gb: 0,
                        },
                        idle_since,
                        retired,
                    }
                },
            )
    }

    fn arb_demand() -> impl Strategy<Value = Demand> {
        (
            0u32..20,
            0u32..40,
            0u32..200,
            prop::sample::select(vec![0, 1, 3, 50, 1_000_000]),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(min_cores, min_ram_gb, min_disk_gb, count, deployment, one_shot)| Demand {
                    min_cores,
                    min_ram_gb,
                    min_disk_gb,
                    count,
                    kind: if deployment {
                        DemandKind::Deployment
                    } else {
                        DemandKind::Run
                    },
                    one_shot_ami: one_shot.then(|| "ami-naked".to_string()),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn the_step_keeps_its_promises_on_any_input(
            instances in prop::collection::vec(arb_instance(), 0..10),
            workers in prop::collection::vec(arb_worker(), 0..10),
            demand in prop::collection::vec(arb_demand(), 0..5),
            failed_spot in any::<bool>(),
            max_workers in 0u32..8,
            max_cores in prop::sample::select(vec![0u32, 8, 30]),
            max_ram_gb in prop::sample::select(vec![0u32, 16, 60]),
            spend in prop::sample::select(vec![None, Some(0.0), Some(0.5), Some(2.0)]),
            spot in any::<bool>(),
            packing in prop::sample::select(vec![Packing::SharedCores, Packing::OneItemPerInstance]),
        ) {
            let mut pool = settings();
            pool.limits = PoolLimits { max_workers, max_cores, max_ram_gb, max_hourly_spend: spend };
            pool.spot = spot;
            pool.packing = packing;
            let mut observation = observe(instances.clone(), workers.clone(), demand);
            if failed_spot {
                observation.launch_failures.push(LaunchFailure {
                    instance_type: "small".into(),
                    purchase: Purchase::Spot,
                    error: LaunchErrorKind::InsufficientCapacity,
                    at: NOW - 1_000,
                });
            }
            let decision = reconcile(&pool, &observation);
            let mut reversed = observation.clone();
            reversed.instances.reverse();
            reversed.workers.reverse();
            let again = reconcile(&pool, &reversed);
            // The same actions whatever the order of instances and workers (demand comes in
            // priority order, which decides what is launched first under a limit).
            prop_assert_eq!(&decision.terminations, &again.terminations);
            prop_assert_eq!(&decision.drains, &again.drains);
            prop_assert_eq!(&decision.undrains, &again.undrains);
            prop_assert_eq!(&decision.workers_gone, &again.workers_gone);

            // Terminations: owned, live instances only, each once.
            let mut seen = std::collections::BTreeSet::new();
            for termination in &decision.terminations {
                prop_assert!(seen.insert(termination.instance_id.clone()));
                let instance = instances.iter().find(|i| {
                    i.instance_id == termination.instance_id
                        && i.state != InstanceState::Terminated
                        && test_looper_core::pool::is_owned(&pool, i)
                });
                prop_assert!(instance.is_some(), "terminated {}", termination.instance_id);
                // Scale-in: every report of the worker says idle and retired.
                let mut reports = workers
                    .iter()
                    .filter(|w| w.machine_id == termination.instance_id)
                    .peekable();
                if matches!(termination.reason, TerminateReason::Drained | TerminateReason::OneShotFinished) {
                    prop_assert!(reports.peek().is_some());
                    prop_assert!(reports.all(|w| w.busy.items == 0 && w.retired));
                }
            }
            // Launches: none past a limit (counted from the owned instances that hold capacity).
            if decision.launched_instances() > 0 {
                let held = &decision.held;
                let within = |cap: u32, value: u32| cap == 0 || value <= cap;
                prop_assert!(within(max_workers, held.instances), "{}", decision.explanation);
                prop_assert!(within(max_cores, held.cores), "{}", decision.explanation);
                prop_assert!(within(max_ram_gb, held.ram_gb), "{}", decision.explanation);
                prop_assert!(spend.is_none_or(|cap| held.hourly_spend <= cap + 1e-9));
                if failed_spot {
                    prop_assert!(decision.launches.iter().all(|l| l.purchase == Purchase::OnDemand));
                }
            }
            // Drains only name live, registered, not yet retired workers.
            for id in &decision.drains {
                prop_assert!(workers.iter().any(|w| &w.machine_id == id && !w.retired));
            }
        }
    }
}
