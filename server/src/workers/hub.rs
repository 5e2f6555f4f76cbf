//! What the worker endpoints share, held by the [`crate::AppContext`]: the worker token and
//! the live sessions (one per connected machine).

use super::auth::{WorkerCredential, WorkerToken};
use super::machine_tokens::MachineTokens;
use super::sessions::LiveSessions;
use actix_web::{HttpRequest, HttpResponse};
use std::sync::{Arc, OnceLock};

/// What the worker endpoints share.
pub struct WorkerHub {
    token: WorkerToken,
    /// Set by the EC2 pool: its machines connect with tokens bound to their instance ids.
    machine_tokens: OnceLock<Arc<MachineTokens>>,
    pub(super) sessions: LiveSessions,
}

impl WorkerHub {
    /// A hub accepting the configured token, or a random one drawn now when none is given.
    pub fn new(configured_token: Option<&str>) -> Self {
        WorkerHub {
            token: WorkerToken::from_config(configured_token),
            machine_tokens: OnceLock::new(),
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

    /// Accepts machine tokens from now on (the EC2 pool, once).
    pub fn accept_machine_tokens(&self, tokens: Arc<MachineTokens>) {
        let _ = self.machine_tokens.set(tokens);
    }

    /// Rejects browser requests and requests without the worker token or a valid machine
    /// token; says which of the two was presented.
    pub(super) fn check(
        &self,
        req: &HttpRequest,
        now: test_looper_core::protocol::Millis,
    ) -> Result<WorkerCredential, Box<HttpResponse>> {
        self.token
            .check(req, self.machine_tokens.get().map(|t| (&**t, now)))
    }
}
