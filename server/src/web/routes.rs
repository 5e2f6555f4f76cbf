//! The route table: every route of the server with what it needs from its caller
//! ([`Need`]) and its rate-limit category. The router is built from this table
//! ([`configure`]) and the access guard ([`crate::access::guard`]) reads the same table, so a
//! route cannot exist without an access rule; `access_matrix` tests walk it in every mode.
//!
//! Each area lists its own routes next to its handlers (`api::routes`, `hunts::routes`,
//! ...); [`all`] is their concatenation, in the router's matching order.

use crate::access::Need;
use actix_web::dev::ResourceDef;
use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, Responder};
use std::sync::{Arc, OnceLock};
use test_looper_auth::{Access, Category};

type MakeRoute = Arc<dyn Fn() -> actix_web::Route + Send + Sync>;

/// One route.
#[derive(Clone)]
pub struct RouteSpec {
    pub method: Method,
    /// The actix path pattern (`/runs/{id}`).
    pub path: &'static str,
    pub need: Need,
    /// Rate-limited per client in this category.
    pub limit: Option<Category>,
    /// `None` for the static files service.
    make: Option<MakeRoute>,
}

impl std::fmt::Debug for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({:?})", self.method, self.path, self.need)
    }
}

fn spec<F, Args>(method: Method, path: &'static str, need: Need, handler: F) -> RouteSpec
where
    F: Handler<Args> + Send + Sync,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let route_method = method.clone();
    RouteSpec {
        method,
        path,
        need,
        limit: None,
        make: Some(Arc::new(move || {
            web::method(route_method.clone()).to(handler.clone())
        })),
    }
}

/// A GET route.
pub fn get<F, Args>(path: &'static str, need: Need, handler: F) -> RouteSpec
where
    F: Handler<Args> + Send + Sync,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    spec(Method::GET, path, need, handler)
}

/// A POST route.
pub fn post<F, Args>(path: &'static str, need: Need, handler: F) -> RouteSpec
where
    F: Handler<Args> + Send + Sync,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    spec(Method::POST, path, need, handler)
}

impl RouteSpec {
    /// Rate-limits the route per client in `category`.
    pub fn limited(mut self, category: Category) -> Self {
        self.limit = Some(category);
        self
    }
}

pub const READ: Need = Need::Role(Access::Read);
pub const ACT: Need = Need::Role(Access::Act);
pub const ADMIN: Need = Need::Role(Access::Admin);

/// The pages and the routes of this module's neighbours without a list of their own.
fn pages() -> Vec<RouteSpec> {
    use crate::web::{actions, deployments, health, pages, terminal};
    vec![
        get("/healthz", Need::Public, health::healthz),
        get("/api/retention", READ, crate::retention::report_handler),
        get("/", READ, pages::root),
        get("/repos", READ, pages::repos),
        get("/repos/{tail:.*}", READ, pages::browse),
        get("/runs/{id}", READ, pages::run),
        get("/machines", READ, pages::machines),
        get("/queue", READ, pages::machines),
        get("/api/machines/pool", READ, super::pool::api_pool),
        get("/deployments", READ, deployments::page),
        get("/deployments/{id}/terminal", ACT, terminal::page),
        get("/deployments/{id}/socket", ACT, terminal::socket),
        post("/actions/{name}", ACT, actions::form_action).limited(Category::Action),
        post("/webhook", Need::Public, crate::webhooks::receive).limited(Category::Webhook),
        post(
            "/githubReceivedAPush",
            Need::Public,
            crate::webhooks::receive,
        )
        .limited(Category::Webhook),
        RouteSpec {
            method: Method::GET,
            path: "/static/{tail:.*}",
            need: Need::Public,
            limit: None,
            make: None,
        },
    ]
}

/// Every route, in matching order.
pub fn all() -> Vec<RouteSpec> {
    let mut routes = pages();
    routes.extend(crate::web::api::routes());
    routes.extend(crate::web::hunts::routes());
    routes.extend(crate::web::audit::routes());
    routes.extend(crate::access::login::routes());
    routes.extend(crate::access::tokens_page::routes());
    routes.extend(crate::workers::routes());
    routes
}

/// The table the guard looks requests up in.
pub struct RouteTable {
    entries: Vec<(ResourceDef, RouteSpec)>,
}

impl RouteTable {
    fn new(routes: Vec<RouteSpec>) -> Self {
        RouteTable {
            entries: routes
                .into_iter()
                .map(|spec| (ResourceDef::new(spec.path), spec))
                .collect(),
        }
    }

    /// The route a request goes to: the first whose path matches and whose method is the
    /// request's (`HEAD` as `GET`). `None` for an unknown path or method (404/405: no
    /// handler runs).
    pub fn lookup(&self, method: &Method, path: &str) -> Option<&RouteSpec> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.entries
            .iter()
            .find(|(def, spec)| spec.method == *method && def.is_match(path))
            .map(|(_, spec)| spec)
    }

    pub fn routes(&self) -> impl Iterator<Item = &RouteSpec> {
        self.entries.iter().map(|(_, spec)| spec)
    }
}

/// The route table (built once).
pub fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| RouteTable::new(all()))
}

/// Registers every route of the table (one resource per path, with every method it has;
/// other methods get 405), then the static files.
pub fn configure(cfg: &mut web::ServiceConfig, static_dir: std::path::PathBuf) {
    let mut paths: Vec<&'static str> = Vec::new();
    for spec in table().routes() {
        if spec.make.is_some() && !paths.contains(&spec.path) {
            paths.push(spec.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        for spec in table().routes().filter(|s| s.path == path) {
            if let Some(make) = &spec.make {
                resource = resource.route(make());
            }
        }
        cfg.service(resource.default_service(web::to(method_not_allowed)));
    }
    cfg.service(actix_files::Files::new("/static", static_dir));
}

/// Any method a route does not have.
async fn method_not_allowed(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    let allowed: Vec<String> = table()
        .routes()
        .filter(|spec| ResourceDef::new(spec.path).is_match(req.path()))
        .map(|spec| spec.method.to_string())
        .collect();
    actix_web::HttpResponse::MethodNotAllowed()
        .insert_header(("Allow", allowed.join(", ")))
        .json(serde_json::json!({"error": {"status": 405, "code": "method_not_allowed",
            "message": format!("{} is not allowed here; use {}", req.method(), allowed.join(" or "))}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_found_by_its_own_pattern_and_has_one_rule() {
        let table = table();
        let mut seen = std::collections::HashSet::new();
        for spec in table.routes() {
            assert!(
                seen.insert((spec.method.clone(), spec.path)),
                "{spec:?} is listed twice"
            );
        }
        assert_eq!(
            table.lookup(&Method::GET, "/runs/r1").map(|s| s.need),
            Some(READ)
        );
        assert_eq!(
            table
                .lookup(&Method::POST, "/actions/cancel")
                .map(|s| s.need),
            Some(ACT)
        );
        assert!(table.lookup(&Method::GET, "/actions/cancel").is_none());
        assert_eq!(
            table
                .lookup(&Method::HEAD, "/static/style.css")
                .map(|s| s.need),
            Some(Need::Public)
        );
        assert!(table.lookup(&Method::GET, "/nowhere").is_none());
    }
}
