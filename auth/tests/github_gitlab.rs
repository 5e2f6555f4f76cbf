//! GitHub and GitLab logins against the stand-in in `support/standin.rs`, which checks the
//! client secret, the redirect URI, PKCE S256 and single-use codes as the real services do.

mod support;

use support::standin::{Kind, StandIn, User, CLIENT_ID, CLIENT_SECRET};
use test_looper_auth::config::{GithubConfig, GitlabConfig, ProviderConfig};
use test_looper_auth::login::http_client;
use test_looper_auth::{
    LoginError, LoginProvider, PendingLogin, Role, RoleRule, RoleRules, Secret,
};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/auth/callback";

fn alice() -> User {
    User {
        id: 1001,
        login: "alice".into(),
        name: "Alice Example".into(),
        orgs: vec!["acme".into(), "other".into()],
        teams: vec![("acme".into(), "ci-operators".into())],
        groups: vec!["acme".into(), "acme/platform".into()],
    }
}

fn many_orgs() -> User {
    User {
        id: 1002,
        login: "bob".into(),
        name: "Bob".into(),
        orgs: (0..230).map(|i| format!("org{i}")).collect(),
        teams: Vec::new(),
        groups: Vec::new(),
    }
}

async fn github(standin: &StandIn, secret: &str) -> LoginProvider {
    let config = ProviderConfig::Github(GithubConfig {
        name: "github".into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(secret),
        github_url: Url::parse(&standin.url).unwrap(),
        api_url: None,
    });
    LoginProvider::new(&config, http_client()).await.unwrap()
}

async fn gitlab(standin: &StandIn) -> LoginProvider {
    let config = ProviderConfig::Gitlab(GitlabConfig {
        name: "gitlab".into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        gitlab_url: Url::parse(&standin.url).unwrap(),
        scopes: vec!["read_user".into(), "read_api".into()],
    });
    LoginProvider::new(&config, http_client()).await.unwrap()
}

/// What a browser does: follow the authorize URL to the provider, which redirects back to
/// the redirect URI; returns that callback's query.
async fn browse(authorize_url: &Url) -> std::collections::HashMap<String, String> {
    let response = http_client()
        .get(authorize_url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302, "{}", response.text().await.unwrap());
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(REDIRECT), "{location}");
    Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn start_and_browse(provider: &LoginProvider) -> (PendingLogin, String, String) {
    let (url, pending) = provider.start(REDIRECT).unwrap();
    let query = browse(&url).await;
    (pending, query["code"].clone(), query["state"].clone())
}

#[tokio::test]
async fn github_login_reads_user_orgs_and_teams() {
    let standin = StandIn::start(Kind::Github, REDIRECT, vec![alice()]).await;
    standin.login_as("alice");
    let provider = github(&standin, CLIENT_SECRET).await;
    let (url, pending) = provider.start(REDIRECT).unwrap();
    let scope: String = url
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .unwrap()
        .1
        .into();
    assert_eq!(scope, "read:user user:email read:org");
    let query = browse(&url).await;
    let identity = provider
        .finish(pending, &query["code"], &query["state"])
        .await
        .unwrap();
    assert_eq!(identity.provider, "github");
    assert_eq!(identity.subject, "1001");
    assert_eq!(identity.login, "alice");
    assert_eq!(identity.name.as_deref(), Some("Alice Example"));
    assert_eq!(identity.orgs, vec!["acme", "other"]);
    assert_eq!(identity.teams, vec!["acme/ci-operators"]);

    let mut team = RoleRule::new(Role::Operator);
    team.team = Some("acme/ci-operators".into());
    let mut org = RoleRule::new(Role::Viewer);
    org.org = Some("acme".into());
    assert_eq!(
        RoleRules(vec![org, team]).role_for(&identity),
        Some(Role::Operator)
    );
    // GitHub Enterprise layout: the API lives under /api/v3.
    assert!(standin
        .requests()
        .contains(&"GET /api/v3/user/teams".to_string()));
}

#[tokio::test]
async fn github_orgs_are_read_across_pages() {
    let standin = StandIn::start(Kind::Github, REDIRECT, vec![many_orgs()]).await;
    standin.login_as("bob");
    let provider = github(&standin, CLIENT_SECRET).await;
    let (pending, code, state) = start_and_browse(&provider).await;
    let identity = provider.finish(pending, &code, &state).await.unwrap();
    assert_eq!(identity.orgs.len(), 230);
    assert_eq!(identity.orgs.last().unwrap(), "org229");
}

#[tokio::test]
async fn github_wrong_client_secret_is_a_clear_error() {
    let standin = StandIn::start(Kind::Github, REDIRECT, vec![alice()]).await;
    standin.login_as("alice");
    let provider = github(&standin, "not-the-secret").await;
    let (pending, code, state) = start_and_browse(&provider).await;
    let err = provider.finish(pending, &code, &state).await.unwrap_err();
    assert!(matches!(err, LoginError::TokenExchange(_)), "{err}");
    assert!(
        err.to_string().contains("incorrect_client_credentials"),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
}

#[tokio::test]
async fn github_pkce_verifier_must_match_the_challenge() {
    let standin = StandIn::start(Kind::Github, REDIRECT, vec![alice()]).await;
    standin.login_as("alice");
    let provider = github(&standin, CLIENT_SECRET).await;
    let (mut pending, code, state) = start_and_browse(&provider).await;
    let (_, other) = provider.start(REDIRECT).unwrap();
    pending.pkce_verifier = other.pkce_verifier;
    let err = provider.finish(pending, &code, &state).await.unwrap_err();
    assert!(
        err.to_string().contains("PKCE verification failed"),
        "{err}"
    );
}

#[tokio::test]
async fn github_code_is_single_use_and_state_is_checked() {
    let standin = StandIn::start(Kind::Github, REDIRECT, vec![alice()]).await;
    standin.login_as("alice");
    let provider = github(&standin, CLIENT_SECRET).await;
    let (pending, code, state) = start_and_browse(&provider).await;
    let err = provider
        .finish(pending.clone(), &code, "forged")
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::StateMismatch), "{err}");
    provider
        .finish(pending.clone(), &code, &state)
        .await
        .unwrap();
    let err = provider.finish(pending, &code, &state).await.unwrap_err();
    assert!(err.to_string().contains("bad_verification_code"), "{err}");
}

#[tokio::test]
async fn expired_pending_login_is_refused_before_redeeming() {
    let standin = StandIn::start(Kind::Github, REDIRECT, vec![alice()]).await;
    standin.login_as("alice");
    let provider = github(&standin, CLIENT_SECRET).await;
    let (mut pending, code, state) = start_and_browse(&provider).await;
    pending.created -= chrono::Duration::minutes(11);
    let err = provider.finish(pending, &code, &state).await.unwrap_err();
    assert!(matches!(err, LoginError::Expired { .. }), "{err}");
    assert!(!standin
        .requests()
        .iter()
        .any(|r| r.contains("access_token")));
}

#[tokio::test]
async fn gitlab_login_reads_user_and_member_groups_only() {
    let standin = StandIn::start(Kind::Gitlab, REDIRECT, vec![alice()]).await;
    standin.login_as("alice");
    let provider = gitlab(&standin).await;
    let (url, pending) = provider.start(REDIRECT).unwrap();
    let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["scope"], "read_user read_api");
    assert_eq!(query["response_type"], "code");
    let callback = browse(&url).await;
    let identity = provider
        .finish(pending, &callback["code"], &callback["state"])
        .await
        .unwrap();
    assert_eq!(identity.provider, "gitlab");
    assert_eq!(identity.subject, "1001");
    assert_eq!(identity.login, "alice");
    assert_eq!(identity.email.as_deref(), Some("alice@example.com"));
    assert_eq!(identity.groups, vec!["acme", "acme/platform"]);
    let mut rule = RoleRule::new(Role::Admin);
    rule.group = Some("acme/platform".into());
    assert_eq!(RoleRules(vec![rule]).role_for(&identity), Some(Role::Admin));
}

#[tokio::test]
async fn gitlab_replayed_code_and_wrong_provider_are_refused() {
    let standin = StandIn::start(Kind::Gitlab, REDIRECT, vec![alice()]).await;
    standin.login_as("alice");
    let provider = gitlab(&standin).await;
    let (pending, code, state) = start_and_browse(&provider).await;
    let github_standin = StandIn::start(Kind::Github, REDIRECT, vec![alice()]).await;
    let other = github(&github_standin, CLIENT_SECRET).await;
    let err = other
        .finish(pending.clone(), &code, &state)
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::WrongProvider { .. }), "{err}");
    provider
        .finish(pending.clone(), &code, &state)
        .await
        .unwrap();
    let err = provider.finish(pending, &code, &state).await.unwrap_err();
    assert!(matches!(err, LoginError::TokenExchange(_)), "{err}");
    assert!(err.to_string().contains("bad_verification_code"), "{err}");
}
