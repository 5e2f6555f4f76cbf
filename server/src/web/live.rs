//! Live updates. `GET /api/events` is a Server-Sent Events stream of [`Change`]s (from the
//! scheduler's change feed and from git scans); pages re-render their live region when an event
//! concerns them. `GET /api/runs/{id}/log` streams a run's log: over a websocket when the
//! request upgrades (binary frames of an 8-byte big-endian offset followed by the bytes from
//! that offset; reconnecting with `?offset=N` resumes with no gap and no duplicate), otherwise
//! as plain text from `?offset=N` with `X-Log-Offset`/`X-Log-Complete` headers. A websocket
//! upgrade from a page of another origin gets 403 (L3, [`crate::web::edge::origin_allowed`]).

use crate::reads::model::{Change, ChangeStream};
use crate::views::paths;
use crate::web::error::ApiError;
use crate::web::ui::Ui;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

const KEEPALIVE: Duration = Duration::from_secs(15);

struct Feeds {
    git: broadcast::Receiver<std::sync::Arc<crate::git::RepoScanned>>,
    state: Option<ChangeStream>,
    first: bool,
}

async fn next_change(feeds: &mut Feeds) -> Option<Result<Option<Change>, ()>> {
    let state_next = async {
        match feeds.state.as_mut() {
            Some(stream) => stream.next().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        event = feeds.git.recv() => match event {
            Ok(scan) => Some(Ok(Some(Change::Branches { repo: scan.repo.clone() }))),
            // Missed events: tell pages to refresh everything.
            Err(RecvError::Lagged(_)) => Some(Ok(Some(Change::Everything))),
            Err(RecvError::Closed) => None,
        },
        event = state_next => event.map(|change| Ok(Some(change))),
        _ = tokio::time::sleep(KEEPALIVE) => Some(Ok(None)),
    }
}

/// `GET /api/events`.
pub async fn events(ui: web::Data<Ui>) -> HttpResponse {
    let feeds = Feeds {
        git: ui.git_events(),
        state: ui.sources.state.subscribe(),
        first: true,
    };
    let stream = futures_util::stream::unfold(feeds, |mut feeds| async move {
        if feeds.first {
            feeds.first = false;
            return Some((
                Ok::<_, actix_web::Error>(Bytes::from_static(b": connected\n\n")),
                feeds,
            ));
        }
        let item = next_change(&mut feeds).await?;
        let bytes = match item {
            Ok(Some(change)) => {
                let json = serde_json::to_string(&change).unwrap_or_else(|_| "{}".into());
                Bytes::from(format!("event: change\ndata: {json}\n\n"))
            }
            Ok(None) | Err(()) => Bytes::from_static(b": keepalive\n\n"),
        };
        Some((Ok(bytes), feeds))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

#[derive(Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    pub offset: u64,
}

/// `GET /api/runs/{id}/log`.
pub async fn run_log(
    ui: web::Data<Ui>,
    request: HttpRequest,
    id: web::Path<String>,
    query: web::Query<LogQuery>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let run_id = paths::run_id(&id)?;
    let upgrade = request
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        let chunk = ui.logs.read_from(&run_id, query.offset).await?;
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .insert_header(("X-Log-Offset", chunk.offset.to_string()))
            .insert_header(("X-Log-Complete", chunk.complete.to_string()))
            .body(chunk.bytes));
    }
    if !crate::web::edge::origin_allowed(&request) {
        tracing::warn!(peer = ?request.peer_addr(), %run_id, "cross-origin log socket refused");
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "forbidden",
            "cross-origin log connections are refused",
        ));
    }
    // Fail before upgrading when the run has no log at all.
    ui.logs.read_from(&run_id, query.offset).await?;
    let (response, session, messages) = actix_ws::handle(&request, body)
        .map_err(|e| ApiError::bad_request(format!("websocket handshake failed: {e}")))?;
    let ui = ui.into_inner();
    actix_web::rt::spawn(stream_log(ui, run_id, query.offset, session, messages));
    Ok(response)
}

async fn stream_log(
    ui: std::sync::Arc<Ui>,
    run_id: String,
    mut offset: u64,
    mut session: actix_ws::Session,
    mut messages: actix_ws::MessageStream,
) {
    loop {
        let chunk = match ui.logs.read_from(&run_id, offset).await {
            Ok(chunk) => chunk,
            Err(err) => {
                let _ = session
                    .close(Some(actix_ws::CloseReason {
                        code: actix_ws::CloseCode::Error,
                        description: Some(err.to_string()),
                    }))
                    .await;
                return;
            }
        };
        if !chunk.bytes.is_empty() {
            let mut frame = Vec::with_capacity(8 + chunk.bytes.len());
            frame.extend_from_slice(&chunk.offset.to_be_bytes());
            frame.extend_from_slice(&chunk.bytes);
            offset = chunk.offset + chunk.bytes.len() as u64;
            if session.binary(frame).await.is_err() {
                return;
            }
            continue;
        }
        if chunk.complete {
            let _ = session
                .close(Some(actix_ws::CloseReason {
                    code: actix_ws::CloseCode::Normal,
                    description: Some("log complete".into()),
                }))
                .await;
            return;
        }
        tokio::select! {
            _ = ui.logs.wait_for_more(&run_id, offset) => {}
            message = messages.next() => match message {
                Some(Ok(actix_ws::Message::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(actix_ws::Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
