//! One audit record ([`AuditEvent`]): who (and how they authenticated), their role, the
//! client IP, the action, its object, the outcome and the time, serialized as one JSON line
//! ([`AuditEvent::to_json_line`]).
//!
//! Keeping records durably (beside the result records, so that they survive a Redis wipe),
//! showing them on `/audit` and filtering them in `/api/audit` are the server's job.

use crate::roles::{Identity, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    Anonymous,
    Session,
    ApiToken,
    StaticToken,
}

/// What came of the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done.
    Ok,
    /// Refused by authorization (401/403), a failed login or token check, or a rate limit.
    Denied,
    /// Allowed but it failed.
    Failed,
}

/// One audit record. Build it with [`AuditEvent::new`] and the setters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AuditEvent {
    pub time: DateTime<Utc>,
    pub caller_kind: CallerKind,
    /// `provider:subject` of a person (a token's owner for an API token), or
    /// `static:<name>` for a static token; absent for anonymous callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who: Option<String>,
    /// The login, for reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// The API token's id (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    /// What was attempted, e.g. `login`, `token.create`, `commit.set_runs_desired`,
    /// `deployment.attach`.
    pub action: String,
    /// What it was attempted on, e.g. a commit, a deployment id, a token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    pub outcome: AuditOutcome,
    /// Why it was denied or failed, in words (never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An anonymous, successful `action` now; refine it with the setters.
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            time: Utc::now(),
            caller_kind: CallerKind::Anonymous,
            who: None,
            login: None,
            token_id: None,
            role: None,
            client_ip: None,
            action: action.into(),
            object: None,
            outcome: AuditOutcome::Ok,
            detail: None,
        }
    }

    /// A logged-in person with `role`.
    pub fn person(mut self, kind: CallerKind, identity: &Identity, role: Option<Role>) -> Self {
        self.caller_kind = kind;
        self.who = Some(identity.key());
        self.login = Some(identity.login.clone());
        self.role = role;
        self
    }

    /// Any caller, given by its parts.
    pub fn caller(mut self, kind: CallerKind, who: impl Into<String>, role: Option<Role>) -> Self {
        self.caller_kind = kind;
        self.who = Some(who.into());
        self.role = role;
        self
    }

    pub fn token_id(mut self, id: impl Into<String>) -> Self {
        self.token_id = Some(id.into());
        self
    }

    pub fn client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    pub fn object(mut self, object: impl Into<String>) -> Self {
        self.object = Some(object.into());
        self
    }

    pub fn outcome(mut self, outcome: AuditOutcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn denied(self, detail: impl Into<String>) -> Self {
        self.outcome(AuditOutcome::Denied).detail(detail)
    }

    pub fn failed(self, detail: impl Into<String>) -> Self {
        self.outcome(AuditOutcome::Failed).detail(detail)
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn at(mut self, time: DateTime<Utc>) -> Self {
        self.time = time;
        self
    }

    /// The record as one line of JSON, ending in `\n` (JSON escapes any newline inside).
    pub fn to_json_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("an audit event always serializes");
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_line_that_reads_back() {
        let identity = Identity {
            provider: "github".into(),
            subject: "42".into(),
            login: "alice".into(),
            ..Identity::default()
        };
        let time = DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .unwrap()
            .to_utc();
        let event = AuditEvent::new("deployment.attach")
            .person(CallerKind::Session, &identity, Some(Role::Operator))
            .client_ip("192.0.2.1".parse().unwrap())
            .object("deployment 7\nwith a newline")
            .denied("not the booter")
            .at(time);
        let line = event.to_json_line();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(
            line,
            concat!(
                r#"{"time":"2026-12-04T10:00:00Z","caller_kind":"session","who":"github:42","login":"alice","#,
                r#""role":"operator","client_ip":"192.0.2.1","action":"deployment.attach","#,
                r#""object":"deployment 7\nwith a newline","outcome":"denied","detail":"not the booter"}"#,
                "\n"
            )
        );
        let back: AuditEvent = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn anonymous_event_is_minimal() {
        let time = DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .unwrap()
            .to_utc();
        let line = AuditEvent::new("login")
            .denied("state mismatch")
            .at(time)
            .to_json_line();
        assert_eq!(
            line,
            "{\"time\":\"2026-12-04T10:00:00Z\",\"caller_kind\":\"anonymous\",\"action\":\"login\",\"outcome\":\"denied\",\"detail\":\"state mismatch\"}\n"
        );
    }
}
