//! The HTTP surface: routes, shared state and the listener.

mod health;
mod repos_page;

use crate::AppContext;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::net::SocketAddr;
use std::sync::Arc;

/// Registers every route on an actix `App`; shared by the listener and by in-process tests.
pub fn configure(context: Arc<AppContext>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let static_dir = context.config.server.static_dir.clone();
        let max_body = context.config.server.max_body_bytes;
        cfg.app_data(web::Data::from(context))
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(web::JsonConfig::default().limit(max_body))
            .route("/healthz", web::get().to(health::healthz))
            .route("/", web::get().to(repos_page::repos_page))
            .route("/repos", web::get().to(repos_page::repos_page))
            .route("/webhook", web::post().to(crate::webhooks::receive))
            .route("/githubReceivedAPush", web::post().to(crate::webhooks::receive))
            .service(actix_files::Files::new("/static", static_dir));
    }
}

/// Binds the listener and returns the running server with the addresses it listens on
/// (port 0 picks a free port). Await the server to serve until it is stopped.
pub fn start(
    context: Arc<AppContext>,
    bind: (String, u16),
) -> anyhow::Result<(Server, Vec<SocketAddr>)> {
    let server =
        HttpServer::new(move || App::new().configure(configure(context.clone()))).bind(bind)?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}
