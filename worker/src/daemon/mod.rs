//! The worker daemon: one websocket session with the server at a time, reconnecting with
//! backoff; the executor runs assignments in the background while the session forwards their
//! log chunks, artifact reports and completion. After a reconnect (or a server restart) the
//! daemon registers again and replays its run: heartbeat, the artifacts, the log with
//! offsets from what the server is known to have (the server keeps only what is new; the
//! worker holds a bounded tail in memory and reads older bytes from the run's log file),
//! and an unacknowledged completion (also resent every heartbeat interval until
//! acknowledged).
//! Deployments are served the same way (`deployments.rs`): heartbeats with the deployment
//! id, terminal output with offsets (its tail resent after a reconnect), input forwarded to
//! the container.

mod deployments;
pub mod http_sources;
pub mod run_log;
mod session;
pub mod state;
pub mod terminal_tail;

use crate::executor::Executor;
use state::WorkerState;
use std::sync::Arc;
use std::time::Duration;
use test_looper_core::protocol::MachineInfo;
#[cfg(doc)]
use test_looper_core::protocol::HEARTBEAT_INTERVAL_SECONDS;
use tokio::sync::Mutex;

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct DaemonSettings {
    /// `ws://host:port/api/worker/socket`
    pub socket_url: String,
    pub token: Option<String>,
    pub machine: MachineInfo,
    /// Exit after this long without work (local pool workers); `None`: never.
    pub idle_exit: Option<Duration>,
    /// Heartbeat interval (also the completion resend interval);
    /// [`HEARTBEAT_INTERVAL_SECONDS`] by default.
    pub heartbeat: Duration,
}

/// Runs the daemon until it is idle for `idle_exit` (or forever).
pub async fn run_daemon(settings: DaemonSettings, executor: Executor) -> anyhow::Result<()> {
    match executor.reap_leftovers().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed containers left by a previous run"),
        Err(error) => tracing::warn!(%error, "could not reap leftover containers"),
    }
    let state = Arc::new(Mutex::new(WorkerState::new(
        settings.machine.cores,
        settings.machine.shares_cores,
    )));
    let executor = Arc::new(executor);
    let mut backoff = Duration::from_millis(200);
    loop {
        match session::run_session(&settings, executor.clone(), state.clone()).await {
            Ok(session::SessionEnd::IdleExit) => {
                tracing::info!("idle: exiting");
                return Ok(());
            }
            Ok(session::SessionEnd::Closed) => {
                tracing::warn!("server closed the connection");
                backoff = Duration::from_millis(200);
            }
            Err(error) => tracing::warn!(%error, "worker session failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
