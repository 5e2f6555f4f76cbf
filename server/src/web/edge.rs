//! The web edge: what every request and response goes through before and after routing.
//!
//! - Host allow-list (H3): a request whose `Host` is not one of the server's names gets 421,
//!   so a DNS-rebinding page (`Host: rebind.attacker.example:9081`) cannot read pages or the
//!   CSRF token from a browser on the server's network. The names are `server.address`,
//!   `localhost`, `127.0.0.1` and `[::1]` on the configured port (or the port the connection
//!   came in on), plus every `server.allowed_hosts` entry taken literally (`name` or
//!   `name:port`, e.g. a reverse proxy's public name). `/healthz` is exempt (load balancers
//!   probe it by address).
//! - Origin allow-list: a state-changing request (not GET/HEAD/OPTIONS) whose `Origin` is not
//!   one of those names gets 403, and the websockets of the terminal and of live logs use
//!   [`origin_allowed`] (H3, L3). A request without `Origin` is not from a browser page.
//! - Security headers on every response (M4): `Content-Security-Policy` (no framing, scripts
//!   and styles from this origin only; the two pages that embed xterm.js also allow inline
//!   styles, which xterm.js 5 writes into `<style>` elements), `X-Frame-Options: DENY`,
//!   `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`. A header a handler
//!   set itself is kept. Under TLS (`server.tls`) also `Strict-Transport-Security`.

use crate::config::refusals::parse_authority;
use crate::config::Config;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::HashSet;

/// The policy of every response.
pub const CSP: &str = "default-src 'self'; frame-ancestors 'none'; object-src 'none'; \
                       base-uri 'none'; form-action 'self'";
/// The policy of the pages that embed xterm.js (it writes `<style>` elements).
pub const CSP_XTERM: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
                             frame-ancestors 'none'; object-src 'none'; base-uri 'none'; \
                             form-action 'self'";

/// Names that are always the server's own.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The `Host`/`Origin` authorities this server answers to.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// Host names allowed on the server's port(s).
    names: HashSet<String>,
    /// `server.allowed_hosts`, normalised, matched exactly.
    literal: HashSet<String>,
    port: u16,
}

impl AllowedHosts {
    pub fn from_config(config: &Config) -> Self {
        let mut names: HashSet<String> = LOOPBACK_NAMES.iter().map(|n| n.to_string()).collect();
        // `address` may be written with or without brackets, or with a port.
        let address = config.server.address.trim();
        let bracketed = match address.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => format!("[{ip}]"),
            Err(_) => address.to_string(),
        };
        if let Some(authority) = parse_authority(&bracketed) {
            names.insert(host_part(&authority).to_string());
        }
        let literal = config
            .server
            .allowed_hosts
            .iter()
            .filter_map(|entry| parse_authority(entry.trim()))
            .collect();
        AllowedHosts {
            names,
            literal,
            port: config.server.http_port,
        }
    }

    /// Whether `authority` (`host` or `host:port`, as in a `Host` header) is one of ours;
    /// `local_port` is the port the connection came in on.
    pub fn allows(&self, authority: &str, local_port: Option<u16>) -> bool {
        let Some(authority) = parse_authority(authority) else {
            return false;
        };
        if self.literal.contains(&authority) {
            return true;
        }
        if !self.names.contains(host_part(&authority)) {
            return false;
        }
        let ports = [Some(self.port), local_port];
        match port_part(&authority) {
            Some(port) => ports.contains(&Some(port)),
            // No port: the scheme's default, where a proxy or the listener itself may be.
            None => ports.iter().flatten().any(|p| matches!(p, 80 | 443)),
        }
    }

    /// Whether an `Origin` header value names one of our authorities (`null` and anything
    /// that is not an http(s) URL never do).
    pub fn allows_origin(&self, origin: &str, local_port: Option<u16>) -> bool {
        let Ok(url) = url::Url::parse(origin) else {
            return false;
        };
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        self.allows(&authority, local_port)
    }
}

fn host_part(authority: &str) -> &str {
    match port_part(authority) {
        Some(_) => &authority[..authority.rfind(':').unwrap_or(authority.len())],
        None => authority,
    }
}

fn port_part(authority: &str) -> Option<u16> {
    let (host, port) = authority.rsplit_once(':')?;
    if host.starts_with('[') && !host.ends_with(']') {
        // An unbracketed colon inside an IPv6 literal.
        return None;
    }
    port.parse().ok()
}

fn allowed_hosts(req: &HttpRequest) -> Option<&AllowedHosts> {
    req.app_data::<web::Data<AllowedHosts>>()
        .map(|data| data.get_ref())
}

fn local_port(req: &HttpRequest) -> Option<u16> {
    Some(req.app_config().local_addr().port()).filter(|port| *port != 0)
}

/// The `Host` of a request (the header, else the request line's authority).
fn request_host(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// Whether the request's `Origin` (if it has one) is one of the server's own. Without an
/// `Origin` the request does not come from a browser page (browsers send it on every
/// websocket handshake).
pub fn origin_allowed(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Some(hosts) = allowed_hosts(req) else {
        return false;
    };
    origin
        .to_str()
        .is_ok_and(|origin| hosts.allows_origin(origin, local_port(req)))
}

/// Why a request is refused before routing, if it is.
fn refusal(req: &HttpRequest) -> Option<HttpResponse> {
    if req.path() == "/healthz" {
        return None;
    }
    let Some(hosts) = allowed_hosts(req) else {
        tracing::error!("no host allow-list registered: request refused");
        return Some(HttpResponse::InternalServerError().body("host allow-list missing"));
    };
    let Some(host) = request_host(req) else {
        return Some(HttpResponse::BadRequest().body("the request has no Host header"));
    };
    if !hosts.allows(host, local_port(req)) {
        let shown: String = host.chars().take(100).collect();
        tracing::warn!(host = %shown, peer = ?req.peer_addr(), path = %req.path(),
            "request for a host name this server does not answer to refused");
        return Some(
            HttpResponse::build(StatusCode::MISDIRECTED_REQUEST).body(format!(
                "this server does not answer to the host name `{shown}`; if browsers reach \
                 it under that name, add it to server.allowed_hosts"
            )),
        );
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !origin_allowed(req) {
        let origin: String = req
            .headers()
            .get(header::ORIGIN)
            .map(|o| {
                String::from_utf8_lossy(o.as_bytes())
                    .chars()
                    .take(100)
                    .collect()
            })
            .unwrap_or_default();
        tracing::warn!(%origin, peer = ?req.peer_addr(), path = %req.path(),
            "cross-origin request refused");
        return Some(HttpResponse::Forbidden().body(format!(
            "cross-origin request refused: the Origin `{origin}` is not one of this server's \
             names (if browsers reach it under that name, add it to server.allowed_hosts)"
        )));
    }
    None
}

/// The page embeds xterm.js (a run's log, a deployment's terminal).
fn embeds_xterm(path: &str) -> bool {
    let terminal = path.starts_with("/deployments/") && path.ends_with("/terminal");
    let run_page = path.starts_with("/runs/") && path["/runs/".len()..].find('/').is_none();
    terminal || run_page
}

fn add_security_headers(path: &str, headers: &mut header::HeaderMap) {
    let csp = if embeds_xterm(path) { CSP_XTERM } else { CSP };
    let wanted = [
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in wanted {
        set_if_absent(headers, name, value);
    }
}

fn set_if_absent(headers: &mut header::HeaderMap, name: HeaderName, value: &'static str) {
    if !headers.contains_key(&name) {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The middleware (see the module docs); wrap the whole `App` with
/// `actix_web::middleware::from_fn(edge::guard)`.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let path = req.path().to_string();
    let tls = req
        .app_data::<web::Data<crate::AppContext>>()
        .is_some_and(|context| context.access.tls);
    let mut response = match refusal(req.request()) {
        Some(refused) => req.into_response(refused).map_into_right_body(),
        None => next.call(req).await?.map_into_left_body(),
    };
    add_security_headers(&path, response.headers_mut());
    if tls {
        set_if_absent(
            response.headers_mut(),
            header::STRICT_TRANSPORT_SECURITY,
            crate::access::tls::HSTS,
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(address: &str, port: u16, extra: &[&str]) -> AllowedHosts {
        let mut names: HashSet<String> = LOOPBACK_NAMES.iter().map(|n| n.to_string()).collect();
        names.insert(address.to_string());
        AllowedHosts {
            names,
            literal: extra.iter().filter_map(|e| parse_authority(e)).collect(),
            port,
        }
    }

    #[test]
    fn hosts_on_the_servers_port_and_listed_extras_are_allowed() {
        let allowed = hosts("ci.internal", 9081, &["ci.example.com", "proxy:8443"]);
        for ok in [
            "127.0.0.1:9081",
            "localhost:9081",
            "LOCALHOST:9081",
            "[::1]:9081",
            "ci.internal:9081",
            "ci.example.com",
            "proxy:8443",
        ] {
            assert!(allowed.allows(ok, None), "{ok}");
        }
        assert!(allowed.allows("127.0.0.1:40000", Some(40000)));
        for refused in [
            "rebind.example:9081",
            "127.0.0.1:9082",
            "127.0.0.1",
            "ci.example.com:9081",
            "proxy",
            "",
            "127.0.0.1:9081/x",
            "user@127.0.0.1:9081",
        ] {
            assert!(!allowed.allows(refused, Some(40000)), "{refused}");
        }
        let on_80 = hosts("ci.internal", 80, &[]);
        assert!(on_80.allows("ci.internal", None));
    }

    #[test]
    fn origins_are_checked_against_the_same_names() {
        let allowed = hosts("127.0.0.1", 9081, &["ci.example.com"]);
        assert!(allowed.allows_origin("http://127.0.0.1:9081", None));
        assert!(allowed.allows_origin("https://ci.example.com", None));
        assert!(!allowed.allows_origin("http://rebind.example:9081", None));
        assert!(!allowed.allows_origin("http://localhost:8000", None));
        assert!(!allowed.allows_origin("null", None));
        assert!(!allowed.allows_origin("file:///x", None));
    }

    #[test]
    fn xterm_pages_are_recognised() {
        assert!(embeds_xterm("/runs/r1-run3"));
        assert!(embeds_xterm("/deployments/d1/terminal"));
        assert!(!embeds_xterm("/runs/r1/artifacts"));
        assert!(!embeds_xterm("/repos"));
        assert!(!embeds_xterm("/deployments"));
    }
}
