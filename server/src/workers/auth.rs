//! Worker authentication (H2, M7): every request to `/api/worker/*` must carry
//! `Authorization: Bearer <token>`, compared in constant time. There is always a token: the
//! configured `auth.worker_token`, or a random one drawn at start (local workers get it by
//! environment). Requests with an `Origin` header come from a browser page and are refused
//! before the token is looked at: no web page may act as a worker.

use crate::config::refusals::MIN_WORKER_TOKEN_CHARS;
use actix_web::{HttpRequest, HttpResponse};

/// The secret workers present.
pub struct WorkerToken(String);

/// What a worker request was authenticated with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerCredential {
    /// The install's worker token: any machine id.
    InstallToken,
    /// A machine token: only this machine id ([`super::machine_tokens`]).
    Machine(String),
}

impl WorkerToken {
    /// The configured token, or a fresh random one when none (or an unusable one) is given.
    pub fn from_config(configured: Option<&str>) -> Self {
        match configured {
            Some(token) if token.chars().count() >= MIN_WORKER_TOKEN_CHARS => {
                WorkerToken(token.to_string())
            }
            Some(_) => {
                tracing::error!(
                    "auth.worker_token is too short to be used: a random token is drawn instead"
                );
                Self::generate()
            }
            None => Self::generate(),
        }
    }

    /// 32 random bytes as 64 hex characters.
    pub fn generate() -> Self {
        WorkerToken(hex::encode(rand::random::<[u8; 32]>()))
    }

    pub fn value(&self) -> &str {
        &self.0
    }

    /// Refuses browser requests (403) and requests without the token or, when `machine` is
    /// given, a machine token it accepts at that instant (401).
    pub fn check(
        &self,
        req: &HttpRequest,
        machine: Option<(
            &super::machine_tokens::MachineTokens,
            test_looper_core::protocol::Millis,
        )>,
    ) -> Result<WorkerCredential, Box<HttpResponse>> {
        if req.headers().contains_key("origin") {
            tracing::warn!(peer = ?req.peer_addr(), path = %req.path(),
                "worker endpoint refused: the request has an Origin header");
            return Err(Box::new(
                HttpResponse::Forbidden().body("worker endpoints refuse requests from web pages"),
            ));
        }
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !given.is_empty() && constant_time_eq(given.as_bytes(), self.0.as_bytes()) {
            return Ok(WorkerCredential::InstallToken);
        }
        let machine_id = machine
            .filter(|_| super::machine_tokens::is_machine_token(given))
            .and_then(|(tokens, now)| tokens.verify(given, now));
        if let Some(machine_id) = machine_id {
            Ok(WorkerCredential::Machine(machine_id))
        } else {
            Err(Box::new(
                HttpResponse::Unauthorized().body("bad or missing worker token"),
            ))
        }
    }
}

impl std::fmt::Debug for WorkerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerToken(<redacted>)")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn status(token: &WorkerToken, request: TestRequest) -> u16 {
        match token.check(&request.to_http_request(), None) {
            Ok(_) => 200,
            Err(response) => response.status().as_u16(),
        }
    }

    #[test]
    fn a_token_is_always_required_and_browsers_are_refused() {
        let token = WorkerToken::from_config(None);
        assert_eq!(token.value().len(), 64);
        assert_ne!(token.value(), WorkerToken::from_config(None).value());
        let bearer = format!("Bearer {}", token.value());
        let loopback = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(status(&token, TestRequest::get().peer_addr(loopback)), 401);
        assert_eq!(
            status(
                &token,
                TestRequest::get().insert_header(("Authorization", "Bearer "))
            ),
            401
        );
        assert_eq!(
            status(
                &token,
                TestRequest::get().insert_header(("Authorization", bearer.as_str()))
            ),
            200
        );
        assert_eq!(
            status(
                &token,
                TestRequest::get()
                    .insert_header(("Authorization", bearer.as_str()))
                    .insert_header(("Origin", "http://127.0.0.1:9081"))
            ),
            403
        );
    }

    #[test]
    fn a_machine_token_names_one_machine_and_only_when_machine_tokens_are_accepted() {
        let token = WorkerToken::from_config(None);
        let tokens = super::super::machine_tokens::MachineTokens::with_key([3; 32]);
        let machine_token = tokens.issue("i-0123", 100);
        let request = || {
            TestRequest::get()
                .insert_header(("Authorization", format!("Bearer {machine_token}")))
                .to_http_request()
        };
        assert_eq!(
            token.check(&request(), Some((&tokens, 50))).ok(),
            Some(WorkerCredential::Machine("i-0123".into()))
        );
        assert!(token.check(&request(), Some((&tokens, 100))).is_err());
        assert!(token.check(&request(), None).is_err());
    }

    #[test]
    fn short_configured_tokens_are_never_used() {
        assert_ne!(WorkerToken::from_config(Some("")).value(), "");
        assert_ne!(WorkerToken::from_config(Some("short")).value(), "short");
        let long = "x".repeat(40);
        assert_eq!(WorkerToken::from_config(Some(&long)).value(), long);
    }
}
