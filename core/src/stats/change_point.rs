//! Change points of a failure rate along a branch's first-parent history: the posterior of
//! "the first position with the new rate is k", against an explicit "no change", from a
//! single-change product-partition model, and a check for more than one change.
//!
//! # Model
//!
//! Positions are ordered oldest → newest. Under "one change at k" the positions before `k`
//! share one unknown rate and the positions from `k` on share another, each with the
//! [`RatePrior`] (independent; by default Beta(0.2, 1), see [`ChangeModel::rate_prior`]).
//! Under "no change" all share one rate. A segment's marginal
//! likelihood is the Beta-Binomial one of its pooled counts, so with prefix sums the whole
//! posterior costs O(n) (O(m) log-gamma calls, m = positions with runs).
//!
//! # Which positions can hold the change
//!
//! A position is *observable* unless it is [`MissingReason::Absent`],
//! [`MissingReason::BuildFailed`] or [`MissingReason::Untestable`]; `NotRun` positions are
//! observable, they just have no runs yet. A change at `k` can only ever be seen if an
//! observable position lies before `k` and one at or after `k`, so the prior over `k` is
//! uniform over exactly those `k` (the *eligible* positions); any other change looks like no
//! change and is part of `no_change` (e.g. a test that was flaky from the commit that
//! introduced it).
//!
//! Unobservable positions are not skipped: they keep their prior share. A change at an
//! unobservable position `k` can never be told from a change at the next observable
//! position, so [`ChangePosterior::culprit_ranges`] reports the mass of each group of
//! positions that no run can separate: the culprit is "one of positions `first..=last`",
//! where `last` is observable and `first..last` are not.

use super::posterior::{RatePosterior, RatePrior};
use super::StatsError;

/// Why a position has no runs to offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MissingReason {
    /// The test is not defined at this commit.
    Absent,
    /// The build the test needs failed at this commit.
    BuildFailed,
    /// The test cannot run at this commit (e.g. its definitions do not parse).
    Untestable,
    /// The test could run here but has no finished runs yet: the normal state of most
    /// positions during a hunt. Observable.
    NotRun,
}

/// One position (commit) of a first-parent history, as the statistics see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Position {
    /// Finished runs of the test (or test case) at this commit. `runs == 0` is the same as
    /// `Missing(NotRun)`.
    Observed {
        failures: u64,
        runs: u64,
    },
    Missing(MissingReason),
}

impl Position {
    /// Whether runs can ever be observed here (`Observed` or `NotRun`).
    pub fn is_observable(&self) -> bool {
        matches!(
            self,
            Position::Observed { .. } | Position::Missing(MissingReason::NotRun)
        )
    }

    /// `(failures, runs)`, zero for a missing position.
    pub fn counts(&self) -> (u64, u64) {
        match *self {
            Position::Observed { failures, runs } => (failures, runs),
            Position::Missing(_) => (0, 0),
        }
    }
}

/// The priors of the change-point model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChangeModel {
    /// Prior of the rate of each segment (default [`RatePrior::RARE_FAILURES`], Beta(0.2,
    /// 1)). Not Jeffreys: it puts only 6% of its mass below 1%, so a second rate costs a
    /// large Occam factor whenever failures are rare, and "no change" wins on data that
    /// cannot tell anything (in the benchmark, after 464 runs without a single failure).
    pub rate_prior: RatePrior,
    /// Prior probability of "no change" against "one change" (default 0.5: a hunt starts
    /// because someone suspects a change, but a stable flaky test is as plausible). The
    /// rest is spread uniformly over the eligible positions.
    pub no_change_prior: f64,
    /// Prior probability of "two changes" in the check for more than one change (default
    /// 0.1); "no change" and "one change" share the rest in the ratio above.
    pub two_change_prior: f64,
}

impl Default for ChangeModel {
    fn default() -> ChangeModel {
        ChangeModel {
            rate_prior: RatePrior::RARE_FAILURES,
            no_change_prior: 0.5,
            two_change_prior: 0.1,
        }
    }
}

impl ChangeModel {
    fn validate(&self) -> Result<(), StatsError> {
        for p in [self.no_change_prior, self.two_change_prior] {
            if !(p > 0.0 && p < 1.0) {
                return Err(StatsError::InvalidProbability(p));
            }
        }
        Ok(())
    }
}

/// Positions `first..=last` that no run can tell apart as the culprit (`last` is observable,
/// `first..last` are not), with the posterior probability that the first position with the
/// new rate is one of them. Usually `first == last`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CulpritRange {
    pub first: usize,
    pub last: usize,
    pub probability: f64,
}

/// The posterior of where the failure rate changed. `no_change + Σ first_bad = 1`; both
/// are conditional on at most one change. `more_than_one_change` is the separate check.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangePosterior {
    /// P(the rate is the same at every observable position).
    pub no_change: f64,
    /// `first_bad[k]` = P(position `k` is the first with the new rate), for every position;
    /// 0 where a change cannot be seen (see the module docs).
    pub first_bad: Vec<f64>,
    /// The groups of positions that runs cannot separate, oldest first, with their mass;
    /// together they hold all of `first_bad`.
    pub culprit_ranges: Vec<CulpritRange>,
    /// The rate before the most probable culprit range (all runs there pooled); every run
    /// pooled if no change can be seen.
    pub rate_before: RatePosterior,
    /// The rate from the most probable culprit range on.
    pub rate_after: RatePosterior,
    /// P(two changes) against no change and one change, with
    /// [`ChangeModel::two_change_prior`]. When high, the one-change answer above may not
    /// describe this history (e.g. a flake that came, went and came back).
    pub more_than_one_change: f64,
}

impl ChangePosterior {
    /// The culprit range with the highest probability (the oldest on a tie); `None` if no
    /// change can be seen at all.
    pub fn most_likely_culprit(&self) -> Option<CulpritRange> {
        most_likely(&self.culprit_ranges)
    }

    /// The range holding position `k`, if a change at `k` can be seen.
    pub fn culprit_range(&self, k: usize) -> Option<CulpritRange> {
        self.culprit_ranges
            .iter()
            .copied()
            .find(|range| range.first <= k && k <= range.last)
    }
}

fn most_likely(ranges: &[CulpritRange]) -> Option<CulpritRange> {
    ranges.iter().copied().reduce(|best, range| {
        if range.probability > best.probability {
            range
        } else {
            best
        }
    })
}

/// The change-point posterior of `positions` (oldest first) under `model`, with the check
/// for more than one change. O(n + m²) for n positions of which m have runs: a few
/// milliseconds for m = 1,000 (see `docs/statistics.md`).
pub fn change_posterior(
    positions: &[Position],
    model: &ChangeModel,
) -> Result<ChangePosterior, StatsError> {
    let one = OneChange::new(positions, model)?;
    let more_than_one_change = one.more_than_one_change();
    Ok(one.into_posterior(positions, more_than_one_change))
}

/// [`change_posterior`] without the check for more than one change (its
/// `more_than_one_change` is NaN): O(n), for pages that mark where a rate changed on every
/// request (the branch grid, a test's history).
pub fn one_change_posterior(
    positions: &[Position],
    model: &ChangeModel,
) -> Result<ChangePosterior, StatsError> {
    let one = OneChange::new(positions, model)?;
    Ok(one.into_posterior(positions, f64::NAN))
}

/// The one-change posterior in its compact form: positions with runs split the eligible
/// positions into *blocks* (block `t` holds the eligible `k` with exactly `t` positions with
/// runs before them) whose hypotheses all have the same likelihood. The hunt works on this
/// form directly.
#[derive(Clone, Debug)]
pub(crate) struct OneChange {
    pub(crate) model: ChangeModel,
    pub(crate) n: usize,
    /// Eligible positions `k` are `eligible.0 .. eligible.1`.
    pub(crate) eligible: (usize, usize),
    /// Positions with runs, ascending.
    pub(crate) observed: Vec<usize>,
    /// `prefix[t]` = pooled (failures, runs) of the first `t` observed positions.
    pub(crate) prefix: Vec<(u64, u64)>,
    /// Eligible positions of block `t`: `blocks[t].0 .. blocks[t].1` (may be empty).
    pub(crate) blocks: Vec<(usize, usize)>,
    /// ln(count × likelihood) of each block's hypotheses (−∞ when empty).
    ln_block: Vec<f64>,
    /// ln marginal likelihood of "no change".
    ln_no_change_likelihood: f64,
    /// Posterior mass of each block (given at most one change).
    pub(crate) block_mass: Vec<f64>,
    /// Posterior mass of "no change".
    pub(crate) no_change: f64,
}

fn log_sum_exp(values: impl IntoIterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().into_iter().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values
        .into_iter()
        .map(|v| (v - max).exp())
        .sum::<f64>()
        .ln()
}

impl OneChange {
    pub(crate) fn new(
        positions: &[Position],
        model: &ChangeModel,
    ) -> Result<OneChange, StatsError> {
        model.validate()?;
        let n = positions.len();
        let mut observed = Vec::new();
        let mut prefix = vec![(0u64, 0u64)];
        let mut first_observable = None;
        let mut last_observable = None;
        for (index, position) in positions.iter().enumerate() {
            if let Position::Observed { failures, runs } = *position {
                if failures > runs {
                    return Err(StatsError::FailuresAboveRuns {
                        position: index,
                        failures,
                        runs,
                    });
                }
                if runs > 0 {
                    let (f, r) = prefix[prefix.len() - 1];
                    observed.push(index);
                    prefix.push((f + failures, r + runs));
                }
            }
            if position.is_observable() {
                first_observable.get_or_insert(index);
                last_observable = Some(index);
            }
        }
        let eligible = match (first_observable, last_observable) {
            (Some(first), Some(last)) if last > first => (first + 1, last + 1),
            _ => (0, 0),
        };
        let m = observed.len();
        let blocks: Vec<(usize, usize)> = (0..=m)
            .map(|t| {
                let low = if t == 0 { 0 } else { observed[t - 1] + 1 };
                let high = if t == m { n } else { observed[t] + 1 };
                let low = low.max(eligible.0);
                let high = high.min(eligible.1);
                (low, high.max(low))
            })
            .collect();
        let prior = model.rate_prior;
        let total = prefix[m];
        let ln_no_change_likelihood = prior.ln_marginal_likelihood(total.0, total.1);
        let ln_block: Vec<f64> = blocks
            .iter()
            .enumerate()
            .map(|(t, &(low, high))| {
                if high == low {
                    return f64::NEG_INFINITY;
                }
                let (f, r) = prefix[t];
                ((high - low) as f64).ln()
                    + prior.ln_marginal_likelihood(f, r)
                    + prior.ln_marginal_likelihood(total.0 - f, total.1 - r)
            })
            .collect();
        let eligible_count = eligible.1 - eligible.0;
        let (block_mass, no_change) = if eligible_count == 0 {
            (vec![0.0; m + 1], 1.0)
        } else {
            // Each eligible k has prior (1 − π0)/|E|.
            let ln_change_prior = (1.0 - model.no_change_prior).ln() - (eligible_count as f64).ln();
            let ln_none = model.no_change_prior.ln() + ln_no_change_likelihood;
            let ln_all = log_sum_exp(
                ln_block
                    .iter()
                    .map(|l| l + ln_change_prior)
                    .chain(std::iter::once(ln_none)),
            );
            (
                ln_block
                    .iter()
                    .map(|l| (l + ln_change_prior - ln_all).exp())
                    .collect(),
                (ln_none - ln_all).exp(),
            )
        };
        Ok(OneChange {
            model: *model,
            n,
            eligible,
            observed,
            prefix,
            blocks,
            ln_block,
            ln_no_change_likelihood,
            block_mass,
            no_change,
        })
    }

    /// Pooled (failures, runs) of all observed positions.
    pub(crate) fn total(&self) -> (u64, u64) {
        self.prefix[self.prefix.len() - 1]
    }

    /// The culprit ranges, oldest first (see [`CulpritRange`]).
    pub(crate) fn culprit_ranges(&self, positions: &[Position]) -> Vec<CulpritRange> {
        let mut ranges = Vec::new();
        let (low, high) = self.eligible;
        let mut first = low;
        let mut block = 0;
        for (k, position) in positions.iter().enumerate().take(high).skip(low) {
            if !position.is_observable() {
                continue;
            }
            // Positions first..=k: all unobservable but k. Sum their mass block by block.
            let mut probability = 0.0;
            let mut start = first;
            while start <= k {
                while self.blocks[block].1 <= start {
                    block += 1;
                }
                let (block_low, block_high) = self.blocks[block];
                let end = block_high.min(k + 1);
                let share = (end - start) as f64 / (block_high - block_low) as f64;
                probability += self.block_mass[block] * share;
                start = end;
            }
            ranges.push(CulpritRange {
                first,
                last: k,
                probability,
            });
            first = k + 1;
        }
        ranges
    }

    /// P(two changes | data) against no change and one change (see
    /// [`ChangePosterior::more_than_one_change`]). O(m²) log-gamma calls.
    pub(crate) fn more_than_one_change(&self) -> f64 {
        let eligible_count = (self.eligible.1 - self.eligible.0) as f64;
        if eligible_count < 2.0 {
            return 0.0;
        }
        let prior = self.model.rate_prior;
        let total = self.total();
        let ln_ml = |f: u64, r: u64| prior.ln_marginal_likelihood(f, r);
        let m = self.observed.len();
        // ln Σ over pairs j < k of the likelihood, grouped by the blocks of j and k.
        let counts: Vec<f64> = self.blocks.iter().map(|(l, h)| (h - l) as f64).collect();
        let mut terms = Vec::new();
        for tj in 0..=m {
            if counts[tj] == 0.0 {
                continue;
            }
            let before = self.prefix[tj];
            let ln_before = ln_ml(before.0, before.1);
            // Both changes in the same block: the middle segment has no runs.
            if counts[tj] >= 2.0 {
                let pairs = counts[tj] * (counts[tj] - 1.0) / 2.0;
                terms.push(pairs.ln() + ln_before + ln_ml(total.0 - before.0, total.1 - before.1));
            }
            for tk in tj + 1..=m {
                if counts[tk] == 0.0 {
                    continue;
                }
                let upto = self.prefix[tk];
                terms.push(
                    (counts[tj] * counts[tk]).ln()
                        + ln_before
                        + ln_ml(upto.0 - before.0, upto.1 - before.1)
                        + ln_ml(total.0 - upto.0, total.1 - upto.1),
                );
            }
        }
        let all_pairs = eligible_count * (eligible_count - 1.0) / 2.0;
        let ln_two = log_sum_exp(terms.iter().copied()) - all_pairs.ln();
        let ln_one = log_sum_exp(self.ln_block.iter().copied()) - eligible_count.ln();
        let ln_none = self.ln_no_change_likelihood;
        let pi0 = self.model.no_change_prior;
        let pi2 = self.model.two_change_prior;
        let ln_at_most_one = log_sum_exp([pi0.ln() + ln_none, (1.0 - pi0).ln() + ln_one]);
        let a = (1.0 - pi2).ln() + ln_at_most_one;
        let b = pi2.ln() + ln_two;
        let ln_all = log_sum_exp([a, b]);
        (b - ln_all).exp()
    }

    /// The pooled posteriors before and after the most probable culprit range.
    fn rates_around(&self, range: Option<CulpritRange>) -> (RatePosterior, RatePosterior) {
        let prior = self.model.rate_prior;
        let total = self.total();
        match range {
            None => (
                RatePosterior::new(total.0, total.1, prior),
                RatePosterior::new(total.0, total.1, prior),
            ),
            Some(range) => {
                let t = self.observed.partition_point(|&o| o < range.first);
                let before = self.prefix[t];
                (
                    RatePosterior::new(before.0, before.1, prior),
                    RatePosterior::new(total.0 - before.0, total.1 - before.1, prior),
                )
            }
        }
    }

    pub(crate) fn into_posterior(
        self,
        positions: &[Position],
        more_than_one_change: f64,
    ) -> ChangePosterior {
        let mut first_bad = vec![0.0; self.n];
        for (t, &(low, high)) in self.blocks.iter().enumerate() {
            if high > low {
                let each = self.block_mass[t] / (high - low) as f64;
                first_bad[low..high].fill(each);
            }
        }
        let culprit_ranges = self.culprit_ranges(positions);
        let (rate_before, rate_after) = self.rates_around(most_likely(&culprit_ranges));
        ChangePosterior {
            no_change: self.no_change,
            first_bad,
            culprit_ranges,
            rate_before,
            rate_after,
            more_than_one_change,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn observed(failures: u64, runs: u64) -> Position {
        Position::Observed { failures, runs }
    }

    const NOT_RUN: Position = Position::Missing(MissingReason::NotRun);
    const BUILD_FAILED: Position = Position::Missing(MissingReason::BuildFailed);
    const ABSENT: Position = Position::Missing(MissingReason::Absent);

    fn posterior(positions: &[Position]) -> ChangePosterior {
        change_posterior(positions, &ChangeModel::default()).unwrap()
    }

    #[test]
    fn the_one_change_posterior_is_the_full_one_without_the_check() {
        let positions = [
            observed(0, 40),
            ABSENT,
            observed(0, 30),
            observed(9, 30),
            NOT_RUN,
        ];
        let full = posterior(&positions);
        let one = one_change_posterior(&positions, &ChangeModel::default()).unwrap();
        assert_eq!(one.first_bad, full.first_bad);
        assert_eq!(one.no_change, full.no_change);
        assert_eq!(one.culprit_ranges, full.culprit_ranges);
        assert!(one.more_than_one_change.is_nan());
    }

    fn total(posterior: &ChangePosterior) -> f64 {
        posterior.no_change + posterior.first_bad.iter().sum::<f64>()
    }

    /// Brute force over every k with the textbook formula, for comparison.
    fn brute_force(positions: &[Position], model: &ChangeModel) -> (f64, Vec<f64>) {
        let observable: Vec<usize> = (0..positions.len())
            .filter(|&i| positions[i].is_observable())
            .collect();
        let eligible: Vec<usize> = (0..positions.len())
            .filter(|&k| observable.iter().any(|&o| o < k) && observable.iter().any(|&o| o >= k))
            .collect();
        let pooled = |range: std::ops::Range<usize>| {
            positions[range].iter().fold((0, 0), |(f, r), p| {
                let (pf, pr) = p.counts();
                (f + pf, r + pr)
            })
        };
        let ln_ml = |(f, r): (u64, u64)| model.rate_prior.ln_marginal_likelihood(f, r);
        let n = positions.len();
        let ln_none = model.no_change_prior.ln() + ln_ml(pooled(0..n));
        let mut ln_weights = vec![f64::NEG_INFINITY; n];
        for &k in &eligible {
            ln_weights[k] = ((1.0 - model.no_change_prior) / eligible.len() as f64).ln()
                + ln_ml(pooled(0..k))
                + ln_ml(pooled(k..n));
        }
        let max = ln_weights.iter().copied().fold(ln_none, f64::max);
        let none = (ln_none - max).exp();
        let weights: Vec<f64> = ln_weights.iter().map(|l| (l - max).exp()).collect();
        let sum = none + weights.iter().sum::<f64>();
        (none / sum, weights.iter().map(|w| w / sum).collect())
    }

    #[test]
    fn matches_brute_force() {
        let positions = [
            observed(0, 10),
            NOT_RUN,
            BUILD_FAILED,
            observed(1, 20),
            observed(0, 5),
            NOT_RUN,
            observed(4, 12),
            ABSENT,
            observed(3, 9),
        ];
        let model = ChangeModel::default();
        let fast = posterior(&positions);
        let (none, first_bad) = brute_force(&positions, &model);
        assert!((fast.no_change - none).abs() < 1e-12);
        for (a, b) in fast.first_bad.iter().zip(&first_bad) {
            assert!(
                (a - b).abs() < 1e-12,
                "{:?} vs {:?}",
                fast.first_bad,
                first_bad
            );
        }
    }

    #[test]
    fn planted_change_with_lots_of_data_is_found() {
        let mut positions = vec![observed(10, 1000); 30];
        for position in positions.iter_mut().skip(17) {
            *position = observed(50, 1000);
        }
        let result = posterior(&positions);
        let best = result.most_likely_culprit().unwrap();
        assert_eq!((best.first, best.last), (17, 17));
        assert!(best.probability > 0.99, "{best:?}");
        assert!(result.no_change < 1e-6);
        assert!((result.rate_before.mean() - 0.01).abs() < 0.002);
        assert!((result.rate_after.mean() - 0.05).abs() < 0.005);
        assert!(
            result.more_than_one_change < 0.05,
            "{}",
            result.more_than_one_change
        );
    }

    #[test]
    fn no_change_data_gives_high_no_change() {
        let positions = vec![observed(20, 1000); 50];
        let result = posterior(&positions);
        assert!(result.no_change > 0.95, "{}", result.no_change);
        assert!(result.more_than_one_change < 0.01);
    }

    #[test]
    fn two_changes_are_flagged() {
        let mut positions = vec![observed(0, 500); 40];
        for position in &mut positions[10..20] {
            *position = observed(100, 500);
        }
        for position in &mut positions[30..] {
            *position = observed(100, 500);
        }
        let result = posterior(&positions);
        assert!(
            result.more_than_one_change > 0.99,
            "{}",
            result.more_than_one_change
        );
    }

    #[test]
    fn missing_positions_form_ranges_with_the_next_observable_one() {
        let mut positions = vec![observed(0, 300); 5];
        positions.extend([BUILD_FAILED, ABSENT]);
        positions.extend(vec![observed(60, 300); 5]);
        let result = posterior(&positions);
        let best = result.most_likely_culprit().unwrap();
        assert_eq!((best.first, best.last), (5, 7));
        assert!(best.probability > 0.99);
        // The mass is shared by the three positions, each with its prior share.
        assert!((result.first_bad[5] - result.first_bad[7]).abs() < 1e-12);
        assert_eq!(result.culprit_range(6), Some(best));
        // Position 0 can hold no change: nothing observable before it.
        assert_eq!(result.first_bad[0], 0.0);
        assert_eq!(result.culprit_range(0), None);
    }

    #[test]
    fn nothing_observable_means_no_change_can_be_seen() {
        let result = posterior(&[ABSENT, observed(1, 2), BUILD_FAILED]);
        assert_eq!(result.no_change, 1.0);
        assert!(result.culprit_ranges.is_empty());
        assert_eq!(result.most_likely_culprit(), None);
        let empty = posterior(&[]);
        assert_eq!(empty.no_change, 1.0);
        assert!(empty.first_bad.is_empty());
    }

    #[test]
    fn failures_above_runs_are_an_error() {
        let error = change_posterior(&[observed(3, 2)], &ChangeModel::default());
        assert!(matches!(
            error,
            Err(StatsError::FailuresAboveRuns { position: 0, .. })
        ));
        let bad_model = ChangeModel {
            no_change_prior: 1.0,
            ..ChangeModel::default()
        };
        assert!(change_posterior(&[NOT_RUN], &bad_model).is_err());
    }

    fn position_strategy() -> impl Strategy<Value = Position> {
        prop_oneof![
            4 => (0u64..20, 0u64..40).prop_map(|(f, extra)| observed(f, f + extra)),
            3 => Just(NOT_RUN),
            1 => Just(BUILD_FAILED),
            1 => Just(ABSENT),
        ]
    }

    proptest! {
        #[test]
        fn planted_change_anywhere_is_found(k in 1usize..40, before in 0u64..20) {
            // `before` failures per 1,000 runs before k, 60 per 1,000 from k on.
            let positions: Vec<Position> = (0..40)
                .map(|i| if i < k { observed(before, 1000) } else { observed(60, 1000) })
                .collect();
            let result = posterior(&positions);
            let best = result.most_likely_culprit().unwrap();
            prop_assert_eq!((best.first, best.last), (k, k));
            prop_assert!(best.probability > 0.99, "{:?}", best);
        }

        #[test]
        fn posterior_sums_to_one_and_ranges_hold_all_the_mass(
            positions in prop::collection::vec(position_strategy(), 0..60)
        ) {
            let result = posterior(&positions);
            prop_assert!((total(&result) - 1.0).abs() < 1e-9, "sum {}", total(&result));
            let ranges: f64 = result.culprit_ranges.iter().map(|r| r.probability).sum();
            prop_assert!((ranges + result.no_change - 1.0).abs() < 1e-9);
            for range in &result.culprit_ranges {
                prop_assert!(positions[range.last].is_observable());
                for position in &positions[range.first..range.last] {
                    prop_assert!(!position.is_observable());
                }
            }
            prop_assert!((0.0..=1.0).contains(&result.more_than_one_change));
            let (none, brute) = brute_force(&positions, &ChangeModel::default());
            prop_assert!((none - result.no_change).abs() < 1e-9);
            for (a, b) in result.first_bad.iter().zip(&brute) {
                prop_assert!((a - b).abs() < 1e-9);
            }
        }
    }
}
