//! The Beta-Binomial posterior of one failure rate: what `failures` among `runs` say about
//! the probability that the next run fails, with its credible interval, tail probabilities
//! and the call a page shows ("reliable", "flaky", "failing" or "not enough runs to tell").
//!
//! The same type serves a whole test (runs of the test) and one test case (runs in which the
//! case ran, and the ones it failed in): only the counts differ.

use statrs::function::beta::{beta_reg, inv_beta_reg, ln_beta};

use super::StatsError;

/// A Beta(`alpha`, `beta`) prior on a failure rate, in pseudo-counts: `alpha` failures and
/// `beta` passes seen before any run.
///
/// The default is Jeffreys' prior Beta(½, ½): it does not depend on how the rate is
/// parametrised, it adds only one pseudo-run, and its equal-tailed intervals have close to
/// nominal frequentist coverage even for rates near 0 (Brown, Cai & DasGupta 2001, who
/// recommend the Jeffreys interval for binomial proportions). With 0 failures the upper
/// end of the interval stays above 0 (about 2.5/runs), which is what a rare flake needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatePrior {
    alpha: f64,
    beta: f64,
    /// ln B(α, β), kept because every marginal likelihood needs it.
    ln_beta_function: f64,
}

impl RatePrior {
    /// Jeffreys' prior Beta(½, ½).
    pub const JEFFREYS: RatePrior = RatePrior {
        alpha: 0.5,
        beta: 0.5,
        // B(½, ½) = π.
        ln_beta_function: 1.144_729_885_849_400_2,
    };

    /// Beta(0.2, 1), density ∝ p^−0.8: close to log-uniform over the rates flaky tests
    /// have, from 0.01% to 50% (25% of its mass lies below 0.1%, 40% below 1%, 63% below
    /// 10%). The default of the change-point model ([`super::ChangeModel`]), where the
    /// prior decides how much a second rate costs: see `docs/statistics.md`.
    pub const RARE_FAILURES: RatePrior = RatePrior {
        alpha: 0.2,
        beta: 1.0,
        // B(0.2, 1) = 1 / 0.2 = 5.
        ln_beta_function: 1.609_437_912_434_100_3,
    };

    /// A Beta(`alpha`, `beta`) prior; both must be finite and positive.
    pub fn new(alpha: f64, beta: f64) -> Result<RatePrior, StatsError> {
        if !(alpha.is_finite() && beta.is_finite() && alpha > 0.0 && beta > 0.0) {
            return Err(StatsError::InvalidPrior { alpha, beta });
        }
        Ok(RatePrior {
            alpha,
            beta,
            ln_beta_function: ln_beta(alpha, beta),
        })
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// ln of the probability of one particular sequence of `runs` runs with `failures`
    /// failures, the rate integrated over this prior: ln B(α+f, β+r−f) − ln B(α, β).
    /// (The Beta-Binomial marginal likelihood without the binomial coefficient, which is the
    /// same for every model of the same data and cancels in every comparison.)
    pub fn ln_marginal_likelihood(&self, failures: u64, runs: u64) -> f64 {
        if runs == 0 {
            return 0.0;
        }
        let failures = failures.min(runs) as f64;
        let passes = runs as f64 - failures;
        ln_beta(self.alpha + failures, self.beta + passes) - self.ln_beta_function
    }
}

impl Default for RatePrior {
    fn default() -> RatePrior {
        RatePrior::JEFFREYS
    }
}

/// The rule that turns a posterior into a [`RateCall`]. See [`RatePosterior::call`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallRule {
    /// Credible level of the interval the call uses (default 0.95).
    pub level: f64,
    /// An interval wider than this is "not enough runs to tell" (default 0.10, ten
    /// percentage points): the rate is not pinned down well enough to show.
    pub max_width: f64,
    /// Rates up to this count as reliable (default 0.01: one failure in a hundred runs).
    /// A rate at least `1 − tolerated_rate` counts as failing.
    pub tolerated_rate: f64,
}

impl Default for CallRule {
    fn default() -> CallRule {
        CallRule {
            level: 0.95,
            max_width: 0.10,
            tolerated_rate: 0.01,
        }
    }
}

/// What the runs say about a test (or a test case), under a [`CallRule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateCall {
    /// Not enough runs to tell: the interval is wider than `max_width`, or it straddles
    /// `tolerated_rate` (it could be reliable, it could be flaky).
    NotEnoughRuns,
    /// The whole interval is at or below `tolerated_rate`.
    Reliable,
    /// The interval lies above `tolerated_rate` and does not reach `1 − tolerated_rate`
    /// with its lower end: it fails sometimes.
    Flaky,
    /// The interval's lower end is at or above `1 − tolerated_rate`: it (almost) always fails.
    Failing,
}

/// The posterior Beta(α + failures, β + passes) of a failure rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatePosterior {
    failures: u64,
    runs: u64,
    prior: RatePrior,
}

impl RatePosterior {
    /// The posterior after `failures` among `runs` runs. `failures` above `runs` is clamped
    /// to `runs`. With no runs it is the prior.
    pub fn new(failures: u64, runs: u64, prior: RatePrior) -> RatePosterior {
        RatePosterior {
            failures: failures.min(runs),
            runs,
            prior,
        }
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }

    pub fn runs(&self) -> u64 {
        self.runs
    }

    pub fn prior(&self) -> RatePrior {
        self.prior
    }

    /// α of the posterior Beta: prior α plus failures.
    pub fn alpha(&self) -> f64 {
        self.prior.alpha + self.failures as f64
    }

    /// β of the posterior Beta: prior β plus passes.
    pub fn beta(&self) -> f64 {
        self.prior.beta + (self.runs - self.failures) as f64
    }

    /// The posterior mean α / (α + β): the probability that the next run fails.
    pub fn mean(&self) -> f64 {
        self.alpha() / (self.alpha() + self.beta())
    }

    /// The rate below which the posterior puts probability `p` (the Beta inverse CDF).
    pub fn quantile(&self, p: f64) -> Result<f64, StatsError> {
        if !(0.0..=1.0).contains(&p) {
            return Err(StatsError::InvalidProbability(p));
        }
        Ok(inv_beta_reg(self.alpha(), self.beta(), p).clamp(0.0, 1.0))
    }

    /// The equal-tailed credible interval at `level` (e.g. 0.95: the 2.5% and 97.5%
    /// quantiles), `level` in `(0, 1)`.
    pub fn credible_interval(&self, level: f64) -> Result<(f64, f64), StatsError> {
        if !(level > 0.0 && level < 1.0) {
            return Err(StatsError::InvalidProbability(level));
        }
        let tail = (1.0 - level) / 2.0;
        Ok((self.quantile(tail)?, self.quantile(1.0 - tail)?))
    }

    /// The 95% equal-tailed credible interval.
    pub fn interval_95(&self) -> (f64, f64) {
        // 0.95 is a valid level: this cannot fail.
        self.credible_interval(0.95).unwrap_or((0.0, 1.0))
    }

    /// P(rate > `threshold`) under the posterior; 1 below 0 and 0 at or above 1.
    pub fn prob_above(&self, threshold: f64) -> f64 {
        if threshold.is_nan() {
            return f64::NAN;
        }
        if threshold <= 0.0 {
            return 1.0;
        }
        if threshold >= 1.0 {
            return 0.0;
        }
        (1.0 - beta_reg(self.alpha(), self.beta(), threshold)).clamp(0.0, 1.0)
    }

    /// The call under `rule`, in this order: an interval wider than `max_width` is
    /// [`RateCall::NotEnoughRuns`]; an upper end at or below `tolerated_rate` is
    /// [`RateCall::Reliable`]; a lower end at or above `1 − tolerated_rate` is
    /// [`RateCall::Failing`]; a lower end above `tolerated_rate` is [`RateCall::Flaky`];
    /// anything else straddles `tolerated_rate` and is [`RateCall::NotEnoughRuns`].
    pub fn call(&self, rule: &CallRule) -> Result<RateCall, StatsError> {
        if !(rule.max_width > 0.0 && rule.tolerated_rate >= 0.0 && rule.tolerated_rate < 0.5) {
            return Err(StatsError::InvalidCallRule);
        }
        let (low, high) = self.credible_interval(rule.level)?;
        Ok(if high - low > rule.max_width {
            RateCall::NotEnoughRuns
        } else if high <= rule.tolerated_rate {
            RateCall::Reliable
        } else if low >= 1.0 - rule.tolerated_rate {
            RateCall::Failing
        } else if low > rule.tolerated_rate {
            RateCall::Flaky
        } else {
            RateCall::NotEnoughRuns
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(actual: f64, expected: f64, relative: f64) {
        assert!(
            (actual - expected).abs() <= relative * expected.abs(),
            "{actual} is not within {relative} of {expected}"
        );
    }

    /// Reference quantiles computed with mpmath (40 digits, bisection on `betainc`).
    #[test]
    fn inverse_cdf_matches_reference_values() {
        let cases = [
            (0.5, 0.5, 0.975, 0.998_458_666_866_564),
            (0.5, 100.5, 0.975, 0.024_745_270_015_269_89),
            (0.5, 100.5, 0.025, 4.898_073_104_397_485e-6),
            (5.5, 95.5, 0.025, 0.019_331_811_985_866_74),
            (5.5, 95.5, 0.975, 0.106_100_073_883_103),
            (2.5, 997.5, 0.975, 0.006_406_890_905_166_394),
            (0.5, 1000.5, 0.975, 0.002_508_164_341_422_297),
            (50.5, 50.5, 0.025, 0.403_173_950_896_418),
            (1.5, 9.5, 0.5, 0.114_346_919_247_134_3),
        ];
        for (alpha, beta, p, expected) in cases {
            let prior = RatePrior::new(alpha, beta).unwrap();
            let posterior = RatePosterior::new(0, 0, prior);
            close(posterior.quantile(p).unwrap(), expected, 1e-9);
        }
        // Jeffreys is the arcsine distribution: F⁻¹(p) = sin²(πp/2).
        let jeffreys = RatePosterior::new(0, 0, RatePrior::JEFFREYS);
        for p in [0.01, 0.2, 0.5, 0.9] {
            let expected = (std::f64::consts::PI * p / 2.0).sin().powi(2);
            close(jeffreys.quantile(p).unwrap(), expected, 1e-10);
        }
    }

    /// Reference tail probabilities from mpmath.
    #[test]
    fn prob_above_matches_reference_values() {
        // 0 failures in 100 runs, Jeffreys: P(rate > 1%).
        close(
            RatePosterior::new(0, 100, RatePrior::JEFFREYS).prob_above(0.01),
            0.155_740_720_164_306_06,
            1e-9,
        );
        close(
            RatePosterior::new(5, 100, RatePrior::JEFFREYS).prob_above(0.02),
            0.971_385_966_490_043_2,
            1e-9,
        );
        close(
            RatePosterior::new(2, 999, RatePrior::JEFFREYS).prob_above(0.001),
            0.849_491_078_621_514_9,
            1e-9,
        );
        let posterior = RatePosterior::new(3, 10, RatePrior::JEFFREYS);
        assert_eq!(posterior.prob_above(0.0), 1.0);
        assert_eq!(posterior.prob_above(1.0), 0.0);
    }

    #[test]
    fn mean_is_the_next_run_failure_probability() {
        let posterior = RatePosterior::new(3, 10, RatePrior::JEFFREYS);
        close(posterior.mean(), 3.5 / 11.0, 1e-15);
        // Failures above runs are clamped.
        assert_eq!(
            RatePosterior::new(12, 10, RatePrior::JEFFREYS).failures(),
            10
        );
    }

    #[test]
    fn calls() {
        let rule = CallRule::default();
        let call = |f, r| {
            RatePosterior::new(f, r, RatePrior::JEFFREYS)
                .call(&rule)
                .unwrap()
        };
        assert_eq!(call(0, 5), RateCall::NotEnoughRuns);
        assert_eq!(call(0, 1000), RateCall::Reliable);
        assert_eq!(call(0, 50), RateCall::NotEnoughRuns); // could still be 2%
        assert_eq!(call(100, 1000), RateCall::Flaky);
        assert_eq!(call(1000, 1000), RateCall::Failing);
        assert_eq!(call(5, 10), RateCall::NotEnoughRuns); // too wide
        let bad = CallRule {
            max_width: 0.0,
            ..rule
        };
        assert!(RatePosterior::new(0, 1, RatePrior::JEFFREYS)
            .call(&bad)
            .is_err());
    }

    #[test]
    fn prior_constants_match_their_parameters() {
        for prior in [RatePrior::JEFFREYS, RatePrior::RARE_FAILURES] {
            let computed = RatePrior::new(prior.alpha, prior.beta).unwrap();
            assert!((computed.ln_beta_function - prior.ln_beta_function).abs() < 1e-14);
        }
        assert!((RatePrior::JEFFREYS.ln_marginal_likelihood(1, 1) - 0.5f64.ln()).abs() < 1e-14);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        assert!(RatePrior::new(0.0, 1.0).is_err());
        assert!(RatePrior::new(1.0, f64::NAN).is_err());
        let posterior = RatePosterior::new(1, 2, RatePrior::JEFFREYS);
        assert!(posterior.quantile(1.5).is_err());
        assert!(posterior.credible_interval(1.0).is_err());
    }

    proptest! {
        #[test]
        fn interval_contains_the_mean_and_shrinks_with_more_runs(
            runs in 1u64..2_000,
            failure_permille in 0u64..=1000,
            factor in 2u64..20,
        ) {
            let failures = runs * failure_permille / 1000;
            let small = RatePosterior::new(failures, runs, RatePrior::JEFFREYS);
            let (low, high) = small.interval_95();
            prop_assert!(0.0 <= low && low <= small.mean() && small.mean() <= high && high <= 1.0);
            // The same rate seen over `factor` times as many runs.
            let large = RatePosterior::new(failures * factor, runs * factor, RatePrior::JEFFREYS);
            let (large_low, large_high) = large.interval_95();
            prop_assert!(large_high - large_low < high - low,
                "{large_low}..{large_high} is not narrower than {low}..{high}");
        }

        #[test]
        fn quantile_inverts_the_cdf(failures in 0u64..200, passes in 0u64..2_000, p in 0.001f64..0.999) {
            let posterior = RatePosterior::new(failures, failures + passes, RatePrior::JEFFREYS);
            let x = posterior.quantile(p).unwrap();
            let cdf = 1.0 - posterior.prob_above(x);
            prop_assert!((cdf - p).abs() < 1e-7, "cdf({x}) = {cdf}, expected {p}");
        }
    }
}
