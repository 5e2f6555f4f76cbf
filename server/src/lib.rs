//! test-looper server library: configuration, HTTP app, Redis state and source-control access.
//!
//! The binary in `main.rs` is a thin shell around [`run_server`].

pub mod config;
pub mod http;
pub mod local_repos;
pub mod redis_state;

use anyhow::Context;
use std::sync::Arc;

/// Everything request handlers share.
pub struct AppContext {
    pub config: config::Config,
    pub redis: redis_state::RedisHandle,
}

impl AppContext {
    /// Builds the shared context from a validated configuration (connects to nothing yet).
    pub fn new(config: config::Config) -> anyhow::Result<Arc<Self>> {
        let redis = redis_state::RedisHandle::new(&config.redis.url)
            .with_context(|| format!("invalid redis url {}", config.redis.url))?;
        Ok(Arc::new(Self { config, redis }))
    }
}

/// Starts the HTTP server on the configured address and serves until it is stopped.
pub async fn run_server(config: config::Config) -> anyhow::Result<()> {
    let bind = (config.server.bind.clone(), config.server.http_port);
    let context = AppContext::new(config)?;
    let (server, addrs) = http::start(context, bind)?;
    tracing::info!(?addrs, "test-looper server listening");
    server.await?;
    Ok(())
}
