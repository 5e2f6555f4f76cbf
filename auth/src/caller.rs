//! [`Caller`]: who is making a request, however they proved it (nobody, a session cookie, a
//! bearer token). The server's extractor builds one per request; authorization
//! ([`Caller::authorize`]), the CSRF rule ([`Caller::needs_csrf`]) and audit records
//! ([`Caller::audit`]) read it.

use crate::audit::{AuditEvent, CallerKind};
use crate::roles::{authorize, Access, AuthMode, Denied, Role};
use crate::session::SessionUser;
use crate::tokens::TokenCaller;

/// The caller of one request.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    /// A logged-in browser session (cookie).
    Session(Box<SessionUser>),
    /// `Authorization: Bearer` with a personal or static token.
    Token(TokenCaller),
}

impl Caller {
    /// The caller's role; `None` for anonymous callers.
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Anonymous => None,
            Caller::Session(user) => Some(user.role),
            Caller::Token(token) => Some(token.role),
        }
    }

    /// Whether this caller may perform `access` under `mode`.
    pub fn authorize(&self, mode: AuthMode, access: Access) -> Result<(), Denied> {
        authorize(mode, self.role(), access)
    }

    /// Whether a state-changing request from this caller must carry the session's CSRF
    /// token: only cookie sessions do (a bearer token is not sent by browsers on their own,
    /// and an anonymous call has nothing to forge).
    pub fn needs_csrf(&self) -> bool {
        matches!(self, Caller::Session(_))
    }

    /// A stable key for the caller (`provider:subject`, `static:<name>`), if any.
    pub fn who(&self) -> Option<String> {
        match self {
            Caller::Anonymous => None,
            Caller::Session(user) => Some(user.identity.key()),
            Caller::Token(token) => Some(token.who.clone()),
        }
    }

    /// An audit record of `action` by this caller (add the IP, object and outcome).
    pub fn audit(&self, action: impl Into<String>) -> AuditEvent {
        let event = AuditEvent::new(action);
        match self {
            Caller::Anonymous => event,
            Caller::Session(user) => {
                event.person(CallerKind::Session, &user.identity, Some(user.role))
            }
            Caller::Token(token) => {
                let mut event = event.caller(token.kind, token.who.clone(), Some(token.role));
                event.login = Some(token.login.clone());
                match &token.token_id {
                    Some(id) => event.token_id(id.clone()),
                    None => event,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::Identity;
    use crate::session::SessionConfig;

    #[test]
    fn roles_csrf_and_audit_per_kind_of_caller() {
        let user = SessionUser::new(
            Identity {
                provider: "corp".into(),
                subject: "u-1".into(),
                login: "alice".into(),
                ..Identity::default()
            },
            Role::Operator,
            &SessionConfig::default(),
            chrono::Utc::now(),
        );
        let session = Caller::Session(Box::new(user));
        let token = Caller::Token(TokenCaller {
            kind: CallerKind::ApiToken,
            who: "corp:u-1".into(),
            login: "alice".into(),
            token_id: Some("0011223344556677".into()),
            token_name: "ci".into(),
            role: Role::Viewer,
        });
        assert!(session.needs_csrf() && !token.needs_csrf() && !Caller::Anonymous.needs_csrf());
        assert_eq!(
            Caller::Anonymous.authorize(AuthMode::Full, Access::Read),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(session.authorize(AuthMode::Full, Access::Act), Ok(()));
        assert_eq!(
            token.authorize(AuthMode::Write, Access::Act),
            Err(Denied::Forbidden {
                needed: Role::Operator
            })
        );
        let event = token.audit("commit.cancel");
        assert_eq!(event.caller_kind, CallerKind::ApiToken);
        assert_eq!(event.who.as_deref(), Some("corp:u-1"));
        assert_eq!(event.token_id.as_deref(), Some("0011223344556677"));
        assert_eq!(event.role, Some(Role::Viewer));
        assert_eq!(session.audit("login").login.as_deref(), Some("alice"));
        assert_eq!(Caller::Anonymous.audit("x").who, None);
    }
}
