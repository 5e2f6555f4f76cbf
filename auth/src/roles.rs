//! Roles, identities and the mode policy.
//!
//! - [`Role`]: `viewer < operator < admin`.
//! - [`Identity`]: who logged in, with the memberships a provider reported.
//! - [`RoleRules`]: the config's rules; [`RoleRules::role_for`] gives the highest role of every
//!   matching rule, and **no matching rule means no access**: such a person cannot log in.
//! - [`required_role`] and [`authorize`]: what each [`AuthMode`] demands for each kind of
//!   [`Access`], and whether a caller gets it (401 for anonymous, 403 for too low a role).

use serde::{Deserialize, Serialize};

/// How much of the server needs a login (`auth.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Nobody is authenticated: everyone may read and act. For loopback demos only.
    #[default]
    None,
    /// Everyone may read; acting needs a login or a token.
    Write,
    /// Reading needs a login or a token too.
    Full,
}

/// A person's or a token's role. Ordered: `Viewer < Operator < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything (pages, logs, artifacts, the JSON API).
    Viewer,
    /// Acts: enables branches and commits, sets priorities and runs desired, cancels and
    /// restarts runs, boots and uses deployments, updates pins.
    Operator,
    /// Everything, plus the audit log, other people's tokens and deployments.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route does, which decides the role it needs under each mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reads state: pages, logs, artifacts, read-only API calls.
    Read,
    /// Changes state or runs something: the operator actions.
    Act,
    /// Administration: the audit log, everyone's tokens and deployments.
    Admin,
}

impl Access {
    pub const ALL: [Access; 3] = [Access::Read, Access::Act, Access::Admin];
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Nobody is logged in and the call needs someone: HTTP 401.
    #[error("authentication required")]
    Unauthenticated,
    /// The caller's role is too low: HTTP 403.
    #[error("forbidden: this needs the {needed} role")]
    Forbidden { needed: Role },
}

impl Denied {
    /// The HTTP status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            Denied::Unauthenticated => 401,
            Denied::Forbidden { .. } => 403,
        }
    }
}

/// The role `access` needs under `mode`, or `None` when anyone (even anonymous) may.
///
/// | mode  | Read   | Act      | Admin |
/// |-------|--------|----------|-------|
/// | none  | -      | -        | -     |
/// | write | -      | operator | admin |
/// | full  | viewer | operator | admin |
pub fn required_role(mode: AuthMode, access: Access) -> Option<Role> {
    match (mode, access) {
        (AuthMode::None, _) => None,
        (AuthMode::Write, Access::Read) => None,
        (AuthMode::Full, Access::Read) => Some(Role::Viewer),
        (_, Access::Act) => Some(Role::Operator),
        (_, Access::Admin) => Some(Role::Admin),
    }
}

/// Whether a caller with role `caller` (`None`: anonymous) may perform `needed` under `mode`.
///
/// An authenticated caller always has a role: a login whose identity matches no rule is
/// refused at login ([`RoleRules::role_for`] returns `None`), and tokens carry a role.
pub fn authorize(mode: AuthMode, caller: Option<Role>, needed: Access) -> Result<(), Denied> {
    match (required_role(mode, needed), caller) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(Denied::Unauthenticated),
        (Some(role), Some(have)) if have >= role => Ok(()),
        (Some(role), Some(_)) => Err(Denied::Forbidden { needed: role }),
    }
}

/// A person, as a login provider reported them at login.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct Identity {
    /// The configured provider's name (`github`, `gitlab`, or an OIDC provider's `name`).
    pub provider: String,
    /// The provider's stable id for the person (GitHub/GitLab numeric id, OIDC `sub`).
    pub subject: String,
    /// The login shown in pages and matched by `users:` rules (GitHub/GitLab username, OIDC
    /// `preferred_username`, else `email`, else `sub`).
    pub login: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// GitHub organizations the person belongs to (logins).
    #[serde(default)]
    pub orgs: Vec<String>,
    /// GitHub teams, as `org/team-slug`.
    #[serde(default)]
    pub teams: Vec<String>,
    /// GitLab groups (full paths) or the OIDC groups claim.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Identity {
    /// `provider:subject`: the stable key of this person (token owners, audit records).
    pub fn key(&self) -> String {
        format!("{}:{}", self.provider, self.subject)
    }

    /// A name to show: the display name, else the login.
    pub fn display_name(&self) -> &str {
        self.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.login)
    }
}

/// One `auth.roles` entry: gives `role` to everyone matching its one matcher.
///
/// Exactly one of `org`, `team`, `group` and `users` is set (checked by
/// [`crate::config::AuthConfig::validate`]). Names compare ASCII-case-insensitively, as GitHub
/// and GitLab do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    pub role: Role,
    /// The provider this rule applies to (its `name`). Required when more than one provider
    /// is configured, so that `org: acme` on one cannot be claimed on another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// A GitHub organization (login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// A GitHub team, `org/team-slug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// A GitLab group's full path, or a value of an OIDC provider's groups claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Explicit logins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
}

fn contains(list: &[String], wanted: &str) -> bool {
    list.iter().any(|item| item.eq_ignore_ascii_case(wanted))
}

impl RoleRule {
    /// A rule giving `role` that matches nobody yet: set one matcher.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            provider: None,
            org: None,
            team: None,
            group: None,
            users: Vec::new(),
        }
    }

    /// Whether `identity` matches this rule.
    pub fn matches(&self, identity: &Identity) -> bool {
        if let Some(provider) = &self.provider {
            if provider != &identity.provider {
                return false;
            }
        }
        if let Some(org) = &self.org {
            return contains(&identity.orgs, org);
        }
        if let Some(team) = &self.team {
            return contains(&identity.teams, team);
        }
        if let Some(group) = &self.group {
            return contains(&identity.groups, group);
        }
        self.users
            .iter()
            .any(|user| user.eq_ignore_ascii_case(&identity.login))
    }
}

/// The `auth.roles` list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct RoleRules(pub Vec<RoleRule>);

impl RoleRules {
    /// The highest role among the rules `identity` matches; `None` when no rule matches,
    /// which means no access at all (the login is refused).
    pub fn role_for(&self, identity: &Identity) -> Option<Role> {
        self.0
            .iter()
            .filter(|rule| rule.matches(identity))
            .map(|rule| rule.role)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            provider: "github".into(),
            subject: "1".into(),
            login: "Alice".into(),
            orgs: vec!["Acme".into()],
            teams: vec!["acme/ci".into()],
            ..Identity::default()
        }
    }

    fn rule(role: Role) -> RoleRule {
        RoleRule::new(role)
    }

    #[test]
    fn highest_matching_rule_wins_and_no_rule_means_no_access() {
        let rules = RoleRules(vec![
            RoleRule {
                org: Some("acme".into()),
                ..rule(Role::Viewer)
            },
            RoleRule {
                team: Some("ACME/CI".into()),
                ..rule(Role::Operator)
            },
            RoleRule {
                users: vec!["bob".into()],
                ..rule(Role::Admin)
            },
        ]);
        assert_eq!(rules.role_for(&identity()), Some(Role::Operator));
        let bob = Identity {
            login: "bob".into(),
            ..Identity::default()
        };
        assert_eq!(rules.role_for(&bob), Some(Role::Admin));
        let stranger = Identity {
            login: "mallory".into(),
            orgs: vec!["other".into()],
            ..Identity::default()
        };
        assert_eq!(rules.role_for(&stranger), None);
    }

    #[test]
    fn a_rule_bound_to_a_provider_ignores_the_others() {
        let rules = RoleRules(vec![RoleRule {
            provider: Some("gitlab".into()),
            users: vec!["alice".into()],
            ..rule(Role::Admin)
        }]);
        assert_eq!(rules.role_for(&identity()), None);
        let on_gitlab = Identity {
            provider: "gitlab".into(),
            ..identity()
        };
        assert_eq!(rules.role_for(&on_gitlab), Some(Role::Admin));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }
}
