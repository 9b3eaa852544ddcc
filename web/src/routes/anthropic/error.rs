//! Anthropic's error shape for every answer of its routes that is not a
//! success: `{"type": "error", "error": {"type", "message"}}`, with its
//! error types. The statuses are OneFlow's: where Anthropic answers 400 for
//! every invalid request, a conversation whose parts do not agree is 422
//! here, as on every route (400 means the documented schema was broken),
//! still of type `invalid_request_error`.

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::error::ApiError;
use crate::routes::openai::OpenAiError;

/// An [`ApiError`] in Anthropic's shape. `error.code` is OneFlow's stable
/// code, beside Anthropic's `type`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AnthropicError(pub ApiError);

impl<E: Into<ApiError>> From<E> for AnthropicError {
    fn from(e: E) -> Self {
        AnthropicError(e.into())
    }
}

/// The `/v1` helpers shared with the OpenAI routes answer in OpenAI's
/// shape; here the same error is written in Anthropic's.
impl From<OpenAiError> for AnthropicError {
    fn from(e: OpenAiError) -> Self {
        AnthropicError(e.0)
    }
}

impl ResponseError for AnthropicError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let kind = match status.as_u16() {
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            s if s >= 500 => "api_error",
            // 400, 409 and 422.
            _ => "invalid_request_error",
        };
        let message = match &self.0 {
            ApiError::Unauthorized => {
                "missing or invalid API key; send `x-api-key: <key>` or `Authorization: Bearer <key>`"
                    .to_string()
            }
            e => e.to_string(),
        };
        let mut res = HttpResponse::build(status);
        if let Some(secs) = self.0.retry_after() {
            res.insert_header((RETRY_AFTER, secs.to_string()));
        }
        res.json(json!({"type": "error", "error": {"type": kind, "message": message, "code": self.0.code()}}))
    }
}

pub(super) type MessagesResult = Result<HttpResponse, AnthropicError>;
