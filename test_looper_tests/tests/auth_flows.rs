//! Authentication flows over HTTP against a real OpenID Connect provider and Redis: personal
//! API tokens (created once, capped by the owner's role, usable without CSRF, revocable,
//! never logged), logins refused by the rules, rate limits, CSRF per session, and TLS with
//! HSTS and `Secure` cookies.

mod auth_support;

use auth_support::{
    audit_events, client, generous_limits, login, login_response, session_cookie, static_token,
    AuthServer,
};
use serde_json::json;
use test_looper_auth::AuthMode;

#[actix_web::test]
async fn personal_tokens_are_shown_once_capped_usable_and_revocable() {
    let server = AuthServer::start(AuthMode::Write, generous_limits()).await;
    let http = client();
    let olga = login(&server, "olga").await;
    let alice = login(&server, "alice").await;

    // A viewer cannot mint an operator token.
    let refused = alice
        .post(&server, "/api/tokens")
        .json(&json!({"name": "ci", "role": "operator", "expires_days": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // One session's CSRF token is not another's.
    let crossed = http
        .post(server.url("/api/tokens"))
        .header("Cookie", &olga.cookie)
        .header("X-CSRF-Token", &alice.csrf)
        .json(&json!({"name": "ci", "role": "operator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), 403);

    let created = olga
        .post(&server, "/api/tokens")
        .json(&json!({"name": "ci", "role": "operator", "expires_days": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let created: serde_json::Value = created.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["info"]["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("tl_"));

    // A bearer call acts without a CSRF token (the repo does not exist: 404, not 401/403).
    let act = http
        .post(server.url("/api/actions/branch"))
        .bearer_auth(&token)
        .json(&json!({"repo": "nope", "branch": "master", "under_test": "true"}))
        .send()
        .await
        .unwrap();
    assert_eq!(act.status(), 404, "{}", act.text().await.unwrap());
    let read = http
        .get(server.url("/api/repos"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // The same call from a cookie session without the token is refused.
    let no_csrf = http
        .post(server.url("/api/actions/branch"))
        .header("Cookie", &olga.cookie)
        .json(&json!({"repo": "nope", "branch": "master", "under_test": "true"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);

    // Listed without the token itself; the page never shows it again.
    let listed = olga
        .get(&server, "/api/tokens")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains(&id) && !listed.contains(&token), "{listed}");
    let page = olga
        .get(&server, "/tokens")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&id) && !page.contains(&token));

    // Revoked: the token is dead at once; a bad bearer is never a fall-back to the cookie.
    let revoked = olga
        .post(&server, &format!("/api/tokens/{id}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let dead = http
        .post(server.url("/api/actions/branch"))
        .bearer_auth(&token)
        .header("Cookie", &olga.cookie)
        .header("X-CSRF-Token", &olga.csrf)
        .json(&json!({"repo": "nope", "branch": "master", "under_test": "true"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dead.status(), 401);

    // The audit log has the story, without the token.
    let audit = audit_events(&server, "action=token.*&limit=100").await;
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    for wanted in [
        ("token.create", "ok"),
        ("token.create", "denied"),
        ("token.use", "ok"),
        ("token.use", "failed"),
        ("token.use", "denied"),
        ("token.revoke", "ok"),
    ] {
        assert!(actions.contains(&wanted), "{wanted:?} in {actions:?}");
    }
    assert!(!serde_json::Value::from(audit.clone())
        .to_string()
        .contains(&token));
    let logins = audit_events(&server, "action=login&login=olga").await;
    let login_event = &logins[0];
    assert_eq!(login_event["who"], "corp:olga");
    assert_eq!(login_event["role"], "operator");
    assert_eq!(login_event["client_ip"], "127.0.0.1");
    // Viewers do not read the audit log.
    let forbidden = http
        .get(server.url("/api/audit"))
        .bearer_auth(static_token("viewer"))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
}

#[actix_web::test]
async fn a_person_without_a_role_cannot_log_in_and_logins_are_rate_limited() {
    let limits = json!({"login": {"per_minute": 1, "burst": 4}});
    let server = AuthServer::start(AuthMode::Write, limits).await;
    let (_, refused) = login_response(&server, "mallory").await;
    assert_eq!(refused.status(), 403);
    let cookie = session_cookie(&refused);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("no rule of this server gives them a role"),
        "{text}"
    );
    // Two calls spent (start and callback); two more pass, then 429 with Retry-After.
    let http = client();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = http
            .get(server.url("/auth/corp/login"))
            .send()
            .await
            .unwrap();
        statuses.push((
            response.status().as_u16(),
            response.headers().get("retry-after").is_some(),
        ));
    }
    assert_eq!(statuses, [(303, false), (303, false), (429, true)]);
    // Whatever cookie the refused login left, it is nobody's session.
    if let Some(cookie) = cookie {
        let tokens = http
            .get(server.url("/tokens"))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(tokens.status(), 401);
    }
}

#[actix_web::test]
async fn tls_serves_https_with_hsts_and_secure_cookies() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (installed by deploy/install_deps.sh test)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let server = AuthServer::start_with(AuthMode::Full, generous_limits(), |config, _| {
        config.server.tls = Some(test_looper_server::config::TlsSection {
            cert: cert.clone(),
            key: key.clone(),
        });
    })
    .await;
    assert!(server.base_url.starts_with("https://"));
    let http = client();
    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    // Plain HTTP on the TLS port gets nothing useful.
    let plain = http
        .get(server.base_url.replacen("https", "http", 1) + "/healthz")
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let (pending, callback) = login_response(&server, "olga").await;
    assert!(pending.is_some());
    let set_cookie: Vec<&str> = callback
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("tl_session="))
        .expect("session cookie");
    for flag in ["Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
}

const DEFS: &str = "looper_version: 4\nenvironments: {linux: {platform: linux, image: {dockerfile_contents: \"FROM x\"}}}\ntests:\n  core/linux: {command: \"./core\"}\n";

#[actix_web::test]
async fn only_the_booter_or_an_admin_uses_a_deployment() {
    let mut head = String::new();
    let server = AuthServer::start_with(AuthMode::Write, generous_limits(), |_, dir| {
        let repo = test_looper_tests::GitRepo::init_bare(&dir.join("repos/app"));
        head = repo
            .commit("master", "definitions", &[("testlooper.yml", DEFS)])
            .to_string();
    })
    .await;
    let scheduler = server.context.running_scheduler().unwrap().clone();
    let mut hash = None;
    for _ in 0..200 {
        let head = head.clone();
        hash = scheduler
            .read(move |engine| {
                engine
                    .commit_record("app", &head)
                    .and_then(|(record, _, _)| record.tests.get("core/linux").cloned())
            })
            .await;
        if hash.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let hash = hash.expect("the scheduler knows the commit's test");
    let http = client();
    let olga = login(&server, "olga").await;
    let booted: serde_json::Value = olga
        .post(&server, "/api/actions/boot_deployment")
        .json(&json!({ "test_hash": hash }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = booted["deployment_id"]
        .as_str()
        .expect("booted")
        .to_string();
    let listed: serde_json::Value = http
        .get(server.url("/api/deployments"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["deployments"][0]["deployment"]["booted_by"]["login"], "olga",
        "{listed}"
    );
    let terminal = format!("/deployments/{id}/terminal");
    let status_as = |bearer: Option<String>, cookie: Option<String>| {
        let http = http.clone();
        let url = server.url(&terminal);
        async move {
            let mut request = http.get(url);
            if let Some(bearer) = bearer {
                request = request.bearer_auth(bearer);
            }
            if let Some(cookie) = cookie {
                request = request.header("Cookie", cookie);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    // Another operator may not attach, nor shut it down; the booter and an admin may attach.
    assert_eq!(status_as(Some(static_token("operator")), None).await, 403);
    let shutdown = http
        .post(server.url("/api/actions/shutdown_deployment"))
        .bearer_auth(static_token("operator"))
        .json(&json!({ "deployment_id": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(shutdown.status(), 403);
    assert_eq!(status_as(None, Some(olga.cookie.clone())).await, 200);
    assert_eq!(status_as(Some(static_token("admin")), None).await, 200);
    let outcomes: Vec<(String, String)> = audit_events(&server, "action=deployment.attach")
        .await
        .iter()
        .map(|e| {
            (
                e["who"].as_str().unwrap_or("").to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for wanted in [
        ("static:bot-operator", "denied"),
        ("corp:olga", "ok"),
        ("static:bot-admin", "ok"),
    ] {
        assert!(
            outcomes.contains(&(wanted.0.to_string(), wanted.1.to_string())),
            "{wanted:?} in {outcomes:?}"
        );
    }
    let shutdown = olga
        .post(&server, "/api/actions/shutdown_deployment")
        .json(&json!({ "deployment_id": id }))
        .send()
        .await
        .unwrap();
    assert_eq!(shutdown.status(), 200);
}
