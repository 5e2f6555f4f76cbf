//! The `auth:` configuration section, meant to be embedded by the server as is, and its
//! validation ([`AuthConfig::validate`]), which names the offending key in every message.

use crate::rate_limit::RateLimitConfig;
use crate::roles::{AuthMode, Role, RoleRules};
use crate::secret::Secret;
use crate::session::SessionConfig;
use serde::{Deserialize, Serialize};
use url::Url;

/// `auth:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub mode: AuthMode,
    /// Where people log in. Each entry is one of `github:`, `gitlab:` or `oidc:`.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Who gets which role; someone no rule matches cannot log in.
    #[serde(default)]
    pub roles: RoleRules,
    /// Tokens for automation, stored as SHA-256 hashes.
    #[serde(default)]
    pub static_tokens: Vec<StaticToken>,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    /// The shared secret workers present when they connect. Checked by the server (this
    /// crate does not use it); here so that this struct can be the whole `auth:` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_token: Option<Secret>,
}

/// One login provider: in YAML, a map with one key, `github:`, `gitlab:` or `oidc:`.
///
/// (De)serialized by hand as that one-key map, because serde_norway, the server's YAML
/// parser, would otherwise expect a `!github` tag.
#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Github(GithubConfig),
    Gitlab(GitlabConfig),
    Oidc(OidcConfig),
}

const PROVIDER_KINDS: &[&str] = &["github", "gitlab", "oidc"];

impl<'de> Deserialize<'de> for ProviderConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneKey;
        impl<'de> serde::de::Visitor<'de> for OneKey {
            type Value = ProviderConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map with one key: `github`, `gitlab` or `oidc`")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let kind: String = map.next_key()?.ok_or_else(|| {
                    A::Error::custom("a provider needs one key: `github`, `gitlab` or `oidc`")
                })?;
                let provider = match kind.as_str() {
                    "github" => ProviderConfig::Github(map.next_value()?),
                    "gitlab" => ProviderConfig::Gitlab(map.next_value()?),
                    "oidc" => ProviderConfig::Oidc(map.next_value()?),
                    other => return Err(A::Error::unknown_variant(other, PROVIDER_KINDS)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(A::Error::custom(format!(
                        "one provider per list entry: `{kind}` and `{extra}` are in the same entry"
                    )));
                }
                Ok(provider)
            }
        }
        deserializer.deserialize_map(OneKey)
    }
}

impl Serialize for ProviderConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            ProviderConfig::Github(c) => map.serialize_entry("github", c)?,
            ProviderConfig::Gitlab(c) => map.serialize_entry("gitlab", c)?,
            ProviderConfig::Oidc(c) => map.serialize_entry("oidc", c)?,
        }
        map.end()
    }
}

impl ProviderConfig {
    /// The provider's name: what rules, identities and the login URL use.
    pub fn name(&self) -> &str {
        match self {
            ProviderConfig::Github(c) => &c.name,
            ProviderConfig::Gitlab(c) => &c.name,
            ProviderConfig::Oidc(c) => &c.name,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Github(_) => "github",
            ProviderConfig::Gitlab(_) => "gitlab",
            ProviderConfig::Oidc(_) => "oidc",
        }
    }
}

fn default_github_name() -> String {
    "github".into()
}

fn default_gitlab_name() -> String {
    "gitlab".into()
}

fn default_github_url() -> Url {
    Url::parse("https://github.com").expect("valid url")
}

fn default_gitlab_scopes() -> Vec<String> {
    vec!["read_user".into(), "read_api".into()]
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

/// A GitHub (or GitHub Enterprise Server) OAuth app.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    #[serde(default = "default_github_name")]
    pub name: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// `https://github.com`, or a GitHub Enterprise Server's address.
    #[serde(default = "default_github_url")]
    pub github_url: Url,
    /// The REST API base; defaults to `https://api.github.com` for github.com and to
    /// `<github_url>/api/v3` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<Url>,
}

impl GithubConfig {
    /// The REST API base, without a trailing slash.
    pub fn api_base(&self) -> String {
        match &self.api_url {
            Some(url) => url.as_str().trim_end_matches('/').to_string(),
            None if self.github_url.host_str() == Some("github.com") => {
                "https://api.github.com".to_string()
            }
            None => format!("{}/api/v3", self.github_url.as_str().trim_end_matches('/')),
        }
    }
}

/// A GitLab (gitlab.com or self-managed) OAuth application.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabConfig {
    #[serde(default = "default_gitlab_name")]
    pub name: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// `https://gitlab.com` or a self-managed instance.
    pub gitlab_url: Url,
    /// Scopes asked for; `read_api` is needed to list the person's groups.
    #[serde(default = "default_gitlab_scopes")]
    pub scopes: Vec<String>,
}

/// Any OpenID Connect provider, found through discovery (Keycloak, Dex, Google, Azure AD,
/// GitLab as an OIDC provider, ...).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub name: String,
    /// The issuer, exactly as the provider's discovery document spells its `issuer` (a
    /// trailing slash matters, so this is kept as written);
    /// `<issuer_url>/.well-known/openid-configuration` must answer.
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Scopes asked for (`openid` is always sent).
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The claim (in the ID token or from userinfo) that lists the person's groups, e.g.
    /// `groups`; without it, `group:` rules cannot match on this provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
}

/// A token for automation. The config holds only its SHA-256 (hex), so that the file does
/// not hold the token; make one with `tl_$(openssl rand -hex 32)` and
/// `printf %s "$token" | sha256sum`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    pub name: String,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
    pub role: Role,
}

/// One invalid key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The dotted key, e.g. `auth.providers[0].github.client_id`.
    pub key: String,
    pub message: String,
}

struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn check_url(errors: &mut Errors, key: &str, url: &Url) {
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(url) => {}
        "http" => errors.push(
            key,
            format!("`{url}` is plain http: codes and tokens would cross the network in clear; use https"),
        ),
        other => errors.push(key, format!("`{url}`: scheme `{other}` is not http(s)")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        errors.push(key, format!("`{url}` must not have a query or fragment"));
    }
}

fn check_name(errors: &mut Errors, key: &str, name: &str) {
    let valid = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        errors.push(
            key,
            format!("`{name}` must be 1 to 40 characters of a-z, 0-9, `-` and `_` (it appears in the login URL)"),
        );
    }
}

fn check_client(errors: &mut Errors, base: &str, client_id: &str, client_secret: &Secret) {
    if client_id.trim().is_empty() {
        errors.push(format!("{base}.client_id"), "must not be empty");
    }
    if client_secret.expose().trim().is_empty() {
        errors.push(format!("{base}.client_secret"), "must not be empty");
    }
}

impl AuthConfig {
    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name() == name)
    }

    /// Every problem with this section, or `Ok` when it may run.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Errors(Vec::new());
        self.validate_providers(&mut errors);
        self.validate_roles(&mut errors);
        self.validate_static_tokens(&mut errors);
        self.session
            .validate("auth.session", &mut |k, m| errors.push(k, m));
        self.rate_limits
            .validate("auth.rate_limits", &mut |k, m| errors.push(k, m));
        if self.mode != AuthMode::None && self.providers.is_empty() && self.static_tokens.is_empty()
        {
            errors.push(
                "auth.mode",
                format!(
                    "{:?} needs at least one entry in auth.providers or auth.static_tokens, or nobody could ever act",
                    self.mode
                )
                .to_lowercase(),
            );
        }
        if !self.providers.is_empty() && self.roles.0.is_empty() {
            errors.push(
                "auth.roles",
                "is empty: nobody who logs in would get a role, so every login would be refused",
            );
        }
        if errors.0.is_empty() {
            Ok(())
        } else {
            Err(errors.0)
        }
    }

    fn validate_providers(&self, errors: &mut Errors) {
        for (i, provider) in self.providers.iter().enumerate() {
            let base = format!("auth.providers[{i}].{}", provider.kind());
            check_name(errors, &format!("{base}.name"), provider.name());
            if self.providers[..i]
                .iter()
                .any(|p| p.name() == provider.name())
            {
                errors.push(
                    format!("{base}.name"),
                    format!(
                        "`{}` is used by an earlier provider; give each provider its own name",
                        provider.name()
                    ),
                );
            }
            match provider {
                ProviderConfig::Github(c) => {
                    check_client(errors, &base, &c.client_id, &c.client_secret);
                    check_url(errors, &format!("{base}.github_url"), &c.github_url);
                    if let Some(api) = &c.api_url {
                        check_url(errors, &format!("{base}.api_url"), api);
                    }
                }
                ProviderConfig::Gitlab(c) => {
                    check_client(errors, &base, &c.client_id, &c.client_secret);
                    check_url(errors, &format!("{base}.gitlab_url"), &c.gitlab_url);
                }
                ProviderConfig::Oidc(c) => {
                    check_client(errors, &base, &c.client_id, &c.client_secret);
                    match Url::parse(&c.issuer_url) {
                        Ok(url) => check_url(errors, &format!("{base}.issuer_url"), &url),
                        Err(err) => errors.push(
                            format!("{base}.issuer_url"),
                            format!("`{}` is not a URL: {err}", c.issuer_url),
                        ),
                    }
                    if c.groups_claim
                        .as_deref()
                        .is_some_and(|g| g.trim().is_empty())
                    {
                        errors.push(format!("{base}.groups_claim"), "must not be empty when set");
                    }
                }
            }
        }
    }

    fn validate_roles(&self, errors: &mut Errors) {
        for (i, rule) in self.roles.0.iter().enumerate() {
            let key = format!("auth.roles[{i}]");
            let matchers = [
                rule.org.is_some(),
                rule.team.is_some(),
                rule.group.is_some(),
                !rule.users.is_empty(),
            ];
            match matchers.iter().filter(|m| **m).count() {
                1 => {}
                0 => errors.push(&key, "needs one of `org`, `team`, `group` or `users`"),
                _ => errors.push(
                    &key,
                    "has more than one of `org`, `team`, `group` and `users`; write one rule per matcher",
                ),
            }
            let provider = match &rule.provider {
                Some(name) => match self.provider(name) {
                    Some(p) => Some(p),
                    None => {
                        errors.push(
                            format!("{key}.provider"),
                            format!("no provider is named `{name}`"),
                        );
                        continue;
                    }
                },
                None if self.providers.len() > 1 => {
                    errors.push(
                        format!("{key}.provider"),
                        "is required when more than one provider is configured (a name on one provider says nothing about the others)",
                    );
                    continue;
                }
                None => self.providers.first(),
            };
            if let Some(team) = &rule.team {
                let parts: Vec<&str> = team.split('/').collect();
                if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                    errors.push(
                        format!("{key}.team"),
                        format!("`{team}` must be `org/team-slug`"),
                    );
                }
            }
            for (field, value) in [
                ("org", &rule.org),
                ("team", &rule.team),
                ("group", &rule.group),
            ] {
                if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    errors.push(format!("{key}.{field}"), "must not be empty");
                }
            }
            if rule.users.iter().any(|u| u.trim().is_empty()) {
                errors.push(format!("{key}.users"), "must not hold an empty login");
            }
            let Some(provider) = provider else { continue };
            let kind = provider.kind();
            if (rule.org.is_some() || rule.team.is_some()) && kind != "github" {
                errors.push(
                    &key,
                    format!("`org` and `team` rules apply to GitHub providers; `{}` is {kind}: use `group`", provider.name()),
                );
            }
            if rule.group.is_some() {
                match provider {
                    ProviderConfig::Github(_) => errors.push(
                        format!("{key}.group"),
                        format!("`{}` is GitHub: use `org` or `team`", provider.name()),
                    ),
                    ProviderConfig::Oidc(c) if c.groups_claim.is_none() => errors.push(
                        format!("{key}.group"),
                        format!(
                            "provider `{}` has no `groups_claim`, so no group can match",
                            c.name
                        ),
                    ),
                    _ => {}
                }
            }
        }
    }

    fn validate_static_tokens(&self, errors: &mut Errors) {
        for (i, token) in self.static_tokens.iter().enumerate() {
            let key = format!("auth.static_tokens[{i}]");
            if token.name.trim().is_empty() {
                errors.push(format!("{key}.name"), "must not be empty");
            }
            if self.static_tokens[..i].iter().any(|t| t.name == token.name) {
                errors.push(
                    format!("{key}.name"),
                    format!("`{}` is used twice", token.name),
                );
            }
            let hash_ok = token.sha256.len() == 64
                && token
                    .sha256
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
            if !hash_ok {
                errors.push(
                    format!("{key}.sha256"),
                    "must be the 64 lowercase hex digits of the token's SHA-256 (`printf %s \"$token\" | sha256sum`), not the token",
                );
            }
        }
    }
}
