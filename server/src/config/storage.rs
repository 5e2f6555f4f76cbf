//! The sections that bound what the install stores and runs (review findings M2, M6, L6):
//! `logs` (the live log cap), `retention` (what is cleaned up, how often) and `deployments`
//! (caps and time limits), with their defaults and their validation.

use super::{invalid, ConfigError};
use serde::Deserialize;

/// Live run logs in Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Bytes of one run's live log kept in Redis; past it the log ends with a notice (the
    /// full log is the run's `test_looper_log.txt` artifact).
    #[serde(default = "default_live_log_max_bytes")]
    pub live_log_max_bytes: u64,
}

impl Default for LogsSection {
    fn default() -> Self {
        LogsSection {
            live_log_max_bytes: default_live_log_max_bytes(),
        }
    }
}

/// What is removed, and how often the server looks. A `*_days` key that is absent (or `null`)
/// keeps that kind of data forever.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Minutes between two clean-ups (the first one runs a minute after the start).
    #[serde(default = "default_retention_interval_minutes")]
    pub interval_minutes: u64,
    /// Days a live log stays in Redis after its last line.
    #[serde(default = "default_live_log_days")]
    pub live_log_days: u32,
    /// Days a run's artifacts and stored log are kept (`runs/…` in the artifact store), and
    /// build outputs no shown commit needs (`builds/…`).
    #[serde(default)]
    pub artifact_days: Option<u32>,
    /// Days a run's result record is kept once no shown commit uses its test: records of tests
    /// of commits still reachable from a branch are kept whatever their age.
    #[serde(default)]
    pub result_days: Option<u32>,
    /// Days an ended deployment's record is kept (counted from its boot).
    #[serde(default = "default_ended_deployment_days")]
    pub ended_deployment_days: Option<u32>,
    /// Size budget of the source tarball cache (`<data_dir>/tarballs`); the least recently
    /// used tarballs are removed past it.
    #[serde(default = "default_tarball_cache_max_bytes")]
    pub tarball_cache_max_bytes: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            interval_minutes: default_retention_interval_minutes(),
            live_log_days: default_live_log_days(),
            artifact_days: None,
            result_days: None,
            ended_deployment_days: default_ended_deployment_days(),
            tarball_cache_max_bytes: default_tarball_cache_max_bytes(),
        }
    }
}

/// Caps and time limits of interactive deployments; 0 means "no cap" / "no limit".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentsSection {
    /// Live deployments on the whole install; boots past it are refused (409).
    #[serde(default = "default_max_live")]
    pub max_live: u32,
    /// Live deployments of one definition (test hash).
    #[serde(default = "default_max_live_per_test")]
    pub max_live_per_test: u32,
    /// A deployment no browser terminal has been attached to for this long is shut down.
    #[serde(default = "default_idle_minutes")]
    pub idle_minutes: u64,
    /// A deployment is shut down this long after its boot.
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: u64,
}

impl Default for DeploymentsSection {
    fn default() -> Self {
        DeploymentsSection {
            max_live: default_max_live(),
            max_live_per_test: default_max_live_per_test(),
            idle_minutes: default_idle_minutes(),
            max_age_hours: default_max_age_hours(),
        }
    }
}

/// The largest live log cap: Redis strings stop at 512 MiB.
const MAX_LIVE_LOG_BYTES: u64 = 256 * 1024 * 1024;
/// The smallest live log cap (room for the notice and a useful start).
const MIN_LIVE_LOG_BYTES: u64 = 4 * 1024;

/// Checks the `logs`, `retention` and `deployments` sections.
pub(super) fn validate_storage_limits(
    logs: &LogsSection,
    retention: &RetentionSection,
) -> Result<(), ConfigError> {
    if !(MIN_LIVE_LOG_BYTES..=MAX_LIVE_LOG_BYTES).contains(&logs.live_log_max_bytes) {
        return Err(invalid(
            "logs",
            format!(
                "live_log_max_bytes {} must be between {MIN_LIVE_LOG_BYTES} and {MAX_LIVE_LOG_BYTES}",
                logs.live_log_max_bytes
            ),
        ));
    }
    if retention.interval_minutes == 0 {
        return Err(invalid(
            "retention",
            "interval_minutes must be at least 1".into(),
        ));
    }
    if retention.live_log_days == 0 {
        return Err(invalid(
            "retention",
            "live_log_days must be at least 1".into(),
        ));
    }
    for (key, days) in [
        ("artifact_days", retention.artifact_days),
        ("result_days", retention.result_days),
        ("ended_deployment_days", retention.ended_deployment_days),
    ] {
        if days == Some(0) {
            return Err(invalid(
                "retention",
                format!("{key} must be at least 1 (leave it out to keep forever)"),
            ));
        }
    }
    Ok(())
}

fn default_live_log_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_retention_interval_minutes() -> u64 {
    360
}
fn default_live_log_days() -> u32 {
    7
}
fn default_ended_deployment_days() -> Option<u32> {
    Some(7)
}
fn default_tarball_cache_max_bytes() -> u64 {
    4 * 1024 * 1024 * 1024
}
fn default_max_live() -> u32 {
    8
}
fn default_max_live_per_test() -> u32 {
    2
}
fn default_idle_minutes() -> u64 {
    120
}
fn default_max_age_hours() -> u64 {
    24
}

/// Statistics settings: when tests enter and leave quarantine on their own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatisticsSection {
    #[serde(default)]
    pub quarantine: QuarantineSection,
}

/// The automatic quarantine rule (see `docs/statistics.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineSection {
    /// Quarantine and release tests automatically (off: only by hand).
    #[serde(default)]
    pub automatic: bool,
    /// The failure rate above which a test is flaky enough to quarantine.
    #[serde(default = "default_quarantine_threshold")]
    pub threshold: f64,
    /// The posterior probability the rule needs, to enter and to leave.
    #[serde(default = "default_quarantine_probability")]
    pub probability: f64,
}

impl Default for QuarantineSection {
    fn default() -> Self {
        QuarantineSection {
            automatic: false,
            threshold: default_quarantine_threshold(),
            probability: default_quarantine_probability(),
        }
    }
}

fn default_quarantine_threshold() -> f64 {
    0.05
}

fn default_quarantine_probability() -> f64 {
    0.95
}

impl QuarantineSection {
    /// The engine's policy, or why the values are out of range.
    pub fn policy(&self) -> Result<test_looper_core::scheduling::QuarantinePolicy, String> {
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!(
                "statistics.quarantine.threshold must be in (0, 1), not {}",
                self.threshold
            ));
        }
        if !(self.probability >= 0.5 && self.probability < 1.0) {
            return Err(format!(
                "statistics.quarantine.probability must be in [0.5, 1), not {}",
                self.probability
            ));
        }
        Ok(test_looper_core::scheduling::QuarantinePolicy {
            automatic: self.automatic,
            threshold: self.threshold,
            probability: self.probability,
        })
    }
}
