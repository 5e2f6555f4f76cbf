//! The one error type of the web layer, [`ApiError`]: a status, a code and a message. Every
//! failure of a handler converts into it, in one mapping per failure kind. The API renders it
//! as JSON (`{"error": {"status": 404, "code": "not_found", "message": "…"}}`) with the
//! matching HTTP status; pages render it as the HTML error page
//! ([`crate::web::render::error_page`]).

use crate::reads::model::{ActionError, ReadError};
use crate::views::paths::InvalidName;
use crate::web::csrf::CsrfError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// An API failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// An error with this status and the usual code for it.
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::CONFLICT => "conflict",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        };
        Self::new(status, code, message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(json!({
            "error": {"status": self.status.as_u16(), "code": self.code, "message": self.message}
        }))
    }
}

impl From<InvalidName> for ApiError {
    fn from(err: InvalidName) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_name", err.to_string())
    }
}

impl From<ReadError> for ApiError {
    fn from(err: ReadError) -> Self {
        let (status, code) = match err {
            ReadError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ReadError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ReadError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, err.to_string())
    }
}

impl From<ActionError> for ApiError {
    fn from(err: ActionError) -> Self {
        let (status, code) = match err {
            ActionError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ActionError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ActionError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ActionError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ActionError::Denied(_) => (StatusCode::FORBIDDEN, "forbidden"),
        };
        Self::new(status, code, err.to_string())
    }
}

impl From<CsrfError> for ApiError {
    fn from(err: CsrfError) -> Self {
        Self::new(StatusCode::FORBIDDEN, "csrf", err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn errors_are_json_with_their_status() {
        let response = ApiError::from(ReadError::NotFound("run r1".into())).error_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = to_bytes(response.into_body()).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"]["code"], "not_found");
        assert_eq!(value["error"]["message"], "run r1 not found");
        let invalid = crate::views::paths::repo_name("../../etc").unwrap_err();
        assert_eq!(ApiError::from(invalid).status, StatusCode::BAD_REQUEST);
        assert_eq!(
            ApiError::from(CsrfError::Missing).status,
            StatusCode::FORBIDDEN
        );
    }
}
