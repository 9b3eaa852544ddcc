//! The routes of the Anthropic-compatible API, and hand-made schemas of
//! its answers (written with `json!` in `routes/anthropic/`, so no type
//! exists to derive them from). One doc-only function per route, never
//! called.

#![allow(
    dead_code,
    reason = "doc-only: read by #[utoipa::path] and #[derive(ToSchema)], never called or built"
)]

use utoipa::ToSchema;

use super::v1_schema::RouteHeaders;
use crate::routes::anthropic::messages::{CountBody, MessagesBody};

/// Anthropic's error shape, on every route of this API.
#[derive(ToSchema)]
#[schema(example = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "`max_tokens` is required", "code": "invalid_request"}}))]
pub struct AnthropicErrorBody {
    /// `error`.
    #[schema(rename = "type")]
    pub kind: String,
    pub error: AnthropicErrorDetail,
}

#[derive(ToSchema)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `billing_error`,
    /// `permission_error`, `not_found_error`, `request_too_large`,
    /// `rate_limit_error`, `overloaded_error` or `api_error`.
    #[schema(rename = "type")]
    pub kind: String,
    pub message: String,
    /// OneFlow's stable code (as on every other route).
    pub code: String,
}

/// A block of the answer: `text` with `text`, or `tool_use` with `id`,
/// `name` and `input`.
#[derive(ToSchema)]
pub struct AnswerBlock {
    #[schema(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub input: Option<String>,
}

#[derive(ToSchema)]
pub struct MessageUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A whole answer.
#[derive(ToSchema)]
pub struct Message {
    /// `msg_<request id>`.
    pub id: String,
    /// `message`.
    #[schema(rename = "type")]
    pub kind: String,
    /// `assistant`.
    pub role: String,
    pub model: String,
    pub content: Vec<AnswerBlock>,
    /// `end_turn`, `max_tokens`, `tool_use` or `refusal`.
    pub stop_reason: String,
    /// Always null.
    pub stop_sequence: Option<String>,
    pub usage: MessageUsage,
}

#[derive(ToSchema)]
pub struct TokenCount {
    pub input_tokens: u64,
}

#[utoipa::path(post, path = "/v1/messages", tag = "anthropic",
    params(RouteHeaders),
    request_body = MessagesBody,
    security(("bearer" = []), ("x-api-key" = [])),
    responses(
        (status = 200, description = "The answer; with `stream: true`, server-sent events: `message_start`, `ping`, per block `content_block_start`, `content_block_delta` (`text_delta` or `input_json_delta`) and `content_block_stop`, then `message_delta` (stop reason and usage; with a `oneflow` field when the broker ended the stream) and `message_stop`, or an `error` event when the upstream failed midway",
            content(
                (Message = "application/json"),
                (String = "text/event-stream"),
            ),
            headers(
                ("x-oneflow-request-id" = String, description = "The request's id in history"),
                ("x-oneflow-route" = String, description = "Why this provider was chosen"),
                ("x-oneflow-cost" = String, description = "Credits charged (not on streams)"),
                ("x-oneflow-quote" = String, description = "Credits held (streams only)"),
            )),
        (status = 400, description = "Invalid request: not the documented JSON, a model no provider serves, `max_tokens` missing or 0, a conversation whose parts do not agree, or a field no provider of the model can carry", body = AnthropicErrorBody),
        (status = 401, description = "Missing or invalid API key (`x-api-key` or `Authorization: Bearer`)", body = AnthropicErrorBody),
        (status = 402, description = "Not enough credits or over budget", body = AnthropicErrorBody),
        (status = 422, description = "No provider can serve it as asked (none named in `x-oneflow-providers` serves the model, none in the region, none under `max_price`), or the Idempotency-Key was used with another body", body = AnthropicErrorBody),
        (status = 429, description = "Provider overloaded, or too many of the user's requests in flight; see Retry-After", body = AnthropicErrorBody),
        (status = 502, description = "Every provider tried failed", body = AnthropicErrorBody),
        (status = 503, description = "Busy or unavailable; see Retry-After", body = AnthropicErrorBody),
    ))]
pub fn messages() {}

#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "anthropic",
    params(RouteHeaders),
    request_body = CountBody,
    security(("bearer" = []), ("x-api-key" = [])),
    responses(
        (status = 200, description = "The input tokens OneFlow quotes the request at, for the provider it would be routed to: exact on the simulated providers, an upper bound on others. Nothing is held or charged", body = TokenCount),
        (status = 400, description = "Invalid request: not the documented JSON, a model no provider serves, or a conversation whose parts do not agree", body = AnthropicErrorBody),
        (status = 401, description = "Missing or invalid API key (`x-api-key` or `Authorization: Bearer`)", body = AnthropicErrorBody),
        (status = 404, description = "No provider of the model can serve the request", body = AnthropicErrorBody),
        (status = 422, description = "No provider can serve it as asked (none named in `x-oneflow-providers` serves the model, none in the region, none under `max_price`)", body = AnthropicErrorBody),
    ))]
pub fn count_tokens() {}
