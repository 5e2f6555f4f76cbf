//! The access guard: the middleware between the edge ([`crate::web::edge`]) and the routes.
//! For each request it
//!
//! 1. finds the client address ([`super::client_ip`]) and the route ([`crate::web::routes`]);
//! 2. applies the route's rate limit (429 with `Retry-After`);
//! 3. finds the caller: a bearer token (an invalid one is 401, never a fall-back to the
//!    cookie), else the session's logged-in person (an expired login is dropped), else nobody;
//! 4. checks the route's [`Need`] under `auth.mode` (401 without a caller, 403 with too low a
//!    role);
//! 5. checks the CSRF token of state-changing requests from browsers (not of bearer calls);
//! 6. lets the request through with its [`RequestCaller`], records a token's use in the audit
//!    log, and fills the caller's CSRF token and login bar into the pages it renders
//!    ([`crate::web::render::personalize`]).
//!
//! Every refusal is recorded in the audit log.

use super::{AccessControl, Need, RequestCaller, SESSION_USER};
use crate::web::csrf::{self, CsrfError};
use crate::web::routes;
use crate::AppContext;
use actix_session::SessionExt;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use test_looper_auth::rate_limit::client_key;
use test_looper_auth::{Caller, Category, Denied, SessionUser};

/// Why a request is refused, as an answer.
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refused {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn denied(denied: Denied) -> Self {
        let status = StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::FORBIDDEN);
        let code = match denied {
            Denied::Unauthenticated => "unauthenticated",
            Denied::Forbidden { .. } => "forbidden",
        };
        Refused::new(status, code, denied.to_string())
    }
}

/// The middleware; see the module docs.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<BoxBody, BoxBody>>, actix_web::Error> {
    let Some(context) = req.app_data::<web::Data<AppContext>>().cloned() else {
        let refused = HttpResponse::InternalServerError().body("access control missing");
        return Ok(req.into_response(refused).map_into_right_body());
    };
    let access = &context.access;
    let client_ip = access.proxies.client_ip(req.request());
    let route = routes::table().lookup(req.method(), req.path());
    let need = route.map_or(Need::Public, |r| r.need);
    let what = format!("{} {}", req.method(), req.path());
    let anonymous = RequestCaller {
        caller: Caller::Anonymous,
        client_ip,
    };
    if let Some(category) = route.and_then(|r| r.limit) {
        if let Err(limited) = access.limiter.check(category, &client_key(client_ip)) {
            let seconds = limited.retry_after.as_secs().max(1);
            access.audit.record(
                anonymous
                    .audit("rate_limited")
                    .object(&what)
                    .denied(format!("{category:?} limit; retry after {seconds} s")),
            );
            let mut refused = Refused::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from this address; retry in {seconds} s"),
            );
            refused.retry_after = Some(seconds);
            return Ok(refuse(req, refused, access));
        }
    }
    if need == Need::Public {
        req.extensions_mut().insert(anonymous);
        return respond(req, next, access, false).await;
    }
    let caller = match resolve_caller(&req, &context, &anonymous, &what).await {
        Ok(caller) => caller,
        Err(refused) => return Ok(refuse(req, refused, access)),
    };
    let who = RequestCaller { caller, client_ip };
    let allowed = match need {
        Need::Role(needed) => who.caller.authorize(access.mode, needed),
        Need::Person => match who.caller {
            Caller::Session(_) => Ok(()),
            _ => Err(Denied::Unauthenticated),
        },
        Need::Public => Ok(()),
    };
    if let Err(denied) = allowed {
        access
            .audit
            .record(who.audit("access").object(&what).denied(denied.to_string()));
        return Ok(refuse(req, Refused::denied(denied), access));
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !matches!(who.caller, Caller::Token(_)) {
        if let Err(err) = check_csrf(&mut req, &who, access).await {
            access
                .audit
                .record(who.audit("csrf").object(&what).denied(err.to_string()));
            let refused = Refused::new(StatusCode::FORBIDDEN, "csrf", err.to_string());
            return Ok(refuse(req, refused, access));
        }
    }
    let token_use = matches!(who.caller, Caller::Token(_)).then(|| who.clone());
    req.extensions_mut().insert(who);
    let response = respond(req, next, access, true).await?;
    if let Some(who) = token_use {
        let status = response.status();
        let event = who.audit("token.use").object(&what);
        access
            .audit
            .record(if status.is_client_error() || status.is_server_error() {
                event.failed(format!("answered {}", status.as_u16()))
            } else {
                event
            });
    }
    Ok(response)
}

/// Calls the route; pages get the caller's CSRF token and login bar.
async fn respond(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    access: &AccessControl,
    personal: bool,
) -> Result<ServiceResponse<EitherBody<BoxBody, BoxBody>>, actix_web::Error> {
    let who = RequestCaller::of(req.request());
    let response = next.call(req).await?;
    if !crate::web::render::is_personal_page(&response) {
        return Ok(response.map_into_boxed_body().map_into_left_body());
    }
    let path = response.request().path().to_string();
    let bar = crate::web::render::session_bar(access, personal.then_some(&who), &path);
    let csrf = who.csrf_token(access).to_string();
    let response = response.map_body(|_, body| crate::web::render::personalize(body, &csrf, &bar));
    Ok(response.map_into_left_body())
}

/// The caller of `req`; see the module docs.
async fn resolve_caller(
    req: &ServiceRequest,
    context: &AppContext,
    anonymous: &RequestCaller,
    what: &str,
) -> Result<Caller, Refused> {
    let access = &context.access;
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let Some(bearer) = bearer else {
            return Err(Refused::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the Authorization header must be `Bearer <token>`",
            ));
        };
        let store = access.tokens(&context.redis).await.map_err(|err| {
            tracing::warn!(%err, "token store unreachable");
            Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "tokens cannot be checked now (Redis is unreachable)",
            )
        })?;
        return match store.verify(bearer, &access.rules).await {
            Ok(Some(token)) => Ok(Caller::Token(token)),
            Ok(None) => {
                access.audit.record(
                    anonymous
                        .audit("token.use")
                        .object(what)
                        .denied("unknown, revoked or expired token"),
                );
                // Guessing tokens spends the login quota.
                let _ = access
                    .limiter
                    .check(Category::Login, &client_key(anonymous.client_ip));
                Err(Refused::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "the bearer token is unknown, revoked or expired",
                ))
            }
            Err(err) => {
                tracing::warn!(%err, "token check failed");
                Err(Refused::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "tokens cannot be checked now",
                ))
            }
        };
    }
    let session = req.get_session();
    match session.get::<SessionUser>(SESSION_USER) {
        Ok(Some(user)) if !user.is_expired(chrono::Utc::now()) => {
            Ok(Caller::Session(Box::new(user)))
        }
        Ok(None) => Ok(Caller::Anonymous),
        Ok(Some(_)) | Err(_) => {
            // An expired login, or one written by another version: forget it.
            session.purge();
            Ok(Caller::Anonymous)
        }
    }
}

/// Checks the CSRF token of a state-changing request: the header, else the `csrf_token`
/// field of a form body (read here and put back for the handler).
async fn check_csrf(
    req: &mut ServiceRequest,
    who: &RequestCaller,
    access: &AccessControl,
) -> Result<(), CsrfError> {
    let expected = who.csrf_token(access).to_string();
    let has_header = req.headers().contains_key(csrf::HEADER);
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut field = None;
    if !has_header && is_form {
        let body = req
            .extract::<web::Bytes>()
            .await
            .map_err(|_| CsrfError::Missing)?;
        field = url::form_urlencoded::parse(&body)
            .find(|(key, _)| key == csrf::FIELD)
            .map(|(_, value)| value.into_owned());
        req.set_payload(actix_web::dev::Payload::from(body));
    }
    csrf::check(req.request(), field.as_deref(), &expected)
}

/// The refusal as JSON (API, scripts) or as a page with the login buttons (browsers).
fn refuse(
    req: ServiceRequest,
    refused: Refused,
    access: &AccessControl,
) -> ServiceResponse<EitherBody<BoxBody, BoxBody>> {
    let wants_page = !req.path().starts_with("/api/")
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    let mut response = if wants_page {
        crate::access::login::refusal_page(access, refused.status, &refused.message, req.path())
    } else {
        HttpResponse::build(refused.status).json(serde_json::json!({"error": {
            "status": refused.status.as_u16(), "code": refused.code, "message": refused.message}}))
    };
    if refused.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"test-looper\""),
        );
    }
    if let Some(seconds) = refused.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    }
    req.into_response(response).map_into_right_body()
}
