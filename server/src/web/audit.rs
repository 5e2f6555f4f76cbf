//! The audit log over HTTP, for admins: the `/audit` page (newest first, filtered by login,
//! action and outcome) and `GET /api/audit` with every filter of
//! [`crate::access::audit_log::AuditFilter`] (`who`, `login`, `action`, `outcome`, `object`,
//! `client_ip`, `since`, `until`, `limit`).

use crate::access::audit_log::{AuditError, AuditFilter};
use crate::web::error::ApiError;
use crate::web::render::{error_page, html};
use crate::web::routes::{get, RouteSpec, ADMIN};
use crate::AppContext;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use test_looper_auth::{AuditEvent, AuditOutcome};

/// The audit routes.
pub fn routes() -> Vec<RouteSpec> {
    vec![get("/audit", ADMIN, page), get("/api/audit", ADMIN, api)]
}

impl From<AuditError> for ApiError {
    fn from(err: AuditError) -> Self {
        let status = match err {
            AuditError::Invalid(_) => StatusCode::BAD_REQUEST,
            AuditError::NoStore | AuditError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::with_status(status, err.to_string())
    }
}

async fn query(context: &AppContext, filter: &AuditFilter) -> Result<Vec<AuditEvent>, ApiError> {
    let store = context.artifacts.get().map(|store| store.as_ref());
    Ok(context
        .access
        .audit
        .query(store, filter, chrono::Utc::now())
        .await?)
}

/// `GET /api/audit`.
async fn api(
    context: web::Data<AppContext>,
    filter: web::Query<AuditFilter>,
) -> Result<HttpResponse, ApiError> {
    let events = query(&context, &filter).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "events": events })))
}

/// The page's filters (a form: empty fields mean "any").
#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    login: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    outcome: String,
}

struct EventRow {
    time: String,
    who: String,
    login: String,
    role: String,
    how: String,
    client_ip: String,
    action: String,
    object: String,
    outcome: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    csrf: &'static str,
    filter_login: String,
    filter_action: String,
    filter_outcome: String,
    limit: usize,
    message: String,
    events: Vec<EventRow>,
}

fn lower<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `GET /audit`.
async fn page(context: web::Data<AppContext>, params: web::Query<PageQuery>) -> HttpResponse {
    let outcome = match params.outcome.as_str() {
        "" => None,
        "ok" => Some(AuditOutcome::Ok),
        "denied" => Some(AuditOutcome::Denied),
        "failed" => Some(AuditOutcome::Failed),
        other => return error_page(ApiError::bad_request(format!("unknown outcome {other:?}"))),
    };
    let non_empty = |text: &str| Some(text.trim().to_string()).filter(|t| !t.is_empty());
    let limit = 500;
    let filter = AuditFilter {
        login: non_empty(&params.login),
        action: non_empty(&params.action),
        outcome,
        limit: Some(limit),
        ..AuditFilter::default()
    };
    let (events, message) = match query(&context, &filter).await {
        Ok(events) => (events, String::new()),
        Err(err) => (Vec::new(), err.message),
    };
    html(&AuditPage {
        csrf: crate::web::render::CSRF_SLOT,
        filter_login: params.login.clone(),
        filter_action: params.action.clone(),
        filter_outcome: params.outcome.clone(),
        limit,
        message,
        events: events
            .into_iter()
            .map(|e| EventRow {
                time: e.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                who: e.who.unwrap_or_default(),
                login: e.login.unwrap_or_else(|| "anonymous".into()),
                role: e.role.map(|r| r.to_string()).unwrap_or_default(),
                how: lower(&e.caller_kind),
                client_ip: e.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                action: e.action,
                object: e.object.unwrap_or_default(),
                outcome: lower(&e.outcome),
                detail: e.detail.unwrap_or_default(),
            })
            .collect(),
    })
}
