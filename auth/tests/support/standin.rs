//! A stand-in for GitHub's and GitLab's OAuth and user endpoints, as documented:
//!
//! - GitHub: `GET /login/oauth/authorize`, `POST /login/oauth/access_token` (form, answers
//!   JSON; errors come back with HTTP 200 and an `error` field, as GitHub does), and under
//!   `/api/v3` (GitHub Enterprise layout) `GET /user`, `/user/orgs`, `/user/teams`.
//! - GitLab: `GET /oauth/authorize`, `POST /oauth/token`, `GET /api/v4/user`,
//!   `/api/v4/groups` (which lists public groups too unless `min_access_level` is given).
//!
//! It checks what a real provider checks: the client id, the registered redirect URI, the
//! client secret, PKCE S256 (`code_challenge` at authorize, `code_verifier` at the token
//! endpoint), one use per code, and the bearer token on API calls. `authorize` approves at
//! once, as the user set with [`StandIn::login_as`] (a browser that is already logged in).

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Github,
    Gitlab,
}

/// A user the stand-in knows.
#[derive(Clone, Debug)]
pub struct User {
    pub id: u64,
    pub login: String,
    pub name: String,
    /// GitHub orgs.
    pub orgs: Vec<String>,
    /// GitHub teams as (org, slug).
    pub teams: Vec<(String, String)>,
    /// GitLab groups the user is a member of (full paths).
    pub groups: Vec<String>,
}

struct Grant {
    user: String,
    redirect_uri: String,
    challenge: String,
}

struct State {
    kind: Kind,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    users: HashMap<String, User>,
    login_as: Option<String>,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, String>,
    /// Every request line, for assertions.
    requests: Vec<String>,
}

/// The running stand-in; stops with the test's runtime.
#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    state: Arc<Mutex<State>>,
}

pub const CLIENT_ID: &str = "standin-client";
pub const CLIENT_SECRET: &str = "standin-secret";

impl StandIn {
    /// Starts on a free loopback port; `redirect_uri` is the one registered for the app.
    pub async fn start(kind: Kind, redirect_uri: &str, users: Vec<User>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            kind,
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uri: redirect_uri.into(),
            users: users.into_iter().map(|u| (u.login.clone(), u)).collect(),
            login_as: None,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            requests: Vec::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, state }
    }

    /// The user the next authorize request approves as.
    pub fn login_as(&self, login: &str) {
        self.state.lock().unwrap().login_as = Some(login.into());
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn redirect(location: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("location", location)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

fn form(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn random() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// An OAuth error: GitHub answers 200 with an `error` field, GitLab 400 or 401.
fn oauth_error(
    kind: Kind,
    status: StatusCode,
    error: &str,
    description: &str,
) -> Response<Full<Bytes>> {
    let body = json!({"error": error, "error_description": description});
    match kind {
        Kind::Github => respond(StatusCode::OK, body),
        Kind::Gitlab => respond(status, body),
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = form(req.uri().query().unwrap_or(""));
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let has_user_agent = req.headers().contains_key("user-agent");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = form(std::str::from_utf8(&body).unwrap_or(""));
    let mut state = state.lock().unwrap();
    state.requests.push(format!("{method} {path}"));
    let kind = state.kind;
    let (authorize, token, api) = match kind {
        Kind::Github => (
            "/login/oauth/authorize",
            "/login/oauth/access_token",
            "/api/v3",
        ),
        Kind::Gitlab => ("/oauth/authorize", "/oauth/token", "/api/v4"),
    };

    if method == hyper::Method::GET && path == authorize {
        if query.get("client_id") != Some(&state.client_id) {
            return Ok(respond(
                StatusCode::NOT_FOUND,
                json!({"error": "unknown client_id"}),
            ));
        }
        if query.get("redirect_uri") != Some(&state.redirect_uri) {
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                json!({"error": "redirect_uri_mismatch"}),
            ));
        }
        if kind == Kind::Gitlab && query.get("response_type").map(String::as_str) != Some("code") {
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                json!({"error": "unsupported_response_type"}),
            ));
        }
        let redirect_uri = state.redirect_uri.clone();
        let st = query.get("state").cloned().unwrap_or_default();
        let challenge = query.get("code_challenge").cloned();
        if query.get("code_challenge_method").map(String::as_str) != Some("S256")
            || challenge.is_none()
        {
            return Ok(redirect(format!(
                "{redirect_uri}?error=invalid_request&error_description=PKCE+S256+required&state={st}"
            )));
        }
        let Some(user) = state.login_as.clone() else {
            return Ok(redirect(format!(
                "{redirect_uri}?error=access_denied&state={st}"
            )));
        };
        let code = random();
        state.codes.insert(
            code.clone(),
            Grant {
                user,
                redirect_uri: redirect_uri.clone(),
                challenge: challenge.unwrap_or_default(),
            },
        );
        let location = url::Url::parse_with_params(
            &redirect_uri,
            [("code", code.as_str()), ("state", st.as_str())],
        )
        .expect("redirect url");
        return Ok(redirect(location.to_string()));
    }

    if method == hyper::Method::POST && path == token {
        if body.get("client_id") != Some(&state.client_id)
            || body.get("client_secret") != Some(&state.client_secret)
        {
            return Ok(oauth_error(
                kind,
                StatusCode::UNAUTHORIZED,
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
            ));
        }
        if kind == Kind::Gitlab
            && body.get("grant_type").map(String::as_str) != Some("authorization_code")
        {
            return Ok(oauth_error(
                kind,
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type",
            ));
        }
        let Some(grant) = body.get("code").and_then(|c| state.codes.remove(c)) else {
            return Ok(oauth_error(
                kind,
                StatusCode::BAD_REQUEST,
                "bad_verification_code",
                "The code passed is incorrect or expired.",
            ));
        };
        if body.get("redirect_uri") != Some(&grant.redirect_uri) {
            return Ok(oauth_error(
                kind,
                StatusCode::BAD_REQUEST,
                "redirect_uri_mismatch",
                "redirect_uri",
            ));
        }
        let verifier = body.get("code_verifier").cloned().unwrap_or_default();
        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        if computed != grant.challenge {
            return Ok(oauth_error(
                kind,
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "PKCE verification failed",
            ));
        }
        let access_token = random();
        state.tokens.insert(access_token.clone(), grant.user);
        return Ok(respond(
            StatusCode::OK,
            match kind {
                Kind::Github => {
                    json!({"access_token": access_token, "token_type": "bearer", "scope": "read:org,read:user,user:email"})
                }
                Kind::Gitlab => {
                    json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 7200, "refresh_token": random(), "scope": "read_user read_api", "created_at": 1764000000})
                }
            },
        ));
    }

    if method == hyper::Method::GET && path.starts_with(api) {
        if kind == Kind::Github && !has_user_agent {
            return Ok(respond(
                StatusCode::FORBIDDEN,
                json!({"message": "User-Agent required"}),
            ));
        }
        let user = authorization
            .as_deref()
            .and_then(|a| {
                a.strip_prefix("Bearer ")
                    .or_else(|| a.strip_prefix("token "))
            })
            .and_then(|t| state.tokens.get(t))
            .and_then(|login| state.users.get(login))
            .cloned();
        let Some(user) = user else {
            return Ok(respond(
                StatusCode::UNAUTHORIZED,
                json!({"message": "Bad credentials"}),
            ));
        };
        let per_page: usize = query
            .get("per_page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(30);
        let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let paged = |items: Vec<Value>| -> Value {
            Value::Array(
                items
                    .into_iter()
                    .skip((page - 1) * per_page)
                    .take(per_page)
                    .collect(),
            )
        };
        let rest = &path[api.len()..];
        let answer = match (kind, rest) {
            (Kind::Github, "/user") => json!({"login": user.login, "id": user.id, "name": user.name, "email": null, "type": "User"}),
            (Kind::Github, "/user/orgs") => paged(user.orgs.iter().map(|o| json!({"login": o, "id": 1})).collect()),
            (Kind::Github, "/user/teams") => paged(
                user.teams
                    .iter()
                    .map(|(org, slug)| json!({"slug": slug, "name": slug, "organization": {"login": org}}))
                    .collect(),
            ),
            (Kind::Gitlab, "/user") => json!({"id": user.id, "username": user.login, "name": user.name, "email": format!("{}@example.com", user.login), "state": "active"}),
            (Kind::Gitlab, "/groups") => {
                let mut groups: Vec<String> = user.groups.clone();
                if !query.contains_key("min_access_level") {
                    // Without the filter GitLab lists every visible group.
                    groups.push("public-group-nobody-joined".into());
                }
                paged(groups.iter().map(|g| json!({"id": 1, "full_path": g, "path": g})).collect())
            }
            _ => return Ok(respond(StatusCode::NOT_FOUND, json!({"message": "Not Found"}))),
        };
        return Ok(respond(StatusCode::OK, answer));
    }

    Ok(respond(
        StatusCode::NOT_FOUND,
        json!({"message": "Not Found"}),
    ))
}
