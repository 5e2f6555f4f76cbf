//! A server with authentication on: its real services over a fresh Redis, a real OpenID
//! Connect provider (`corp`) with four people, and three static tokens; plus logging in as a
//! browser would, over HTTP.

#![allow(dead_code)]

use serde_json::json;
use std::sync::Arc;
use test_looper_auth::tokens::token_sha256;
use test_looper_auth::AuthMode;
use test_looper_server::services::{self, Services};
use test_looper_server::AppContext;
use test_looper_tests::oidc_provider::OidcProvider;
use test_looper_tests::ports::free_loopback_port;
use test_looper_tests::RedisServer;

/// The people of the provider and the role the rules give them.
pub const PEOPLE: [(&str, Option<&str>); 4] = [
    ("alice", Some("viewer")),
    ("olga", Some("operator")),
    ("adam", Some("admin")),
    ("mallory", None),
];

/// The static tokens, by role.
pub fn static_token(role: &str) -> String {
    format!("tl_static-{role}-token-for-tests-0123456789abcdef")
}

pub struct AuthServer {
    pub base_url: String,
    pub context: Arc<AppContext>,
    pub provider: OidcProvider,
    pub services: Services,
    pub redis: RedisServer,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

fn users() -> Vec<serde_json::Value> {
    vec![
        json!({"sub": "alice", "preferred_username": "alice", "name": "Alice Viewer", "groups": ["engineering"]}),
        json!({"sub": "olga", "preferred_username": "olga", "name": "Olga Operator", "groups": ["engineering", "ci-operators"]}),
        json!({"sub": "adam", "preferred_username": "adam", "name": "Adam Admin", "groups": []}),
        json!({"sub": "mallory", "preferred_username": "mallory", "name": "Mallory", "groups": ["outsiders"]}),
    ]
}

/// The `auth:` section of these tests (rate limits as given).
pub fn auth_section(mode: AuthMode, issuer: &str, limits: serde_json::Value) -> serde_json::Value {
    let tokens: Vec<serde_json::Value> = ["viewer", "operator", "admin"]
        .iter()
        .map(|role| json!({"name": format!("bot-{role}"), "role": role, "sha256": token_sha256(&static_token(role))}))
        .collect();
    json!({
        "mode": mode,
        "providers": [{"oidc": {
            "name": "corp", "issuer_url": issuer, "client_id": "test-looper",
            "client_secret": "client-secret", "groups_claim": "groups"}}],
        "roles": [
            {"role": "viewer", "group": "engineering"},
            {"role": "operator", "group": "ci-operators"},
            {"role": "admin", "users": ["adam"]},
        ],
        "static_tokens": tokens,
        "rate_limits": limits,
    })
}

/// Generous rate limits (the tests call from one address).
pub fn generous_limits() -> serde_json::Value {
    json!({"login": {"per_minute": 6000, "burst": 1000},
           "webhook": {"per_minute": 6000, "burst": 1000},
           "action": {"per_minute": 6000, "burst": 1000}})
}

impl AuthServer {
    /// Starts a server in `mode` (within an actix system).
    pub async fn start(mode: AuthMode, limits: serde_json::Value) -> Self {
        Self::start_with(mode, limits, |_, _| {}).await
    }

    pub async fn start_with(
        mode: AuthMode,
        limits: serde_json::Value,
        adjust: impl FnOnce(&mut test_looper_server::config::Config, &std::path::Path),
    ) -> Self {
        let redis = RedisServer::start();
        let provider = OidcProvider::start(&users());
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("repos")).expect("repos dir");
        let mut config = test_looper_tests::server::local_config(dir.path(), &redis.url());
        let port = free_loopback_port();
        config.server.bind = "127.0.0.1".into();
        config.server.address = "127.0.0.1".into();
        config.server.http_port = port;
        config.auth = serde_json::from_value(auth_section(mode, &provider.issuer(), limits))
            .expect("auth section");
        adjust(&mut config, dir.path());
        let scheme = if config.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let base_url = format!("{scheme}://{}:{port}", config.server.address);
        config.server.public_url = Some(base_url.clone());
        config.auth.validate().expect("valid auth section");
        let bind = config.server.bind.clone();
        let context = AppContext::new(config).expect("context");
        let services = services::start(&context).await.expect("services start");
        let (server, _) =
            test_looper_server::web::start(context.clone(), (bind, port)).expect("bind");
        let handle = server.handle();
        actix_web::rt::spawn(server);
        AuthServer {
            base_url,
            context,
            provider,
            services,
            redis,
            handle,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// This host's first IPv4 address that is not loopback (e.g. `eth0`'s), if it has one.
pub fn non_loopback_ipv4() -> Option<std::net::Ipv4Addr> {
    let mut found = None;
    // SAFETY: getifaddrs fills a list that is only read here and freed once.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut entry = list;
        while !entry.is_null() && found.is_none() {
            let address = (*entry).ifa_addr;
            if !address.is_null() && i32::from((*address).sa_family) == libc::AF_INET {
                let v4 = &*(address as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                if !ip.is_loopback() && !ip.is_unspecified() {
                    found = Some(ip);
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// An HTTP client that follows no redirect and accepts the tests' self-signed certificate.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The `tl_session` cookie a response sets, as `name=value`.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("tl_session="))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

/// A logged-in browser session.
#[derive(Clone, Debug)]
pub struct Login {
    pub cookie: String,
    pub csrf: String,
}

impl Login {
    /// A GET with this session's cookie.
    pub fn get(&self, server: &AuthServer, path: &str) -> reqwest::RequestBuilder {
        client()
            .get(server.url(path))
            .header("Cookie", &self.cookie)
    }

    /// A POST with this session's cookie and CSRF token.
    pub fn post(&self, server: &AuthServer, path: &str) -> reqwest::RequestBuilder {
        client()
            .post(server.url(path))
            .header("Cookie", &self.cookie)
            .header("X-CSRF-Token", &self.csrf)
    }
}

/// The audit log's events for `query` (read with the admin token).
pub async fn audit_events(server: &AuthServer, query: &str) -> Vec<serde_json::Value> {
    let answer: serde_json::Value = client()
        .get(server.url(&format!("/api/audit?{query}")))
        .bearer_auth(static_token("admin"))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("audit json");
    answer["events"].as_array().expect("events").clone()
}

/// The CSRF token in a page's `<meta name="csrf-token">`.
pub fn csrf_of(html: &str) -> Option<String> {
    let start =
        html.find(r#"name="csrf-token" content=""#)? + r#"name="csrf-token" content=""#.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// Logs `subject` in through the provider's own page; the callback's response.
pub async fn login_response(
    server: &AuthServer,
    subject: &str,
) -> (Option<String>, reqwest::Response) {
    let http = client();
    let start = http
        .get(server.url("/auth/corp/login?next=/tokens"))
        .send()
        .await
        .expect("login start");
    assert_eq!(start.status(), 303, "login start");
    let cookie = session_cookie(&start).expect("the pending login's session cookie");
    let authorize = start.headers()["location"].to_str().unwrap().to_string();
    assert!(
        authorize.starts_with(&server.provider.issuer()),
        "{authorize}"
    );
    let callback = server.provider.authorize(&authorize, subject).await;
    assert!(
        callback.starts_with(&server.url("/auth/corp/callback")),
        "{callback}"
    );
    let response = http
        .get(&callback)
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("callback");
    (Some(cookie), response)
}

/// Logs `subject` in; panics unless it succeeds.
pub async fn login(server: &AuthServer, subject: &str) -> Login {
    let (pending_cookie, response) = login_response(server, subject).await;
    assert_eq!(
        response.status(),
        303,
        "login of {subject}: {}",
        response.text().await.unwrap_or_default()
    );
    let cookie = session_cookie(&response).expect("a renewed session cookie");
    assert_ne!(
        Some(&cookie),
        pending_cookie.as_ref(),
        "the session id is renewed at login"
    );
    let page = client()
        .get(server.url("/tokens"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("tokens page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = csrf_of(&html).expect("the page carries the session's CSRF token");
    Login { cookie, csrf }
}
