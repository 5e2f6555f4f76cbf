//! The flake-hunt planner: given the runs so far along a branch's first-parent history, the
//! budget left and how many runs may start at once, either stop with an answer or name the
//! batch of runs expected to tell the most about where the failure rate changed.
//!
//! It is a pure function of its inputs ([`next_step`]): the caller keeps the positions,
//! starts the runs, waits for them and asks again. It knows nothing of the true rates; it
//! only assumes the newest position (head) is where someone saw the flake, which matters
//! only for the very first batch.
//!
//! # Choosing runs
//!
//! The state of knowledge is the one-change posterior of [`super::change_point`] over the
//! hypotheses "no change" and "first position with the new rate is k". For a candidate
//! position `i` and `r` more runs there, the runs' failure count `F` has, under each
//! hypothesis, the Beta-Binomial predictive of the segment `i` falls in. The expected
//! information gain about the hypothesis `H` is the mutual information
//! `I(H; F) = H(Σ_h w_h p_h) − Σ_h w_h H(p_h)`; positions with runs split the hypotheses
//! into blocks of equal predictive, so with prefix sums over blocks it costs O(r²) per
//! candidate. A batch is filled greedily, one run at a time, to the candidate with the
//! largest gain from one more run there (at most `max_runs_per_position` per batch).
//! Runs in one batch are valued independently of each other (no look-ahead), the usual
//! greedy approximation of batch design.
//!
//! When nothing is observed yet every predictive equals the prior and every gain is 0:
//! the batch is then split between the newest observable position (head, where the flake
//! was seen) and the oldest one.
//!
//! # Stopping rules, checked in this order
//!
//! 1. Fewer than two observable positions: no change can be seen,
//!    [`HuntOutcome::NotIdentifiable`].
//! 2. One culprit range holds at least `target` of the posterior:
//!    [`HuntOutcome::Found`].
//! 3. "No change" holds at least `no_change_target` (default 0.95):
//!    [`HuntOutcome::NoChange`]. A hunt on a test
//!    whose rate never changed thus ends either here or with the budget spent; it names a
//!    culprit only if the data make one `target` probable, which (posterior odds of at
//!    least `target / (1 − target)` against the 1:1 prior) happens with probability at most
//!    about `1 − target` under no change, whatever the stopping time (Ville's inequality).
//! 4. No budget left: [`HuntOutcome::BudgetSpent`] with the best guess.

use super::change_point::{ChangeModel, Position};
use super::change_point::{CulpritRange, OneChange};
use super::StatsError;

/// The planner's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HuntSettings {
    pub model: ChangeModel,
    /// The posterior probability of one culprit range at which the hunt stops with it; in
    /// `(0.5, 1)`, default 0.95.
    pub target: f64,
    /// The posterior probability of "no change" at which the hunt stops with
    /// [`HuntOutcome::NoChange`]; in `(0.5, 1)`, default 0.95. Separate from `target`
    /// because the two errors cost differently: a false "no change" ends a hunt with
    /// nothing, a false culprit blames a commit.
    pub no_change_target: f64,
    /// At most this many runs of one batch go to one position (default 16).
    pub max_runs_per_position: u64,
}

impl Default for HuntSettings {
    fn default() -> HuntSettings {
        HuntSettings {
            model: ChangeModel::default(),
            target: 0.95,
            no_change_target: 0.95,
            max_runs_per_position: 16,
        }
    }
}

/// What the hunt does next.
#[derive(Clone, Debug, PartialEq)]
pub enum HuntStep {
    Done(HuntOutcome),
    /// Start these runs: `(position index, number of runs)`, ascending positions, each
    /// position observable, the total at most the batch size and the budget left.
    Run(Vec<(usize, u64)>),
}

/// How a hunt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum HuntOutcome {
    /// The first position with the new rate is `position` with posterior `probability`
    /// (at least the target). `position` is `culprit_range.last`; if the range has more
    /// than one position, the culprit is one of `culprit_range.first..=culprit_range.last`
    /// (the ones before `last` cannot be run). `more_than_one_change` is the check of
    /// [`super::ChangePosterior::more_than_one_change`]: when high, tell the user the
    /// history may hold more than one change.
    Found {
        position: usize,
        culprit_range: CulpritRange,
        probability: f64,
        more_than_one_change: f64,
    },
    /// The rate is the same at every observable position, with this posterior probability.
    NoChange { probability: f64 },
    /// The budget is spent before either answer reached the target: the most probable
    /// culprit range so far, and P(no change).
    BudgetSpent {
        best_guess: CulpritRange,
        no_change: f64,
    },
    /// Fewer than two observable positions: no change can be located.
    NotIdentifiable,
}

/// The next step of a hunt over `positions` (oldest first; the last is head), with
/// `remaining_budget` runs left to start and at most `batch_size` runs to start now.
pub fn next_step(
    positions: &[Position],
    remaining_budget: u64,
    batch_size: u64,
    settings: &HuntSettings,
) -> Result<HuntStep, StatsError> {
    for target in [settings.target, settings.no_change_target] {
        if !(target > 0.5 && target < 1.0) {
            return Err(StatsError::InvalidProbability(target));
        }
    }
    if batch_size == 0 || settings.max_runs_per_position == 0 {
        return Err(StatsError::EmptyBatch);
    }
    let one = OneChange::new(positions, &settings.model)?;
    let ranges = one.culprit_ranges(positions);
    let Some(best) = ranges.iter().copied().reduce(|best, range| {
        if range.probability > best.probability {
            range
        } else {
            best
        }
    }) else {
        return Ok(HuntStep::Done(HuntOutcome::NotIdentifiable));
    };
    if best.probability >= settings.target {
        return Ok(HuntStep::Done(HuntOutcome::Found {
            position: best.last,
            culprit_range: best,
            probability: best.probability,
            more_than_one_change: one.more_than_one_change(),
        }));
    }
    if one.no_change >= settings.no_change_target {
        return Ok(HuntStep::Done(HuntOutcome::NoChange {
            probability: one.no_change,
        }));
    }
    if remaining_budget == 0 {
        return Ok(HuntStep::Done(HuntOutcome::BudgetSpent {
            best_guess: best,
            no_change: one.no_change,
        }));
    }
    let batch = batch_size.min(remaining_budget);
    Ok(HuntStep::Run(plan_batch(
        &one,
        positions,
        batch,
        settings.max_runs_per_position.min(batch),
    )))
}

/// The Beta-Binomial predictive of r = 1..=max_runs future runs from a Beta(α, β) rate,
/// flattened: the pmf of r runs is `pmf[offset(r)..offset(r) + r + 1]`; with its entropy.
struct Predictive {
    pmf: Vec<f64>,
    entropy: Vec<f64>,
}

fn offset(r: usize) -> usize {
    // Σ_{s=1}^{r-1} (s + 1)
    (r - 1) * (r + 2) / 2
}

fn entropy(pmf: &[f64]) -> f64 {
    -pmf.iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| p * p.ln())
        .sum::<f64>()
}

impl Predictive {
    fn new(alpha: f64, beta: f64, max_runs: usize) -> Predictive {
        let mut pmf = Vec::with_capacity(offset(max_runs + 1));
        let mut entropies = Vec::with_capacity(max_runs);
        let mut previous = vec![1.0];
        for r in 1..=max_runs {
            // Pólya urn: after s = r − 1 runs with j failures, the next fails with
            // probability (α + j) / (α + β + s).
            let s = (r - 1) as f64;
            let mut current = vec![0.0; r + 1];
            for (j, &p) in previous.iter().enumerate() {
                let fail = (alpha + j as f64) / (alpha + beta + s);
                current[j + 1] += p * fail;
                current[j] += p * (1.0 - fail);
            }
            entropies.push(entropy(&current));
            pmf.extend_from_slice(&current);
            previous = current;
        }
        Predictive {
            pmf,
            entropy: entropies,
        }
    }
}

/// Σ weight × predictive, accumulated (pmf and entropy together).
#[derive(Clone)]
struct Mixture {
    pmf: Vec<f64>,
    entropy: Vec<f64>,
}

impl Mixture {
    fn zero(max_runs: usize) -> Mixture {
        Mixture {
            pmf: vec![0.0; offset(max_runs + 1)],
            entropy: vec![0.0; max_runs],
        }
    }

    fn add(&mut self, weight: f64, predictive: &Predictive) {
        for (a, b) in self.pmf.iter_mut().zip(&predictive.pmf) {
            *a += weight * b;
        }
        for (a, b) in self.entropy.iter_mut().zip(&predictive.entropy) {
            *a += weight * b;
        }
    }
}

/// The expected information gain `gains[r]` of `r` runs (r = 0..=max_runs) at one
/// candidate: the mixture is the sum of `parts`.
fn information_gains(
    parts: [(&Mixture, f64); 2],
    split: [(&Predictive, f64); 3],
    max_runs: usize,
) -> Vec<f64> {
    let mut gains = vec![0.0; max_runs + 1];
    let mut pmf = vec![0.0; max_runs + 1];
    for r in 1..=max_runs {
        let start = offset(r);
        let mut average_entropy = 0.0;
        pmf[..=r].fill(0.0);
        for (mixture, scale) in parts {
            for (a, b) in pmf[..=r].iter_mut().zip(&mixture.pmf[start..start + r + 1]) {
                *a += scale * b;
            }
            average_entropy += scale * mixture.entropy[r - 1];
        }
        for (predictive, weight) in split {
            if weight > 0.0 {
                for (a, b) in pmf[..=r]
                    .iter_mut()
                    .zip(&predictive.pmf[start..start + r + 1])
                {
                    *a += weight * b;
                }
                average_entropy += weight * predictive.entropy[r - 1];
            }
        }
        gains[r] = (entropy(&pmf[..=r]) - average_entropy).max(0.0);
    }
    gains
}

/// Blocks of hypotheses with less posterior mass than this are left out of the gains: they
/// cannot change a gain measurably, and late in a hunt they are most blocks.
const NEGLIGIBLE_MASS: f64 = 1e-9;

/// At most this many candidates from one stretch of observable positions without runs.
const CANDIDATES_PER_STRETCH: usize = 16;

/// The greedy fill looks at the best `max(2 × batch, SHORTLIST_MIN)` candidates by the gain
/// of one run.
const SHORTLIST_MIN: usize = 8;

/// The positions worth evaluating: every observable position with runs, and from each
/// stretch of observable positions without runs between two with runs, at most
/// [`CANDIDATES_PER_STRETCH`] evenly spaced ones, its ends included. Within a stretch the
/// gain varies only through the share of the stretch's hypotheses on either side, smoothly,
/// so a sample loses little and keeps each step O(m) instead of O(n).
fn candidate_positions(one: &OneChange, positions: &[Position]) -> Vec<usize> {
    let mut candidates = Vec::new();
    let mut stretch = Vec::new();
    let flush = |stretch: &mut Vec<usize>, candidates: &mut Vec<usize>| {
        let len = stretch.len();
        if len <= CANDIDATES_PER_STRETCH {
            candidates.append(stretch);
        } else {
            let last = CANDIDATES_PER_STRETCH - 1;
            candidates.extend((0..=last).map(|j| stretch[j * (len - 1) / last]));
            stretch.clear();
        }
    };
    let mut observed = one.observed.iter().peekable();
    for (i, position) in positions.iter().enumerate() {
        if observed.peek() == Some(&&i) {
            observed.next();
            flush(&mut stretch, &mut candidates);
            candidates.push(i);
        } else if position.is_observable() {
            stretch.push(i);
        }
    }
    flush(&mut stretch, &mut candidates);
    candidates
}

fn plan_batch(
    one: &OneChange,
    positions: &[Position],
    batch: u64,
    max_runs: u64,
) -> Vec<(usize, u64)> {
    let max_runs = max_runs as usize;
    let prior = one.model.rate_prior;
    let predictive = |(failures, runs): (u64, u64)| {
        Predictive::new(
            prior.alpha() + failures as f64,
            prior.beta() + (runs - failures) as f64,
            max_runs,
        )
    };
    let total = one.total();
    let blocks = one.blocks.len();
    // Under a change in block t, a position is after the change if it is after block t.
    let mut after = Vec::with_capacity(blocks);
    let mut before = Vec::with_capacity(blocks);
    for t in 0..blocks {
        let (f, r) = one.prefix[t];
        if one.block_mass[t] > NEGLIGIBLE_MASS {
            before.push(Some(predictive((f, r))));
            after.push(Some(predictive((total.0 - f, total.1 - r))));
        } else {
            before.push(None);
            after.push(None);
        }
    }
    let no_change = predictive(total);
    // after_sum[t] = Σ_{s<t} mass_s × after_s; before_sum[t] = Σ_{s≥t} mass_s × before_s.
    let mut after_sum = vec![Mixture::zero(max_runs)];
    for t in 0..blocks {
        let mut next = after_sum[t].clone();
        if let Some(p) = &after[t] {
            next.add(one.block_mass[t], p);
        }
        after_sum.push(next);
    }
    let mut before_sum = vec![Mixture::zero(max_runs); blocks + 1];
    for t in (0..blocks).rev() {
        let mut next = before_sum[t + 1].clone();
        if let Some(p) = &before[t] {
            next.add(one.block_mass[t], p);
        }
        before_sum[t] = next;
    }

    let candidates = candidate_positions(one, positions);
    let empty = Predictive {
        pmf: Vec::new(),
        entropy: Vec::new(),
    };
    let gain_curve = |i: usize, runs: usize| {
        let t = one.observed.partition_point(|&o| o < i);
        let (low, high) = one.blocks[t];
        let mass = one.block_mass[t];
        let (mut after_weight, mut before_weight) = (0.0, 0.0);
        if high > low && mass > NEGLIGIBLE_MASS {
            let at_or_before = ((i + 1).clamp(low, high) - low) as f64 / (high - low) as f64;
            after_weight = mass * at_or_before;
            before_weight = mass * (1.0 - at_or_before);
        }
        let split = [
            (after[t].as_ref().unwrap_or(&empty), after_weight),
            (before[t].as_ref().unwrap_or(&empty), before_weight),
            (&no_change, one.no_change),
        ];
        information_gains(
            [(&after_sum[t], 1.0), (&before_sum[t + 1], 1.0)],
            split,
            runs,
        )
    };
    if candidates.is_empty() {
        return Vec::new();
    }
    // The gain of one run everywhere; the whole curve only for the best few, which are
    // the only ones the greedy fill can reach with `batch` runs (gains flatten with r).
    let single: Vec<f64> = candidates.iter().map(|&i| gain_curve(i, 1)[1]).collect();
    let best_single = single.iter().copied().fold(0.0, f64::max);
    let mut allocation: Vec<(usize, u64)> = Vec::new();
    if best_single <= 1e-12 {
        // Nothing to learn from yet: head and the oldest observable position.
        let cap = max_runs as u64;
        let head_runs = batch.div_ceil(2).min(cap);
        allocation.push((candidates[0], (batch - head_runs).min(cap)));
        allocation.push((candidates[candidates.len() - 1], head_runs));
    } else {
        // Positions of one stretch without runs are near substitutes (the gains ignore
        // that runs in one batch overlap): only the best of each stretch takes part.
        let stretch_of = |i: usize| {
            let t = one.observed.partition_point(|&o| o < i);
            (t, one.observed.get(t) == Some(&i))
        };
        let mut order: Vec<usize> = Vec::new();
        for c in 0..candidates.len() {
            match order.last() {
                Some(&last) if stretch_of(candidates[last]) == stretch_of(candidates[c]) => {
                    if single[c] > single[last] {
                        *order.last_mut().expect("not empty") = c;
                    }
                }
                _ => order.push(c),
            }
        }
        // Highest gain first, ties to the oldest position: deterministic.
        order.sort_by(|&a, &b| single[b].total_cmp(&single[a]).then(a.cmp(&b)));
        order.truncate((2 * batch as usize).max(SHORTLIST_MIN));
        order.sort_unstable();
        let curves: Vec<Vec<f64>> = order
            .iter()
            .map(|&c| gain_curve(candidates[c], max_runs))
            .collect();
        let mut allocated = vec![0usize; order.len()];
        for _ in 0..batch {
            let mut best: Option<(usize, f64)> = None;
            for (c, gain) in curves.iter().enumerate() {
                let r = allocated[c];
                if r >= max_runs {
                    continue;
                }
                let increment = gain[r + 1] - gain[r];
                if best.is_none_or(|(_, b)| increment > b) {
                    best = Some((c, increment));
                }
            }
            match best {
                Some((c, _)) => allocated[c] += 1,
                None => break,
            }
        }
        allocation.extend(
            order
                .iter()
                .zip(allocated)
                .map(|(&c, runs)| (candidates[c], runs as u64)),
        );
    }
    allocation.retain(|&(_, runs)| runs > 0);
    allocation.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 += later.1;
            true
        } else {
            false
        }
    });
    allocation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::change_point::MissingReason;
    use proptest::prelude::*;

    const NOT_RUN: Position = Position::Missing(MissingReason::NotRun);

    fn observed(failures: u64, runs: u64) -> Position {
        Position::Observed { failures, runs }
    }

    /// splitmix64, for simulated runs.
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Run a whole hunt against true rates; returns the outcome and the runs used.
    fn simulate(rates: &[f64], budget: u64, seed: u64) -> (HuntOutcome, u64) {
        let mut rng = Rng(seed);
        let mut positions = vec![NOT_RUN; rates.len()];
        let mut used = 0;
        let settings = HuntSettings::default();
        loop {
            match next_step(&positions, budget - used, 8, &settings).unwrap() {
                HuntStep::Done(outcome) => return (outcome, used),
                HuntStep::Run(batch) => {
                    let total: u64 = batch.iter().map(|&(_, runs)| runs).sum();
                    assert!(
                        total <= 8 && used + total <= budget,
                        "{batch:?} after {used}"
                    );
                    for (i, runs) in batch {
                        used += runs;
                        let fails = (0..runs).filter(|_| rng.next_f64() < rates[i]).count() as u64;
                        let (f, r) = positions[i].counts();
                        positions[i] = observed(f + fails, r + runs);
                    }
                }
            }
        }
    }

    #[test]
    fn first_batch_goes_to_head_and_the_oldest_position() {
        let positions = vec![NOT_RUN; 20];
        let step = next_step(&positions, 100, 8, &HuntSettings::default()).unwrap();
        assert_eq!(step, HuntStep::Run(vec![(0, 4), (19, 4)]));
    }

    #[test]
    fn first_batch_respects_the_per_position_cap() {
        let settings = HuntSettings {
            max_runs_per_position: 5,
            ..HuntSettings::default()
        };
        let step = next_step(&[NOT_RUN; 10], 100, 40, &settings).unwrap();
        assert_eq!(step, HuntStep::Run(vec![(0, 5), (9, 5)]));
    }

    #[test]
    fn finds_a_planted_change() {
        let mut rates = vec![0.02; 60];
        rates[37..].fill(0.3);
        let (outcome, used) = simulate(&rates, 3_000, 7);
        match outcome {
            HuntOutcome::Found {
                position,
                probability,
                ..
            } => {
                assert_eq!(position, 37);
                assert!(probability >= 0.95);
            }
            other => panic!("{other:?} after {used} runs"),
        }
    }

    #[test]
    fn no_change_names_no_confident_culprit() {
        for seed in 0..5 {
            let rates = vec![0.2; 40];
            let (outcome, used) = simulate(&rates, 1_500, seed);
            assert!(
                !matches!(outcome, HuntOutcome::Found { .. }),
                "seed {seed}: {outcome:?} after {used} runs"
            );
        }
    }

    #[test]
    fn stopping_rules() {
        let settings = HuntSettings::default();
        let mut positions = vec![observed(0, 400); 10];
        positions[6..].fill(observed(80, 400));
        let HuntStep::Done(HuntOutcome::Found {
            position,
            culprit_range,
            ..
        }) = next_step(&positions, 100, 8, &settings).unwrap()
        else {
            panic!("expected a culprit");
        };
        assert_eq!((position, culprit_range.first), (6, 6));

        // The same rate everywhere: "no change" once both ends have plenty of runs.
        let flat = vec![observed(400, 4000); 30];
        let step = next_step(&flat, 100, 8, &settings).unwrap();
        assert!(
            matches!(step, HuntStep::Done(HuntOutcome::NoChange { .. })),
            "{step:?}"
        );
        // Not before: no failures at all say nothing about a change.
        let quiet = vec![observed(0, 40); 30];
        let step = next_step(&quiet, 100, 8, &settings).unwrap();
        assert!(matches!(step, HuntStep::Run(_)), "{step:?}");

        let few = vec![observed(1, 3), NOT_RUN, observed(0, 3)];
        let step = next_step(&few, 0, 8, &settings).unwrap();
        assert!(
            matches!(step, HuntStep::Done(HuntOutcome::BudgetSpent { .. })),
            "{step:?}"
        );

        let one = [NOT_RUN, Position::Missing(MissingReason::Absent)];
        let step = next_step(&one, 10, 8, &settings).unwrap();
        assert_eq!(step, HuntStep::Done(HuntOutcome::NotIdentifiable));

        assert!(next_step(&few, 10, 0, &settings).is_err());
        let bad = HuntSettings {
            target: 1.0,
            ..settings
        };
        assert!(next_step(&few, 10, 8, &bad).is_err());
    }

    fn position_strategy() -> impl Strategy<Value = Position> {
        prop_oneof![
            3 => (0u64..5, 0u64..30).prop_map(|(f, extra)| observed(f, f + extra)),
            4 => Just(NOT_RUN),
            1 => Just(Position::Missing(MissingReason::BuildFailed)),
            1 => Just(Position::Missing(MissingReason::Absent)),
            1 => Just(Position::Missing(MissingReason::Untestable)),
        ]
    }

    proptest! {
        #[test]
        fn batches_respect_budget_batch_size_and_missing_positions(
            positions in prop::collection::vec(position_strategy(), 0..80),
            budget in 0u64..30,
            batch in 1u64..20,
        ) {
            let settings = HuntSettings::default();
            let step = next_step(&positions, budget, batch, &settings).unwrap();
            // Deterministic.
            prop_assert_eq!(&step, &next_step(&positions, budget, batch, &settings).unwrap());
            if let HuntStep::Run(runs) = step {
                let total: u64 = runs.iter().map(|&(_, r)| r).sum();
                prop_assert!(total >= 1 && total <= budget.min(batch), "{} runs", total);
                for (i, r) in &runs {
                    prop_assert!(*r >= 1);
                    prop_assert!(positions[*i].is_observable(), "ran {:?}", positions[*i]);
                }
                prop_assert!(runs.windows(2).all(|w| w[0].0 < w[1].0));
            } else {
                let spent = matches!(step, HuntStep::Done(HuntOutcome::BudgetSpent { .. }));
                prop_assert!(budget == 0 || !spent, "budget spent with {} left", budget);
            }
        }
    }
}
