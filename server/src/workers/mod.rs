//! The server side of the worker channel.
//!
//! - `GET /api/worker/socket`: the websocket a worker daemon keeps open (one JSON message per
//!   text frame, [`test_looper_core::protocol`] types), authenticated by the bearer token
//!   `auth.worker_token` (without a configured token only loopback peers are accepted).
//!   Every message is applied to the [`Scheduler`]; feed events addressed to the machine
//!   (cancellations, "work available") are pushed to it.
//! - `GET /api/worker/source?repo=&commit=&path=`: the source tarball of a commit (same auth).
//! - Live logs: [`logs`] keeps each run's log in Redis ([`logs::read_from`] by byte offset).
//!
//! The hub is attached to the scheduler once it is running ([`WorkerHub::attach`]); until then
//! workers get 503 and retry.

mod auth;
pub mod logs;
mod socket;
mod sources;

use crate::scheduler::Scheduler;
use crate::AppContext;
use actix_web::{web, HttpRequest, HttpResponse};
use std::sync::{Arc, OnceLock};

/// What the worker endpoints share.
#[derive(Default)]
pub struct WorkerHub {
    scheduler: OnceLock<Arc<Scheduler>>,
}

impl WorkerHub {
    /// Connects the hub to the running scheduler (once).
    pub fn attach(&self, scheduler: Arc<Scheduler>) {
        if self.scheduler.set(scheduler).is_err() {
            tracing::warn!("worker hub already attached to a scheduler");
        }
    }

    pub fn scheduler(&self) -> Option<&Arc<Scheduler>> {
        self.scheduler.get()
    }
}

/// Registers the worker routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/worker/socket", web::get().to(socket::worker_socket))
        .route("/api/worker/source", web::get().to(sources::source_tarball));
}

/// Rejects requests without the worker token.
pub(crate) fn check_auth(context: &AppContext, req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
    auth::check(context.config.auth.worker_token.as_deref(), req)
}
