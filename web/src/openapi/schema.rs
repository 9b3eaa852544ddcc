//! Doc-only types: the shapes the handlers read and write, as the document
//! shows them. They mirror the domain and runtime types (which stay free of
//! documentation concerns); the e2e test `openapi` sends the documented
//! request examples to the server and compares real answers' fields with
//! these, so a drift shows up there.

#![allow(
    dead_code,
    reason = "doc-only: read by #[derive(ToSchema)], never built"
)]

use std::collections::BTreeMap;

use serde_json::json;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::SchemaType};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// An amount of credits: a decimal number with at most 6 places
/// (micro-credits), sent as a JSON number or a string holding one.
pub struct Credits;

impl PartialSchema for Credits {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Number, Type::String]))
            .description(Some(
                "Credits as a decimal number with at most 6 places (1 credit = 1,000,000 \
                 micro-credits); a string holding such a number is accepted too.",
            ))
            .examples([json!(12.5)])
            .into()
    }
}

impl ToSchema for Credits {}

/// Our error shape, on every native route.
#[derive(ToSchema)]
#[schema(example = json!({"error": {"code": "insufficient_credits", "message": "available balance 0.5 is less than the quote 1.2"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `unauthorized`, `forbidden`, `not_found`,
    /// `invalid_request`, `unknown_model`, `payload_too_large`,
    /// `insufficient_credits`, `budget_exceeded`,
    /// `idempotency_key_reused`, `overloaded`, `no_provider_available`,
    /// `conflict`, `unavailable`, `provider_error`,
    /// `provider_overloaded`, `provider_unavailable`,
    /// `provider_timeout`, `internal`.
    pub code: String,
    /// For people.
    pub message: String,
    /// Set when a request was recorded before it failed.
    pub request_id: Option<String>,
}

/// A native request that reached providers and failed: our error shape
/// plus the recorded outcome (nothing was charged).
#[derive(ToSchema)]
pub struct FailedRequest {
    pub error: ErrorDetail,
    pub request: RequestOutcome,
}

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

#[derive(ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `?user_id=`: an admin acting on another user's data.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForUser {
    /// Admins only: whose data (default: the caller's).
    pub user_id: Option<String>,
}

/// Paging of newest-first listings.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 1000; default 50.
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Admins only: whose data (default: the caller's).
    pub user_id: Option<String>,
}

/// Routing wishes as headers (the same as the body's `oneflow` field,
/// which they override).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct RouteHeaders {
    /// `cost`, `latency`, `quality` or `balanced`.
    #[param(rename = "x-oneflow-strategy")]
    pub strategy: Option<String>,
    /// `US`, `EU` or `RU`.
    #[param(rename = "x-oneflow-region")]
    pub region: Option<String>,
    /// Comma-separated provider names allowed to serve.
    #[param(rename = "x-oneflow-providers")]
    pub providers: Option<String>,
    /// Only providers whose quote is at most this many credits.
    #[param(rename = "x-oneflow-max-price")]
    pub max_price: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Modality {
    Text,
    Image,
    Audio,
    Video,
}

#[derive(ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum Region {
    Us,
    Eu,
    Ru,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Strategy {
    Cost,
    Latency,
    Quality,
    Balanced,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum RequestStatus {
    Succeeded,
    Failed,
    Interrupted,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

/// A native AI request. Fields that do not apply to the model's
/// modality are refused, not ignored.
#[derive(ToSchema)]
#[schema(example = json!({"model": "gpt", "prompt": "Say hello in French", "max_tokens": 50}))]
pub struct AiRequest {
    /// A provider name (`gpt`, `image`, `audio`, `video` by default) or a
    /// model a provider lists (see `GET /v1/models`).
    pub model: String,
    pub prompt: String,
    /// Text: the most output tokens (the quote assumes all are used).
    pub max_tokens: Option<u32>,
    /// Image: one of the provider's sizes, e.g. `1024x1024`.
    pub size: Option<String>,
    /// Image: how many.
    pub n: Option<u32>,
    /// Audio and video: length in seconds.
    pub seconds: Option<u32>,
    /// Only this provider may serve the request.
    pub provider: Option<String>,
    /// Only providers in this region.
    pub region: Option<Region>,
    /// Only providers whose quote is at most this.
    pub max_price: Option<Credits>,
    /// How to rank providers (default: the configured one).
    pub strategy: Option<Strategy>,
}

/// Consumption of one request (for a quote: the most it may use).
#[derive(ToSchema)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub images: u64,
    pub seconds: u64,
}

#[derive(ToSchema)]
pub struct Quote {
    pub model: String,
    /// The provider routing would try first.
    pub provider: String,
    pub modality: Modality,
    /// What would be held: the most any candidate provider can charge.
    pub quote: Credits,
    pub max_usage: Usage,
    pub available: Credits,
    /// Whether the balance covers the quote now (budgets are checked
    /// when the request is made).
    pub affordable: bool,
    /// The routing explanation.
    pub route: String,
}

/// The answer to a native request (the same on an idempotent replay).
#[derive(ToSchema)]
pub struct RequestOutcome {
    pub request_id: String,
    pub status: RequestStatus,
    /// The output (text, or a summary of images, audio or video).
    pub response: Option<String>,
    pub model: String,
    pub provider: String,
    pub usage: Usage,
    /// What was held.
    pub quote: Credits,
    /// What was charged (0 on failure).
    pub cost: Credits,
    /// Balance after the charge.
    pub balance: Credits,
    pub available: Credits,
    /// Why this provider.
    pub route: String,
    /// On failure: `provider_error`, `provider_overloaded`,
    /// `provider_unavailable`, `provider_timeout`.
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub retry_after_secs: Option<u64>,
    pub latency_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

#[derive(ToSchema)]
pub struct Attempt {
    pub provider: String,
    pub ok: bool,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// One request as history shows it.
#[derive(ToSchema)]
pub struct RequestRecord {
    pub id: String,
    pub user_id: String,
    pub model: String,
    pub modality: Modality,
    pub provider: String,
    pub status: RequestStatus,
    /// The first 200 characters of the prompt.
    pub prompt_preview: String,
    pub response: Option<String>,
    pub usage: Usage,
    pub quote: Credits,
    pub cost: Credits,
    /// Cost beyond the hold that was not charged.
    pub shortfall: Credits,
    pub error: Option<String>,
    pub route: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub latency_ms: u64,
    /// Every upstream try, in order (absent when there was none).
    pub attempts: Option<Vec<Attempt>>,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum EntryKind {
    TopUp,
    Hold,
    Charge,
    Release,
    Refund,
    Adjustment,
}

/// One append-only ledger line.
#[derive(ToSchema)]
pub struct LedgerEntry {
    pub user_id: String,
    /// Orders a user's entries.
    pub seq: u64,
    pub kind: EntryKind,
    /// Positive for every kind but `adjustment`, which is signed.
    pub amount: Credits,
    pub balance_after: Credits,
    pub available_after: Credits,
    pub hold_id: Option<u64>,
    pub request_id: Option<String>,
    pub note: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
}

#[derive(ToSchema)]
pub struct RequestPage {
    pub items: Vec<RequestRecord>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct TransactionPage {
    pub items: Vec<LedgerEntry>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Caps for the calendar windows (UTC); absent means no cap.
#[derive(ToSchema)]
pub struct BudgetLimits {
    pub daily: Option<Credits>,
    pub weekly: Option<Credits>,
    pub monthly: Option<Credits>,
}

/// A user's budget: overall caps and caps per provider.
#[derive(ToSchema)]
#[schema(example = json!({"daily": 5, "monthly": 100, "per_provider": {"image": {"daily": 2}}}))]
pub struct BudgetConfig {
    pub daily: Option<Credits>,
    pub weekly: Option<Credits>,
    pub monthly: Option<Credits>,
    /// By provider name.
    pub per_provider: Option<BTreeMap<String, BudgetLimits>>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Window {
    Daily,
    Weekly,
    Monthly,
}

/// One budget window now; open holds count as spent.
#[derive(ToSchema)]
pub struct WindowView {
    pub window: Window,
    pub limit: Option<Credits>,
    pub spent: Credits,
    pub held: Credits,
    /// `limit - spent - held`, when there is a limit.
    pub remaining: Option<Credits>,
    /// Milliseconds since the Unix epoch.
    pub resets_at: u64,
}

#[derive(ToSchema)]
pub struct BudgetView {
    pub user_id: String,
    pub budget: BudgetConfig,
    pub windows: Vec<WindowView>,
    pub available: Credits,
}

#[derive(ToSchema)]
pub struct Status {
    pub user_id: String,
    pub role: Role,
    pub balance: Credits,
    /// Balance minus open holds.
    pub available: Credits,
    pub held: Credits,
    pub budgets: Vec<WindowView>,
    pub providers_up: Vec<String>,
    pub providers_total: u64,
    pub version: String,
    pub uptime_secs: u64,
    pub wallets_alive: u64,
    pub writes_queued: u64,
    /// Group-commit figures since start.
    #[schema(value_type = Object)]
    pub persistence: serde_json::Value,
}

/// Top-up of a user's wallet (admin).
#[derive(ToSchema)]
#[schema(example = json!({"user_id": "usr_0123", "amount": 25, "note": "invoice 7"}))]
pub struct AddCredits {
    pub user_id: String,
    /// Greater than zero.
    pub amount: Credits,
    pub note: Option<String>,
}

#[derive(ToSchema)]
pub struct CreditsAdded {
    pub user_id: String,
    pub added: Credits,
    pub balance: Credits,
    pub available: Credits,
    pub transaction: LedgerEntry,
}

#[derive(ToSchema)]
pub struct ProviderView {
    pub name: String,
    pub modality: Modality,
    pub models: Vec<String>,
    pub region: Region,
    pub quality: u32,
    /// Prices by line (per request, per 1k tokens, per image, ...).
    #[schema(value_type = Object)]
    pub rates: serde_json::Value,
    pub up: bool,
    /// Smoothed latency and success rate.
    #[schema(value_type = Object)]
    pub health: serde_json::Value,
    /// `closed`, `open` or `half_open`.
    pub circuit: String,
    #[schema(value_type = Object)]
    pub limits: serde_json::Value,
    pub queued: u64,
    pub in_flight: u64,
    pub calls: u64,
    pub failures: u64,
    pub rejected: u64,
}

#[derive(ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
}

#[derive(ToSchema)]
pub struct Analytics {
    /// Absent for an admin's all-users view.
    pub user_id: Option<String>,
    /// The range covered, widened to whole buckets; absent for all time.
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub total_requests: u64,
    pub total_successes: u64,
    pub total_cost: Credits,
    pub success_rate: f64,
    pub totals: Figures,
    /// Figures by provider name.
    #[schema(value_type = Object)]
    pub providers: serde_json::Value,
    pub recent_requests: Vec<RequestRecord>,
    pub recent_transactions: Vec<LedgerEntry>,
}

#[derive(ToSchema)]
pub struct Figures {
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    pub success_rate: f64,
    pub cost: Credits,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub mean_latency_ms: f64,
    /// Estimated from fixed log-spaced histogram buckets; null with no
    /// requests.
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
}

#[derive(ToSchema)]
pub struct Point {
    /// The bucket's start, milliseconds since the Unix epoch.
    pub start: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(ToSchema)]
pub struct Series {
    pub user_id: Option<String>,
    pub provider: Option<String>,
    /// `minute`, `hour` or `day`.
    pub bucket: String,
    pub from: u64,
    pub to: u64,
    pub points: Vec<Point>,
}

#[derive(ToSchema)]
pub struct Projection {
    /// `daily`, `weekly` or `monthly`.
    pub window: String,
    /// Set for a per-provider budget.
    pub provider: Option<String>,
    pub limit: Credits,
    pub spent: Credits,
    pub remaining: Credits,
    pub resets_at: u64,
    pub rate_per_hour: Credits,
    /// Null when the rate is zero.
    pub runs_out_at: Option<u64>,
    pub runs_out_before_reset: bool,
}

#[derive(ToSchema)]
pub struct BurnDown {
    pub user_id: String,
    pub now: u64,
    pub window_start: u64,
    pub window_end: u64,
    pub window_spent: Credits,
    pub rate_per_hour: Credits,
    pub balance: Credits,
    pub available: Credits,
    /// When `available` is used up at the current rate; null if zero.
    pub balance_runs_out_at: Option<u64>,
    pub budgets: Vec<Projection>,
}

/// A time range: `from` and `to` as milliseconds since the epoch or
/// RFC 3339, widened to whole buckets.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// Admins only: one user's figures.
    pub user_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `minute`, `hour` or `day`.
    pub bucket: Option<String>,
    /// Series only: one provider.
    pub provider: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BurnDownParams {
    /// Admins only.
    pub user_id: Option<String>,
    /// The recent window the spend rate is measured over (default 24).
    pub window_hours: Option<u32>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv` (default), `json` or `ndjson`.
    pub format: Option<String>,
    /// Admins only; without it an admin exports every user's rows.
    pub user_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Width of analytics rows (default `hour`).
    pub bucket: Option<String>,
}

#[derive(ToSchema)]
#[schema(example = json!({"name": "Ada", "email": "ada@example.com", "initial_balance": 10}))]
pub struct NewUser {
    /// 1 to 200 characters.
    pub name: String,
    pub email: String,
    /// Default 0.
    pub initial_balance: Option<Credits>,
}

#[derive(ToSchema)]
pub struct CreatedUser {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    /// Shown only here; store it.
    pub api_key: String,
    pub balance: Credits,
    pub created_at: u64,
}

#[derive(ToSchema)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub created_at: u64,
    /// The user's default routing strategy, when set.
    pub strategy: Option<Strategy>,
}

#[derive(ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

#[derive(ToSchema)]
#[schema(example = json!({"user_id": "usr_..."}))]
pub struct NewKey {
    /// Admins only: whose key to make. Default: the caller.
    pub user_id: Option<String>,
}

#[derive(ToSchema)]
pub struct KeyView {
    /// What `DELETE /api/keys/{id}` takes.
    pub id: String,
    pub user_id: String,
    pub role: Role,
    /// The first characters of the secret, to tell keys apart.
    pub prefix: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

#[derive(ToSchema)]
pub struct CreatedKey {
    pub id: String,
    pub user_id: String,
    pub role: Role,
    pub prefix: String,
    pub created_at: u64,
    /// The secret: shown this once, stored only as a hash.
    pub api_key: String,
}

#[derive(ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[derive(ToSchema)]
pub struct RevokedKey {
    pub revoked: bool,
    pub key: KeyView,
}

#[derive(ToSchema)]
#[schema(example = json!({"strategy": "quality"}))]
pub struct RoutingPrefs {
    /// null: follow the global `[routing] strategy`.
    pub strategy: Option<Strategy>,
}

#[derive(ToSchema)]
pub struct RoutingView {
    pub user_id: String,
    /// The user's own default, if set.
    pub strategy: Option<Strategy>,
    /// The global default.
    pub global: Strategy,
    /// What a request naming no strategy is routed by.
    pub effective: Strategy,
}

/// Routing wishes in a `/v1` body (`oneflow` field).
#[derive(ToSchema)]
pub struct RouteWish {
    pub strategy: Option<Strategy>,
    pub region: Option<Region>,
    /// Provider names allowed to serve.
    pub providers: Option<Vec<String>>,
    pub max_price: Option<Credits>,
}

#[derive(ToSchema)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// A string, or an array of parts of which `text` parts are read.
    pub content: serde_json::Value,
}

#[derive(ToSchema)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// OpenAI's chat request. `tools`, `functions` and `logprobs` are
/// refused; `temperature`, `top_p`, `stop`, `seed`, `response_format`
/// and the penalties pass through to the provider.
#[derive(ToSchema)]
#[schema(example = json!({"model": "gpt", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20}))]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Only 1.
    pub n: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub oneflow: Option<RouteWish>,
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
#[schema(example = json!({"model": "gpt", "prompt": "Once upon a time", "max_tokens": 20}))]
pub struct CompletionRequest {
    pub model: String,
    /// A string, or an array of one string.
    pub prompt: serde_json::Value,
    pub max_tokens: Option<u32>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Only 1.
    pub n: Option<u32>,
    pub oneflow: Option<RouteWish>,
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
#[schema(example = json!({"model": "gpt", "input": ["first text", "second text"]}))]
pub struct EmbeddingRequest {
    pub model: String,
    /// A string or an array of 1 to 2048 strings.
    pub input: serde_json::Value,
    pub encoding_format: Option<String>,
    pub dimensions: Option<u32>,
    pub oneflow: Option<RouteWish>,
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
#[schema(example = json!({"model": "image", "prompt": "A lighthouse at dusk", "n": 1, "size": "512x512"}))]
pub struct ImageRequest {
    pub model: String,
    pub prompt: String,
    pub n: Option<u32>,
    pub size: Option<String>,
    pub response_format: Option<String>,
    pub oneflow: Option<RouteWish>,
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

#[derive(ToSchema)]
#[schema(example = json!({"model": "audio", "input": "Hello there", "voice": "alloy"}))]
pub struct SpeechRequest {
    pub model: String,
    /// 1 to 4096 characters.
    pub input: String,
    /// Default `alloy`.
    pub voice: Option<String>,
    pub response_format: Option<String>,
    pub speed: Option<f64>,
    pub oneflow: Option<RouteWish>,
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
