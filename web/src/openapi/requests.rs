//! The routes of native AI requests: quote and send. One doc-only function per
//! route, never called: its attributes describe the route; the handler is
//! in `routes/`.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow::request::AiRequest;

use super::schema::*;

#[utoipa::path(post, path = "/api/quote", tag = "requests",
    request_body = AiRequest,
    responses(
        (status = 200, description = "The most the request can cost, and whether the balance covers it; nothing is held", body = QuoteView),
        (status = 400, description = "Invalid request (unknown model, field that does not apply, out of bounds)", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "No provider of the model is in the region asked (`no_provider_in_region`)", body = ErrorBody),
    ))]
pub fn quote() {}

#[utoipa::path(post, path = "/api/request", tag = "requests",
    params(("Idempotency-Key" = Option<String>, Header, nullable = false,
        pattern = r"^[\x21-\x7E]([\x20-\x7E]{0,253}[\x21-\x7E])?$",
        description = "1 to 255 printable ASCII characters. A repeat with the same key and body returns the first answer and is never charged twice.")),
    request_body = AiRequest,
    responses(
        (status = 200, description = "Done and settled: the answer, the cost charged and the balance after",
            body = RequestOutcome,
            headers(
                ("x-oneflow-route" = String, description = "Why this provider was chosen"),
                ("idempotent-replayed" = String, description = "`true` when this is a stored answer replayed"),
            )),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 402, description = "Not enough credits (`insufficient_credits`) or a budget would be exceeded (`budget_exceeded`)", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was used with another body, or no provider of the model is in the region asked (`no_provider_in_region`)", body = ErrorBody),
        (status = 429, description = "The provider is overloaded (`provider_overloaded`, with the request attached), or the user already has `wallets.max_in_flight` requests in flight (`too_many_in_flight`); see Retry-After", body = FailedRequest),
        (status = 502, description = "Every provider tried failed; the hold was released", body = FailedRequest),
        (status = 503, description = "Broker busy or providers unavailable; see Retry-After", body = ErrorBody),
    ))]
pub fn request() {}
