//! The server side of the worker channel.
//!
//! - `GET /api/worker/socket`: the websocket a worker daemon keeps open (one JSON message per
//!   text frame, [`test_looper_core::protocol`] types), authenticated by the bearer token
//!   ([`auth`]: always required; drawn at start when `auth.worker_token` is absent; requests
//!   from web pages, i.e. with an `Origin`, are refused). A session acts for the one machine
//!   it registered ([`sessions`]) and only on that machine's runs and deployments. Every
//!   message is applied to the [`Scheduler`]; feed events addressed to the machine
//!   (cancellations, "work available") are pushed to it.
//! - `GET /api/worker/source?repo=&commit=&path=`: the source tarball of a commit (same auth).
//! - Live logs: [`crate::logs::intake`] keeps each run's log in Redis.
//!
//! Workers use the context's scheduler ([`crate::AppContext::running_scheduler`]); until it runs
//! workers get 503 and retry.

mod auth;
mod sessions;
mod socket;
mod sources;

use crate::AppContext;
use actix_web::{web, HttpRequest, HttpResponse};

/// What the worker endpoints share.
pub struct WorkerHub {
    token: auth::WorkerToken,
    sessions: sessions::LiveSessions,
}

impl WorkerHub {
    /// A hub accepting the configured token, or a random one drawn now when none is given.
    pub fn new(configured_token: Option<&str>) -> Self {
        WorkerHub {
            token: auth::WorkerToken::from_config(configured_token),
            sessions: sessions::LiveSessions::default(),
        }
    }

    /// The token workers must present (hand it to workers started by this server).
    pub fn token(&self) -> &str {
        self.token.value()
    }

    /// Whether a worker session is connected for `machine_id`.
    pub fn has_live_session(&self, machine_id: &str) -> bool {
        self.sessions.is_live(machine_id)
    }
}

/// Registers the worker routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/worker/socket", web::get().to(socket::worker_socket))
        .route("/api/worker/source", web::get().to(sources::source_tarball));
}

/// Rejects browser requests and requests without the worker token.
pub(crate) fn check_auth(context: &AppContext, req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
    context.workers.token.check(req)
}
