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

pub mod auth;
pub mod hub;
pub mod machine_tokens;
mod sessions;
mod socket;
mod sources;

pub use hub::WorkerHub;

use crate::AppContext;
use actix_web::{HttpRequest, HttpResponse};

/// The worker routes: public to the access guard, authenticated by the worker token.
pub fn routes() -> Vec<crate::web::routes::RouteSpec> {
    use crate::access::Need;
    use crate::web::routes::get;
    vec![
        get("/api/worker/socket", Need::Public, socket::worker_socket),
        get("/api/worker/source", Need::Public, sources::source_tarball),
    ]
}

/// Rejects browser requests and requests without the worker token or a machine token;
/// says which was presented.
pub(crate) fn check_auth(
    context: &AppContext,
    req: &HttpRequest,
) -> Result<auth::WorkerCredential, Box<HttpResponse>> {
    use crate::scheduler::clock::{Clock, SystemClock};
    context.workers.check(req, SystemClock.now())
}
