//! Personal API tokens: `/tokens` lists the caller's tokens (an admin's: everyone's), creates
//! one (shown once, never again) and revokes one; `/api/tokens` does the same in JSON. Only a
//! logged-in person (a session) manages tokens: a token cannot mint tokens. A token's role is
//! at most its owner's. Creating and revoking are recorded in the audit log; the token itself
//! is never logged or stored (Redis keeps its SHA-256).

use super::{Need, RequestCaller};
use crate::web::error::ApiError;
use crate::web::render::html;
use crate::web::routes::{get, post, RouteSpec};
use crate::AppContext;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use test_looper_auth::{Caller, Category, Role, SessionUser, TokenError, TokenInfo};

/// The token routes.
pub fn routes() -> Vec<RouteSpec> {
    vec![
        get("/tokens", Need::Person, page),
        post("/tokens", Need::Person, create_form).limited(Category::Action),
        post("/tokens/{id}/revoke", Need::Person, revoke_form).limited(Category::Action),
        get("/api/tokens", Need::Person, api_list),
        post("/api/tokens", Need::Person, api_create).limited(Category::Action),
        post("/api/tokens/{id}/revoke", Need::Person, api_revoke).limited(Category::Action),
    ]
}

struct TokenRow {
    id: String,
    name: String,
    owner_login: String,
    role: Role,
    created: String,
    expires: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    csrf: &'static str,
    created: Option<String>,
    message: String,
    roles: Vec<Role>,
    all: bool,
    tokens: Vec<TokenRow>,
}

/// What to create (form or JSON).
#[derive(Deserialize)]
struct NewTokenRequest {
    name: String,
    role: Role,
    /// Days until it expires; none: never (not recommended).
    #[serde(default, deserialize_with = "empty_as_none")]
    expires_days: Option<u32>,
    #[serde(default, rename = "csrf_token")]
    _csrf_token: Option<String>,
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let text: Option<serde_json::Value> = Option::deserialize(d)?;
    match text {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => {
            s.trim().parse().map(Some).map_err(serde::de::Error::custom)
        }
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expires_days must be a whole number")),
        Some(_) => Err(serde::de::Error::custom("expires_days must be a number")),
    }
}

/// The logged-in person (the route table admits only sessions).
fn person(who: &RequestCaller) -> Result<&SessionUser, ApiError> {
    match &who.caller {
        Caller::Session(user) => Ok(user),
        _ => Err(ApiError::with_status(
            StatusCode::UNAUTHORIZED,
            "log in to manage API tokens",
        )),
    }
}

fn token_error(err: TokenError) -> ApiError {
    let status = match err {
        TokenError::RoleAboveOwner { .. } | TokenError::ExpiryInPast | TokenError::InvalidName => {
            StatusCode::BAD_REQUEST
        }
        TokenError::NotFound(_) => StatusCode::NOT_FOUND,
        TokenError::NotAllowed => StatusCode::FORBIDDEN,
        TokenError::Corrupt(_) | TokenError::Redis(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::with_status(status, err.to_string())
}

async fn store(context: &AppContext) -> Result<&test_looper_auth::TokenStore, ApiError> {
    context.access.tokens(&context.redis).await.map_err(|err| {
        ApiError::with_status(StatusCode::SERVICE_UNAVAILABLE, format!("redis: {err}"))
    })
}

async fn list(context: &AppContext, user: &SessionUser) -> Result<Vec<TokenInfo>, ApiError> {
    let store = store(context).await?;
    let tokens = if user.role == Role::Admin {
        store.list_all().await
    } else {
        store.list(&user.identity).await
    };
    tokens.map_err(token_error)
}

async fn create(
    context: &AppContext,
    who: &RequestCaller,
    request: NewTokenRequest,
) -> Result<test_looper_auth::NewToken, ApiError> {
    let user = person(who)?;
    let expires_at = match request.expires_days {
        Some(0) | None => None,
        Some(days) if days <= 3650 => {
            Some(chrono::Utc::now() + chrono::Duration::days(i64::from(days)))
        }
        Some(_) => return Err(ApiError::bad_request("expires_days is at most 3650")),
    };
    let result = store(context)
        .await?
        .create(
            &user.identity,
            user.role,
            &request.name,
            request.role,
            expires_at,
        )
        .await;
    let event = who.audit("token.create").object(request.name.as_str());
    match result {
        Ok(token) => {
            let mut event = event.token_id(token.info.id.clone());
            event.detail = Some(format!("role {}", token.info.role));
            context.access.audit.record(event);
            Ok(token)
        }
        Err(err) => {
            context.access.audit.record(event.denied(err.to_string()));
            Err(token_error(err))
        }
    }
}

async fn revoke(
    context: &AppContext,
    who: &RequestCaller,
    id: &str,
) -> Result<TokenInfo, ApiError> {
    let user = person(who)?;
    let result = store(context)
        .await?
        .revoke(id, &user.identity, user.role)
        .await;
    let event = who.audit("token.revoke").object(id).token_id(id);
    match result {
        Ok(info) => {
            context.access.audit.record(event);
            Ok(info)
        }
        Err(err) => {
            context.access.audit.record(event.denied(err.to_string()));
            Err(token_error(err))
        }
    }
}

fn when(time: Option<chrono::DateTime<chrono::Utc>>, none: &str) -> String {
    time.map_or_else(
        || none.to_string(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

async fn render(
    context: &AppContext,
    who: &RequestCaller,
    created: Option<String>,
    message: String,
) -> HttpResponse {
    let user = match person(who) {
        Ok(user) => user,
        Err(err) => return crate::web::render::error_page(err),
    };
    let tokens = match list(context, user).await {
        Ok(tokens) => tokens,
        Err(err) => return crate::web::render::error_page(err),
    };
    let mut page = html(&TokensPage {
        csrf: crate::web::render::CSRF_SLOT,
        created,
        message,
        roles: [Role::Viewer, Role::Operator, Role::Admin]
            .into_iter()
            .filter(|role| *role <= user.role)
            .collect(),
        all: user.role == Role::Admin,
        tokens: tokens
            .into_iter()
            .map(|t| TokenRow {
                created: when(Some(t.created), ""),
                expires: when(t.expires_at, "never"),
                last_used: when(t.last_used, "never"),
                id: t.id,
                name: t.name,
                owner_login: t.owner_login,
                role: t.role,
            })
            .collect(),
    });
    // The page may hold a new token: never cache it.
    page.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    page
}

/// `GET /tokens`.
async fn page(context: web::Data<AppContext>, who: RequestCaller) -> HttpResponse {
    render(&context, &who, None, String::new()).await
}

/// `POST /tokens` (form).
async fn create_form(
    context: web::Data<AppContext>,
    who: RequestCaller,
    form: web::Form<NewTokenRequest>,
) -> HttpResponse {
    match create(&context, &who, form.into_inner()).await {
        Ok(token) => {
            render(
                &context,
                &who,
                Some(token.token.expose().to_string()),
                String::new(),
            )
            .await
        }
        Err(err) => render(&context, &who, None, err.message).await,
    }
}

/// `POST /tokens/{id}/revoke` (form).
async fn revoke_form(
    context: web::Data<AppContext>,
    who: RequestCaller,
    id: web::Path<String>,
) -> HttpResponse {
    match revoke(&context, &who, &id).await {
        Ok(_) => HttpResponse::SeeOther()
            .insert_header(("Location", "/tokens"))
            .finish(),
        Err(err) => render(&context, &who, None, err.message).await,
    }
}

/// `GET /api/tokens`.
async fn api_list(
    context: web::Data<AppContext>,
    who: RequestCaller,
) -> Result<HttpResponse, ApiError> {
    let user = person(&who)?;
    Ok(HttpResponse::Ok().json(list(&context, user).await?))
}

/// `POST /api/tokens` `{"name", "role", "expires_days"}`: `{"token", "info"}` (the token is
/// in this answer only).
async fn api_create(
    context: web::Data<AppContext>,
    who: RequestCaller,
    body: web::Json<NewTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = create(&context, &who, body.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(serde_json::json!({"token": token.token.expose(), "info": token.info})))
}

/// `POST /api/tokens/{id}/revoke`.
async fn api_revoke(
    context: web::Data<AppContext>,
    who: RequestCaller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(revoke(&context, &who, &id).await?))
}
