//! Bayesian statistics of failure rates, for finding the commit that made a test flaky
//! (issue 15). Pure functions of counts: no I/O, no clock, no randomness.
//!
//! - [`posterior`]: the Beta-Binomial posterior of one failure rate (a test or a test case),
//!   its credible interval and the call "not enough runs to tell".
//! - [`change_point`]: where along a branch's first-parent history the failure rate
//!   changed, as a posterior over the first position with the new rate, with an explicit
//!   "no change" and a check for more than one change.
//! - [`hunt`]: the flake-hunt planner: which runs to start next to find that position, and
//!   when to stop.
//!
//! The models, priors, formulas and stopping rules are documented for users and
//! maintainers in `docs/statistics.md`. (The Wilson interval that the pages show today is
//! [`crate::scheduling::stats`], which this module does not replace.)

pub mod change_point;
pub mod hunt;
pub mod posterior;

pub use change_point::{
    change_posterior, ChangeModel, ChangePosterior, CulpritRange, MissingReason, Position,
};
pub use hunt::{next_step, HuntOutcome, HuntSettings, HuntStep};
pub use posterior::{CallRule, RateCall, RatePosterior, RatePrior};

/// Invalid input to a statistics function.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("a Beta prior needs finite, positive parameters, got Beta({alpha}, {beta})")]
    InvalidPrior { alpha: f64, beta: f64 },
    #[error("{0} is not a probability in the allowed range")]
    InvalidProbability(f64),
    #[error("a call rule needs max_width > 0 and 0 <= tolerated_rate < 0.5")]
    InvalidCallRule,
    #[error("position {position} has {failures} failures among {runs} runs")]
    FailuresAboveRuns {
        position: usize,
        failures: u64,
        runs: u64,
    },
    #[error("the batch size must be at least 1")]
    EmptyBatch,
}
