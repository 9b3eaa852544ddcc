//! Hand-made schemas of the OpenAI-compatible API's answers and headers.
//! The request bodies are derived from the handlers' own types in
//! `routes/openai/`; the answers are written with `json!` there (or carry
//! the runtime's `Output`), so no type exists to derive them from.

#![allow(
    dead_code,
    reason = "doc-only: read by #[derive(ToSchema)], never built"
)]

use utoipa::{IntoParams, ToSchema};

/// OpenAI's error shape, on every `/v1` route.
#[derive(ToSchema)]
#[schema(example = json!({"error": {"message": "missing or invalid API key; send `Authorization: Bearer <key>`", "type": "authentication_error", "code": "unauthorized", "param": null}}))]
pub struct OpenAiErrorBody {
    pub error: OpenAiErrorDetail,
}

#[derive(ToSchema)]
pub struct OpenAiErrorDetail {
    pub message: String,
    /// `authentication_error`, `insufficient_quota`,
    /// `permission_error`, `not_found_error`, `rate_limit_error`,
    /// `invalid_request_error` or `api_error`.
    #[schema(rename = "type")]
    pub kind: String,
    /// Our stable code (as in [`ErrorDetail::code`]).
    pub code: String,
    /// Always null.
    pub param: Option<String>,
}

/// Routing wishes as headers (the same as the body's `oneflow` field,
/// which they override).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct RouteHeaders {
    // Headers are strings or absent, never null: each is a `String` the
    // document marks optional.
    /// `cost`, `latency`, `quality` or `balanced`.
    #[param(
        rename = "x-oneflow-strategy",
        required = false,
        pattern = r"^(cost|latency|quality|balanced)$"
    )]
    pub strategy: String,
    /// `US`, `EU` or `RU`.
    #[param(
        rename = "x-oneflow-region",
        required = false,
        pattern = r"^(US|EU|RU)$"
    )]
    pub region: String,
    /// Comma-separated provider names allowed to serve.
    #[param(rename = "x-oneflow-providers", required = false)]
    pub providers: String,
    /// Only providers whose quote is at most this many credits: a decimal
    /// number with at most 12 digits before the point and 6 after.
    #[param(
        rename = "x-oneflow-max-price",
        required = false,
        pattern = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"
    )]
    pub max_price: String,
}

#[derive(ToSchema)]
pub struct AssistantMessage {
    pub role: String,
    pub content: String,
}

#[derive(ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: String,
    pub logprobs: Option<String>,
}

#[derive(ToSchema)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

#[derive(ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-<request id>`.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: TokenUsage,
}

#[derive(ToSchema)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: String,
    pub finish_reason: String,
    pub logprobs: Option<String>,
}

#[derive(ToSchema)]
pub struct Completion {
    /// `cmpl-<request id>`.
    pub id: String,
    /// `text_completion`.
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    pub usage: TokenUsage,
}

#[derive(ToSchema)]
pub struct Embedding {
    /// `embedding`.
    pub object: String,
    pub index: u32,
    pub embedding: Vec<f64>,
}

#[derive(ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

#[derive(ToSchema)]
pub struct EmbeddingList {
    /// `list`.
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(ToSchema)]
pub struct ImageData {
    pub url: Option<String>,
    pub b64_json: Option<String>,
    pub revised_prompt: Option<String>,
}

#[derive(ToSchema)]
pub struct ImageList {
    pub created: u64,
    pub data: Vec<ImageData>,
}

/// `/v1/audio/speech` when the provider returned no audio bytes.
#[derive(ToSchema)]
pub struct SpeechSummary {
    /// What the provider returned instead, e.g. a clip's address.
    pub output: String,
}

#[derive(ToSchema)]
pub struct Model {
    pub id: String,
    /// `model`.
    pub object: String,
    pub created: u64,
    /// The provider serving it.
    pub owned_by: String,
}

#[derive(ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    pub data: Vec<Model>,
}

/// An output item: a `message` (`id`, `status`, `role`, `content` of
/// `output_text` parts) or a `function_call` (`id`, `call_id`, `name`,
/// `arguments` as JSON text, `status`).
#[derive(ToSchema)]
pub struct OutputItem {
    #[schema(rename = "type")]
    pub kind: String,
    pub id: String,
    pub status: String,
    /// `assistant` (messages).
    pub role: Option<String>,
    /// `output_text` parts with `text` and `annotations` (messages).
    #[schema(value_type = Option<Vec<Object>>)]
    pub content: Option<String>,
    /// The id a `function_call_output` answers (function calls).
    pub call_id: Option<String>,
    pub name: Option<String>,
    /// A JSON object, as text (function calls).
    pub arguments: Option<String>,
}

#[derive(ToSchema)]
pub struct ResponseUsage {
    pub input_tokens: u64,
    /// `{"cached_tokens": 0}`.
    #[schema(value_type = Object)]
    pub input_tokens_details: String,
    pub output_tokens: u64,
    /// `{"reasoning_tokens": 0}`.
    #[schema(value_type = Object)]
    pub output_tokens_details: String,
    pub total_tokens: u64,
}

/// A Responses API `response`; the request's settings are echoed after
/// these fields.
#[derive(ToSchema)]
pub struct ResponseObject {
    /// `resp_<request id>`.
    pub id: String,
    /// `response`.
    pub object: String,
    pub created_at: u64,
    /// `completed` or `incomplete` (then `incomplete_details.reason` says
    /// why: `max_output_tokens`, `content_filter`).
    pub status: String,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub usage: Option<ResponseUsage>,
    /// Always null on a response that was answered.
    #[schema(value_type = Option<Object>)]
    pub error: Option<String>,
    /// `{"reason"}` when `status` is `incomplete`.
    #[schema(value_type = Option<Object>)]
    pub incomplete_details: Option<String>,
    pub store: bool,
    // The request's settings, echoed (defaults where it gave none).
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u32>,
    #[schema(value_type = Object)]
    pub metadata: String,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub temperature: f64,
    pub top_p: f64,
    #[schema(value_type = Object)]
    pub text: String,
    /// `auto`, `none`, `required` or `{"type": "function", "name"}`.
    #[schema(schema_with = crate::routes::openai::items::tool_choice)]
    pub tool_choice: String,
    #[schema(value_type = Vec<Object>)]
    pub tools: String,
    /// `disabled`.
    pub truncation: String,
    pub user: Option<String>,
}

#[derive(ToSchema)]
pub struct DurationUsage {
    /// `duration`.
    #[schema(rename = "type")]
    pub kind: String,
    /// Whole seconds charged.
    pub seconds: u64,
}

/// A transcription or translation.
#[derive(ToSchema)]
pub struct Transcription {
    pub text: String,
    pub usage: DurationUsage,
}
