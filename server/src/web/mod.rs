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
//! - [`routes`]: the route table (every route with the access it needs); the router is
//!   built from it.
//! - [`audit`]: the audit log page and JSON.
//! - [`csrf`]: CSRF tokens (checked by the access guard); [`Ui`]: what every handler shares.
//!
//! Around the routes, outside in: [`edge::guard`] (Host/Origin, security headers), the session
//! middleware (actix-session, Redis) and [`crate::access::guard`] (who calls, may they).

pub mod actions;
pub mod api;
pub mod audit;
pub mod csrf;
pub mod deployments;
pub mod edge;
pub mod error;
mod health;
pub mod hunts;
pub mod live;
pub mod pages;
pub mod pins;
pub mod pool;
pub mod render;
pub mod routes;
pub mod terminal;
mod ui;

pub use ui::{Attachments, Ui};

use crate::AppContext;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::net::SocketAddr;
use std::sync::Arc;

/// Registers every route on an actix `App`. Wrap the `App` in the access guard, the session
/// middleware and [`edge::guard`] too, as [`start_with`] does.
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
            .configure(|cfg| routes::configure(cfg, static_dir));
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
    use anyhow::Context as _;
    let cookie_key = crate::access::session_store::cookie_key(&context.config.server.data_dir)
        .context("cannot read or create the session cookie key in server.data_dir")?;
    let tls = match &context.config.server.tls {
        Some(tls) => Some(crate::access::tls::server_config(tls)?),
        None => None,
    };
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(crate::access::guard::guard))
            .wrap(crate::access::session_store::middleware(
                context.clone(),
                cookie_key.clone(),
            ))
            .wrap(actix_web::middleware::from_fn(edge::guard))
            .configure(configure(context.clone(), ui.clone()))
    });
    let server = match tls {
        Some(tls) => server.bind_rustls_0_23(bind, (*tls).clone())?,
        None => server.bind(bind)?,
    };
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}
