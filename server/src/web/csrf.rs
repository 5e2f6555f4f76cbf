//! CSRF protection for every state-changing request (synchronizer token), checked by the
//! access guard ([`crate::access::guard`]) before any handler runs.
//!
//! A logged-in session has its own token (`test_looper_auth::SessionUser::csrf_token`);
//! callers without a session (`auth.mode: none`) use the server's, drawn at start. Every page
//! carries the caller's (`<meta name="csrf-token">` and a hidden `csrf_token` field in each
//! action form). A state-changing request must send it back, either as the `X-CSRF-Token`
//! header (scripts, API clients) or as the `csrf_token` form field. Another origin cannot read
//! the token, so it cannot forge the request. Requests a browser labels cross-site
//! (`Sec-Fetch-Site: cross-site`) are refused even with a token. Bearer-token calls need no
//! CSRF token: browsers never add that header on their own.

use actix_web::HttpRequest;

/// Header carrying the token.
pub const HEADER: &str = "X-CSRF-Token";
/// Form field carrying the token.
pub const FIELD: &str = "csrf_token";

/// The server's token.
#[derive(Clone)]
pub struct CsrfToken(String);

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("missing CSRF token (send the X-CSRF-Token header or the csrf_token field)")]
    Missing,
    #[error("CSRF token does not match")]
    Mismatch,
    #[error("cross-site request refused")]
    CrossSite,
}

impl CsrfToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        CsrfToken(hex::encode(rand::random::<[u8; 32]>()))
    }

    /// A token with a known value (for tests and for clients configured with it).
    pub fn from_value(value: impl Into<String>) -> Self {
        CsrfToken(value.into())
    }

    pub fn value(&self) -> &str {
        &self.0
    }

    /// Checks a request against this token (see [`check`]).
    pub fn verify(&self, request: &HttpRequest, form_token: Option<&str>) -> Result<(), CsrfError> {
        check(request, form_token, &self.0)
    }
}

/// Checks a request: the header (or `form_token`, from a parsed form body) must be
/// `expected`.
pub fn check(
    request: &HttpRequest,
    form_token: Option<&str>,
    expected: &str,
) -> Result<(), CsrfError> {
    let site = request
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    if site == Some("cross-site") {
        return Err(CsrfError::CrossSite);
    }
    let header = request.headers().get(HEADER).and_then(|v| v.to_str().ok());
    let presented = header.or(form_token).ok_or(CsrfError::Missing)?;
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(CsrfError::Mismatch)
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

    #[test]
    fn header_or_field_must_match() {
        let token = CsrfToken::from_value("abc123");
        let plain = TestRequest::post().to_http_request();
        assert_eq!(token.verify(&plain, None), Err(CsrfError::Missing));
        assert_eq!(
            token.verify(&plain, Some("abc124")),
            Err(CsrfError::Mismatch)
        );
        assert_eq!(
            token.verify(&plain, Some("abc12")),
            Err(CsrfError::Mismatch)
        );
        assert_eq!(token.verify(&plain, Some("abc123")), Ok(()));
        let with_header = TestRequest::post()
            .insert_header((HEADER, "abc123"))
            .to_http_request();
        assert_eq!(token.verify(&with_header, None), Ok(()));
        let cross = TestRequest::post()
            .insert_header((HEADER, "abc123"))
            .insert_header(("Sec-Fetch-Site", "cross-site"))
            .to_http_request();
        assert_eq!(token.verify(&cross, None), Err(CsrfError::CrossSite));
    }

    #[test]
    fn generated_tokens_differ() {
        assert_ne!(CsrfToken::generate().value(), CsrfToken::generate().value());
        assert_eq!(CsrfToken::generate().value().len(), 64);
    }
}
