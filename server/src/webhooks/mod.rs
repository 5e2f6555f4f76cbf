//! Push webhooks: `POST /webhook` and the legacy `POST /githubReceivedAPush`.
//!
//! - GitHub: `X-GitHub-Event`, body signed with `X-Hub-Signature-256` (HMAC-SHA256 of the raw
//!   body with the webhook secret, compared in constant time). `ping` → 200.
//! - GitLab: `X-Gitlab-Event: Push Hook`, shared secret in `X-Gitlab-Token`.
//! - No secret configured → 403 (webhooks are refused); bad or missing signature → 401;
//!   a request that is neither → 400; malformed JSON → 400; unknown events and tag pushes →
//!   202 (ignored); the body size is bounded by `server.max_body_bytes` (413).
//! - A valid branch push queues a fetch and rescan of the repo at once and answers 200.
//! - Replays (L11): a signed delivery whose id (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`)
//!   was handled recently is answered 409 and not acted on again ([`RecentDeliveries`]).

pub mod deliveries;
mod payload;
mod verify;

pub use deliveries::RecentDeliveries;

use crate::AppContext;
use actix_web::{web, HttpRequest, HttpResponse};
use payload::{PushEvent, PushTarget};
use serde_json::json;

/// Which forge sent the request.
enum Sender {
    Github { event: String },
    Gitlab { event: String },
}

fn header<'r>(request: &'r HttpRequest, name: &str) -> Option<&'r str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

fn reply(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "message": message }))
}

/// The handler of both webhook routes.
pub async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    context: web::Data<AppContext>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(secret) = context.config.webhook_secret() else {
        tracing::warn!("webhook refused: no webhook_secret configured");
        return reply(
            StatusCode::FORBIDDEN,
            "webhooks are disabled: no webhook_secret is configured",
        );
    };
    let sender = if let Some(event) = header(&request, "x-github-event") {
        Sender::Github {
            event: event.to_owned(),
        }
    } else if let Some(event) = header(&request, "x-gitlab-event") {
        Sender::Gitlab {
            event: event.to_owned(),
        }
    } else {
        return reply(
            StatusCode::BAD_REQUEST,
            "not a GitHub or GitLab webhook: no X-GitHub-Event or X-Gitlab-Event header",
        );
    };
    let authentic = match &sender {
        Sender::Github { .. } => {
            verify::github_signature(secret, &body, header(&request, "x-hub-signature-256"))
        }
        Sender::Gitlab { .. } => verify::gitlab_token(secret, header(&request, "x-gitlab-token")),
    };
    if !authentic {
        tracing::warn!(peer = ?request.peer_addr(), "webhook with a bad or missing signature");
        return reply(StatusCode::UNAUTHORIZED, "bad or missing webhook signature");
    }
    let delivery = match &sender {
        Sender::Github { .. } => header(&request, "x-github-delivery"),
        Sender::Gitlab { .. } => header(&request, "x-gitlab-event-uuid"),
    };
    if delivery.is_some_and(|id| id.is_empty() || id.chars().count() > deliveries::MAX_ID_CHARS) {
        return reply(StatusCode::BAD_REQUEST, "malformed delivery id");
    }
    if delivery.is_some_and(|id| context.webhook_deliveries.seen(id)) {
        tracing::warn!(delivery = ?delivery, "webhook delivery replayed: refused");
        return reply(StatusCode::CONFLICT, "this delivery was already handled");
    }
    let response = handle_authentic(&request, &body, &context, &sender);
    if let Some(id) = delivery.filter(|_| response.status().is_success()) {
        context.webhook_deliveries.remember(id);
    }
    response
}

/// An authenticated delivery: its payload and what it asks for.
fn handle_authentic(
    request: &HttpRequest,
    body: &[u8],
    context: &AppContext,
    sender: &Sender,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let is_form = header(request, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let json_body = match payload::json_body(body, is_form) {
        Ok(bytes) => bytes,
        Err(message) => return reply(StatusCode::BAD_REQUEST, &message),
    };
    let parsed = match sender {
        Sender::Github { event } => match event.as_str() {
            "ping" => return reply(StatusCode::OK, "pong"),
            "push" => payload::github_push(&json_body),
            other => {
                tracing::debug!(event = other, "ignoring GitHub event");
                return reply(StatusCode::ACCEPTED, "event ignored");
            }
        },
        Sender::Gitlab { event } => match event.as_str() {
            "Push Hook" => payload::gitlab_push(&json_body),
            other => {
                tracing::debug!(event = other, "ignoring GitLab event");
                return reply(StatusCode::ACCEPTED, "event ignored");
            }
        },
    };
    let push = match parsed {
        Ok(push) => push,
        Err(message) => return reply(StatusCode::BAD_REQUEST, &message),
    };
    handle_push(context, push)
}

fn handle_push(context: &AppContext, push: PushEvent) -> HttpResponse {
    use actix_web::http::StatusCode;
    let branch = match &push.target {
        PushTarget::Tag(tag) => {
            tracing::debug!(tag, "ignoring tag push");
            return reply(StatusCode::ACCEPTED, "tag pushes are ignored");
        }
        PushTarget::Other(reference) => {
            tracing::debug!(reference, "ignoring push of a non-branch ref");
            return reply(StatusCode::ACCEPTED, "only branch pushes are handled");
        }
        PushTarget::Branch(branch) => branch.clone(),
    };
    let store = context.git.store();
    let repo = push
        .repo_candidates
        .iter()
        .find(|name| store.contains(name))
        .or_else(|| push.repo_candidates.first())
        .cloned()
        .unwrap_or_default();
    tracing::info!(%repo, %branch, after = %push.after, "push webhook: rescanning");
    context.git.request_scan(&repo);
    HttpResponse::Ok().json(json!({
        "message": "rescan queued",
        "repo": repo,
        "branch": branch,
    }))
}
