//! Logging in and out through the configured providers:
//!
//! - `GET /login?next=/path`: the login buttons (also shown, with status 401 or 403, when a
//!   browser asks for a page it may not see).
//! - `GET /auth/{provider}/login?next=/path`: starts the authorization-code flow (PKCE,
//!   `state`, and `nonce` for OpenID Connect); the pending login is kept in the server-side
//!   session and the browser is sent to the provider.
//! - `GET /auth/{provider}/callback`: takes the pending login out of the session (so a
//!   callback is used once), redeems the code, gives the person the highest role of the
//!   rules they match (no rule: the login is refused), renews the session id and stores the
//!   [`SessionUser`]. An `error` from the provider is shown, never redeemed.
//! - `POST /auth/logout`: deletes the session on the server, so its cookie is dead even if
//!   it was copied.
//!
//! Every login, refused login and logout is recorded in the audit log.

use super::{
    AccessControl, Need, RequestCaller, SESSION_NEXT, SESSION_PENDING_LOGIN, SESSION_USER,
};
use crate::web::render::html;
use crate::web::routes::{get, post, RouteSpec, READ};
use crate::AppContext;
use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use test_looper_auth::{Caller, Category, PendingLogin, SessionUser};

/// The login routes.
pub fn routes() -> Vec<RouteSpec> {
    vec![
        get("/login", Need::Public, login_page),
        get("/auth/{provider}/login", Need::Public, start).limited(Category::Login),
        get("/auth/{provider}/callback", Need::Public, callback).limited(Category::Login),
        post("/auth/logout", READ, logout),
    ]
}

struct ProviderLink {
    name: String,
    url: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: &'static str,
    title: String,
    message: String,
    providers: Vec<ProviderLink>,
}

/// A local path to come back to: `/` and a path, never `//host` or a URL.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.contains(['\r', '\n'])
                && !path.starts_with("/auth/") =>
        {
            path.to_string()
        }
        _ => "/repos".to_string(),
    }
}

fn page(access: &AccessControl, title: &str, message: &str, next: &str) -> HttpResponse {
    let next = crate::views::paths::encode_component(next);
    html(&LoginPage {
        csrf: crate::web::render::CSRF_SLOT,
        title: title.to_string(),
        message: message.to_string(),
        providers: access
            .provider_names()
            .map(|name| ProviderLink {
                name: name.to_string(),
                url: format!(
                    "/auth/{}/login?next={next}",
                    crate::views::paths::encode_component(name)
                ),
            })
            .collect(),
    })
}

/// The page a browser gets instead of a page it may not see (401: log in; 403: too low a
/// role).
pub fn refusal_page(
    access: &AccessControl,
    status: StatusCode,
    message: &str,
    path: &str,
) -> HttpResponse {
    let title = match status {
        StatusCode::UNAUTHORIZED => "Log in to continue",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::TOO_MANY_REQUESTS => "Slow down",
        _ => "Refused",
    };
    let mut response = page(access, title, message, path);
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// `GET /login`.
async fn login_page(context: web::Data<AppContext>, query: web::Query<NextQuery>) -> HttpResponse {
    page(
        &context.access,
        "Log in",
        "",
        &safe_next(query.next.as_deref()),
    )
}

fn login_failed(
    context: &AppContext,
    who: &RequestCaller,
    provider: &str,
    why: String,
) -> HttpResponse {
    context
        .access
        .audit
        .record(who.audit("login").object(provider).denied(why.clone()));
    refusal_page(
        &context.access,
        StatusCode::FORBIDDEN,
        &format!("The login did not succeed: {why}"),
        "/repos",
    )
}

/// `GET /auth/{provider}/login`.
async fn start(
    context: web::Data<AppContext>,
    who: RequestCaller,
    session: Session,
    provider: web::Path<String>,
    query: web::Query<NextQuery>,
) -> HttpResponse {
    let access = &context.access;
    let login = match access.provider(&provider).await {
        Ok(login) => login,
        Err(err) => return login_failed(&context, &who, &provider, err.to_string()),
    };
    let (url, pending) = match login.start(&access.redirect_uri(&provider)) {
        Ok(started) => started,
        Err(err) => return login_failed(&context, &who, &provider, err.to_string()),
    };
    let stored = session
        .insert(SESSION_PENDING_LOGIN, &pending)
        .and_then(|()| session.insert(SESSION_NEXT, safe_next(query.next.as_deref())));
    if let Err(err) = stored {
        return login_failed(&context, &who, &provider, format!("session: {err}"));
    }
    HttpResponse::SeeOther()
        .insert_header(("Location", url.as_str()))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/{provider}/callback`.
async fn callback(
    context: web::Data<AppContext>,
    who: RequestCaller,
    session: Session,
    provider: web::Path<String>,
    query: web::Query<CallbackQuery>,
) -> HttpResponse {
    let access = &context.access;
    // Used once, whatever happens next.
    let pending = session.remove_as::<PendingLogin>(SESSION_PENDING_LOGIN);
    let next = session
        .remove_as::<String>(SESSION_NEXT)
        .and_then(Result::ok)
        .unwrap_or_else(|| "/repos".into());
    if let Some(error) = &query.error {
        let description = query.error_description.as_deref().unwrap_or("");
        let why = format!("the provider answered `{error}` {description}");
        return login_failed(&context, &who, &provider, why.trim().to_string());
    }
    let Some(Ok(pending)) = pending else {
        return login_failed(
            &context,
            &who,
            &provider,
            "no login was started in this browser, or it was already used".into(),
        );
    };
    let (Some(code), Some(state)) = (&query.code, &query.state) else {
        return login_failed(
            &context,
            &who,
            &provider,
            "the callback lacks code or state".into(),
        );
    };
    let login = match access.provider(&provider).await {
        Ok(login) => login,
        Err(err) => return login_failed(&context, &who, &provider, err.to_string()),
    };
    let identity = match login.finish(pending, code, state).await {
        Ok(identity) => identity,
        Err(err) => return login_failed(&context, &who, &provider, err.to_string()),
    };
    let Some(role) = access.rules.role_for(&identity) else {
        let event = who
            .audit("login")
            .object(provider.as_str())
            .denied("no role rule matches this person");
        let mut event = event;
        event.who = Some(identity.key());
        event.login = Some(identity.login.clone());
        access.audit.record(event);
        return refusal_page(
            access,
            StatusCode::FORBIDDEN,
            &format!(
                "{} logged in with {}, but no rule of this server gives them a role. Ask an \
                 admin to add them (auth.roles).",
                identity.login, provider
            ),
            "/repos",
        );
    };
    let user = SessionUser::new(identity, role, &access.session, chrono::Utc::now());
    // A new session id for the logged-in session (no fixation).
    session.renew();
    if let Err(err) = session.insert(SESSION_USER, &user) {
        return login_failed(&context, &who, &provider, format!("session: {err}"));
    }
    let logged_in = RequestCaller {
        caller: Caller::Session(Box::new(user)),
        client_ip: who.client_ip,
    };
    access
        .audit
        .record(logged_in.audit("login").object(provider.as_str()));
    HttpResponse::SeeOther()
        .insert_header(("Location", safe_next(Some(&next))))
        .finish()
}

/// `POST /auth/logout`.
async fn logout(
    context: web::Data<AppContext>,
    who: RequestCaller,
    session: Session,
) -> HttpResponse {
    if matches!(who.caller, Caller::Session(_)) {
        context.access.audit.record(who.audit("logout"));
    }
    session.purge();
    HttpResponse::SeeOther()
        .insert_header(("Location", "/repos"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_local_path() {
        assert_eq!(safe_next(Some("/repos/x?y=1")), "/repos/x?y=1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "/auth/x/login",
            "x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/repos", "{bad}");
        }
        assert_eq!(safe_next(None), "/repos");
    }
}
