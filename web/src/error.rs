//! One error type for the HTTP layer, one JSON shape
//! (`{"error": {"code", "message", ...}}`), and an exhaustive map from error
//! to status. 5xx only for our own faults.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use oneflow::ledger::Refusal;
use oneflow::request::RequestError;
use oneflow_actors::BrokerError;

/// What went wrong, as a client should see it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key; send `Authorization: Bearer <key>`")]
    Unauthorized,
    #[error("this endpoint is for administrators")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnknownModel(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{message}")]
    PaymentRequired { code: &'static str, message: String },
    #[error("{0}")]
    IdempotencyMismatch(String),
    #[error("{message}")]
    Overloaded {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
    /// No provider can serve the request within its constraints (region,
    /// allowed providers, `max_price`); nothing was held.
    #[error("{message}")]
    Unservable { code: &'static str, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// Every provider tried failed; the hold was released.
    #[error("{message}")]
    Upstream {
        code: &'static str,
        message: String,
        retry_after: Option<u64>,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The stable code clients and metrics use.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::UnknownModel(_) => "unknown_model",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::PaymentRequired { code, .. } => code,
            ApiError::IdempotencyMismatch(_) => "idempotency_key_reused",
            ApiError::Overloaded { code, .. } => code,
            ApiError::Unservable { code, .. } => code,
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Upstream { code, .. } => code,
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ApiError {
    /// Seconds to wait before retrying, where retrying helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Overloaded { retry_after, .. } => Some(*retry_after),
            ApiError::Upstream { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::UnknownModel(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            ApiError::IdempotencyMismatch(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Overloaded { code, .. } if *code == "provider_overloaded" => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unservable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream { code, .. } => match *code {
                "provider_overloaded" => StatusCode::TOO_MANY_REQUESTS,
                "provider_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
                "provider_timeout" => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            },
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after() {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.insert_header((RETRY_AFTER, v));
            }
        }
        res.json(json!({"error": {"code": self.code(), "message": self.to_string()}}))
    }
}

impl From<BrokerError> for ApiError {
    /// The status comes from the kind of error, the code always from
    /// [`BrokerError::code`] (a test holds every variant to it).
    fn from(e: BrokerError) -> Self {
        let code = e.code();
        let message = e.to_string();
        match e {
            BrokerError::Invalid(RequestError::UnknownModel(m)) => {
                ApiError::UnknownModel(format!("model `{m}` is unknown"))
            }
            BrokerError::Invalid(RequestError::NoProviderAvailable(_)) | BrokerError::Busy => {
                ApiError::Overloaded {
                    code,
                    message,
                    retry_after: 1,
                }
            }
            BrokerError::Invalid(
                RequestError::OverMaxPrice { .. } | RequestError::NoProviderInRegion { .. },
            ) => ApiError::Unservable { code, message },
            BrokerError::Invalid(_) | BrokerError::BadInput(_) => ApiError::BadRequest(message),
            BrokerError::Refused(r) => match r {
                Refusal::InsufficientBalance { .. } | Refusal::BudgetExceeded { .. } => {
                    ApiError::PaymentRequired { code, message }
                }
                Refusal::NotPositive | Refusal::WouldOverdraw | Refusal::TooLarge => {
                    ApiError::BadRequest(message)
                }
                Refusal::UnknownHold(_) => ApiError::Internal(message),
            },
            BrokerError::IdempotencyMismatch => ApiError::IdempotencyMismatch(message),
            BrokerError::NotFound(what) => ApiError::NotFound(what.to_string()),
            BrokerError::Conflict(m) => ApiError::Conflict(m),
            BrokerError::Store(_) => ApiError::Internal(message),
            BrokerError::Unavailable(m) => ApiError::Unavailable(m),
            BrokerError::Upstream {
                code,
                message,
                retry_after,
            } => ApiError::Upstream {
                code,
                message,
                retry_after,
            },
        }
    }
}

/// JSON and query extraction errors in our shape, not actix's text.
pub fn json_error(err: actix_web::error::JsonPayloadError, limit: usize) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let api = match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => ApiError::PayloadTooLarge(limit),
        J::ContentType => ApiError::BadRequest(
            "send the body as JSON with `Content-Type: application/json`".into(),
        ),
        J::Deserialize(e) => ApiError::BadRequest(format!("invalid JSON body: {e}")),
        other => ApiError::BadRequest(format!("invalid JSON body: {other}")),
    };
    api.into()
}

pub fn query_error(err: actix_web::error::QueryPayloadError) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query string: {err}")).into()
}

pub fn path_error(err: actix_web::error::PathError) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid path: {err}")).into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use oneflow::Credits;
    use oneflow::time::Window;
    use oneflow_actors::metrics::Failure;
    use oneflow_actors::store::StoreError;

    use super::*;

    /// One of every error the broker gives, each kind of request error and
    /// refusal included.
    fn every_error() -> Vec<BrokerError> {
        let invalid = [
            RequestError::EmptyPrompt,
            RequestError::PromptTooLong(9),
            RequestError::UnknownModel("m".into()),
            RequestError::UnknownProvider("p".into()),
            RequestError::NoProviderInRegion {
                model: "m".into(),
                region: "EU".into(),
            },
            RequestError::OutOfBounds { field: "n", max: 4 },
            RequestError::UnknownSize("m".into(), "9x9".into()),
            RequestError::OverMaxPrice {
                max: Credits::ZERO,
                cheapest: Credits::from_credits(1),
            },
            RequestError::NoProviderAvailable("m".into()),
        ];
        let refusals = [
            Refusal::InsufficientBalance {
                needed: Credits::from_credits(2),
                available: Credits::ZERO,
            },
            Refusal::BudgetExceeded {
                window: Window::Daily,
                provider: None,
                limit: Credits::ZERO,
                spent: Credits::ZERO,
                held: Credits::ZERO,
                needed: Credits::from_credits(1),
            },
            Refusal::NotPositive,
            Refusal::WouldOverdraw,
            Refusal::UnknownHold(7),
            Refusal::TooLarge,
        ];
        let mut all: Vec<BrokerError> = invalid.into_iter().map(BrokerError::Invalid).collect();
        all.extend(refusals.into_iter().map(BrokerError::Refused));
        all.extend([
            BrokerError::BadInput("x".into()),
            BrokerError::IdempotencyMismatch,
            BrokerError::Busy,
            BrokerError::NotFound("user"),
            BrokerError::Conflict("x".into()),
            BrokerError::Store(Arc::new(StoreError::Closed)),
            BrokerError::Unavailable("x".into()),
            BrokerError::Upstream {
                code: "provider_timeout",
                message: "slow".into(),
                retry_after: None,
            },
        ]);
        all
    }

    /// The code a client is answered with and the code the request counter
    /// is labelled with are the same: `BrokerError::code`.
    #[test]
    fn the_api_and_the_metrics_use_the_one_code_of_each_error() {
        for e in every_error() {
            let code = e.code();
            match Failure::from(&e) {
                Failure::Count { code: label, .. } => assert_eq!(label, code, "{e:?}"),
                Failure::AtSettle => assert!(matches!(e, BrokerError::Upstream { .. })),
            }
            let api = ApiError::from(e);
            assert_eq!(api.code(), code, "{api:?}");
        }
    }
}
