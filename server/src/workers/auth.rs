//! Worker authentication: `Authorization: Bearer <auth.worker_token>`, compared in constant
//! time; without a configured token, loopback peers only.

use actix_web::{HttpRequest, HttpResponse};

pub fn check(token: Option<&str>, req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
    match token {
        Some(expected) => {
            let given = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
                Ok(())
            } else {
                Err(Box::new(
                    HttpResponse::Unauthorized().body("bad or missing worker token"),
                ))
            }
        }
        None => {
            let loopback = req
                .peer_addr()
                .map(|addr| addr.ip().is_loopback())
                .unwrap_or(false);
            if loopback {
                Ok(())
            } else {
                Err(Box::new(HttpResponse::Unauthorized().body(
                    "no worker token is configured: only local workers may connect",
                )))
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
