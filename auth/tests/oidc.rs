//! OpenID Connect logins against a real provider, `oidc-provider-mock` (PyPI, installed by
//! `deploy/install_deps.sh oidc`), started per test on a free loopback port. The test
//! drives the provider's own authorization page the way a browser does: GET it, check its
//! form, POST the subject, follow the redirect back with `code` and `state`.

mod support;

use serde_json::json;
use std::collections::HashMap;
use support::processes::{oidc_provider, oidc_provider_on, Service};
use test_looper_auth::config::{OidcConfig, ProviderConfig};
use test_looper_auth::login::http_client;
use test_looper_auth::{
    LoginError, LoginProvider, PendingLogin, Role, RoleRule, RoleRules, Secret,
};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/auth/corp/callback";

fn users() -> Vec<serde_json::Value> {
    vec![json!({
        "sub": "u-1",
        "preferred_username": "alice",
        "name": "Alice Example",
        "email": "alice@example.com",
        "groups": ["ci-operators", "engineering"],
    })]
}

fn config(provider: &Service) -> OidcConfig {
    OidcConfig {
        name: "corp".into(),
        issuer_url: format!("http://127.0.0.1:{}", provider.port),
        client_id: "test-looper".into(),
        client_secret: Secret::new("client-secret"),
        scopes: vec!["openid".into(), "profile".into(), "email".into()],
        groups_claim: Some("groups".into()),
    }
}

async fn discover(provider: &Service) -> LoginProvider {
    LoginProvider::new(&ProviderConfig::Oidc(config(provider)), http_client())
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", provider.log()))
}

/// A browser at the provider's authorization page: checks the form, submits `subject`, and
/// returns the query of the redirect back to us.
async fn authorize_as(authorize_url: &Url, subject: &str) -> HashMap<String, String> {
    let browser = http_client();
    let page = browser.get(authorize_url.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\""), "{html}");
    assert!(html.contains("name=\"sub\""), "{html}");
    assert!(
        html.contains(REDIRECT),
        "the page names where it will send us: {html}"
    );
    // The form has no action: it posts back to the page's own URL.
    let response = browser
        .post(authorize_url.clone())
        .form(&[("sub", subject)])
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

async fn login(provider: &LoginProvider, subject: &str) -> (PendingLogin, String, String) {
    let (url, pending) = provider.start(REDIRECT).unwrap();
    let query = authorize_as(&url, subject).await;
    (pending, query["code"].clone(), query["state"].clone())
}

#[tokio::test]
async fn full_login_through_the_providers_page() {
    let mock = oidc_provider(&users());
    let provider = discover(&mock).await;
    let (url, pending) = provider.start(REDIRECT).unwrap();
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert!(url
        .as_str()
        .starts_with(&format!("http://127.0.0.1:{}/oauth2/authorize?", mock.port)));
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["nonce"], pending.nonce.as_ref().unwrap().expose());
    assert_eq!(query["state"], pending.state.expose());
    assert_eq!(query["scope"], "openid profile email");

    let callback = authorize_as(&url, "u-1").await;
    assert_eq!(&callback["state"], pending.state.expose());
    let secrets = [
        callback["code"].clone(),
        pending.state.expose().to_string(),
        pending.pkce_verifier.expose().to_string(),
        pending.nonce.as_ref().unwrap().expose().to_string(),
        "client-secret".to_string(),
    ];
    let logs = support::logs::Captured::default();
    let guard = logs.install();
    let identity = provider
        .finish(pending, &callback["code"], &callback["state"])
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", mock.log()));
    drop(guard);
    assert!(logs.text().contains("login finished"), "{}", logs.text());
    for secret in &secrets {
        assert!(
            !logs.text().contains(secret.as_str()),
            "a secret in the logs: {}",
            logs.text()
        );
    }
    assert_eq!(identity.provider, "corp");
    assert_eq!(identity.subject, "u-1");
    assert_eq!(identity.login, "alice");
    assert_eq!(identity.name.as_deref(), Some("Alice Example"));
    assert_eq!(identity.email.as_deref(), Some("alice@example.com"));
    assert_eq!(identity.groups, vec!["ci-operators", "engineering"]);

    let mut operators = RoleRule::new(Role::Operator);
    operators.group = Some("ci-operators".into());
    let mut admins = RoleRule::new(Role::Admin);
    admins.group = Some("ci-admins".into());
    assert_eq!(
        RoleRules(vec![operators, admins]).role_for(&identity),
        Some(Role::Operator)
    );
}

#[tokio::test]
async fn a_subject_typed_into_the_form_becomes_the_identity() {
    let mock = oidc_provider(&users());
    let provider = discover(&mock).await;
    let (pending, code, state) = login(&provider, "bob@example.com").await;
    let identity = provider.finish(pending, &code, &state).await.unwrap();
    // The provider makes up a user with just an email: login falls back to it.
    assert_eq!(identity.subject, "bob@example.com");
    assert_eq!(identity.login, "bob@example.com");
    assert!(identity.groups.is_empty());
    assert_eq!(
        RoleRules(vec![]).role_for(&identity),
        None,
        "no rule, no access"
    );
}

#[tokio::test]
async fn wrong_state_is_refused() {
    let mock = oidc_provider(&users());
    let provider = discover(&mock).await;
    let (pending, code, _) = login(&provider, "u-1").await;
    let err = provider
        .finish(pending.clone(), &code, "forged-state")
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::StateMismatch), "{err}");
    // A callback meant for another login (its own valid state) is refused as well.
    let (other, _, other_state) = login(&provider, "u-1").await;
    drop(other);
    let err = provider
        .finish(pending, &code, &other_state)
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::StateMismatch), "{err}");
}

#[tokio::test]
async fn a_code_redeems_once() {
    let mock = oidc_provider(&users());
    let provider = discover(&mock).await;
    let (pending, code, state) = login(&provider, "u-1").await;
    provider
        .finish(pending.clone(), &code, &state)
        .await
        .unwrap();
    let err = provider.finish(pending, &code, &state).await.unwrap_err();
    assert!(matches!(err, LoginError::TokenExchange(_)), "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn a_tampered_nonce_fails_id_token_verification() {
    let mock = oidc_provider(&users());
    let provider = discover(&mock).await;
    let (mut pending, code, state) = login(&provider, "u-1").await;
    pending.nonce = Some(Secret::new("not-the-nonce-that-was-sent"));
    let err = provider.finish(pending, &code, &state).await.unwrap_err();
    assert!(matches!(err, LoginError::IdToken(_)), "{err}");
    assert!(err.to_string().to_lowercase().contains("nonce"), "{err}");
}

#[tokio::test]
async fn an_expired_pending_login_is_refused() {
    let mock = oidc_provider(&users());
    let provider = discover(&mock).await;
    let (mut pending, code, state) = login(&provider, "u-1").await;
    pending.created -= chrono::Duration::minutes(30);
    let err = provider.finish(pending, &code, &state).await.unwrap_err();
    assert!(matches!(err, LoginError::Expired { .. }), "{err}");
}

#[tokio::test]
async fn a_code_issued_to_another_client_is_refused() {
    let mock = oidc_provider(&users());
    let provider = discover(&mock).await;
    let (url, pending) = provider.start(REDIRECT).unwrap();
    // The browser is sent with another client's id: the code is that client's. (A correct
    // provider binds codes to clients, so the ID token's audience check cannot be reached
    // here; the openidconnect crate's verifier does it.)
    let forged = Url::parse(
        &url.as_str()
            .replace("client_id=test-looper", "client_id=someone-else"),
    )
    .unwrap();
    let callback = authorize_as(&forged, "u-1").await;
    let err = provider
        .finish(pending, &callback["code"], &callback["state"])
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::TokenExchange(_)), "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn discovery_checks_the_issuer_exactly() {
    let mock = oidc_provider(&users());
    // The provider names itself `http://127.0.0.1:PORT`; a trailing slash is another issuer.
    let mut wrong = config(&mock);
    wrong.issuer_url = format!("http://127.0.0.1:{}/", mock.port);
    let err = LoginProvider::new(&ProviderConfig::Oidc(wrong), http_client())
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::Discovery { .. }), "{err}");
    assert!(err.to_string().contains("issuer"), "{err}");
    let mut down = config(&mock);
    down.issuer_url = format!("http://127.0.0.1:{}", support::processes::free_port());
    let err = LoginProvider::new(&ProviderConfig::Oidc(down), http_client())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("discovery"), "{err}");
}

#[tokio::test]
async fn rotated_signing_keys_are_read_again() {
    let logs = support::logs::Captured::default();
    let _guard = logs.install();
    let mock = oidc_provider(&users());
    let port = mock.port;
    let provider = discover(&mock).await;
    // The provider restarts with new signing keys; our discovery holds the old ones.
    drop(mock);
    let mock = oidc_provider_on(port, &users());
    let (pending, code, state) = login(&provider, "u-1").await;
    let identity = provider
        .finish(pending, &code, &state)
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", mock.log()));
    assert_eq!(identity.login, "alice");
    assert!(
        logs.text().contains("reading the provider's keys again"),
        "{}",
        logs.text()
    );
}
