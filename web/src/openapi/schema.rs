//! Hand-made schemas of the native API's answers: only the shapes that have
//! no Rust type of their own to derive from. Everything the server reads,
//! and every answer that is a real type, is derived instead (`ToSchema` on
//! the type itself): the domain types in `oneflow` (`AiRequest`, the
//! records, the ledger entry, budgets, `Credits`), the route handlers'
//! bodies and queries, and the runtime's views in `oneflow-actors`
//! (`RequestOutcome`, `Quote`, `WindowView`, `ProviderView`, `Analytics`,
//! `Series`, `BurnDown`, `User`, `CreatedUser`, `KeyView`, `CreatedKey`,
//! `Role`, `Page`), re-exported below so the path files name them all from
//! here.
//!
//! What is still here, and why: the error shapes (`ErrorBody`,
//! `FailedRequest`), built by `ApiError`'s `ResponseError` with `json!`;
//! `Health`, a `json!` literal; and the wrappers the handlers build with
//! `json!` around a runtime value (`BudgetView`, `Status`, `CreditsAdded`,
//! the lists, `RevokedKey`, `RoutingView`). Each says which handler builds
//! it. Giving those handlers typed answers would let these go too.
//!
//! The e2e test `openapi` sends the documented request examples to the
//! server and compares real answers' fields with these, so a drift shows.

#![allow(
    dead_code,
    reason = "doc-only: read by #[derive(ToSchema)], never built"
)]

use utoipa::ToSchema;

use oneflow::Credits;
use oneflow::budget::BudgetConfig;
use oneflow::ledger::LedgerEntry;
use oneflow::routing::Strategy;

// The runtime's answers, derived where they are defined.
pub use oneflow_actors::analytics::{Analytics, BurnDown, Projection, Series};
pub use oneflow_actors::store::User;
pub use oneflow_actors::views::{
    CreatedKey, CreatedUser, JobView, KeyView, Page, ProviderView, QuoteView, RequestOutcome, Role,
    WindowView,
};

// Built with `json!` by `ApiError::error_response` (web/src/error.rs).
/// Our error shape, on every native route.
#[derive(ToSchema)]
#[schema(example = json!({"error": {"code": "insufficient_credits", "message": "available balance 0.5 is less than the quote 1.2"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`,
    /// `invalid_request`, `invalid_range`, `inconsistent_request`,
    /// `unknown_model`, `payload_too_large`,
    /// `insufficient_credits`, `budget_exceeded`,
    /// `idempotency_key_reused`, `idempotency_answer_not_kept`,
    /// `too_many_in_flight`, `too_many_exports`,
    /// `too_many_auth_failures`, `overloaded`,
    /// `no_provider_available`, `no_provider_in_region`, `over_max_price`,
    /// `provider_not_serving`, `balance_too_large`, `no_provider_in_region`,
    /// `conflict`, `email_taken`, `weak_password`, `registration_closed`,
    /// `invalid_invitation`, `invalid_credentials`, `invalid_token`,
    /// `account_locked`, `key_expired`, `outside_key_scope`,
    /// `invalid_key_scope`, `unavailable`, `provider_error`,
    /// `provider_overloaded`, `provider_unavailable`,
    /// `provider_timeout`, `upstream_too_large`, `internal`.
    pub code: String,
    /// For people.
    pub message: String,
    /// Set when a request was recorded before it failed.
    pub request_id: Option<String>,
}

// Mirrors the private, borrowing `FailedRequest` in routes/request.rs, whose
// `ErrorDetail` always has a `request_id`; this one shares `ErrorDetail`
// with `ErrorBody`.
/// A native request that reached providers and failed: our error shape
/// plus the recorded outcome (nothing was charged).
#[derive(ToSchema)]
pub struct FailedRequest {
    pub error: ErrorDetail,
    pub request: RequestOutcome,
}

// A `json!` literal in routes/status.rs.
#[derive(ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

// `json!` around a `WalletView`'s fields, in routes/budget.rs.
#[derive(ToSchema)]
pub struct BudgetView {
    pub user_id: String,
    pub budget: BudgetConfig,
    pub windows: Vec<WindowView>,
    pub available: Credits,
}

// `json!` of wallet, provider and runtime figures, in routes/status.rs.
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
    /// Admins only, like the three below: figures of the whole broker.
    pub uptime_secs: Option<u64>,
    pub wallets_alive: Option<u64>,
    pub writes_queued: Option<u64>,
    /// Group-commit figures since start.
    #[schema(value_type = Option<Object>)]
    pub persistence: Option<serde_json::Value>,
    /// Where the ledger is kept, this node, and every node seen on a
    /// shared store.
    pub cluster: Option<oneflow_actors::views::ClusterView>,
    /// The background tasks (reports, deliveries, alerts, purges), each
    /// with its last and next run.
    pub tasks: Option<Vec<oneflow_actors::views::TaskView>>,
}

// `json!` around the new ledger entry, in routes/credits.rs.
#[derive(ToSchema)]
pub struct CreditsAdded {
    pub user_id: String,
    pub added: Credits,
    pub balance: Credits,
    pub available: Credits,
    pub transaction: LedgerEntry,
}

// The lists: `json!` wrappers around a `Vec` of a real type, in
// routes/providers.rs, routes/users.rs and routes/keys.rs.
#[derive(ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
}

#[derive(ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

#[derive(ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

// `json!` around the revoked `KeyView`, in routes/keys.rs.
#[derive(ToSchema)]
pub struct RevokedKey {
    pub revoked: bool,
    pub key: KeyView,
}

// `json!` built by `view` in routes/routing.rs.
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
