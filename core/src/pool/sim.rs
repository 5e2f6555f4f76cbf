//! A deterministic simulated EC2 region, scheduler and workers, for the pool's property
//! tests and the simulated-day benchmark (`bench_pool_day`). Nothing here talks to AWS.
//!
//! The simulation advances in ticks. Instances boot (`pending` → `running`, then the worker
//! registers after a drawn boot delay, or never), workers heartbeat, run the jobs the
//! simulated scheduler assigns (first come first served, packed by cores when the pool packs)
//! and may hang; spot instances may be interrupted and spot launches may fail for capacity.
//! A reconcile step observes all this, calls [`reconcile`], applies the decision, and checks
//! the pool's promises; every broken promise is recorded in [`SimCloud::violations`].

use super::decision::{Decision, TerminateReason};
use super::inputs::{
    Demand, DemandKind, InstanceState, InstanceTags, LaunchErrorKind, LaunchFailure, Observation,
    ObservedInstance, Occupancy, RegisteredWorker,
};
use super::packing::Room;
use super::reconcile::{is_owned, reconcile};
use super::settings::{InstanceType, Packing, PoolSettings, Purchase};
use crate::protocol::Millis;
use crate::scheduling::HardwareConfig;
use std::collections::{BTreeMap, VecDeque};

/// xoshiro256**, seeded through splitmix64: a small deterministic generator (core has no
/// `rand`).
#[derive(Clone, Debug)]
pub struct SimRng([u64; 4]);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        SimRng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high] (inclusive); `low` when `high <= low`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// A standard normal draw (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Lognormal with the given median and log-space sigma, clamped to [low, high].
    pub fn lognormal_ms(
        &mut self,
        median_ms: f64,
        sigma: f64,
        low: Millis,
        high: Millis,
    ) -> Millis {
        let value = median_ms * (sigma * self.normal()).exp();
        (value.round() as Millis).clamp(low, high)
    }

    /// Exponential waiting time for a rate per hour; `None` for a zero rate.
    pub fn exponential_ms(&mut self, rate_per_hour: f64) -> Option<Millis> {
        if rate_per_hour <= 0.0 {
            return None;
        }
        let u = self.uniform().max(f64::MIN_POSITIVE);
        Some((-u.ln() / rate_per_hour * 3_600_000.0) as Millis)
    }
}

/// How the simulated region and workers behave.
#[derive(Clone, Debug)]
pub struct CloudBehaviour {
    /// Launch → worker registered: lognormal with this median and sigma, clamped.
    pub boot_median_ms: f64,
    pub boot_sigma: f64,
    pub boot_min_ms: Millis,
    pub boot_max_ms: Millis,
    /// `shutting-down` → `terminated`.
    pub shutdown_ms: Millis,
    /// Probability that a launched instance's worker never registers.
    pub never_registers: f64,
    /// Rate per worker-hour at which a registered worker hangs (stops heartbeating).
    pub hang_rate_per_hour: f64,
    /// Rate per spot-instance-hour of spot interruptions.
    pub spot_interruption_rate_per_hour: f64,
    /// Probability that one spot launch request fails for capacity.
    pub spot_capacity_error: f64,
    /// Probability that one on-demand launch request fails for capacity.
    pub on_demand_capacity_error: f64,
    /// After a server restart, a worker reconnects after a delay in this range (ms)…
    pub reconnect_ms: (Millis, Millis),
    /// …or, with this probability, never.
    pub never_reconnects: f64,
}

impl Default for CloudBehaviour {
    /// EC2 boot plus worker start: median 70 s, sigma 0.3, clamped to 45–180 s; 30 s to
    /// terminate; no failures.
    fn default() -> Self {
        CloudBehaviour {
            boot_median_ms: 70_000.0,
            boot_sigma: 0.3,
            boot_min_ms: 45_000,
            boot_max_ms: 180_000,
            shutdown_ms: 30_000,
            never_registers: 0.0,
            hang_rate_per_hour: 0.0,
            spot_interruption_rate_per_hour: 0.0,
            spot_capacity_error: 0.0,
            on_demand_capacity_error: 0.0,
            reconnect_ms: (5_000, 30_000),
            never_reconnects: 0.0,
        }
    }
}

/// One queued job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimJob {
    pub id: u64,
    pub need: Room,
    pub duration_ms: Millis,
    pub kind: DemandKind,
    pub one_shot_ami: Option<String>,
    pub queued_at: Millis,
}

#[derive(Clone, Debug)]
struct Running {
    job: SimJob,
    ends_at: Millis,
}

#[derive(Clone, Debug)]
struct SimWorker {
    hardware: Room,
    last_heartbeat: Millis,
    running: Vec<Running>,
    idle_since: Millis,
    retired: bool,
    jobs_started: u32,
    /// Hung workers neither heartbeat nor finish jobs.
    hung: bool,
    /// Registered with the scheduler (false while reconnecting after a server restart).
    connected: bool,
    reconnect_at: Option<Millis>,
}

#[derive(Clone, Debug)]
struct SimInstance {
    observed: ObservedInstance,
    instance_type: InstanceType,
    owned: bool,
    running_at: Millis,
    registers_at: Option<Millis>,
    hangs_at: Option<Millis>,
    interrupted_at: Option<Millis>,
    terminated_at: Option<Millis>,
    worker: Option<SimWorker>,
}

/// What the simulation measured.
#[derive(Clone, Debug, Default)]
pub struct SimMetrics {
    /// Queued → assigned to a ready worker, per assignment.
    pub waits_ms: Vec<Millis>,
    /// Owned instance time while holding capacity (launch → terminated).
    pub instance_ms: u64,
    /// … with a registered worker running at least one job.
    pub busy_instance_ms: u64,
    /// … with a registered (or reconnecting) worker running nothing.
    pub idle_instance_ms: u64,
    /// … before the worker registered, and while shutting down.
    pub booting_or_ending_ms: u64,
    pub held_core_ms: u64,
    pub busy_core_ms: u64,
    pub spend_dollars: f64,
    pub peak_cores: u32,
    pub peak_instances: u32,
    pub launched: u64,
    pub terminated: BTreeMap<TerminateReason, u64>,
    pub spot_launched: u64,
    pub spot_interruptions: u64,
    pub launch_failures: u64,
    pub jobs_completed: u64,
    pub jobs_lost: u64,
    pub reconcile_steps: u64,
}

/// The simulated region, scheduler and workers of one pool.
pub struct SimCloud {
    pub now: Millis,
    pub settings: PoolSettings,
    pub behaviour: CloudBehaviour,
    rng: SimRng,
    instances: BTreeMap<String, SimInstance>,
    queue: VecDeque<SimJob>,
    failures: Vec<LaunchFailure>,
    pool_started_at: Millis,
    next_instance: u64,
    spot_failed_since_step: bool,
    assignment_due: bool,
    /// How often the driver calls [`SimCloud::reconcile_step`] (the orphan check allows one
    /// step beyond the boot timeout).
    pub reconcile_interval_ms: Millis,
    pub metrics: SimMetrics,
    pub violations: Vec<String>,
    pub last_decision: Option<Decision>,
}

fn occupancy_of(worker: &SimWorker) -> Occupancy {
    if worker
        .running
        .iter()
        .any(|r| r.job.kind == DemandKind::Deployment)
    {
        // A deployment holds the whole machine.
        return Occupancy {
            items: u32::try_from(worker.running.len()).unwrap_or(u32::MAX),
            cores: worker.hardware.cores,
            ram_gb: worker.hardware.ram_gb,
            disk_gb: worker.hardware.disk_gb,
        };
    }
    worker
        .running
        .iter()
        .fold(Occupancy::default(), |sum, r| Occupancy {
            items: sum.items + 1,
            cores: sum.cores + r.job.need.cores,
            ram_gb: sum.ram_gb + r.job.need.ram_gb,
            disk_gb: sum.disk_gb + r.job.need.disk_gb,
        })
}

impl SimCloud {
    pub fn new(
        settings: PoolSettings,
        behaviour: CloudBehaviour,
        seed: u64,
        start: Millis,
    ) -> Self {
        SimCloud {
            now: start,
            settings,
            behaviour,
            rng: SimRng::new(seed),
            instances: BTreeMap::new(),
            queue: VecDeque::new(),
            failures: Vec::new(),
            pool_started_at: start,
            next_instance: 1,
            spot_failed_since_step: false,
            assignment_due: false,
            reconcile_interval_ms: 10_000,
            metrics: SimMetrics::default(),
            violations: Vec::new(),
            last_decision: None,
        }
    }

    /// Adds an instance the pool does not own (untagged or another owner's); it must never
    /// be terminated.
    pub fn add_foreign_instance(&mut self, instance_id: &str, tags: InstanceTags) {
        let instance_type = self
            .settings
            .instance_types
            .first()
            .cloned()
            .unwrap_or(InstanceType {
                name: "t3.micro".into(),
                cores: 2,
                ram_gb: 1,
                disk_gb: 8,
                on_demand_price_per_hour: 0.01,
                spot_price_per_hour: None,
            });
        let observed = ObservedInstance {
            instance_id: instance_id.into(),
            instance_type: instance_type.name.clone(),
            state: InstanceState::Running,
            launched_at: self.now,
            purchase: Purchase::OnDemand,
            image_id: "ami-foreign".into(),
            tags,
        };
        let owned = is_owned(&self.settings, &observed);
        self.instances.insert(
            instance_id.into(),
            SimInstance {
                observed,
                instance_type,
                owned,
                running_at: self.now,
                registers_at: None,
                hangs_at: None,
                interrupted_at: None,
                terminated_at: None,
                worker: None,
            },
        );
    }

    pub fn enqueue(&mut self, mut job: SimJob) {
        job.queued_at = self.now;
        self.queue.push_back(job);
        self.assignment_due = true;
    }

    /// The queued jobs, first come first.
    pub fn queued(&self) -> impl Iterator<Item = &SimJob> {
        self.queue.iter()
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Jobs running on workers.
    pub fn running_jobs(&self) -> usize {
        self.instances
            .values()
            .filter_map(|i| i.worker.as_ref())
            .map(|w| w.running.len())
            .sum()
    }

    /// Owned instances not yet terminated.
    pub fn owned_instances(&self) -> usize {
        self.instances
            .values()
            .filter(|i| i.owned && i.observed.state != InstanceState::Terminated)
            .count()
    }

    /// Advances the simulation by `dt` and returns the ids of the jobs that completed.
    pub fn advance(&mut self, dt: Millis) -> Vec<u64> {
        self.account(dt);
        self.now += dt;
        let now = self.now;
        let mut completed = Vec::new();
        let mut requeue: Vec<SimJob> = Vec::new();
        let ids: Vec<String> = self.instances.keys().cloned().collect();
        for id in ids {
            let Some(instance) = self.instances.get_mut(&id) else {
                continue;
            };
            if !instance.owned {
                continue;
            }
            match instance.observed.state {
                InstanceState::Terminated | InstanceState::Stopped => continue,
                InstanceState::ShuttingDown => {
                    if instance.terminated_at.is_some_and(|at| now >= at) {
                        instance.observed.state = InstanceState::Terminated;
                    }
                    continue;
                }
                InstanceState::Pending if now >= instance.running_at => {
                    instance.observed.state = InstanceState::Running;
                }
                _ => {}
            }
            // Spot interruption.
            if instance.interrupted_at.is_some_and(|at| now >= at) {
                instance.interrupted_at = None;
                self.metrics.spot_interruptions += 1;
                self.spot_failed_since_step = true;
                self.failures.push(LaunchFailure {
                    instance_type: instance.instance_type.name.clone(),
                    purchase: Purchase::Spot,
                    error: LaunchErrorKind::SpotInterruption,
                    at: now,
                });
                instance.observed.state = InstanceState::ShuttingDown;
                instance.terminated_at = Some(now + self.behaviour.shutdown_ms);
                if let Some(worker) = instance.worker.take() {
                    requeue.extend(worker.running.into_iter().map(|r| r.job));
                }
                continue;
            }
            // Registration.
            if instance.worker.is_none() && instance.registers_at.is_some_and(|at| now >= at) {
                instance.worker = Some(SimWorker {
                    hardware: Room::of_type(&instance.instance_type),
                    last_heartbeat: now,
                    running: Vec::new(),
                    idle_since: now,
                    retired: false,
                    jobs_started: 0,
                    hung: false,
                    connected: true,
                    reconnect_at: None,
                });
                self.assignment_due = true;
            }
            let hangs = instance.hangs_at.is_some_and(|at| now >= at);
            let Some(worker) = instance.worker.as_mut() else {
                continue;
            };
            if hangs {
                worker.hung = true;
            }
            if worker.hung {
                continue;
            }
            if !worker.connected && worker.reconnect_at.is_some_and(|at| now >= at) {
                worker.connected = true;
                worker.reconnect_at = None;
                self.assignment_due = true;
            }
            if worker.connected {
                worker.last_heartbeat = now;
            }
            let before = worker.running.len();
            worker.running.retain(|r| {
                if now >= r.ends_at {
                    completed.push(r.job.id);
                    false
                } else {
                    true
                }
            });
            if worker.running.len() < before {
                self.assignment_due = true;
                if worker.running.is_empty() {
                    worker.idle_since = now;
                    if instance.observed.image_id != self.settings.worker_ami {
                        worker.retired = true;
                    }
                }
            }
        }
        // EC2 forgets terminated instances after about an hour.
        self.instances.retain(|_, instance| {
            instance.observed.state != InstanceState::Terminated
                || instance.terminated_at.is_none_or(|at| now < at + 3_600_000)
        });
        self.metrics.jobs_completed += completed.len() as u64;
        self.metrics.jobs_lost += requeue.len() as u64;
        for job in requeue {
            self.enqueue(job);
        }
        if self.assignment_due {
            self.assign();
        }
        completed
    }

    /// The simulated scheduler: queued jobs in order go to connected, live, non-retired
    /// workers with room (one job per worker unless the pool packs; deployments and one-shot
    /// jobs want an empty worker; one-shot jobs only the right AMI, once).
    fn assign(&mut self) {
        self.assignment_due = false;
        let now = self.now;
        let packs = self.settings.packing == Packing::SharedCores;
        let worker_ami = self.settings.worker_ami.clone();
        let mut waits = Vec::new();
        for instance in self.instances.values_mut() {
            let image = instance.observed.image_id.clone();
            let one_shot = image != worker_ami;
            let Some(worker) = instance.worker.as_mut() else {
                continue;
            };
            if worker.hung || !worker.connected || worker.retired {
                continue;
            }
            if (one_shot || !packs) && !worker.running.is_empty() {
                continue;
            }
            if one_shot && worker.jobs_started > 0 {
                continue;
            }
            let mut index = 0;
            while index < self.queue.len() {
                let occupancy = occupancy_of(worker);
                let free = worker.hardware.less(Room {
                    cores: occupancy.cores,
                    ram_gb: occupancy.ram_gb,
                    disk_gb: occupancy.disk_gb,
                });
                let job = &self.queue[index];
                let right_target = match &job.one_shot_ami {
                    Some(ami) => one_shot && *ami == image,
                    None => !one_shot,
                };
                let must_be_empty = one_shot || !packs || job.kind == DemandKind::Deployment;
                let fits = right_target
                    && (!must_be_empty || worker.running.is_empty())
                    && (occupancy.items == 0 || occupancy.cores < worker.hardware.cores)
                    && free.holds(job.need);
                if fits {
                    if let Some(job) = self.queue.remove(index) {
                        waits.push(now.saturating_sub(job.queued_at));
                        worker.running.push(Running {
                            ends_at: now + job.duration_ms,
                            job,
                        });
                        worker.jobs_started += 1;
                    }
                    if must_be_empty {
                        break;
                    }
                } else {
                    index += 1;
                }
                if free.cores == 0 {
                    break;
                }
            }
        }
        self.metrics.waits_ms.extend(waits);
    }

    fn account(&mut self, dt: Millis) {
        let mut cores = 0u32;
        let mut count = 0u32;
        for instance in self.instances.values() {
            if !instance.owned || !instance.observed.state.holds_capacity() {
                continue;
            }
            count += 1;
            cores += instance.instance_type.cores;
            self.metrics.instance_ms += dt;
            self.metrics.held_core_ms += dt * u64::from(instance.instance_type.cores);
            self.metrics.spend_dollars += instance
                .instance_type
                .price_per_hour(instance.observed.purchase)
                * dt as f64
                / 3_600_000.0;
            let ending = instance.observed.state == InstanceState::ShuttingDown;
            match (&instance.worker, ending) {
                (Some(worker), false) if !worker.running.is_empty() => {
                    self.metrics.busy_instance_ms += dt;
                    self.metrics.busy_core_ms +=
                        dt * u64::from(occupancy_of(worker).cores.min(worker.hardware.cores));
                }
                (Some(_), false) => self.metrics.idle_instance_ms += dt,
                _ => self.metrics.booting_or_ending_ms += dt,
            }
        }
        self.metrics.peak_cores = self.metrics.peak_cores.max(cores);
        self.metrics.peak_instances = self.metrics.peak_instances.max(count);
    }

    /// What the reconciler sees now.
    pub fn observe(&self) -> Observation {
        let mut demand: Vec<Demand> = Vec::new();
        for job in &self.queue {
            let same = demand.iter_mut().find(|d| {
                d.min_cores == job.need.cores
                    && d.min_ram_gb == job.need.ram_gb
                    && d.min_disk_gb == job.need.disk_gb
                    && d.kind == job.kind
                    && d.one_shot_ami == job.one_shot_ami
            });
            match same {
                Some(d) => d.count += 1,
                None => demand.push(Demand {
                    min_cores: job.need.cores,
                    min_ram_gb: job.need.ram_gb,
                    min_disk_gb: job.need.disk_gb,
                    count: 1,
                    kind: job.kind,
                    one_shot_ami: job.one_shot_ami.clone(),
                }),
            }
        }
        let workers = self
            .instances
            .values()
            .filter(|i| i.observed.state.holds_capacity())
            .filter_map(|i| {
                let worker = i.worker.as_ref().filter(|w| w.connected)?;
                Some(RegisteredWorker {
                    machine_id: i.observed.instance_id.clone(),
                    hardware: HardwareConfig {
                        cores: worker.hardware.cores,
                        ram_gb: worker.hardware.ram_gb,
                    },
                    last_heartbeat: worker.last_heartbeat,
                    busy: occupancy_of(worker),
                    idle_since: worker.idle_since,
                    retired: worker.retired,
                })
            })
            .collect();
        Observation {
            now: self.now,
            pool_started_at: self.pool_started_at,
            instances: self
                .instances
                .values()
                .map(|i| i.observed.clone())
                .collect(),
            workers,
            demand,
            launch_failures: self.failures.clone(),
        }
    }

    /// One reconcile step: check for orphans, observe, decide, check and apply.
    pub fn reconcile_step(&mut self) -> Decision {
        self.check_orphans();
        let observation = self.observe();
        let decision = reconcile(&self.settings, &observation);
        if self.spot_failed_since_step
            && decision
                .launches
                .iter()
                .any(|l| l.purchase == Purchase::Spot)
        {
            self.violations.push(format!(
                "{}: spot launched right after a spot failure",
                self.now
            ));
        }
        self.spot_failed_since_step = false;
        self.apply(&decision);
        self.check_limits();
        self.metrics.reconcile_steps += 1;
        self.last_decision = Some(decision.clone());
        decision
    }

    /// The server restarts: the scheduler forgets every worker and launch failure; workers
    /// reconnect after a delay (or never).
    pub fn restart_server(&mut self) {
        self.pool_started_at = self.now;
        self.failures.clear();
        self.spot_failed_since_step = false;
        let (low, high) = self.behaviour.reconnect_ms;
        for instance in self.instances.values_mut() {
            if let Some(worker) = instance.worker.as_mut() {
                worker.connected = false;
                worker.reconnect_at = if self.rng.chance(self.behaviour.never_reconnects) {
                    None
                } else {
                    Some(self.now + self.rng.between(low, high))
                };
            }
        }
    }

    /// Carries out `decision` as EC2 and the scheduler would, recording violated promises
    /// (terminating a foreign, unknown, busy-by-scale-in or healthy instance).
    pub fn apply(&mut self, decision: &Decision) {
        let now = self.now;
        for termination in &decision.terminations {
            let Some(instance) = self.instances.get_mut(&termination.instance_id) else {
                self.violations.push(format!(
                    "{now}: terminated unknown {}",
                    termination.instance_id
                ));
                continue;
            };
            if !instance.owned {
                self.violations.push(format!(
                    "{now}: terminated {} which the pool does not own",
                    termination.instance_id
                ));
                continue;
            }
            let busy = instance
                .worker
                .as_ref()
                .is_some_and(|w| w.connected && !w.running.is_empty());
            let healthy = instance
                .worker
                .as_ref()
                .is_some_and(|w| w.connected && !w.hung);
            match termination.reason {
                TerminateReason::Drained | TerminateReason::OneShotFinished if busy => {
                    self.violations.push(format!(
                        "{now}: scale-in terminated busy {}",
                        termination.instance_id
                    ));
                }
                TerminateReason::NeverRegistered | TerminateReason::HeartbeatLost if healthy => {
                    self.violations.push(format!(
                        "{now}: {:?} terminated healthy {}",
                        termination.reason, termination.instance_id
                    ));
                }
                _ => {}
            }
            if instance.observed.state.holds_capacity()
                && instance.observed.state != InstanceState::ShuttingDown
            {
                instance.observed.state = InstanceState::ShuttingDown;
                instance.terminated_at = Some(now + self.behaviour.shutdown_ms);
                *self
                    .metrics
                    .terminated
                    .entry(termination.reason)
                    .or_default() += 1;
                if let Some(worker) = instance.worker.take() {
                    let lost: Vec<SimJob> = worker.running.into_iter().map(|r| r.job).collect();
                    self.metrics.jobs_lost += lost.len() as u64;
                    for job in lost {
                        self.queue.push_back(SimJob {
                            queued_at: now,
                            ..job
                        });
                    }
                }
            }
        }
        for (ids, retired) in [(&decision.drains, true), (&decision.undrains, false)] {
            for id in ids {
                if let Some(worker) = self.instances.get_mut(id).and_then(|i| i.worker.as_mut()) {
                    worker.retired = retired;
                }
            }
        }
        for launch in &decision.launches {
            let Some(instance_type) = self.settings.instance_type(&launch.instance_type).cloned()
            else {
                self.violations
                    .push(format!("{now}: launch of unknown {}", launch.instance_type));
                continue;
            };
            let error_rate = match launch.purchase {
                Purchase::Spot => self.behaviour.spot_capacity_error,
                Purchase::OnDemand => self.behaviour.on_demand_capacity_error,
            };
            if self.rng.chance(error_rate) {
                self.metrics.launch_failures += 1;
                if launch.purchase == Purchase::Spot {
                    self.spot_failed_since_step = true;
                }
                self.failures.push(LaunchFailure {
                    instance_type: launch.instance_type.clone(),
                    purchase: launch.purchase,
                    error: LaunchErrorKind::InsufficientCapacity,
                    at: now,
                });
                continue;
            }
            for _ in 0..launch.count {
                let id = format!("i-{:08x}", self.next_instance);
                self.next_instance += 1;
                let boot = self.rng.lognormal_ms(
                    self.behaviour.boot_median_ms,
                    self.behaviour.boot_sigma,
                    self.behaviour.boot_min_ms,
                    self.behaviour.boot_max_ms,
                );
                let registers = !self.rng.chance(self.behaviour.never_registers);
                let hangs_at = self
                    .rng
                    .exponential_ms(self.behaviour.hang_rate_per_hour)
                    .map(|after| now + boot + after);
                let interrupted_at = match launch.purchase {
                    Purchase::Spot => self
                        .rng
                        .exponential_ms(self.behaviour.spot_interruption_rate_per_hour)
                        .map(|after| now + after),
                    Purchase::OnDemand => None,
                };
                let [(_, worker_name), (_, owner)] = self.settings.launch_tags();
                self.metrics.launched += 1;
                if launch.purchase == Purchase::Spot {
                    self.metrics.spot_launched += 1;
                }
                self.instances.insert(
                    id.clone(),
                    SimInstance {
                        observed: ObservedInstance {
                            instance_id: id,
                            instance_type: instance_type.name.clone(),
                            state: InstanceState::Pending,
                            launched_at: now,
                            purchase: launch.purchase,
                            image_id: launch.image_id.clone(),
                            tags: InstanceTags {
                                worker_name: Some(worker_name),
                                owner: Some(owner),
                            },
                        },
                        instance_type: instance_type.clone(),
                        owned: true,
                        running_at: now + boot * 2 / 5,
                        registers_at: registers.then_some(now + boot),
                        hangs_at,
                        interrupted_at,
                        terminated_at: None,
                        worker: None,
                    },
                );
            }
        }
        let backoff = self.settings.launch_failure_backoff_ms;
        self.failures.retain(|f| now < f.at.saturating_add(backoff));
        self.assignment_due = true;
    }

    fn check_limits(&mut self) {
        let limits = &self.settings.limits;
        let (mut count, mut cores, mut ram, mut spend) = (0u32, 0u32, 0u32, 0.0f64);
        for instance in self.instances.values() {
            if instance.owned && instance.observed.state.holds_capacity() {
                count += 1;
                cores += instance.instance_type.cores;
                ram += instance.instance_type.ram_gb;
                spend += instance
                    .instance_type
                    .price_per_hour(instance.observed.purchase);
            }
        }
        let over = |cap: u32, value: u32| cap > 0 && value > cap;
        if over(limits.max_workers, count)
            || over(limits.max_cores, cores)
            || over(limits.max_ram_gb, ram)
            || limits
                .max_hourly_spend
                .is_some_and(|cap| spend > cap + 1e-9)
        {
            self.violations.push(format!(
                "{}: limits exceeded: {count} instances, {cores} cores, {ram} GB, ${spend:.3}/h",
                self.now
            ));
        }
    }

    /// No owned instance stays unregistered beyond its boot timeout plus one step.
    fn check_orphans(&mut self) {
        let grace = self.settings.boot_timeout_ms + self.reconcile_interval_ms;
        for instance in self.instances.values() {
            let live = matches!(
                instance.observed.state,
                InstanceState::Pending | InstanceState::Running
            );
            let registered = instance.worker.as_ref().is_some_and(|w| w.connected);
            let since = instance.observed.launched_at.max(self.pool_started_at);
            if instance.owned && live && !registered && self.now > since + grace {
                self.violations.push(format!(
                    "{}: orphan {} unregistered since {since}",
                    self.now, instance.observed.instance_id
                ));
            }
        }
    }
}
