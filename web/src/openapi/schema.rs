//! Hand-made schemas of the native API's answers: the shapes that have no
//! Rust type of their own to derive from. Everything the server reads, and
//! every answer built from a domain type, is derived instead (`ToSchema` on
//! the type itself: `oneflow::request::AiRequest`, the records, the ledger
//! entry, budgets, `Credits`, the route handlers' bodies and queries).
//!
//! What is here, and why it is not derived yet:
//! - the error shapes (`ErrorBody`, `FailedRequest`), `Health`, and the
//!   wrappers the handlers build with `json!` around a runtime value
//!   (`BudgetView`, `Status`, `CreditsAdded`, the lists, `RevokedKey`,
//!   `RoutingView`): no type exists;
//! - the runtime's views (`Quote`, `RequestOutcome`, `WindowView`,
//!   `ProviderView`, `Analytics`, `Series`, `Projection`, `BurnDown`,
//!   `User`, `CreatedUser`, `KeyView`, `CreatedKey`, `Role`, the pages):
//!   they are the `oneflow-actors` crate's, and are being moved to typed
//!   outcomes in `actors/src/views.rs`. Derive `ToSchema` there once that
//!   lands, and delete their copies here.
//!
//! The e2e test `openapi` sends the documented request examples to the
//! server and compares real answers' fields with these, so a drift shows.

#![allow(
    dead_code,
    reason = "doc-only: read by #[derive(ToSchema)], never built"
)]

use utoipa::ToSchema;

use oneflow::Credits;
use oneflow::analytics::{Figures, Point};
use oneflow::budget::BudgetConfig;
use oneflow::ledger::LedgerEntry;
use oneflow::pricing::{Modality, Usage};
use oneflow::records::{RequestRecord, RequestStatus};
use oneflow::routing::{Region, Strategy};
use oneflow::time::Window;

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

#[derive(ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
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
pub struct RoutingView {
    pub user_id: String,
    /// The user's own default, if set.
    pub strategy: Option<Strategy>,
    /// The global default.
    pub global: Strategy,
    /// What a request naming no strategy is routed by.
    pub effective: Strategy,
}
