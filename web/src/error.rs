//! One error type for the HTTP layer and one JSON shape
//! (`{"error": {"code", "message", ...}}`). The broker's errors keep their
//! code, status and retry hint from `BrokerError::class`; the few errors
//! only HTTP has (authentication, bodies) are listed here. 5xx only for our
//! own faults and the providers'.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use oneflow_actors::BrokerError;

/// What went wrong, as a client should see it.
/// What a permission lets one do, for the 403's message.
fn need_verb(p: oneflow::access::Permission) -> &'static str {
    use oneflow::access::Permission as P;
    match p {
        P::Public | P::Read => "read this account's figures",
        P::Spend => "send charged requests",
        P::Manage => "change this account's settings",
        P::Export => "export records",
        P::TopUp => "add credits to a team's wallet",
        P::Administer => "use this administrators' endpoint",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key; send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// Too many wrong keys from this address; the seconds to wait.
    #[error("too many failed authentications from this address; retry later")]
    AuthThrottled(u64),
    /// The caller's role does not allow what the route does.
    #[error("a {} credential may not {}", role.name(), need_verb(*need))]
    Forbidden {
        role: oneflow::access::Role,
        need: oneflow::access::Permission,
    },
    #[error("{0} not found")]
    NotFound(String),
    /// A route that exists, asked with a method it does not answer; the
    /// methods it does (for the `Allow` header).
    #[error("this route answers {0} only")]
    MethodNotAllowed(String),
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed parameters that make no range together (`from` not
    /// before `to`, too many buckets, a day its month lacks): what a
    /// schema cannot say, so 422 rather than 400.
    #[error("{0}")]
    InvalidRange(String),
    /// A body whose fields are each well formed but do not agree (a tool
    /// result answering no call, a tool choice naming no tool): 422, as
    /// with ranges, so that 400 means the documented schema was broken.
    #[error("{0}")]
    Inconsistent(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A usage export that cannot be read or compared (docs/reconcile.md).
    #[error("{0}")]
    InvalidExport(String),
    /// A usage export, or its report, past a bound other than its bytes.
    #[error("{0}")]
    ExportTooLarge(String),
    /// An image part over `server.max_image_bytes`.
    #[error("an image part is larger than {0} bytes")]
    ImageTooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// What the broker answered, as it describes itself.
    #[error("{}", broker_message(.0))]
    Broker(BrokerError),
}

/// A broker fault's message says it is ours.
fn broker_message(e: &BrokerError) -> String {
    if e.status() == 500 {
        format!("internal error: {e}")
    } else {
        e.to_string()
    }
}

impl ApiError {
    /// The stable code clients and metrics use.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::AuthThrottled(_) => "too_many_auth_failures",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::InvalidRange(_) => "invalid_range",
            ApiError::Inconsistent(_) => "inconsistent_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::ImageTooLarge(_) => "image_too_large",
            ApiError::InvalidExport(_) => "invalid_export",
            ApiError::ExportTooLarge(_) => "export_too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
            ApiError::Broker(e) => e.code(),
        }
    }

    /// Seconds to wait before retrying, where retrying helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Broker(e) => e.retry_after(),
            ApiError::AuthThrottled(secs) => Some(*secs),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::AuthThrottled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidRange(_) | ApiError::Inconsistent(_) | ApiError::InvalidExport(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::PayloadTooLarge(_)
            | ApiError::ImageTooLarge(_)
            | ApiError::ExportTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Broker(e) => status_of(e),
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

/// The status of a broker error, as `BrokerError::status` gives it.
pub fn status_of(e: &BrokerError) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        ApiError::Broker(e)
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
    use oneflow::ledger::Refusal;
    use oneflow::request::RequestError;
    use oneflow::time::Window;
    use oneflow_actors::metrics::Failure;
    use oneflow_actors::store::StoreError;
    use oneflow_actors::views::ErrorCode;

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
                spender: None,
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
            BrokerError::OutOfScope("x".into()),
            BrokerError::BadScope("x".into()),
            BrokerError::KeyExpired,
            BrokerError::EmailTaken,
            BrokerError::WeakPassword(oneflow::auth::WeakPassword::TooShort),
            BrokerError::RegistrationClosed,
            BrokerError::BadInvitation("x"),
            BrokerError::BadCredentials,
            BrokerError::BadToken("x"),
            BrokerError::AccountLocked(7),
            BrokerError::AnswerNotKept("req_1".into()),
            BrokerError::Store(Arc::new(StoreError::Closed)),
            BrokerError::Unavailable("x".into()),
            BrokerError::Upstream {
                code: ErrorCode::ProviderTimeout,
                message: "slow".into(),
                retry_after: None,
            },
        ]);
        all
    }

    /// The code a client is answered with and the code the request counter
    /// is labelled with are the same: `BrokerError::code`; so are the
    /// status and the retry hint: `BrokerError::status`, `retry_after`.
    #[test]
    fn the_api_and_the_metrics_use_the_one_code_of_each_error() {
        for e in every_error() {
            let (code, status, retry) = (e.code(), e.status(), e.retry_after());
            match Failure::from(&e) {
                Failure::Count { code: label, .. } => assert_eq!(label, code, "{e:?}"),
                Failure::AtSettle => assert!(matches!(e, BrokerError::Upstream { .. })),
            }
            let api = ApiError::from(e);
            assert_eq!(api.code(), code, "{api:?}");
            assert_eq!(api.status_code().as_u16(), status, "{api:?}");
            assert_eq!(api.retry_after(), retry, "{api:?}");
            let answer = api.error_response();
            assert_eq!(answer.status().as_u16(), status, "{api:?}");
            assert_eq!(
                answer
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse().ok()),
                retry,
                "{api:?}"
            );
        }
    }
}
