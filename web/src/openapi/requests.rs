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
        description = "1 to 255 printable ASCII characters. A repeat with the same key and body returns the first answer and is never charged twice."),
        crate::routes::cached::CacheHeader),
    request_body = AiRequest,
    responses(
        (status = 200, description = "Done and settled: the answer, the cost charged and the balance after",
            body = RequestOutcome,
            headers(
                ("x-oneflow-route" = String, description = "Why this provider was chosen"),
                ("idempotent-replayed" = String, description = "`true` when this is a stored answer replayed"),
                ("x-oneflow-cache" = String, description = "What the response cache did: `hit`, `miss` or `bypass` (only while `[cache] enabled`; docs/cache.md)"),
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

#[utoipa::path(post, path = "/api/jobs", tag = "requests",
    // The body's schema is the native request's video branch, written in
    // at start (`document.rs`: `JobRequest`).
    request_body = AiRequest,
    responses(
        (status = 202, description = "A video job started: its money is held (and committed), and it runs in the background under `jobs.timeout_ms`; ask `GET /api/jobs/{id}` (the `Location` header) until it ended. Settled by the seconds made, or released if every provider failed",
            body = JobView,
            headers(("location" = String, description = "The job's address"))),
        (status = 400, description = "Invalid request, or an Idempotency-Key sent (jobs take none: the id answered is the handle)", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 402, description = "Not enough credits (`insufficient_credits`) or a budget would be exceeded (`budget_exceeded`)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "The model answers at once, not as a job (`not_a_job`: send it to /api/request), or no provider of the model is in the region asked", body = ErrorBody),
        (status = 429, description = "`jobs.max_running` jobs are running (`too_many_jobs`), or the user already has `wallets.max_in_flight` requests holding money (`too_many_in_flight`); see Retry-After", body = ErrorBody),
        (status = 503, description = "Broker busy or providers unavailable; see Retry-After", body = ErrorBody),
    ))]
pub fn start_job() {}

#[utoipa::path(get, path = "/api/jobs/{id}", tag = "requests",
    params(("id" = String, Path, description = "The job's id (its request's id)")),
    responses(
        (status = 200, description = "The job: queued or running (with the provider's progress), or ended (succeeded, failed or interrupted, with what it cost). Any video request, `/api/request` ones too, is shown here by its request id", body = JobView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No video job of the caller's has this id", body = ErrorBody),
    ))]
pub fn job() {}

#[utoipa::path(get, path = "/api/jobs/{id}/content", tag = "requests",
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The video the job made, passed on from its provider as it comes, as an attachment (`video/*` as the provider says, else `application/octet-stream`); past `jobs.max_content_bytes`, or a minute of silence, the answer is cut",
            content((Vec<u8> = "video/mp4"), (Vec<u8> = "application/octet-stream"))),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No video job of the caller's has this id", body = ErrorBody),
        (status = 409, description = "The job is still running, did not succeed, or its provider was configured anew and can no longer serve its file (`conflict`)", body = ErrorBody),
        (status = 429, description = "The provider is rate limiting (`provider_overloaded`)", body = ErrorBody),
        (status = 502, description = "The provider failed to serve the file (it may have expired there)", body = ErrorBody),
        (status = 503, description = "The provider is unavailable", body = ErrorBody),
        (status = 504, description = "The provider did not answer in time", body = ErrorBody),
    ))]
pub fn job_content() {}
