//! Time limits of deployments (M6): a deployment no browser terminal has been attached to for
//! `deployments.idle_minutes`, or booted more than `deployments.max_age_hours` ago, is shut
//! down through the normal path (the scheduler ends it, its worker is told to stop, its
//! terminal stream ends), after a line in its terminal saying why. The caps on live
//! deployments are checked by the scheduler when one is booted
//! (`Engine::create_deployment`); [`limits`] turns the configuration into them.

use super::shutdown_with;
use crate::config::DeploymentsSection;
use crate::scheduler::Scheduler;
use crate::AppContext;
use std::sync::Arc;
use std::time::Duration;
use test_looper_core::scheduling::DeploymentLimits;

/// How often the time limits are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The scheduler's caps from the `deployments` section.
pub fn limits(section: &DeploymentsSection) -> DeploymentLimits {
    DeploymentLimits {
        max_live: section.max_live,
        max_live_per_test: section.max_live_per_test,
    }
}

/// Time limits; `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimits {
    pub idle: Option<Duration>,
    pub max_age: Option<Duration>,
}

impl TimeLimits {
    pub fn from_config(section: &DeploymentsSection) -> Self {
        let minutes = |m: u64| (m > 0).then(|| Duration::from_secs(m.saturating_mul(60)));
        TimeLimits {
            idle: minutes(section.idle_minutes),
            max_age: minutes(section.max_age_hours.saturating_mul(60)),
        }
    }
}

/// Why a deployment is over its limits, as its terminal shows it.
fn over_limits(limits: &TimeLimits, idle: Duration, age: Duration) -> Option<String> {
    if let Some(max_age) = limits.max_age.filter(|max| age >= *max) {
        return Some(format!(
            "Shutting down: this deployment reached its maximum age of {} (deployments.max_age_hours).",
            describe(max_age)
        ));
    }
    if let Some(max_idle) = limits.idle.filter(|max| idle >= *max) {
        return Some(format!(
            "Shutting down: no terminal was attached for {} (deployments.idle_minutes).",
            describe(max_idle)
        ));
    }
    None
}

fn describe(duration: Duration) -> String {
    let minutes = duration.as_secs() / 60;
    match minutes {
        0 => format!("{} seconds", duration.as_secs()),
        m if m % 60 == 0 => format!("{} hours", m / 60),
        m => format!("{m} minutes"),
    }
}

/// Shuts down every live deployment past `limits` (age by the scheduler's clock, idleness
/// from the terminal hub); returns the ids shut down.
pub async fn reap_once(
    context: &AppContext,
    scheduler: &Scheduler,
    limits: &TimeLimits,
) -> Vec<String> {
    let now = scheduler.now();
    let alive = scheduler
        .read(|engine| {
            engine
                .deployments()
                .into_iter()
                .filter(|deployment| deployment.alive)
                .map(|deployment| (deployment.deployment_id, deployment.created))
                .collect::<Vec<_>>()
        })
        .await;
    let mut ended = Vec::new();
    for (deployment_id, created) in alive {
        let age = Duration::from_millis(now.saturating_sub(created));
        let idle = context.deployments.idle_for(&deployment_id);
        let Some(reason) = over_limits(limits, idle, age) else {
            continue;
        };
        context.deployments.announce(&deployment_id, &reason);
        match shutdown_with(scheduler, &context.deployments, &deployment_id).await {
            Ok(()) => {
                tracing::info!(%deployment_id, %reason, "deployment reaped");
                ended.push(deployment_id);
            }
            Err(err) => tracing::warn!(%err, %deployment_id, "cannot shut the deployment down"),
        }
    }
    ended
}

/// Checks the time limits every 30 seconds for the life of the server.
pub fn spawn(context: Arc<AppContext>, scheduler: Arc<Scheduler>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let limits = TimeLimits::from_config(&context.config.deployments);
        if limits.idle.is_none() && limits.max_age.is_none() {
            return;
        }
        loop {
            tokio::time::sleep(CHECK_INTERVAL).await;
            reap_once(&context, &scheduler, &limits).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_the_limit_that_was_reached() {
        let limits = TimeLimits {
            idle: Some(Duration::from_secs(120 * 60)),
            max_age: Some(Duration::from_secs(24 * 3600)),
        };
        let minute = Duration::from_secs(60);
        assert_eq!(over_limits(&limits, minute, minute), None);
        let idle = over_limits(&limits, 121 * minute, minute).unwrap();
        assert!(
            idle.contains("no terminal was attached for 2 hours"),
            "{idle}"
        );
        let old = over_limits(&limits, Duration::ZERO, 24 * 60 * minute).unwrap();
        assert!(old.contains("maximum age of 24 hours"), "{old}");
        let none = TimeLimits {
            idle: None,
            max_age: None,
        };
        assert_eq!(over_limits(&none, 1000 * minute, 1000 * minute), None);
    }
}
