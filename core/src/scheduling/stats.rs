//! Failure-rate statistics: the observed rate of failing runs with a Wilson score interval,
//! so a cell can show "12% (4–31%)" instead of a bare colour, and the verdict over a group of
//! runs (passing, flaky, failing) that every page uses.

use serde::{Deserialize, Serialize};

/// z for a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// A failure rate with its 95% Wilson score interval. All values are in `0.0..=1.0`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct FailureRate {
    pub failures: u64,
    pub runs: u64,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl FailureRate {
    /// The rate of `failures` among `runs` finished runs. With no runs the rate is 0 and the
    /// interval is the whole `[0, 1]`. `failures` above `runs` is clamped.
    pub fn new(failures: u64, runs: u64) -> FailureRate {
        let failures = failures.min(runs);
        if runs == 0 {
            return FailureRate {
                failures,
                runs,
                rate: 0.0,
                low: 0.0,
                high: 1.0,
            };
        }
        let (low, high) = wilson_interval(failures, runs, Z_95);
        FailureRate {
            failures,
            runs,
            rate: failures as f64 / runs as f64,
            low,
            high,
        }
    }
}

impl FailureRate {
    /// The pooled rate of a group (e.g. the tests of one grid cell): the sum of each
    /// member's `(failures, runs)`, each member's failures clamped to its runs.
    pub fn pooled(members: impl IntoIterator<Item = (u64, u64)>) -> FailureRate {
        let (failures, runs) = members.into_iter().fold(
            (0, 0),
            |(failures, runs), (member_failures, member_runs)| {
                (
                    failures + member_failures.min(member_runs),
                    runs + member_runs,
                )
            },
        );
        FailureRate::new(failures, runs)
    }

    /// The verdict over these runs; `None` without runs.
    pub fn verdict(&self) -> Option<Verdict> {
        Verdict::of(self.failures, self.runs)
    }
}

/// How a group of finished runs did: every run passed, some failed, or every run failed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passing,
    Flaky,
    Failing,
}

impl Verdict {
    /// The verdict of `failures` among `runs` finished runs; `None` without runs. `failures`
    /// above `runs` counts as every run failing.
    pub fn of(failures: u64, runs: u64) -> Option<Verdict> {
        if runs == 0 {
            None
        } else if failures == 0 {
            Some(Verdict::Passing)
        } else if failures >= runs {
            Some(Verdict::Failing)
        } else {
            Some(Verdict::Flaky)
        }
    }
}

/// The Wilson score interval for `successes` out of `trials` at normal quantile `z`.
/// `trials == 0` gives `(0, 1)`.
pub fn wilson_interval(successes: u64, trials: u64, z: f64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let n = trials as f64;
    let p = successes.min(trials) as f64 / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z * ((p * (1.0 - p) / n) + z2 / (4.0 * n * n)).sqrt() / denominator;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // 0 of 10: upper bound ~0.2775 (standard table value).
        let (low, high) = wilson_interval(0, 10, Z_95);
        assert!(low.abs() < 1e-12);
        assert!((high - 0.2775).abs() < 1e-3, "{high}");
        // 5 of 10: symmetric around 0.5, ~(0.2366, 0.7634).
        let (low, high) = wilson_interval(5, 10, Z_95);
        assert!((low - 0.2366).abs() < 1e-3, "{low}");
        assert!((high - 0.7634).abs() < 1e-3, "{high}");
    }

    #[test]
    fn verdicts_and_pooled_rates() {
        assert_eq!(Verdict::of(0, 0), None);
        assert_eq!(Verdict::of(0, 4), Some(Verdict::Passing));
        assert_eq!(Verdict::of(1, 4), Some(Verdict::Flaky));
        assert_eq!(Verdict::of(4, 4), Some(Verdict::Failing));
        let rate = FailureRate::pooled([(1, 3), (5, 2), (0, 0)]);
        assert_eq!((rate.failures, rate.runs), (3, 5));
        assert_eq!(rate.verdict(), Some(Verdict::Flaky));
    }

    #[test]
    fn empty_and_clamped() {
        let rate = FailureRate::new(3, 0);
        assert_eq!((rate.low, rate.high, rate.rate), (0.0, 1.0, 0.0));
        let rate = FailureRate::new(12, 10);
        assert_eq!(rate.failures, 10);
        assert!((rate.rate - 1.0).abs() < 1e-12);
    }
}
