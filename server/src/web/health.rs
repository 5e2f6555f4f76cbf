//! `GET /healthz`: 200 when Redis answers, 503 with the reason otherwise.

use crate::AppContext;
use actix_web::{web, HttpResponse};
use serde_json::json;

pub async fn healthz(context: web::Data<AppContext>) -> HttpResponse {
    match context.redis.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ok", "redis": "connected"})),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "redis": reason})),
    }
}
