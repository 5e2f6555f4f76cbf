//! What request handlers share: the one [`AppContext`] per server, built from the validated
//! configuration before anything is connected; the scheduler and the artifact store join it
//! once [`crate::services::start`] has opened them.
//!
//! Until then the server serves anyway: this is the one place that says whether the scheduler
//! runs ([`AppContext::running_scheduler`]); reads show git facts only, and actions, API
//! calls and workers that need the scheduler are answered 503 with [`NotStarted`]'s words.

use anyhow::Context;
use std::sync::Arc;

/// Everything request handlers share.
pub struct AppContext {
    pub config: crate::config::Config,
    pub redis: crate::redis_connection::RedisHandle,
    /// Repo store, history, scans and their events (see [`crate::git::GitService`]).
    pub git: Arc<crate::git::GitService>,
    /// The worker channel (attached to the scheduler once it runs).
    pub workers: crate::workers::hub::WorkerHub,
    /// Deployments' terminal streams between workers and browsers.
    pub deployments: crate::deployments::TerminalHub,
    /// Webhook deliveries handled recently (replays are refused).
    pub webhook_deliveries: crate::webhooks::deliveries::RecentDeliveries,
    /// The scheduler, once [`crate::services::start`] has opened it.
    pub scheduler: std::sync::OnceLock<Arc<crate::scheduler::Scheduler>>,
    /// The artifact store, once [`crate::services::start`] has opened it.
    pub artifacts: std::sync::OnceLock<Arc<dyn test_looper_artifacts::ArtifactStore>>,
    /// Who may look and act: logins, tokens, rate limits, the audit log.
    pub access: crate::access::AccessControl,
    /// The EC2 pool's status, once it runs (`/machines`).
    pub ec2_pool: std::sync::OnceLock<Arc<crate::machines::ec2::status::StatusBoard>>,
}

/// The scheduler has not started yet (the services retry until Redis answers).
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the scheduler has not started yet (is Redis reachable?)")]
pub struct NotStarted;

impl AppContext {
    /// The scheduler, once [`crate::services::start`] has opened it.
    pub fn running_scheduler(&self) -> Result<&Arc<crate::scheduler::Scheduler>, NotStarted> {
        self.scheduler.get().ok_or(NotStarted)
    }

    /// Builds the shared context from a validated configuration (connects to nothing yet).
    pub fn new(config: crate::config::Config) -> anyhow::Result<Arc<Self>> {
        let redis =
            crate::redis_connection::RedisHandle::new(&config.redis.url).with_context(|| {
                format!(
                    "invalid redis url {}",
                    crate::config::redact_userinfo(&config.redis.url)
                )
            })?;
        let git = crate::git::GitService::from_config(&config);
        let workers = crate::workers::hub::WorkerHub::new(
            config
                .auth
                .worker_token
                .as_ref()
                .map(|token| token.expose()),
        );
        let access = crate::access::AccessControl::from_config(&config);
        Ok(Arc::new(Self {
            access,
            ec2_pool: std::sync::OnceLock::new(),
            config,
            redis,
            git,
            workers,
            deployments: crate::deployments::TerminalHub::default(),
            webhook_deliveries: crate::webhooks::deliveries::RecentDeliveries::default(),
            scheduler: std::sync::OnceLock::new(),
            artifacts: std::sync::OnceLock::new(),
        }))
    }
}
