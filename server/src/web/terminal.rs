//! The browser terminal of a deployment.
//!
//! - `GET /deployments/{id}/terminal`: a full-window xterm.js page (served from
//!   `/static/vendor/xterm`, no CDN) running `static/terminal.js`.
//! - `GET /deployments/{id}/socket`: the websocket. Client→server binary frames form one
//!   byte stream of records ([`crate::deployments::framing`]): keyboard input and resizes go
//!   to the worker holding the deployment; an unknown record closes the socket (1008).
//!   Server→client: first one text frame `{"offset": N}` naming the stream offset the
//!   following bytes start at (the `?offset=` asked for, or where the kept scrollback begins),
//!   then binary frames of raw terminal bytes, history first, then live. When the
//!   deployment is shut down the socket closes normally (1000, "session terminated").
//!   Upgrades whose `Origin` is not one of the server's own names
//!   ([`crate::web::edge::origin_allowed`], the configured allow-list, never the request's own
//!   `Host`) get 403: the terminal is a root shell. Input the worker cannot take as fast as
//!   it comes closes the socket (1008, L4).

use crate::access::{deployment_rules, RequestCaller};
use crate::deployments::framing::{FrameDecoder, MAX_KEYS_BYTES};
use crate::deployments::{InputSent, TerminalSubscription};
use crate::reads::model::DeploymentView;
use crate::views::paths;
use crate::web::error::ApiError;
use crate::web::render::{error_page, html};
use crate::web::ui::Ui;
use crate::AppContext;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use askama::Template;
use futures_util::StreamExt;
use serde::Deserialize;
use std::sync::Arc;

/// Largest binary frame sent to a browser.
const MAX_SEND_BYTES: usize = 64 * 1024;

#[derive(Template)]
#[template(path = "terminal.html")]
struct TerminalPage {
    deployment: DeploymentView,
    commit_url: String,
    socket_url: String,
}

/// A deployment id from the URL, known to the scheduler.
async fn known_deployment(ui: &Ui, id: &str) -> Result<DeploymentView, ApiError> {
    let deployment_id = paths::run_id(id)?;
    ui.sources
        .state
        .deployment(&deployment_id)
        .await?
        .ok_or_else(|| {
            ApiError::with_status(
                StatusCode::NOT_FOUND,
                format!("deployment {deployment_id} not found"),
            )
        })
}

/// The deployment `id`, if `who` may use it ([`crate::access::deployment_rules`]); the
/// attempt is recorded in the audit log.
async fn usable_deployment(
    ui: &Ui,
    context: &AppContext,
    who: &RequestCaller,
    id: &str,
) -> Result<DeploymentView, ApiError> {
    let deployment = known_deployment(ui, id).await?;
    let access = &context.access;
    let event = who
        .audit("deployment.attach")
        .object(&deployment.deployment_id);
    match deployment_rules::may_control(access.mode, who, deployment.booted_by.as_ref()) {
        Ok(()) => {
            access.audit.record(event);
            Ok(deployment)
        }
        Err(denied) => {
            access.audit.record(event.denied(denied.to_string()));
            Err(ApiError::with_status(
                StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::FORBIDDEN),
                "only the person who booted this deployment, or an admin, may use it",
            ))
        }
    }
}

/// `GET /deployments/{id}/terminal`.
pub async fn page(
    ui: web::Data<Ui>,
    context: web::Data<AppContext>,
    who: RequestCaller,
    id: web::Path<String>,
) -> HttpResponse {
    match usable_deployment(&ui, &context, &who, &id).await {
        Ok(deployment) => html(&TerminalPage {
            commit_url: paths::commit_url(&deployment.repo, &deployment.commit),
            socket_url: format!(
                "/deployments/{}/socket",
                paths::encode_component(&deployment.deployment_id)
            ),
            deployment,
        }),
        Err(err) => error_page(err),
    }
}

#[derive(Deserialize)]
pub struct SocketQuery {
    #[serde(default)]
    offset: u64,
}

/// `GET /deployments/{id}/socket`.
pub async fn socket(
    ui: web::Data<Ui>,
    context: web::Data<AppContext>,
    who: RequestCaller,
    request: HttpRequest,
    id: web::Path<String>,
    query: web::Query<SocketQuery>,
    body: web::Payload,
) -> HttpResponse {
    let peer = request
        .peer_addr()
        .map(|addr| addr.to_string())
        .unwrap_or_else(|| "unknown".into());
    if !crate::web::edge::origin_allowed(&request) {
        tracing::warn!(%peer, deployment = %id, "cross-origin terminal socket refused");
        return HttpResponse::Forbidden().body("cross-origin terminal connections are refused");
    }
    let deployment = match usable_deployment(&ui, &context, &who, &id).await {
        Ok(deployment) => deployment,
        Err(err) => return error_page(err),
    };
    let (response, session, stream) = match actix_ws::handle(&request, body) {
        Ok(parts) => parts,
        Err(err) => return HttpResponse::BadRequest().body(format!("websocket handshake: {err}")),
    };
    let stream = stream
        .max_frame_size(MAX_KEYS_BYTES + 16)
        .aggregate_continuations()
        .max_continuation_size(MAX_KEYS_BYTES + 16);
    let id = deployment.deployment_id;
    if !deployment.alive {
        // Ended before this server knew its stream (e.g. across a restart): say so.
        context.deployments.terminate(&id);
    }
    tracing::info!(deployment = %id, %peer, "browser terminal attached");
    let subscription = context.deployments.subscribe(&id);
    actix_web::rt::spawn(run_terminal(
        context.into_inner(),
        TerminalSocket {
            deployment_id: id,
            peer,
            offset: query.offset,
        },
        subscription,
        session,
        stream,
    ));
    response
}

struct TerminalSocket {
    deployment_id: String,
    peer: String,
    /// The next stream byte the browser needs.
    offset: u64,
}

async fn run_terminal(
    context: Arc<AppContext>,
    mut terminal: TerminalSocket,
    mut subscription: TerminalSubscription,
    mut session: Session,
    mut stream: actix_ws::AggregatedMessageStream,
) {
    let mut decoder = FrameDecoder::default();
    let mut first = true;
    let close = loop {
        let chunk = subscription.read_from(terminal.offset, MAX_SEND_BYTES);
        if first || chunk.offset != terminal.offset {
            first = false;
            let header = serde_json::json!({ "offset": chunk.offset }).to_string();
            if session.text(header).await.is_err() {
                break None;
            }
        }
        terminal.offset = chunk.offset + chunk.bytes.len() as u64;
        let sent = !chunk.bytes.is_empty();
        if sent {
            if session.binary(chunk.bytes).await.is_err() {
                break None;
            }
        } else if chunk.ended {
            break Some(CloseReason {
                code: CloseCode::Normal,
                description: Some("session terminated".into()),
            });
        }
        // Input first, so that a flood of output cannot hold back a Ctrl-C.
        tokio::select! {
            biased;
            message = stream.next() => match message {
                Some(Ok(AggregatedMessage::Binary(bytes))) => decoder.push(&bytes),
                Some(Ok(AggregatedMessage::Text(text))) => decoder.push(text.as_bytes()),
                Some(Ok(AggregatedMessage::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        break None;
                    }
                    continue;
                }
                Some(Ok(AggregatedMessage::Pong(_))) => continue,
                Some(Ok(AggregatedMessage::Close(_))) | Some(Err(_)) | None => break None,
            },
            _ = std::future::ready(()), if sent => continue,
            _ = subscription.changed() => continue,
        }
        match forward_input(&context, &terminal.deployment_id, &mut decoder) {
            Ok(()) => {}
            Err(reason) => break Some(reason),
        }
    };
    tracing::info!(deployment = %terminal.deployment_id, peer = %terminal.peer,
        "browser terminal detached");
    drop(subscription);
    let _ = session.close(close).await;
}

/// Sends every complete record to the worker; a bad record is the reason to close.
fn forward_input(
    context: &AppContext,
    deployment_id: &str,
    decoder: &mut FrameDecoder,
) -> Result<(), CloseReason> {
    loop {
        match decoder.next_input() {
            Ok(Some(input)) => match context.deployments.send_input(deployment_id, input) {
                InputSent::Queued => {}
                InputSent::NoWorker => {
                    tracing::debug!(%deployment_id, "terminal input with no worker attached dropped");
                }
                InputSent::Overflow => {
                    tracing::warn!(%deployment_id, "terminal socket closed: input overflow");
                    return Err(CloseReason {
                        code: CloseCode::Policy,
                        description: Some("input arrives faster than the worker takes it".into()),
                    });
                }
            },
            Ok(None) => return Ok(()),
            Err(err) => {
                tracing::warn!(%deployment_id, %err, "terminal socket closed: bad input");
                return Err(CloseReason {
                    code: CloseCode::Policy,
                    description: Some(err.to_string()),
                });
            }
        }
    }
}
