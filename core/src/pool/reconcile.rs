//! The reconciler step: one pure, deterministic function from an [`Observation`] to a
//! [`Decision`]. It keeps no state between steps (launch failures come in with the
//! observation), so a server restart is just a step with a new `pool_started_at`: owned
//! instances whose workers register again are adopted, the others are ended after the boot
//! timeout. The rules are listed in `docs/ec2_pool.md`.

use super::decision::{
    Decision, HeldCapacity, IgnoredInstance, Launch, Limit, PoolCensus, TerminateReason,
    Termination,
};
use super::inputs::{
    DemandKind, InstanceState, InstanceTags, LaunchErrorKind, Observation, ObservedInstance,
    RegisteredWorker,
};
use super::packing::{item_need, rank_candidates, Candidate, Room};
use super::settings::{InstanceType, Packing, PoolLimits, PoolSettings, Purchase};
use crate::protocol::Millis;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

/// At most this many queued items are planned per step; the rest wait for later steps.
pub const PLANNING_HORIZON_ITEMS: u64 = 10_000;

/// Whether the pool owns `instance`: both ownership tags carry this pool's values.
pub fn is_owned(settings: &PoolSettings, instance: &ObservedInstance) -> bool {
    instance.tags.owner.as_deref() == Some(settings.owner_id.as_str())
        && instance.tags.worker_name.as_deref() == Some(settings.worker_name.as_str())
}

/// Whether spot launches are avoided at `now`: a spot capacity error or interruption within
/// the launch-failure backoff.
pub fn spot_avoided(settings: &PoolSettings, observation: &Observation) -> bool {
    observation.launch_failures.iter().any(|failure| {
        failure.purchase == Purchase::Spot
            && failure.error != LaunchErrorKind::Other
            && is_recent(settings, failure.at, observation.now)
    })
}

fn is_recent(settings: &PoolSettings, at: Millis, now: Millis) -> bool {
    now < at.saturating_add(settings.launch_failure_backoff_ms)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    /// Registered, running something, with room left (shared cores).
    Busy,
    /// Registered and idle.
    Idle,
    /// Registered, drained and idle: taking an item means undraining it.
    Drained,
    /// Owned, not registered yet, within the boot timeout.
    Booting,
    /// Planned by this step.
    Planned,
}

/// A place for queued items: the free part of an instance, existing or planned.
#[derive(Clone, Debug)]
struct Bin<'a> {
    tier: Tier,
    instance_id: &'a str,
    idle_since: Millis,
    free: Room,
    /// The whole instance, as its type counts against the limits.
    whole: Room,
    /// What an hour of it costs.
    price_per_hour: f64,
    items: u32,
    image: &'a str,
    one_shot: bool,
    /// Takes at most one item.
    single_item: bool,
    /// Holds a deployment: takes nothing more.
    closed: bool,
}

#[derive(Clone, Copy, Debug)]
struct Item<'a> {
    need: Room,
    kind: DemandKind,
    one_shot_ami: Option<&'a str>,
}

impl Bin<'_> {
    fn accepts(&self, item: &Item) -> bool {
        let same_target = match item.one_shot_ami {
            Some(ami) => self.one_shot && self.image == ami,
            None => !self.one_shot,
        };
        let must_be_empty = self.single_item || item.kind == DemandKind::Deployment;
        same_target
            && !self.closed
            && (!must_be_empty || self.items == 0)
            && self.free.holds(item.need)
    }

    fn take(&mut self, item: &Item) {
        self.free = self.free.less(item.need);
        self.items += 1;
        if item.kind == DemandKind::Deployment {
            self.closed = true;
        }
    }
}

/// Launches are grouped by (type, purchase, image, one-shot)…
type LaunchKey<'a> = (&'a str, Purchase, &'a str, bool);
/// …counting (instances, items served, sum of price per served core).
type LaunchTally = (u32, u32, f64);

/// The step's inputs that stay fixed while placing items.
struct PlanContext<'a> {
    settings: &'a PoolSettings,
    candidates: &'a [Candidate<'a>],
    now: Millis,
}

/// Where the queued items go.
struct Plan<'a> {
    bins: Vec<Bin<'a>>,
    planned: Vec<(Bin<'a>, PlannedInstance<'a>)>,
    blocked: BTreeMap<Limit, u64>,
    served_by_existing: u64,
    served_by_launches: u64,
    /// Held capacity with the planned launches.
    ledger: Ledger<'a>,
    /// The first item blocked by a capacity limit that no live instance could serve even
    /// empty: (its need, its one-shot AMI).
    starving: Option<(Room, Option<&'a str>)>,
}

/// Places `items` (in order) first-fit on `bins` (drained ones only with `use_drained`),
/// then on instances it plans within the limits (see [`super::packing`]).
fn place_and_plan<'a>(
    context: &PlanContext<'a>,
    items: &[Item<'a>],
    mut bins: Vec<Bin<'a>>,
    ledger: &Ledger<'a>,
    use_drained: bool,
) -> Plan<'a> {
    let settings = context.settings;
    let mut ledger = ledger.clone();
    let mut served_by_existing = 0;
    let mut served_by_launches = 0;
    let mut unplaced: Vec<Item> = Vec::new();
    for item in items {
        let bin = bins
            .iter_mut()
            .filter(|bin| use_drained || bin.tier != Tier::Drained)
            .find(|bin| bin.accepts(item));
        match bin {
            Some(bin) => {
                bin.take(item);
                served_by_existing += 1;
            }
            None => unplaced.push(*item),
        }
    }
    let mut planned: Vec<(Bin, PlannedInstance)> = Vec::new();
    let mut blocked: BTreeMap<Limit, u64> = BTreeMap::new();
    let mut starving = None;
    // Held capacity only grows within a step, so an item that no type could take stays
    // blocked for the rest of the step, and so do the identical items after it.
    let mut blocked_classes: HashMap<(Room, DemandKind, Option<&str>), Limit> = HashMap::new();
    for (index, item) in unplaced.iter().enumerate() {
        if let Some((bin, _)) = planned.iter_mut().find(|(bin, _)| bin.accepts(item)) {
            bin.take(item);
            served_by_launches += 1;
            continue;
        }
        let class = (item.need, item.kind, item.one_shot_ami);
        if let Some(limit) = blocked_classes.get(&class) {
            *blocked.entry(*limit).or_default() += 1;
            continue;
        }
        let packs = item.one_shot_ami.is_none()
            && item.kind == DemandKind::Run
            && settings.packing == Packing::SharedCores;
        let rest: Vec<Room> = if packs {
            unplaced[index + 1..]
                .iter()
                .filter(|other| other.one_shot_ami.is_none() && other.kind == DemandKind::Run)
                .map(|other| other.need)
                .take(super::packing::LOOKAHEAD_ITEMS)
                .collect()
        } else {
            Vec::new()
        };
        let ranked = rank_candidates(context.candidates, item.need, &rest);
        let Some(best) = ranked.first() else {
            let fits_any = settings
                .instance_types
                .iter()
                .any(|t| Room::of_type(t).holds(item.need));
            let limit = if fits_any {
                Limit::LaunchFailures
            } else {
                Limit::NoFittingType
            };
            *blocked.entry(limit).or_default() += 1;
            blocked_classes.insert(class, limit);
            continue;
        };
        let chosen = ranked.iter().find(|scored| {
            ledger
                .limit_hit(scored.candidate.instance_type, scored.price_per_hour)
                .is_none()
        });
        let Some(chosen) = chosen else {
            let limit = ledger
                .limit_hit(best.candidate.instance_type, best.price_per_hour)
                .unwrap_or(Limit::MaxWorkers);
            *blocked.entry(limit).or_default() += 1;
            blocked_classes.insert(class, limit);
            let live_could_serve = bins.iter().any(|bin| {
                bin.tier != Tier::Drained
                    && match item.one_shot_ami {
                        Some(ami) => bin.one_shot && bin.image == ami,
                        None => !bin.one_shot && bin.whole.holds(item.need),
                    }
            });
            if starving.is_none() && !live_could_serve {
                starving = Some((item.need, item.one_shot_ami));
            }
            continue;
        };
        let instance_type = chosen.candidate.instance_type;
        ledger.add(instance_type, chosen.price_per_hour);
        let mut bin = Bin {
            tier: Tier::Planned,
            instance_id: "",
            idle_since: context.now,
            free: Room::of_type(instance_type),
            whole: Room::of_type(instance_type),
            price_per_hour: chosen.price_per_hour,
            items: 0,
            image: item.one_shot_ami.unwrap_or(settings.worker_ami.as_str()),
            one_shot: item.one_shot_ami.is_some(),
            single_item: !packs,
            closed: false,
        };
        bin.take(item);
        served_by_launches += 1;
        planned.push((
            bin,
            PlannedInstance {
                instance_type,
                purchase: chosen.candidate.purchase,
                price_per_served_core: chosen.price_per_served_core,
            },
        ));
    }
    Plan {
        bins,
        planned,
        blocked,
        served_by_existing,
        served_by_launches,
        ledger,
        starving,
    }
}

/// Busy pooled workers whose room, once they have finished and ended, lets the cheapest type
/// for `need` launch within the limits: fewest items first, as few as needed; none when even
/// all of them would not make room.
fn busy_workers_to_drain<'a>(
    context: &PlanContext<'a>,
    bins: &[Bin<'a>],
    ledger: &Ledger<'a>,
    (need, _one_shot_ami): (Room, Option<&'a str>),
) -> Vec<&'a str> {
    let Some(cheapest) = rank_candidates(context.candidates, need, &[])
        .into_iter()
        .next()
    else {
        return Vec::new();
    };
    let mut busy: Vec<&Bin> = bins
        .iter()
        .filter(|bin| bin.tier == Tier::Busy && !bin.one_shot)
        .collect();
    busy.sort_by(|a, b| a.items.cmp(&b.items).then(a.instance_id.cmp(b.instance_id)));
    let mut freed = ledger.clone();
    let mut victims = Vec::new();
    for bin in busy {
        if freed
            .limit_hit(cheapest.candidate.instance_type, cheapest.price_per_hour)
            .is_none()
        {
            break;
        }
        freed.remove(bin.whole, bin.price_per_hour);
        victims.push(bin.instance_id);
    }
    let fits = freed
        .limit_hit(cheapest.candidate.instance_type, cheapest.price_per_hour)
        .is_none();
    if fits {
        victims
    } else {
        Vec::new()
    }
}

/// A new instance planned by this step.
#[derive(Clone, Debug)]
struct PlannedInstance<'a> {
    instance_type: &'a InstanceType,
    purchase: Purchase,
    price_per_served_core: f64,
}

/// Capacity held, and what adding one more instance would break.
#[derive(Clone)]
struct Ledger<'a> {
    limits: &'a PoolLimits,
    held: HeldCapacity,
}

impl Ledger<'_> {
    fn limit_hit(&self, instance_type: &InstanceType, price: f64) -> Option<Limit> {
        let limits = self.limits;
        let over = |cap: u32, held: u32, more: u32| cap > 0 && held.saturating_add(more) > cap;
        if over(limits.max_workers, self.held.instances, 1) {
            Some(Limit::MaxWorkers)
        } else if over(limits.max_cores, self.held.cores, instance_type.cores) {
            Some(Limit::MaxCores)
        } else if over(limits.max_ram_gb, self.held.ram_gb, instance_type.ram_gb) {
            Some(Limit::MaxRamGb)
        } else if limits
            .max_hourly_spend
            .is_some_and(|cap| self.held.hourly_spend + price > cap + 1e-9)
        {
            Some(Limit::MaxHourlySpend)
        } else {
            None
        }
    }

    fn remove(&mut self, room: Room, price: f64) {
        self.held.instances = self.held.instances.saturating_sub(1);
        self.held.cores = self.held.cores.saturating_sub(room.cores);
        self.held.ram_gb = self.held.ram_gb.saturating_sub(room.ram_gb);
        self.held.hourly_spend = (self.held.hourly_spend - price).max(0.0);
    }

    fn add(&mut self, instance_type: &InstanceType, price: f64) {
        self.held.instances = self.held.instances.saturating_add(1);
        self.held.cores = self.held.cores.saturating_add(instance_type.cores);
        self.held.ram_gb = self.held.ram_gb.saturating_add(instance_type.ram_gb);
        self.held.hourly_spend += price;
    }
}

/// How many items of each demand entry to plan: all of them up to
/// [`PLANNING_HORIZON_ITEMS`] in total; beyond, the horizon is shared evenly (water-filling),
/// so that every entry is planned however large the others are.
fn horizon_shares(demand: &[super::inputs::Demand]) -> Vec<u64> {
    let mut quotas = vec![0u64; demand.len()];
    let mut budget = PLANNING_HORIZON_ITEMS;
    let mut open: Vec<usize> = (0..demand.len()).filter(|&i| demand[i].count > 0).collect();
    while budget > 0 && !open.is_empty() {
        let share = (budget / open.len() as u64).max(1);
        let mut still_open = Vec::new();
        for i in open {
            let give = share.min(demand[i].count - quotas[i]).min(budget);
            quotas[i] += give;
            budget -= give;
            if quotas[i] < demand[i].count {
                still_open.push(i);
            }
        }
        open = still_open;
    }
    quotas
}

/// Two reports of one instance (say a `RunInstances` result and `DescribeInstances`),
/// merged whatever their order: the most advanced state, the earliest launch, the on-demand
/// price; conflicting ownership tags make it foreign (never touched); the smaller type and
/// image names (arbitrary but order-independent).
fn merge_duplicate_instance(known: &mut ObservedInstance, other: &ObservedInstance) {
    known.state = known.state.max(other.state);
    known.launched_at = known.launched_at.min(other.launched_at);
    known.purchase = known.purchase.max(other.purchase);
    if known.tags != other.tags {
        known.tags = InstanceTags::default();
    }
    if other.instance_type < known.instance_type {
        known.instance_type = other.instance_type.clone();
    }
    if other.image_id < known.image_id {
        known.image_id = other.image_id.clone();
    }
}

/// Two reports of one machine (the scheduler should send one): merged whatever their order,
/// on the safe side: the latest heartbeat and idle start, the larger occupancy, retired only
/// if both say so, the smaller hardware.
fn merge_duplicate(known: &mut RegisteredWorker, other: &RegisteredWorker) {
    known.last_heartbeat = known.last_heartbeat.max(other.last_heartbeat);
    known.idle_since = known.idle_since.max(other.idle_since);
    known.busy.items = known.busy.items.max(other.busy.items);
    known.busy.cores = known.busy.cores.max(other.busy.cores);
    known.busy.ram_gb = known.busy.ram_gb.max(other.busy.ram_gb);
    known.busy.disk_gb = known.busy.disk_gb.max(other.busy.disk_gb);
    known.retired = known.retired && other.retired;
    known.hardware.cores = known.hardware.cores.min(other.hardware.cores);
    known.hardware.ram_gb = known.hardware.ram_gb.min(other.hardware.ram_gb);
}

fn minutes(ms: Millis) -> String {
    format!("{:.1} min", ms as f64 / 60_000.0)
}

/// One reconcile step: what to launch, drain, undrain and terminate so that the pool serves
/// `observation.demand` within `settings.limits`. Pure and deterministic.
pub fn reconcile(settings: &PoolSettings, observation: &Observation) -> Decision {
    let now = observation.now;
    let mut decision = Decision {
        at: now,
        ..Decision::default()
    };
    let mut census = PoolCensus::default();
    let mut notes: Vec<String> = Vec::new();

    // An instance of a type missing from the table counts as the largest, dearest type.
    let fallback = InstanceType {
        name: "(unknown type)".into(),
        cores: settings
            .instance_types
            .iter()
            .map(|t| t.cores)
            .max()
            .unwrap_or(0),
        ram_gb: settings
            .instance_types
            .iter()
            .map(|t| t.ram_gb)
            .max()
            .unwrap_or(0),
        disk_gb: settings
            .instance_types
            .iter()
            .map(|t| t.disk_gb)
            .max()
            .unwrap_or(0),
        on_demand_price_per_hour: settings
            .instance_types
            .iter()
            .map(|t| t.on_demand_price_per_hour)
            .fold(0.0, f64::max),
        spot_price_per_hour: None,
    };
    let type_of = |instance: &ObservedInstance| -> &InstanceType {
        settings
            .instance_type(&instance.instance_type)
            .unwrap_or(&fallback)
    };

    // Ownership: only instances carrying both of this pool's tags are ever touched.
    let mut reported: BTreeMap<&str, ObservedInstance> = BTreeMap::new();
    for instance in &observation.instances {
        reported
            .entry(instance.instance_id.as_str())
            .and_modify(|known| merge_duplicate_instance(known, instance))
            .or_insert_with(|| instance.clone());
    }
    let mut owned: Vec<&ObservedInstance> = Vec::new();
    for instance in reported
        .values()
        .filter(|instance| instance.state.holds_capacity())
    {
        if is_owned(settings, instance) {
            owned.push(instance);
        } else {
            census.foreign += 1;
            let why = match (&instance.tags.owner, &instance.tags.worker_name) {
                (None, _) | (_, None) => "missing this pool's ownership tags".to_string(),
                (Some(owner), Some(name)) => {
                    format!("tagged for owner {owner:?}, worker name {name:?}")
                }
            };
            decision.ignored.push(IgnoredInstance {
                instance_id: instance.instance_id.clone(),
                why,
            });
        }
    }
    let owned_ids: BTreeSet<&str> = owned.iter().map(|i| i.instance_id.as_str()).collect();
    let mut workers: BTreeMap<&str, RegisteredWorker> = BTreeMap::new();
    for worker in &observation.workers {
        workers
            .entry(worker.machine_id.as_str())
            .and_modify(|known| merge_duplicate(known, worker))
            .or_insert_with(|| worker.clone());
    }
    let live_ids: BTreeSet<&str> = reported
        .values()
        .filter(|instance| instance.state.holds_capacity())
        .map(|instance| instance.instance_id.as_str())
        .collect();
    for id in workers.keys() {
        if !live_ids.contains(*id) {
            decision.workers_gone.push(id.to_string());
        } else if !owned_ids.contains(*id) {
            notes.push(format!(
                "worker {id} runs on an instance without this pool's tags: left alone"
            ));
        }
    }

    // Capacity held by every owned instance until EC2 reports it terminated.
    let mut ledger = Ledger {
        limits: &settings.limits,
        held: HeldCapacity::default(),
    };
    for instance in &owned {
        let instance_type = type_of(instance);
        ledger.add(
            instance_type,
            instance_type.price_per_hour(instance.purchase),
        );
        if instance_type.name == fallback.name {
            notes.push(format!(
                "{} has unconfigured type {}: counted as {} cores, {} GB",
                instance.instance_id, instance.instance_type, fallback.cores, fallback.ram_gb
            ));
        }
    }

    // Health, and the bins existing capacity offers.
    let mut bins: Vec<Bin> = Vec::new();
    let terminate = |decision: &mut Decision, instance: &ObservedInstance, reason| {
        decision.terminations.push(Termination {
            instance_id: instance.instance_id.clone(),
            reason,
        });
    };
    for instance in &owned {
        let instance_type = type_of(instance);
        let one_shot = instance.image_id != settings.worker_ami;
        let whole = Room::of_type(instance_type);
        let single_item = one_shot || settings.packing == Packing::OneItemPerInstance;
        let bin = |tier, free, items, idle_since| Bin {
            tier,
            instance_id: &instance.instance_id,
            idle_since,
            free,
            whole,
            price_per_hour: instance_type.price_per_hour(instance.purchase),
            items,
            image: &instance.image_id,
            one_shot,
            single_item,
            closed: false,
        };
        match instance.state {
            InstanceState::ShuttingDown | InstanceState::Terminated => census.shutting_down += 1,
            InstanceState::Stopped => terminate(&mut decision, instance, TerminateReason::Stopped),
            InstanceState::Pending | InstanceState::Running => {
                match workers.get(instance.instance_id.as_str()) {
                    Some(worker)
                        if now.saturating_sub(worker.last_heartbeat)
                            >= settings.heartbeat_timeout_ms =>
                    {
                        notes.push(format!(
                            "{}: no heartbeat for {}",
                            instance.instance_id,
                            minutes(now.saturating_sub(worker.last_heartbeat))
                        ));
                        terminate(&mut decision, instance, TerminateReason::HeartbeatLost);
                    }
                    Some(worker) => {
                        let hardware = Room {
                            cores: worker.hardware.cores,
                            ram_gb: worker.hardware.ram_gb,
                            disk_gb: instance_type.disk_gb,
                        };
                        let busy = Room {
                            cores: worker.busy.cores,
                            ram_gb: worker.busy.ram_gb,
                            disk_gb: worker.busy.disk_gb,
                        };
                        match (worker.retired, worker.is_idle()) {
                            (true, true) if one_shot => {
                                census.retired += 1;
                                terminate(
                                    &mut decision,
                                    instance,
                                    TerminateReason::OneShotFinished,
                                );
                            }
                            (true, true) => {
                                census.retired += 1;
                                bins.push(bin(Tier::Drained, hardware, 0, worker.idle_since));
                            }
                            (true, false) => census.retired += 1,
                            (false, true) => {
                                census.idle += 1;
                                bins.push(bin(Tier::Idle, hardware, 0, worker.idle_since));
                            }
                            (false, false) => {
                                census.busy += 1;
                                bins.push(bin(
                                    Tier::Busy,
                                    hardware.less(busy),
                                    worker.busy.items,
                                    now,
                                ));
                            }
                        }
                    }
                    None => {
                        let since = instance.launched_at.max(observation.pool_started_at);
                        if now >= since.saturating_add(settings.boot_timeout_ms) {
                            notes.push(format!(
                                "{}: no worker registered within {} of {}",
                                instance.instance_id,
                                minutes(settings.boot_timeout_ms),
                                if instance.launched_at >= observation.pool_started_at {
                                    "its launch"
                                } else {
                                    "the pool's start"
                                }
                            ));
                            terminate(&mut decision, instance, TerminateReason::NeverRegistered);
                        } else {
                            census.booting += 1;
                            bins.push(bin(Tier::Booting, whole, 0, now));
                        }
                    }
                }
            }
        }
    }
    // Busy first (consolidate), then idle most recently active first (so the longest idle
    // can go), then drained, then booting.
    bins.sort_by(|a, b| {
        a.tier
            .cmp(&b.tier)
            .then(b.idle_since.cmp(&a.idle_since))
            .then(a.instance_id.cmp(b.instance_id))
    });

    let quotas = horizon_shares(&observation.demand);
    let mut items: Vec<Item> = Vec::new();
    let mut total_items: u64 = 0;
    for (demand, quota) in observation.demand.iter().zip(quotas) {
        total_items = total_items.saturating_add(demand.count);
        for _ in 0..quota {
            items.push(Item {
                need: item_need(demand.min_cores, demand.min_ram_gb, demand.min_disk_gb),
                kind: demand.kind,
                one_shot_ami: demand.one_shot_ami.as_deref(),
            });
        }
    }
    if total_items > items.len() as u64 {
        notes.push(format!(
            "{} queued items beyond the planning horizon of {PLANNING_HORIZON_ITEMS} wait for later steps",
            total_items - items.len() as u64
        ));
    }
    // Queued items: deployments first, then one-shot items (only a new instance serves
    // them), then first-fit-decreasing by size.
    items.sort_by(|a, b| {
        (b.kind == DemandKind::Deployment)
            .cmp(&(a.kind == DemandKind::Deployment))
            .then(b.one_shot_ami.is_some().cmp(&a.one_shot_ami.is_some()))
            .then(b.need.cores.cmp(&a.need.cores))
            .then(b.need.ram_gb.cmp(&a.need.ram_gb))
            .then(b.need.disk_gb.cmp(&a.need.disk_gb))
    });
    census.queued_items = items.len() as u64;

    // Who may be launched: spot where allowed, on demand otherwise; a type whose purchase
    // failed recently is avoided for the backoff.
    let spot_off = spot_avoided(settings, observation);
    if settings.spot && spot_off {
        notes.push(format!(
            "spot avoided for {} after a spot capacity error or interruption: launching on demand",
            minutes(settings.launch_failure_backoff_ms)
        ));
    }
    let failed_recently = |instance_type: &InstanceType, purchase: Purchase| {
        observation.launch_failures.iter().any(|failure| {
            failure.instance_type == instance_type.name
                && failure.purchase == purchase
                && is_recent(settings, failure.at, now)
        })
    };
    let mut candidates: Vec<Candidate> = Vec::new();
    for instance_type in &settings.instance_types {
        let spot_possible =
            settings.spot && instance_type.spot_price_per_hour.is_some() && !spot_off;
        let purchase = [Purchase::Spot, Purchase::OnDemand]
            .into_iter()
            .filter(|p| *p == Purchase::OnDemand || spot_possible)
            .find(|p| !failed_recently(instance_type, *p));
        if let Some(purchase) = purchase {
            candidates.push(Candidate {
                instance_type,
                purchase,
            });
        }
    }

    // Existing and booting capacity serves what it can, new instances the rest. When an item
    // blocked by a limit could never be served by a live instance (a one-shot item, or one
    // bigger than every box), drained idle workers are ended rather than taken back, so that
    // their room goes to that item.
    let context = PlanContext {
        settings,
        candidates: &candidates,
        now,
    };
    let mut plan = place_and_plan(&context, &items, bins.clone(), &ledger, true);
    if plan.starving.is_some() && bins.iter().any(|bin| bin.tier == Tier::Drained) {
        plan = place_and_plan(&context, &items, bins, &ledger, false);
    }
    let Plan {
        bins,
        planned,
        blocked,
        served_by_existing,
        served_by_launches,
        ledger,
        starving,
    } = plan;
    census.served_by_existing = served_by_existing;
    census.served_by_launches = served_by_launches;
    census.blocked = blocked.iter().map(|(l, n)| (*l, *n)).collect();
    let blocked_by_limit = blocked.keys().any(|limit| limit.is_capacity_limit());

    // Scale-in: drained idle workers nobody wants end; wanted ones take work again. Idle
    // workers nobody wants are drained after the idle timeout (at once when demand is
    // blocked by a limit and the settings say so). Busy workers are never touched here.
    for bin in &bins {
        let wanted = bin.items > 0;
        match bin.tier {
            Tier::Drained if wanted => decision.undrains.push(bin.instance_id.to_string()),
            Tier::Drained => decision.terminations.push(Termination {
                instance_id: bin.instance_id.to_string(),
                reason: TerminateReason::Drained,
            }),
            Tier::Idle if !wanted => {
                let idle_for = now.saturating_sub(bin.idle_since);
                if idle_for >= settings.idle_timeout_ms {
                    notes.push(format!(
                        "drain {}: idle {} (timeout {})",
                        bin.instance_id,
                        minutes(idle_for),
                        minutes(settings.idle_timeout_ms)
                    ));
                    decision.drains.push(bin.instance_id.to_string());
                } else if blocked_by_limit && settings.drain_to_make_room {
                    notes.push(format!(
                        "drain {}: idle and in the way of demand blocked by a limit",
                        bin.instance_id
                    ));
                    decision.drains.push(bin.instance_id.to_string());
                }
            }
            _ => {}
        }
    }
    // A starving item, with nothing already freeing room: drain busy workers (they finish
    // their work first, and are never terminated busy) until their room would let it in.
    let freeing = !decision.drains.is_empty()
        || !decision.terminations.is_empty()
        || census.retired > 0
        || census.shutting_down > 0;
    if let (Some(need), false) = (starving, freeing) {
        if settings.drain_to_make_room {
            let victims = busy_workers_to_drain(&context, &bins, &ledger, need);
            for id in victims {
                notes.push(format!(
                    "drain {id} (busy, finishes its work first): making room for a queued item no live instance can serve"
                ));
                decision.drains.push(id.to_string());
            }
        }
    }
    decision.drains.sort();
    decision.undrains.sort();
    decision
        .terminations
        .sort_by(|a, b| a.instance_id.cmp(&b.instance_id));

    // Launches, grouped.
    let mut launches: BTreeMap<LaunchKey, LaunchTally> = BTreeMap::new();
    for (bin, plan) in &planned {
        let entry = launches
            .entry((
                plan.instance_type.name.as_str(),
                plan.purchase,
                bin.image,
                bin.one_shot,
            ))
            .or_insert((0, 0, 0.0));
        entry.0 += 1;
        entry.1 += bin.items;
        entry.2 += plan.price_per_served_core;
    }
    for ((name, purchase, image, one_shot), (count, served, price_sum)) in &launches {
        notes.push(format!(
            "launch {count} x {name} ({}{}): {served} items, ${:.4}/h per served core",
            match purchase {
                Purchase::Spot => "spot",
                Purchase::OnDemand => "on demand",
            },
            if *one_shot {
                format!(", one-shot {image}")
            } else {
                String::new()
            },
            price_sum / f64::from((*count).max(1)),
        ));
        decision.launches.push(Launch {
            instance_type: name.to_string(),
            purchase: *purchase,
            image_id: image.to_string(),
            one_shot: *one_shot,
            count: *count,
        });
    }

    decision.held = ledger.held;
    decision.census = census;
    decision.explanation = explain(settings, &decision, &notes);
    decision
}

fn explain(settings: &PoolSettings, decision: &Decision, notes: &[String]) -> String {
    let census = &decision.census;
    let held = &decision.held;
    let limits = &settings.limits;
    let cap = |value: u32| {
        if value == 0 {
            "no cap".to_string()
        } else {
            value.to_string()
        }
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "owned: {} booting, {} busy, {} idle, {} retired, {} shutting down; {} foreign ignored",
        census.booting,
        census.busy,
        census.idle,
        census.retired,
        census.shutting_down,
        census.foreign
    );
    let _ = writeln!(
        text,
        "held after launches: {} instances (max {}), {} cores (max {}), {} GB RAM (max {}), ${:.2}/h (max {})",
        held.instances,
        cap(limits.max_workers),
        held.cores,
        cap(limits.max_cores),
        held.ram_gb,
        cap(limits.max_ram_gb),
        held.hourly_spend,
        limits
            .max_hourly_spend
            .map_or_else(|| "no cap".to_string(), |c| format!("${c:.2}")),
    );
    let _ = write!(
        text,
        "demand: {} queued items, {} served by existing or booting instances, {} by new launches",
        census.queued_items, census.served_by_existing, census.served_by_launches
    );
    for (limit, count) in &census.blocked {
        let _ = write!(text, ", {count} blocked by {limit:?}");
    }
    text.push('\n');
    for termination in &decision.terminations {
        let _ = writeln!(
            text,
            "terminate {}: {:?}",
            termination.instance_id, termination.reason
        );
    }
    for id in &decision.undrains {
        let _ = writeln!(text, "undrain {id}: demand wants it again");
    }
    for id in &decision.workers_gone {
        let _ = writeln!(
            text,
            "worker {id} is gone: its instance is terminated or unknown"
        );
    }
    for note in notes {
        let _ = writeln!(text, "{note}");
    }
    for ignored in &decision.ignored {
        let _ = writeln!(text, "ignored {}: {}", ignored.instance_id, ignored.why);
    }
    if decision.is_empty() {
        text.push_str("no change\n");
    }
    text
}
