//! test-looper server library: configuration, HTTP app, Redis state and source-control access.
//!
//! The binary in `main.rs` is a thin shell around [`run_server`]. The layout, outside in:
//!
//! - [`access`]: who may look and act (logins, sessions, tokens, roles, audit log, TLS).
//! - [`web`]: HTTP transport only (routes, the JSON API, actions, CSRF, one error type);
//!   [`webhooks`] and [`workers`] (the worker channel) are the other two audiences.
//! - [`views`]: pure view models of every page, built from [`reads`] (the read side as plain
//!   data: git facts, the scheduler's state, stored files) and kept by [`cache`].
//! - [`logs`]: live run logs, from workers ([`logs::intake`]) to browsers ([`logs::feed`]).
//! - [`scheduler`]: the single-writer service over the pure engine, with its Redis
//!   [`scheduler::store`] and the bridge from git ([`scheduler::ingest`]).
//! - [`git`], [`scm`], [`machines`], [`deployments`], [`retention`]: as named;
//!   [`config`], [`context`] (what handlers share), [`redis_connection`], [`services`]
//!   (starting the background services).

pub mod access;
pub mod cache;
pub mod config;
pub mod context;
pub mod data_dir_secrets;
pub mod deployments;
pub mod git;
pub mod logs;
pub mod machines;
pub mod reads;
pub mod redis_connection;
pub mod retention;
pub mod scheduler;
pub mod scm;
pub mod services;
pub mod views;
pub mod web;
pub mod webhooks;
pub mod workers;

pub use context::AppContext;

/// Starts the HTTP server on the configured address and serves until it is stopped.
pub async fn run_server(config: config::Config) -> anyhow::Result<()> {
    let bind = (config.server.bind.clone(), config.server.http_port);
    let context = AppContext::new(config)?;
    let (server, addrs) = web::start(context.clone(), bind)?;
    tracing::info!(?addrs, "test-looper server listening");
    let own_url = services::own_url(&addrs);
    // Scheduler, git feed, artifact store and machine pool; retried until Redis answers.
    actix_web::rt::spawn(services::run_in_background(context, own_url));
    server.await?;
    Ok(())
}
