//! Benchmark of the flake hunt (`test_looper_core::stats::hunt`) on simulated branches,
//! against a deflaked bisection. Prints markdown tables for the README and
//! `docs/statistics.md`.
//!
//! ```text
//! cargo run --release -p test_looper_core --bin bench_flake_hunt -- [--trials N] [--quick]
//!     [--changes-only]
//!     [--seed S] [--batch B] [--budget R] [--target P] [--no-change-target P]
//!     [--sizes 50,200,1000] [--rates 0:0.02,0.01:0.05,0.05:0.2,0.001:0.01] [--rate-prior A,B]
//! ```
//!
//! Each trial draws a branch of n commits with one change at a uniformly random commit k in
//! 1..n (commits k.. have the new rate), or no change at all, and plays the hunt: ask the
//! planner for a batch, simulate the runs (Bernoulli at each commit's true rate), feed them
//! back, until it is done. The baseline is a bisection between the oldest commit and head
//! that runs each probed commit K times (and head and the oldest commit K times each) and
//! calls a probe bad when its failures are likelier under head's observed rate than under
//! the oldest commit's; K is searched per scenario as the smallest that reaches the hunt's
//! accuracy (at most 98%). Everything is seeded: the same flags print the same tables.
//! With `BENCH_DEBUG=1` each hunt prints its positions with runs, runs, failures and outcome
//! on stderr.

use std::time::Instant;

use test_looper_core::stats::{
    change_posterior, next_step, ChangeModel, HuntOutcome, HuntSettings, HuntStep, MissingReason,
    Position, RatePrior,
};

/// xoshiro256**, seeded through splitmix64.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    /// A stream for one (scenario, trial, purpose), independent of the order of the others.
    fn for_trial(seed: u64, scenario: u64, trial: u64, purpose: u64) -> Rng {
        Rng::new(
            seed ^ scenario.wrapping_mul(0x2545_f491_4f6c_dd1d)
                ^ trial.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ purpose.wrapping_mul(0xd6e8_feb8_6659_fd93),
        )
    }

    fn next_u64(&mut self) -> u64 {
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
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in low..high.
    fn below(&mut self, low: usize, high: usize) -> usize {
        low + (self.uniform() * (high - low) as f64) as usize
    }

    /// Failures among `runs` Bernoulli(`rate`) runs, by geometric gaps between failures.
    fn failures(&mut self, runs: u64, rate: f64) -> u64 {
        if rate <= 0.0 {
            return 0;
        }
        if rate >= 1.0 {
            return runs;
        }
        let log_pass = (1.0 - rate).ln();
        let mut failures = 0;
        let mut position = 0u64;
        loop {
            let gap = ((1.0 - self.uniform()).ln() / log_pass).floor();
            if gap >= (runs - position) as f64 {
                return failures;
            }
            position += gap as u64 + 1;
            failures += 1;
            if position >= runs {
                return failures;
            }
        }
    }
}

struct Options {
    trials: u64,
    seed: u64,
    batch: u64,
    budget: u64,
    target: f64,
    no_change_target: f64,
    sizes: Vec<usize>,
    /// (before, after) rate pairs.
    pairs: Vec<(f64, f64)>,
    model: ChangeModel,
    /// Skip the branches without a change.
    changes_only: bool,
}

fn parse_options() -> Options {
    let mut options = Options {
        trials: 200,
        seed: 15,
        batch: 8,
        budget: 10_000,
        target: 0.99,
        no_change_target: 0.95,
        sizes: vec![50, 200, 1000],
        pairs: vec![(0.0, 0.02), (0.01, 0.05), (0.05, 0.20), (0.001, 0.01)],
        model: ChangeModel::default(),
        changes_only: false,
    };
    let mut quick = false;
    let mut trials = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match flag.as_str() {
            "--quick" => quick = true,
            "--changes-only" => options.changes_only = true,
            "--trials" => trials = Some(value("--trials").parse().expect("--trials N")),
            "--seed" => options.seed = value("--seed").parse().expect("--seed S"),
            "--batch" => options.batch = value("--batch").parse().expect("--batch B"),
            "--budget" => options.budget = value("--budget").parse().expect("--budget R"),
            "--target" => options.target = value("--target").parse().expect("--target P"),
            "--no-change-target" => {
                options.no_change_target = value("--no-change-target")
                    .parse()
                    .expect("--no-change-target P")
            }
            "--sizes" => {
                options.sizes = value("--sizes")
                    .split(',')
                    .map(|s| s.parse().expect("--sizes 50,200,1000"))
                    .collect()
            }
            "--rates" => {
                options.pairs = value("--rates")
                    .split(',')
                    .map(|pair| {
                        let (before, after) = pair.split_once(':').expect("--rates 0.01:0.05,...");
                        (
                            before.parse().expect("a rate"),
                            after.parse().expect("a rate"),
                        )
                    })
                    .collect()
            }
            "--rate-prior" => {
                let text = value("--rate-prior");
                let (alpha, beta) = text.split_once(',').expect("--rate-prior ALPHA,BETA");
                options.model.rate_prior =
                    RatePrior::new(alpha.parse().expect("alpha"), beta.parse().expect("beta"))
                        .expect("a valid Beta prior");
            }
            "--help" | "-h" => {
                println!(
                    "bench_flake_hunt [--trials N (200)] [--quick (40 trials)] [--changes-only] [--seed S (15)] \
                     [--batch B (8)] [--budget R (10000)] [--target P (0.99)] \
                     [--no-change-target P (0.95)] \
                     [--sizes 50,200,1000] [--rates 0:0.02,0.01:0.05,0.05:0.2,0.001:0.01] \
                     [--rate-prior A,B (0.2,1)]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}; try --help"),
        }
    }
    options.trials = trials.unwrap_or(if quick { 40 } else { options.trials });
    options
}

/// How one hunt went.
struct HuntResult {
    /// The named (most probable) culprit range contains the true first bad commit.
    correct: bool,
    /// The posterior probability of the named culprit range.
    stated: f64,
    outcome: &'static str,
    /// Named a culprit with probability ≥ 0.95 (for no-change scenarios).
    confident_culprit: bool,
    runs: u64,
    batches: u64,
}

fn hunt(rates: &[f64], first_bad: Option<usize>, options: &Options, rng: &mut Rng) -> HuntResult {
    let settings = HuntSettings {
        target: options.target,
        no_change_target: options.no_change_target,
        model: options.model,
        ..HuntSettings::default()
    };
    let mut positions = vec![Position::Missing(MissingReason::NotRun); rates.len()];
    let (mut runs, mut batches) = (0, 0);
    let outcome = loop {
        match next_step(&positions, options.budget - runs, options.batch, &settings)
            .expect("valid hunt input")
        {
            HuntStep::Done(outcome) => break outcome,
            HuntStep::Run(batch) => {
                batches += 1;
                for (i, count) in batch {
                    runs += count;
                    let failures = rng.failures(count, rates[i]);
                    let (f, r) = positions[i].counts();
                    positions[i] = Position::Observed {
                        failures: f + failures,
                        runs: r + count,
                    };
                }
            }
        }
    };
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let observed = positions.iter().filter(|p| p.counts().1 > 0).count();
        let failures: u64 = positions.iter().map(|p| p.counts().0).sum();
        eprintln!(
            "observed positions {observed} runs {runs} failures {failures} \
             first_bad {first_bad:?} {outcome:?}"
        );
    }
    let posterior = change_posterior(&positions, &settings.model).expect("valid positions");
    let best = posterior.most_likely_culprit();
    let correct = match (best, first_bad) {
        (Some(range), Some(k)) => range.first <= k && k <= range.last,
        _ => false,
    };
    let (name, confident_culprit) = match outcome {
        HuntOutcome::Found { probability, .. } => ("found", probability >= 0.95),
        HuntOutcome::NoChange { .. } => ("no change", false),
        HuntOutcome::BudgetSpent { .. } => ("budget spent", false),
        HuntOutcome::NotIdentifiable => ("not identifiable", false),
    };
    HuntResult {
        correct,
        stated: best.map_or(0.0, |range| range.probability),
        outcome: name,
        confident_culprit,
        runs,
        batches,
    }
}

/// Deflaked bisection with K runs per probe; returns (correct, runs).
fn bisection(rates: &[f64], first_bad: usize, k: u64, rng: &mut Rng) -> (bool, u64) {
    let n = rates.len();
    let estimate = |failures: u64| (failures as f64 + 0.5) / (k as f64 + 1.0);
    let new = estimate(rng.failures(k, rates[n - 1]));
    let old = estimate(rng.failures(k, rates[0]));
    let fail_weight = (new / old).ln();
    let pass_weight = ((1.0 - new) / (1.0 - old)).ln();
    let (mut good, mut bad) = (0, n - 1);
    let mut runs = 2 * k;
    while bad - good > 1 {
        let mid = (good + bad) / 2;
        let failures = rng.failures(k, rates[mid]) as f64;
        runs += k;
        if failures * fail_weight + (k as f64 - failures) * pass_weight > 0.0 {
            bad = mid;
        } else {
            good = mid;
        }
    }
    (bad == first_bad, runs)
}

fn rates_for(n: usize, before: f64, after: f64, first_bad: usize) -> Vec<f64> {
    (0..n)
        .map(|i| if i < first_bad { before } else { after })
        .collect()
}

/// Expected calibration error over 10 equal-width bins of the stated probability.
fn expected_calibration_error(results: &[HuntResult]) -> f64 {
    let mut bins = [(0.0, 0.0, 0u64); 10];
    for result in results {
        let bin = ((result.stated * 10.0) as usize).min(9);
        bins[bin].0 += result.stated;
        bins[bin].1 += if result.correct { 1.0 } else { 0.0 };
        bins[bin].2 += 1;
    }
    bins.iter()
        .filter(|bin| bin.2 > 0)
        .map(|(stated, correct, _)| (stated - correct).abs())
        .sum::<f64>()
        / results.len() as f64
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0u64), |(s, c), v| (s + v, c + 1));
    sum / count.max(1) as f64
}

fn percentile_95(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    let index = ((values.len() as f64 * 0.95).ceil() as usize).clamp(1, values.len()) - 1;
    values[index]
}

fn percent(x: f64) -> String {
    let p = x * 100.0;
    if p >= 1.0 || p == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

fn outcome_counts(results: &[HuntResult]) -> String {
    let count = |name| results.iter().filter(|r| r.outcome == name).count();
    format!(
        "{} / {} / {}",
        count("found"),
        count("budget spent"),
        count("no change")
    )
}

/// The smallest K on a ×1.25 grid whose bisection reaches `goal` accuracy:
/// (K, accuracy, mean runs), or the largest K tried if none does.
fn search_k(
    options: &Options,
    scenario: u64,
    n: usize,
    before: f64,
    after: f64,
    goal: f64,
) -> (u64, f64, f64) {
    let mut k = 4.0f64;
    let mut last = (0, 0.0, 0.0);
    while k <= 40_000.0 {
        let kk = k.round() as u64;
        let (mut correct, mut runs) = (0u64, 0u64);
        for trial in 0..options.trials {
            let mut rng = Rng::for_trial(options.seed, scenario, trial, 2);
            let first_bad = rng.below(1, n);
            let rates = rates_for(n, before, after, first_bad);
            let (ok, used) = bisection(&rates, first_bad, kk, &mut rng);
            correct += ok as u64;
            runs += used;
        }
        let accuracy = correct as f64 / options.trials as f64;
        last = (kk, accuracy, runs as f64 / options.trials as f64);
        if accuracy >= goal {
            return last;
        }
        k *= 1.25;
    }
    last
}

fn main() {
    let options = parse_options();
    let started = Instant::now();
    println!(
        "Flake hunt vs deflaked bisection: {} trials per scenario, batch {}, budget {} runs, \
         target {} (no change {}), seed {}.\n",
        options.trials,
        options.batch,
        options.budget,
        options.target,
        options.no_change_target,
        options.seed
    );
    println!(
        "| commits | rate before → after | top-1 accuracy | ECE | found / budget spent / no change \
         | runs mean | runs p95 | batches mean | bisection K | bisection accuracy \
         | bisection runs | runs vs bisection |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut no_change_rows = Vec::new();
    let mut scenario = 0u64;
    for &n in &options.sizes {
        for &(before, after) in &options.pairs {
            scenario += 1;
            let results: Vec<HuntResult> = (0..options.trials)
                .map(|trial| {
                    let mut rng = Rng::for_trial(options.seed, scenario, trial, 1);
                    let first_bad = rng.below(1, n);
                    let rates = rates_for(n, before, after, first_bad);
                    hunt(&rates, Some(first_bad), &options, &mut rng)
                })
                .collect();
            let accuracy = mean(results.iter().map(|r| r.correct as u64 as f64));
            let runs_mean = mean(results.iter().map(|r| r.runs as f64));
            let goal = accuracy.min(0.98);
            let (k, bisection_accuracy, bisection_runs) =
                search_k(&options, scenario, n, before, after, goal);
            println!(
                "| {n} | {} → {} | {} | {:.3} | {} | {:.0} | {} | {:.1} | {k} | {} | {:.0} | {:.2}× |",
                percent(before),
                percent(after),
                percent(accuracy),
                expected_calibration_error(&results),
                outcome_counts(&results),
                runs_mean,
                percentile_95(results.iter().map(|r| r.runs).collect()),
                mean(results.iter().map(|r| r.batches as f64)),
                percent(bisection_accuracy),
                bisection_runs,
                runs_mean / bisection_runs,
            );

            scenario += 1;
            if options.changes_only {
                continue;
            }
            let rate = after;
            let results: Vec<HuntResult> = (0..options.trials)
                .map(|trial| {
                    let mut rng = Rng::for_trial(options.seed, scenario, trial, 1);
                    hunt(&vec![rate; n], None, &options, &mut rng)
                })
                .collect();
            no_change_rows.push(format!(
                "| {n} | {} | {} | {} | {:.0} | {} |",
                percent(rate),
                percent(mean(
                    results.iter().map(|r| r.confident_culprit as u64 as f64)
                )),
                outcome_counts(&results),
                mean(results.iter().map(|r| r.runs as f64)),
                percentile_95(results.iter().map(|r| r.runs).collect()),
            ));
        }
    }
    println!("\nNo change (the same rate at every commit):\n");
    println!(
        "| commits | rate | confident culprit (≥ 0.95) | found / budget spent / no change \
         | runs mean | runs p95 |"
    );
    println!("|---|---|---|---|---|---|");
    for row in no_change_rows {
        println!("{row}");
    }

    // Cost of one posterior with the two-change check at n = 1,000 commits, all with runs.
    let mut rng = Rng::new(options.seed);
    let positions: Vec<Position> = (0..1000)
        .map(|i| Position::Observed {
            failures: rng.failures(50, if i < 600 { 0.01 } else { 0.05 }),
            runs: 50,
        })
        .collect();
    let repeats = 5;
    let timer = Instant::now();
    for _ in 0..repeats {
        let posterior = change_posterior(&positions, &ChangeModel::default()).unwrap();
        std::hint::black_box(posterior);
    }
    println!(
        "\nchange_posterior with the two-change check, 1,000 commits all with runs: {:.1} ms; \
         whole bench {:.0} s.",
        timer.elapsed().as_secs_f64() * 1000.0 / repeats as f64,
        started.elapsed().as_secs_f64()
    );
}
