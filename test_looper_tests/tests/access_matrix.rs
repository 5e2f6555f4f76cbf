//! Every route of the route table, in every `auth.mode`, as a stranger and as a viewer, an
//! operator and an admin, each with a session cookie (logged in through a real OpenID Connect
//! provider) and with a bearer token: 401 where a login is needed and missing, 403 where the
//! role is too low, and through to the handler otherwise. The server listens beyond loopback
//! (`0.0.0.0`, called at this host's own non-loopback address). The router is built from the
//! same table, so a new route is covered as soon as it exists.

mod auth_support;

use auth_support::{client, csrf_of, generous_limits, login, static_token, AuthServer, Login};
use reqwest::Method;
use test_looper_auth::{required_role, Access, AuthMode, Role};
use test_looper_server::access::Need;
use test_looper_server::web::routes;

/// How a caller proves who they are.
#[derive(Clone, Debug)]
enum Credentials {
    Nobody { csrf: Option<String> },
    Session(Login),
    Token(String),
}

#[derive(Clone, Debug)]
struct Caller {
    name: String,
    role: Option<Role>,
    credentials: Credentials,
}

/// A concrete path for a route pattern.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment {
            "{tail:.*}" => "nothing/here",
            "{provider}" => "corp",
            s if s.starts_with('{') => "x",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[derive(Debug, PartialEq)]
enum Expect {
    Through,
    Unauthenticated,
    Forbidden,
}

fn expected(mode: AuthMode, need: Need, caller: &Caller) -> Expect {
    match need {
        Need::Public => Expect::Through,
        Need::Person => match caller.credentials {
            Credentials::Session(_) => Expect::Through,
            _ => Expect::Unauthenticated,
        },
        Need::Role(access) => match (required_role(mode, access), caller.role) {
            (None, _) => Expect::Through,
            (Some(_), None) => Expect::Unauthenticated,
            (Some(needed), Some(have)) if have >= needed => Expect::Through,
            (Some(_), Some(_)) => Expect::Forbidden,
        },
    }
}

async fn call(
    server: &AuthServer,
    caller: &Caller,
    method: &Method,
    path: &str,
) -> reqwest::Response {
    let mut request = client().request(method.clone(), server.url(path));
    let state_changing = *method != Method::GET;
    match &caller.credentials {
        Credentials::Nobody { csrf } => {
            if let (true, Some(csrf)) = (state_changing, csrf) {
                request = request.header("X-CSRF-Token", csrf);
            }
        }
        Credentials::Session(login) => {
            request = request.header("Cookie", &login.cookie);
            if state_changing {
                request = request.header("X-CSRF-Token", &login.csrf);
            }
        }
        Credentials::Token(token) => request = request.bearer_auth(token),
    }
    if state_changing {
        request = request.json(&serde_json::json!({}));
    }
    request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{method} {path}: {err}"))
}

async fn matrix(mode: AuthMode) {
    // Bound beyond loopback, as a team would run it, and called at that address.
    let address = auth_support::non_loopback_ipv4().expect("a non-loopback IPv4 address");
    let server = AuthServer::start_with(mode, generous_limits(), |config, _| {
        config.server.bind = "0.0.0.0".into();
        config.server.address = address.to_string();
        // Nobody is authenticated in mode none: beyond loopback only when said explicitly.
        config.server.allow_unauthenticated_non_loopback = mode == AuthMode::None;
    })
    .await;
    assert!(server.base_url.contains(&address.to_string()));
    let http = client();
    let anonymous_page = http.get(server.url("/repos")).send().await.unwrap();
    let anonymous_csrf = csrf_of(&anonymous_page.text().await.unwrap());
    let mut callers = vec![Caller {
        name: "stranger".into(),
        role: None,
        credentials: Credentials::Nobody {
            csrf: anonymous_csrf,
        },
    }];
    for (person, role) in [
        ("alice", Role::Viewer),
        ("olga", Role::Operator),
        ("adam", Role::Admin),
    ] {
        callers.push(Caller {
            name: format!("{person} (session)"),
            role: Some(role),
            credentials: Credentials::Session(login(&server, person).await),
        });
        callers.push(Caller {
            name: format!("bot-{role} (token)"),
            role: Some(role),
            credentials: Credentials::Token(static_token(role.as_str())),
        });
    }
    let mut checked = 0;
    let mut failures = Vec::new();
    // Logging out ends the sessions: last.
    let mut table: Vec<_> = routes::table().routes().collect();
    table.sort_by_key(|route| route.path == "/auth/logout");
    for route in table {
        if route.need == Need::Public || route.path.starts_with("/static") {
            continue;
        }
        let path = concrete(route.path);
        let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        for caller in &callers {
            let response = call(&server, caller, &method, &path).await;
            let status = response.status().as_u16();
            let want = expected(mode, route.need, caller);
            let ok = match want {
                Expect::Through => status != 401 && status != 403 && status != 429,
                Expect::Unauthenticated => {
                    status == 401 && response.headers().contains_key("www-authenticate")
                }
                Expect::Forbidden => status == 403,
            };
            if !ok {
                failures.push(format!(
                    "{mode:?} {} {path} as {}: {status}, expected {want:?}",
                    route.method, caller.name
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 40 * callers.len(), "only {checked} calls");

    // Refusals are in the audit log, for admins.
    let audit = http
        .get(server.url("/api/audit?outcome=denied&limit=5000"))
        .bearer_auth(static_token("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(audit.status(), 200);
    let audit: serde_json::Value = audit.json().await.unwrap();
    let events = audit["events"].as_array().unwrap();
    if mode != AuthMode::None {
        assert!(
            events
                .iter()
                .any(|e| e["action"] == "access" && e["who"] == "corp:alice"),
            "a viewer's refusal is recorded: {audit}"
        );
        assert!(
            events
                .iter()
                .any(|e| e["action"] == "access" && e["who"].is_null()),
            "a stranger's refusal is recorded"
        );
    }
    let text = audit.to_string();
    for role in ["viewer", "operator", "admin"] {
        assert!(
            !text.contains(&static_token(role)),
            "no token in the audit log"
        );
    }
}

#[actix_web::test]
async fn every_route_in_mode_none() {
    matrix(AuthMode::None).await;
}

#[actix_web::test]
async fn every_route_in_mode_write() {
    matrix(AuthMode::Write).await;
}

#[actix_web::test]
async fn every_route_in_mode_full() {
    matrix(AuthMode::Full).await;
}

#[test]
fn every_route_has_a_rule_and_only_known_routes_are_public() {
    let public: Vec<&str> = routes::table()
        .routes()
        .filter(|r| r.need == Need::Public)
        .map(|r| r.path)
        .collect();
    assert_eq!(
        public,
        [
            "/healthz",
            "/webhook",
            "/githubReceivedAPush",
            "/static/{tail:.*}",
            "/login",
            "/auth/{provider}/login",
            "/auth/{provider}/callback",
            "/api/worker/socket",
            "/api/worker/source",
        ],
        "a public route is a decision: add it here on purpose"
    );
    let admin: Vec<&str> = routes::table()
        .routes()
        .filter(|r| r.need == Need::Role(Access::Admin))
        .map(|r| r.path)
        .collect();
    assert_eq!(admin, ["/audit", "/api/audit"]);
    let terminals = routes::table()
        .routes()
        .filter(|r| r.path.starts_with("/deployments/{id}"))
        .all(|r| r.need == Need::Role(Access::Act));
    assert!(terminals, "deployment terminals are operator-only");
}
