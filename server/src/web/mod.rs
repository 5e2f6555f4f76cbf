//! The HTTP transport: routes, extractors, the one error type, CSRF and the listener. What a
//! page or an API answer contains is built in [`crate::views`] from [`crate::reads`]; this
//! layer only parses requests and renders those views as HTML or JSON.
//!
//! - [`pages`]: HTML pages (repos, repo, branch grid, commit, test history, run, machines).
//! - [`api`]: the JSON API (the same views as the pages, as JSON).
//! - [`actions`]: POST-only, CSRF-checked user actions (forms and JSON).
//! - [`error`]: the web layer's error type ([`error::ApiError`]).
//! - [`edge`]: the middleware around everything: Host and Origin allow-lists, security
//!   headers.
//! - [`live`]: Server-Sent Events for live pages, websocket log streaming.
//! - [`deployments`], [`terminal`]: the deployments page and a deployment's browser terminal.
//! - [`hunts`]: flake hunt pages and their JSON.
//! - [`pins`]: the branch Pins view, the commit's Repo Refs and the update-pin action.
//! - [`render`]: templates as responses, kept pages, the HTML error page.
//! - [`csrf`]: the per-server CSRF token; [`Ui`]: what every handler shares.

pub mod actions;
pub mod api;
pub mod csrf;
pub mod deployments;
pub mod edge;
pub mod error;
mod health;
pub mod hunts;
pub mod live;
pub mod pages;
pub mod pins;
pub mod render;
pub mod terminal;
mod ui;

pub use ui::{Attachments, Ui};

use crate::AppContext;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::net::SocketAddr;
use std::sync::Arc;

/// Registers every route on an actix `App`; shared by the listener and by in-process tests.
/// Wrap the `App` in [`edge::guard`] too (as [`start_with`] does).
pub fn configure(context: Arc<AppContext>, ui: Arc<Ui>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let static_dir = context.config.server.static_dir.clone();
        let max_body = context.config.server.max_body_bytes;
        let hosts = edge::AllowedHosts::from_config(&context.config);
        cfg.app_data(web::Data::new(hosts))
            .app_data(web::Data::from(context))
            .app_data(web::Data::from(ui))
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body)
                    .error_handler(|err, _| {
                        crate::web::error::ApiError::bad_request(err.to_string()).into()
                    }),
            )
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                crate::web::error::ApiError::bad_request(err.to_string()).into()
            }))
            .route("/healthz", web::get().to(health::healthz))
            .route(
                "/api/retention",
                web::get().to(crate::retention::report_handler),
            )
            .route("/", web::get().to(pages::root))
            .route("/repos", web::get().to(pages::repos))
            .route("/repos/{tail:.*}", web::get().to(pages::browse))
            .route("/runs/{id}", web::get().to(pages::run))
            .route("/machines", web::get().to(pages::machines))
            .route("/queue", web::get().to(pages::machines))
            .route("/deployments", web::get().to(deployments::page))
            .route("/deployments/{id}/terminal", web::get().to(terminal::page))
            .route("/deployments/{id}/socket", web::get().to(terminal::socket))
            .service(
                web::resource("/actions/{name}")
                    .route(web::post().to(actions::form_action))
                    .default_service(web::to(actions::method_not_allowed)),
            )
            .configure(crate::web::api::configure)
            .configure(crate::web::hunts::configure)
            .configure(crate::workers::configure)
            .route("/webhook", web::post().to(crate::webhooks::receive))
            .route(
                "/githubReceivedAPush",
                web::post().to(crate::webhooks::receive),
            )
            .service(actix_files::Files::new("/static", static_dir));
    }
}

/// Binds the listener and returns the running server with the addresses it listens on
/// (port 0 picks a free port). Await the server to serve until it is stopped.
///
/// The UI is attached to the context's live services ([`Attachments::live`]): it shows git
/// facts at once and the scheduler's state as soon as [`crate::services::start`] has run.
pub fn start(
    context: Arc<AppContext>,
    bind: (String, u16),
) -> anyhow::Result<(Server, Vec<SocketAddr>)> {
    let ui = Ui::new(context.git.clone(), Attachments::live(&context));
    start_with(context, ui, bind)
}

/// [`start`] with a prepared [`Ui`] (e.g. one attached to a scheduler).
pub fn start_with(
    context: Arc<AppContext>,
    ui: Arc<Ui>,
    bind: (String, u16),
) -> anyhow::Result<(Server, Vec<SocketAddr>)> {
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(edge::guard))
            .configure(configure(context.clone(), ui.clone()))
    })
    .bind(bind)?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}
