//! The `auth:` section read from YAML with the server's parser (serde_norway), and its
//! validation messages.

use test_looper_auth::config::{AuthConfig, ProviderConfig};
use test_looper_auth::{AuthMode, Role};

const FULL: &str = r#"
mode: full
providers:
  - github:
      client_id: Iv1.abc
      client_secret: gh-secret
  - github:
      name: ghe
      client_id: Iv1.def
      client_secret: ghe-secret
      github_url: https://github.example.com
  - gitlab:
      client_id: gl-id
      client_secret: gl-secret
      gitlab_url: https://gitlab.example.com
  - oidc:
      name: corp
      issuer_url: https://sso.example.com/realms/eng
      client_id: test-looper
      client_secret: kc-secret
      scopes: [openid, profile, email, groups]
      groups_claim: groups
roles:
  - {role: viewer, provider: github, org: acme}
  - {role: operator, provider: github, team: acme/ci}
  - {role: operator, provider: gitlab, group: acme/platform}
  - {role: admin, provider: corp, group: ci-admins}
  - {role: admin, provider: ghe, users: [alice, bob]}
static_tokens:
  - {name: deploy-bot, role: operator, sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8}
session: {lifetime_minutes: 480}
rate_limits:
  login: {per_minute: 10, burst: 5}
worker_token: 0123456789abcdef0123456789abcdef
"#;

fn parse(text: &str) -> Result<AuthConfig, String> {
    serde_norway::from_str(text).map_err(|e| e.to_string())
}

fn errors(text: &str) -> String {
    let config = parse(text).unwrap();
    config
        .validate()
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_full_section_parses_and_validates() {
    let config = parse(FULL).unwrap();
    config.validate().unwrap();
    assert_eq!(config.mode, AuthMode::Full);
    assert_eq!(config.providers.len(), 4);
    let ProviderConfig::Github(github) = &config.providers[0] else {
        panic!()
    };
    assert_eq!(github.name, "github");
    assert_eq!(github.api_base(), "https://api.github.com");
    let ProviderConfig::Github(ghe) = &config.providers[1] else {
        panic!()
    };
    assert_eq!(ghe.api_base(), "https://github.example.com/api/v3");
    let ProviderConfig::Gitlab(gitlab) = &config.providers[2] else {
        panic!()
    };
    assert_eq!(gitlab.scopes, vec!["read_user", "read_api"]);
    assert_eq!(config.roles.0[4].users, vec!["alice", "bob"]);
    assert_eq!(config.static_tokens[0].role, Role::Operator);
    assert_eq!(config.session.lifetime_minutes, 480);
    assert_eq!(config.rate_limits.login.burst, 5);
    assert_eq!(
        config.rate_limits.action.per_minute, 120,
        "defaults fill the rest"
    );
    // Secrets never reach Debug output.
    let debug = format!("{config:?}");
    for secret in [
        "gh-secret",
        "ghe-secret",
        "gl-secret",
        "kc-secret",
        "0123456789abcdef0123",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn an_empty_section_is_mode_none() {
    let config = parse("{}").unwrap();
    assert_eq!(config.mode, AuthMode::None);
    config.validate().unwrap();
}

#[test]
fn unknown_keys_are_refused() {
    let err = parse(
        "mode: write\nproviders:\n  - github: {client_id: a, client_secret: b, login_url: x}\n",
    )
    .unwrap_err();
    assert!(err.contains("login_url"), "{err}");
    let err = parse("roles:\n  - {role: admin, user: alice}\n").unwrap_err();
    assert!(err.contains("user"), "{err}");
    let err = parse("mode: sometimes\n").unwrap_err();
    assert!(err.contains("sometimes"), "{err}");
    let err = parse("providers:\n  - saml: {}\n").unwrap_err();
    assert!(err.contains("saml"), "{err}");
}

#[test]
fn validation_names_each_key() {
    let text = r#"
mode: write
providers:
  - github: {client_id: "", client_secret: s, github_url: "http://github.example.com"}
  - oidc: {name: Corp!, issuer_url: "not a url", client_id: c, client_secret: s}
  - gitlab: {name: github, client_id: c, client_secret: s, gitlab_url: https://gitlab.example.com}
roles:
  - {role: admin, users: [alice]}
  - {role: viewer, provider: github, org: acme, team: acme/ci}
  - {role: viewer, provider: nowhere, org: acme}
  - {role: viewer, provider: github, team: acme}
  - {role: viewer, provider: github, group: eng}
static_tokens:
  - {name: bot, role: admin, sha256: tl_plaintext_token}
session: {lifetime_minutes: 1}
rate_limits: {webhook: {per_minute: 0, burst: 1}}
"#;
    let errors = errors(text);
    for expected in [
        "auth.providers[0].github.client_id: must not be empty",
        "auth.providers[0].github.github_url: `http://github.example.com/` is plain http",
        "auth.providers[1].oidc.name: `Corp!` must be 1 to 40 characters",
        "auth.providers[1].oidc.issuer_url: `not a url` is not a URL",
        "auth.providers[2].gitlab.name: `github` is used by an earlier provider",
        "auth.roles[0].provider: is required when more than one provider is configured",
        "auth.roles[1]: has more than one of `org`, `team`, `group` and `users`",
        "auth.roles[2].provider: no provider is named `nowhere`",
        "auth.roles[3].team: `acme` must be `org/team-slug`",
        "auth.roles[4].group: `github` is GitHub: use `org` or `team`",
        "auth.static_tokens[0].sha256: must be the 64 lowercase hex digits",
        "auth.session.lifetime_minutes: must be between 5 and 43200",
        "auth.rate_limits.webhook: per_minute and burst must both be at least 1",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
}

#[test]
fn rules_that_cannot_match_are_refused() {
    let oidc_without_groups = r#"
providers:
  - oidc: {name: corp, issuer_url: https://sso.example.com, client_id: c, client_secret: s}
roles:
  - {role: admin, group: admins}
  - {role: admin, org: acme}
"#;
    let found = errors(oidc_without_groups);
    assert!(
        found.contains("auth.roles[0].group: provider `corp` has no `groups_claim`"),
        "{found}"
    );
    assert!(
        found.contains("auth.roles[1]: `org` and `team` rules apply to GitHub providers"),
        "{found}"
    );
    let nobody = errors("mode: full\n");
    assert!(
        nobody.contains("auth.mode: full needs at least one entry"),
        "{nobody}"
    );
    let no_roles = errors("providers:\n  - github: {client_id: c, client_secret: s}\n");
    assert!(no_roles.contains("auth.roles: is empty"), "{no_roles}");
}

#[test]
fn a_section_writes_back_and_reads_again() {
    let config = parse(FULL).unwrap();
    let text = serde_norway::to_string(&config).unwrap();
    assert!(text.contains("- github:"), "{text}");
    let again = parse(&text).unwrap();
    again.validate().unwrap();
    assert_eq!(format!("{again:?}"), format!("{config:?}"));
    let err = parse("providers:\n  - github: {client_id: a, client_secret: b}\n    gitlab: {client_id: a, client_secret: b, gitlab_url: https://g}\n").unwrap_err();
    assert!(err.contains("one provider per list entry"), "{err}");
}
