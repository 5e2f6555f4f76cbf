//! test-looper server library: configuration, HTTP app, Redis state and source-control access.
//!
//! The binary in `main.rs` is a thin shell around [`run_server`].

pub mod api;
pub mod config;
pub mod deployments;
pub mod git;
pub mod http;
pub mod machines;
pub mod redis_state;
pub mod retention;
pub mod scheduler;
pub mod scm;
pub mod services;
pub mod state;
pub mod webhooks;
pub mod workers;

use anyhow::Context;
use std::sync::Arc;

/// Everything request handlers share.
pub struct AppContext {
    pub config: config::Config,
    pub redis: redis_state::RedisHandle,
    /// Repo store, history, scans and their events (see [`git::GitService`]).
    pub git: Arc<git::GitService>,
    /// The worker channel (attached to the scheduler once it runs).
    pub workers: workers::WorkerHub,
    /// Deployments' terminal streams between workers and browsers.
    pub deployments: deployments::TerminalHub,
    /// Webhook deliveries handled recently (replays are refused).
    pub webhook_deliveries: webhooks::RecentDeliveries,
    /// The scheduler, once [`services::start`] has opened it.
    pub scheduler: std::sync::OnceLock<Arc<scheduler::Scheduler>>,
    /// The artifact store, once [`services::start`] has opened it.
    pub artifacts: std::sync::OnceLock<Arc<dyn test_looper_artifacts::ArtifactStore>>,
}

impl AppContext {
    /// Builds the shared context from a validated configuration (connects to nothing yet).
    pub fn new(config: config::Config) -> anyhow::Result<Arc<Self>> {
        let redis = redis_state::RedisHandle::new(&config.redis.url).with_context(|| {
            format!(
                "invalid redis url {}",
                config::redact_userinfo(&config.redis.url)
            )
        })?;
        let git = git::GitService::from_config(&config);
        let workers = workers::WorkerHub::new(config.auth.worker_token.as_deref());
        Ok(Arc::new(Self {
            config,
            redis,
            git,
            workers,
            deployments: deployments::TerminalHub::default(),
            webhook_deliveries: webhooks::RecentDeliveries::default(),
            scheduler: std::sync::OnceLock::new(),
            artifacts: std::sync::OnceLock::new(),
        }))
    }
}

/// Starts the HTTP server on the configured address and serves until it is stopped.
pub async fn run_server(config: config::Config) -> anyhow::Result<()> {
    let bind = (config.server.bind.clone(), config.server.http_port);
    let context = AppContext::new(config)?;
    let (server, addrs) = http::start(context.clone(), bind)?;
    tracing::info!(?addrs, "test-looper server listening");
    let own_url = services::own_url(&addrs);
    // Scheduler, git feed, artifact store and machine pool; retried until Redis answers.
    actix_web::rt::spawn(services::run_in_background(context, own_url));
    server.await?;
    Ok(())
}
