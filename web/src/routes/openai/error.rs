//! OpenAI's error shape for every `/v1` answer that is not a success.

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::error::ApiError;

/// An [`ApiError`] in OpenAI's shape: `{"error":{"message","type","code"}}`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenAiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for OpenAiError {
    fn from(e: E) -> Self {
        OpenAiError(e.into())
    }
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let kind = match status.as_u16() {
            401 => "authentication_error",
            402 => "insufficient_quota",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        let mut res = HttpResponse::build(status);
        if let Some(secs) = self.0.retry_after() {
            res.insert_header((RETRY_AFTER, secs.to_string()));
        }
        res.json(json!({"error": {"message": self.0.to_string(), "type": kind, "code": self.0.code(), "param": null}}))
    }
}

pub(super) type V1Result = Result<HttpResponse, OpenAiError>;
