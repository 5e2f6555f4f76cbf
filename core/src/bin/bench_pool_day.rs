//! A simulated working day for the EC2 pool's reconciler (`test_looper_core::pool`), against
//! a naive one-machine-per-test policy. Prints a markdown table for `docs/ec2_pool.md`.
//!
//! ```text
//! cargo run --release -p test_looper_core --bin bench_pool_day -- [--seed N (1)]
//!     [--max-cores C (64)] [--max-workers W (20, 0 = no cap)] [--interruptions R (0.05)]
//!     [--no-spot] [--idle-timeout SECONDS (300)]
//! ```
//!
//! Workload (the same arrivals for every policy): pushes arrive 08:00–18:00 as a Poisson
//! process, 6 an hour, 14 an hour at 10–12 and 14–16. Each push queues one build (4, 6 or 8
//! cores, 2 GB per core, 5–20 min uniform); when the build ends, 20–100 tests of 1 core and
//! 2 GB each (lognormal, median 90 s, sigma 0.6, clamped to 30 s–5 min).
//!
//! Region: c5 instance types at us-east-1 on-demand list prices, spot assumed at 40% of
//! them; launch → worker registered lognormal with median 70 s, sigma 0.3, clamped to
//! 45–180 s (EC2 boot plus worker start); 30 s from terminate to terminated; spot
//! interruptions at `--interruptions` per spot-instance-hour (pessimistic: AWS reports most
//! types below 5% a month); 5% of spot launch requests fail for capacity. Ticks of 1 s, a
//! reconcile step every 10 s, idle timeout `--idle-timeout` (5 min), boot timeout 5 min.
//!
//! Policies: the reconciler packing tests onto shared boxes; the reconciler with one item per
//! instance (what the scheduler supports today: one run per machine, machines reused); and
//! the naive policy, every job on a fresh instance of the cheapest type that fits, ended
//! after it (the reconciler's one-shot path, so it obeys the same limits).

use std::time::Instant;
use test_looper_core::pool::packing::Room;
use test_looper_core::pool::sim::{CloudBehaviour, SimCloud, SimJob, SimRng};
use test_looper_core::pool::{
    DemandKind, InstanceType, Packing, PoolLimits, PoolSettings, TerminateReason,
};

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
/// The simulation starts at midnight; work arrives 08:00–18:00.
const DAY_START: u64 = 8 * HOUR;
const DAY_END: u64 = 18 * HOUR;
const NAIVE_AMI: &str = "ami-naive";

struct Options {
    seed: u64,
    max_cores: u32,
    max_workers: u32,
    interruptions_per_hour: f64,
    spot: bool,
    idle_timeout_ms: u64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        seed: 1,
        max_cores: 64,
        max_workers: 20,
        interruptions_per_hour: 0.05,
        spot: true,
        idle_timeout_ms: 5 * MINUTE,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--seed" => options.seed = parse(&value("--seed")?, "--seed N")?,
            "--max-cores" => options.max_cores = parse(&value("--max-cores")?, "--max-cores C")?,
            "--max-workers" => {
                options.max_workers = parse(&value("--max-workers")?, "--max-workers W")?
            }
            "--interruptions" => {
                options.interruptions_per_hour =
                    parse(&value("--interruptions")?, "--interruptions R")?
            }
            "--no-spot" => options.spot = false,
            "--idle-timeout" => {
                let seconds: u64 = parse(&value("--idle-timeout")?, "--idle-timeout SECONDS")?;
                options.idle_timeout_ms = seconds.max(1) * SECOND;
            }
            _ => {
                return Err(
                    "bench_pool_day [--seed N (1)] [--max-cores C (64)] [--max-workers W (20)] \
                     [--interruptions R per spot-instance-hour (0.05)] [--no-spot] \
                     [--idle-timeout SECONDS (300)]"
                        .into(),
                )
            }
        }
    }
    Ok(options)
}

fn parse<T: std::str::FromStr>(text: &str, usage: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("expected {usage}, got {text:?}"))
}

fn instance_types() -> Vec<InstanceType> {
    let c5 = |name: &str, cores: u32, price: f64| InstanceType {
        name: name.into(),
        cores,
        ram_gb: cores * 2,
        disk_gb: 50,
        on_demand_price_per_hour: price,
        spot_price_per_hour: Some(price * 0.4),
    };
    vec![
        c5("c5.large", 2, 0.085),
        c5("c5.xlarge", 4, 0.17),
        c5("c5.2xlarge", 8, 0.34),
        c5("c5.4xlarge", 16, 0.68),
    ]
}

/// One push: when it arrives, its build, and its tests (queued when the build ends).
struct Push {
    at: u64,
    build: (u32, u64),
    tests: Vec<u64>,
}

fn workload(seed: u64) -> Vec<Push> {
    let mut rng = SimRng::new(seed ^ 0x005e_ed0f_da7a);
    let rate_per_hour = |t: u64| {
        let hour = t / HOUR;
        if (10..12).contains(&hour) || (14..16).contains(&hour) {
            14.0
        } else {
            6.0
        }
    };
    // Thinning at the peak rate.
    let mut pushes = Vec::new();
    let mut t = DAY_START;
    loop {
        t += rng.exponential_ms(14.0).unwrap_or(HOUR);
        if t >= DAY_END {
            break;
        }
        if !rng.chance(rate_per_hour(t) / 14.0) {
            continue;
        }
        let cores = [4, 6, 8][rng.between(0, 2) as usize];
        let build_ms = rng.between(5 * MINUTE, 20 * MINUTE);
        let tests = (0..rng.between(20, 100))
            .map(|_| rng.lognormal_ms(90_000.0, 0.6, 30 * SECOND, 5 * MINUTE))
            .collect();
        pushes.push(Push {
            at: t,
            build: (cores, build_ms),
            tests,
        });
    }
    pushes
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Packing,
    OneItemPerInstance,
    Naive,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Packing => "reconciler, packing",
            Policy::OneItemPerInstance => "reconciler, one item per instance",
            Policy::Naive => "naive: one fresh instance per job",
        }
    }
}

struct Outcome {
    policy: Policy,
    sim: SimCloud,
    finished_at: u64,
    jobs: u64,
    /// Time spent in reconcile steps (observe, decide, check, apply).
    reconcile_seconds: f64,
}

fn run(policy: Policy, pushes: &[Push], options: &Options) -> Outcome {
    let settings = PoolSettings {
        owner_id: "bench".into(),
        worker_name: "bench-worker".into(),
        worker_ami: "ami-worker".into(),
        instance_types: instance_types(),
        limits: PoolLimits {
            max_workers: options.max_workers,
            max_cores: options.max_cores,
            max_ram_gb: 0,
            max_hourly_spend: None,
        },
        idle_timeout_ms: options.idle_timeout_ms,
        boot_timeout_ms: 5 * MINUTE,
        heartbeat_timeout_ms: MINUTE,
        spot: options.spot,
        launch_failure_backoff_ms: 5 * MINUTE,
        drain_to_make_room: true,
        packing: if policy == Policy::Packing {
            Packing::SharedCores
        } else {
            Packing::OneItemPerInstance
        },
    };
    let behaviour = CloudBehaviour {
        spot_interruption_rate_per_hour: options.interruptions_per_hour,
        spot_capacity_error: 0.05,
        ..CloudBehaviour::default()
    };
    let mut reconcile_seconds = 0.0;
    let mut sim = SimCloud::new(settings, behaviour, options.seed, 0);
    let one_shot_ami = (policy == Policy::Naive).then(|| NAIVE_AMI.to_string());
    let job = |id: u64, cores: u32, duration_ms: u64| SimJob {
        id,
        need: Room {
            cores,
            ram_gb: 2 * cores,
            disk_gb: 10,
        },
        duration_ms,
        kind: DemandKind::Run,
        one_shot_ami: one_shot_ami.clone(),
        queued_at: 0,
    };
    let mut next_push = 0;
    let mut jobs = 0;
    while sim.now < 48 * HOUR {
        while next_push < pushes.len() && pushes[next_push].at <= sim.now {
            let (cores, duration) = pushes[next_push].build;
            // Build ids are multiples of 1000, its tests follow.
            sim.enqueue(job(next_push as u64 * 1000, cores, duration));
            jobs += 1;
            next_push += 1;
        }
        for done in sim.advance(SECOND) {
            if done % 1000 == 0 {
                let push = (done / 1000) as usize;
                for (k, duration) in pushes[push].tests.iter().enumerate() {
                    sim.enqueue(job(done + 1 + k as u64, 1, *duration));
                    jobs += 1;
                }
            }
        }
        if sim.now.is_multiple_of(10 * SECOND) {
            let started = Instant::now();
            sim.reconcile_step();
            reconcile_seconds += started.elapsed().as_secs_f64();
        }
        let quiet = sim.queue_len() == 0 && sim.running_jobs() == 0 && sim.owned_instances() == 0;
        if next_push == pushes.len() && sim.now > DAY_END && quiet {
            break;
        }
    }
    Outcome {
        policy,
        finished_at: sim.now,
        sim,
        jobs,
        reconcile_seconds,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1_000.0
}

fn clock(ms: u64) -> String {
    format!("{:02}:{:02}", ms / HOUR, (ms % HOUR) / MINUTE)
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let pushes = workload(options.seed);
    let tests: usize = pushes.iter().map(|p| p.tests.len()).sum();
    println!(
        "seed {}: {} pushes (builds) and {} tests, 08:00–18:00; max_cores {}, max_workers {}, spot {}, {} interruptions per spot-instance-hour, idle timeout {} s\n",
        options.seed,
        pushes.len(),
        tests,
        options.max_cores,
        options.max_workers,
        if options.spot { "on" } else { "off" },
        options.interruptions_per_hour,
        options.idle_timeout_ms / SECOND
    );
    let outcomes: Vec<Outcome> = [Policy::Packing, Policy::OneItemPerInstance, Policy::Naive]
        .into_iter()
        .map(|policy| run(policy, &pushes, &options))
        .collect();
    println!(
        "| | {} |",
        outcomes
            .iter()
            .map(|o| o.policy.name())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---:|".repeat(outcomes.len()));
    let row = |label: &str, cell: &dyn Fn(&Outcome) -> String| {
        println!(
            "| {label} | {} |",
            outcomes.iter().map(cell).collect::<Vec<_>>().join(" | ")
        );
    };
    let waits = |o: &Outcome| {
        let mut waits = o.sim.metrics.waits_ms.clone();
        waits.sort_unstable();
        waits
    };
    row("queued → worker ready, p50 (s)", &|o| {
        format!("{:.0}", percentile(&waits(o), 0.5))
    });
    row("queued → worker ready, p95 (s)", &|o| {
        format!("{:.0}", percentile(&waits(o), 0.95))
    });
    row("queued → worker ready, max (s)", &|o| {
        format!("{:.0}", percentile(&waits(o), 1.0))
    });
    let m = |o: &Outcome| o.sim.metrics.clone();
    row("idle instance-min per busy instance-min", &|o| {
        let m = m(o);
        format!(
            "{:.3}",
            m.idle_instance_ms as f64 / m.busy_instance_ms.max(1) as f64
        )
    });
    row(
        "booting + ending instance-min per busy instance-min",
        &|o| {
            let m = m(o);
            format!(
                "{:.3}",
                m.booting_or_ending_ms as f64 / m.busy_instance_ms.max(1) as f64
            )
        },
    );
    row("instance-hours", &|o| {
        format!("{:.1}", m(o).instance_ms as f64 / HOUR as f64)
    });
    row("core-hours held", &|o| {
        format!("{:.1}", m(o).held_core_ms as f64 / HOUR as f64)
    });
    row("core-hours busy (cores in use by jobs)", &|o| {
        format!("{:.1}", m(o).busy_core_ms as f64 / HOUR as f64)
    });
    row("core utilisation (busy / held)", &|o| {
        let m = m(o);
        format!(
            "{:.0}%",
            100.0 * m.busy_core_ms as f64 / m.held_core_ms.max(1) as f64
        )
    });
    row("peak cores held / max_cores", &|o| {
        format!("{} / {}", m(o).peak_cores, options.max_cores)
    });
    row("peak instances / max_workers", &|o| {
        let cap = match options.max_workers {
            0 => "no cap".to_string(),
            n => n.to_string(),
        };
        format!("{} / {cap}", m(o).peak_instances)
    });
    row("spend ($)", &|o| format!("{:.2}", m(o).spend_dollars));
    row("instances launched (spot)", &|o| {
        format!("{} ({})", m(o).launched, m(o).spot_launched)
    });
    row("spot interruptions / spot capacity errors", &|o| {
        format!("{} / {}", m(o).spot_interruptions, m(o).launch_failures)
    });
    row("jobs run / lost and retried", &|o| {
        format!("{} / {}", o.jobs, m(o).jobs_lost)
    });
    row("terminated: drained / one-shot done / other", &|o| {
        let t = &o.sim.metrics.terminated;
        let get = |r| t.get(&r).copied().unwrap_or(0);
        let other: u64 = t.values().sum::<u64>()
            - get(TerminateReason::Drained)
            - get(TerminateReason::OneShotFinished);
        format!(
            "{} / {} / {}",
            get(TerminateReason::Drained),
            get(TerminateReason::OneShotFinished),
            other
        )
    });
    row(
        "reconcile steps (mean µs each, with observe and apply)",
        &|o| {
            format!(
                "{} ({:.0})",
                o.sim.metrics.reconcile_steps,
                o.reconcile_seconds * 1e6 / o.sim.metrics.reconcile_steps.max(1) as f64
            )
        },
    );
    row("last job done / pool empty at", &|o| clock(o.finished_at));
    row("promises broken (limits, busy killed, orphans)", &|o| {
        o.sim.violations.len().to_string()
    });
    for outcome in &outcomes {
        for violation in outcome.sim.violations.iter().take(5) {
            eprintln!("{}: {violation}", outcome.policy.name());
        }
    }
}
