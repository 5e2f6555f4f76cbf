//! What the worker endpoints share, held by the [`crate::AppContext`]: the worker token and
//! the live sessions (one per connected machine).

use super::auth::WorkerToken;
use super::sessions::LiveSessions;
use actix_web::{HttpRequest, HttpResponse};

/// What the worker endpoints share.
pub struct WorkerHub {
    token: WorkerToken,
    pub(super) sessions: LiveSessions,
}

impl WorkerHub {
    /// A hub accepting the configured token, or a random one drawn now when none is given.
    pub fn new(configured_token: Option<&str>) -> Self {
        WorkerHub {
            token: WorkerToken::from_config(configured_token),
            sessions: LiveSessions::default(),
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

    /// Rejects browser requests and requests without the worker token.
    pub(super) fn check(&self, req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
        self.token.check(req)
    }
}
