//! What a logged-in session holds ([`SessionUser`]), its lifetime ([`SessionConfig`]) and its
//! CSRF token (one per session, compared in constant time).
//!
//! The session store itself (actix-session with Redis, cookie flags) belongs to the server;
//! this type is what it keeps in it.

use crate::roles::{Identity, Role};
use crate::secret::{constant_time_eq, Secret};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

fn default_lifetime_minutes() -> u32 {
    12 * 60
}

/// `auth.session`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// How long a login lasts, from the moment it happened (default 720: 12 hours).
    #[serde(default = "default_lifetime_minutes")]
    pub lifetime_minutes: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            lifetime_minutes: default_lifetime_minutes(),
        }
    }
}

impl SessionConfig {
    pub fn lifetime(&self) -> Duration {
        Duration::minutes(i64::from(self.lifetime_minutes))
    }

    pub(crate) fn validate(&self, key: &str, error: &mut dyn FnMut(String, String)) {
        if !(5..=60 * 24 * 30).contains(&self.lifetime_minutes) {
            error(
                format!("{key}.lifetime_minutes"),
                "must be between 5 and 43200 (30 days)".into(),
            );
        }
    }
}

/// 32 random bytes, URL-safe base64 without padding (43 characters): CSRF tokens, `state`.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The logged-in person of one session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionUser {
    pub identity: Identity,
    /// The role given at login by the rules then in force.
    pub role: Role,
    /// This session's CSRF token: forms carry it, and state-changing cookie calls must
    /// present it ([`SessionUser::check_csrf`]). Bearer calls need none.
    pub csrf_token: Secret,
    pub logged_in_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl SessionUser {
    /// A fresh session for `identity`, with a new CSRF token, lasting `config.lifetime()`.
    pub fn new(identity: Identity, role: Role, config: &SessionConfig, now: DateTime<Utc>) -> Self {
        Self {
            identity,
            role,
            csrf_token: Secret::new(random_token()),
            logged_in_at: now,
            expires_at: now + config.lifetime(),
        }
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn check_csrf(&self, presented: &str) -> bool {
        constant_time_eq(self.csrf_token.expose().as_bytes(), presented.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_expires_and_checks_its_own_csrf_token() {
        let now = Utc::now();
        let config = SessionConfig {
            lifetime_minutes: 60,
        };
        let user = SessionUser::new(Identity::default(), Role::Viewer, &config, now);
        let other = SessionUser::new(Identity::default(), Role::Viewer, &config, now);
        assert!(user.check_csrf(user.csrf_token.expose()));
        assert!(!user.check_csrf(other.csrf_token.expose()));
        assert!(!user.check_csrf(""));
        assert!(!user.is_expired(now + Duration::minutes(59)));
        assert!(user.is_expired(now + Duration::minutes(60)));
        assert!(!format!("{user:?}").contains(user.csrf_token.expose()));
        assert_eq!(random_token().len(), 43);
    }
}
