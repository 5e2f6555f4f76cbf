//! `test_looper_auth`: who may look at and act on a test-looper server.
//!
//! This crate owns the pieces of authentication and authorization that do not depend on the
//! web framework, so that each one can be tested against real components:
//!
//! - [`config`]: the `auth:` section (mode, login providers, role rules, static tokens,
//!   session lifetime, rate limits) and its validation;
//! - [`roles`]: roles, identities, role rules, and the mode policy ([`roles::authorize`]);
//! - [`login`]: the authorization-code flow with PKCE and `state` (and `nonce` for OpenID
//!   Connect) for GitHub, GitLab and any OpenID Connect provider;
//! - [`tokens`]: personal API tokens in Redis and static tokens from the config;
//! - [`session`]: what a logged-in session holds, and its per-session CSRF token;
//! - [`caller`]: who makes a request (anonymous, session, token), for authorization, CSRF
//!   and audit;
//! - [`audit`]: one audit record, serialized as one JSON line;
//! - [`rate_limit`]: keyed rate limits per client and category;
//! - [`secret`]: a string that never shows in `Debug` output or logs.
//!
//! The server wires these into its routes, session store and audit log; see
//! `docs/authentication.md` for what is enforced today.

pub mod audit;
pub mod caller;
pub mod config;
pub mod login;
pub mod rate_limit;
pub mod roles;
pub mod secret;
pub mod session;
pub mod tokens;

pub use audit::{AuditEvent, AuditOutcome, CallerKind};
pub use caller::Caller;
pub use config::{AuthConfig, ConfigError, ProviderConfig};
pub use login::{LoginError, LoginProvider, PendingLogin};
pub use rate_limit::{Category, Limited, RateLimiter};
pub use roles::{
    authorize, required_role, Access, AuthMode, Denied, Identity, Role, RoleRule, RoleRules,
};
pub use secret::Secret;
pub use session::SessionUser;
pub use tokens::{NewToken, TokenCaller, TokenError, TokenInfo, TokenStore};
