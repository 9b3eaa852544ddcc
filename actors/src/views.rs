//! What the crate's API returns: plain, typed data that serialises to the
//! JSON the HTTP API answers with. A request's outcome travels as
//! [`RequestOutcome`] from the use case through the wallet (which fills in
//! the money figures and keeps it for idempotent replays) and the store to
//! the HTTP handlers, which read its fields, never a JSON value by key.
//!
//! Each view derives `utoipa::ToSchema`, so the OpenAPI document describes
//! exactly what is serialised (serde's renames and skips included). A
//! `Millis` field says `#[schema(value_type = i64)]`: the alias is a plain
//! integer on the wire, not a schema of its own.
//!
//! This module is a leaf: it names nothing else in the crate (only the
//! `oneflow` core crate), so every layer, the store included, may use it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use oneflow::Credits;
use oneflow::budget::BudgetConfig;
use oneflow::config::ProviderLimits;
use oneflow::pricing::{Modality, RateCard, Usage};
use oneflow::records::RequestStatus;
use oneflow::routing::{Health, Region};
use oneflow::time::{Millis, Window};

/// The outcome of a finished request: what `POST /api/request` answers
/// (and, failed, carries under `request`), what an idempotent replay
/// answers again, and what the request counter reads. `cost`, `balance`
/// and `available` are filled in by the wallet when it settles.
///
/// Stored for idempotent replays as JSON: a field may be added (with
/// `#[serde(default)]`), none renamed or removed, or records written
/// before would no longer read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(description = "The answer to a native request (the same on an idempotent replay).")]
pub struct RequestOutcome {
    pub request_id: String,
    pub status: RequestStatus,
    /// The output (text, or a summary of images, audio or video).
    #[serde(skip_serializing_if = "Option::is_none")]
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
    /// Balance minus open holds, after the charge.
    pub available: Credits,
    /// Why this provider.
    pub route: String,
    /// Why it failed (`provider_*`), or, on a stream that was charged for
    /// what it delivered, why it was cut short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    pub latency_ms: u64,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    /// The upstream's usage was missing or above what the quote allowed,
    /// and was held to the quote's bound (see `oneflow::pricing::checked_usage`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_anomaly: bool,
}

/// Why a request failed at its providers or a stream ended early: the
/// outcome's `error_code`, a stream end's `stopped`, and the request
/// counter's `code` label. The HTTP status of each lives with the broker's
/// errors (`BrokerError::status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[schema(
    description = "Why a request failed at its providers (`provider_*`), or why a stream ended early."
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Every provider tried was over its limits.
    ProviderOverloaded,
    /// Every provider tried was down or its circuit open.
    ProviderUnavailable,
    /// Every provider tried was too slow.
    ProviderTimeout,
    /// Every provider tried failed otherwise (or answered what cannot be
    /// priced).
    ProviderError,
    /// A stream's client went away; it is charged for what was delivered.
    ClientDisconnected,
    /// A stream's client took no data for `server.client_stall_secs`; the
    /// stream was ended and charged for what was delivered.
    ClientStalled,
    /// A stream's upstream stopped sending.
    UpstreamTimeout,
    /// A stream's upstream failed midway.
    UpstreamError,
    /// The upstream sent an answer (or one streamed event) larger than its
    /// `limits.max_response_bytes`.
    UpstreamTooLarge,
    /// A stream used up the credit held for it.
    HoldExhausted,
    /// A stream's settle failed (on a stream's end event only).
    SettleFailed,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::ProviderOverloaded,
        ErrorCode::ProviderUnavailable,
        ErrorCode::ProviderTimeout,
        ErrorCode::ProviderError,
        ErrorCode::ClientDisconnected,
        ErrorCode::ClientStalled,
        ErrorCode::UpstreamTimeout,
        ErrorCode::UpstreamError,
        ErrorCode::UpstreamTooLarge,
        ErrorCode::HoldExhausted,
        ErrorCode::SettleFailed,
    ];

    /// The code as the API and the metrics write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ProviderOverloaded => "provider_overloaded",
            ErrorCode::ProviderUnavailable => "provider_unavailable",
            ErrorCode::ProviderTimeout => "provider_timeout",
            ErrorCode::ProviderError => "provider_error",
            ErrorCode::ClientDisconnected => "client_disconnected",
            ErrorCode::ClientStalled => "client_stalled",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::UpstreamTooLarge => "upstream_too_large",
            ErrorCode::HoldExhausted => "hold_exhausted",
            ErrorCode::SettleFailed => "settle_failed",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quote, before anything is held.
// Named `Quote` in the OpenAPI document, as it was before it was derived.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = Quote)]
pub struct QuoteView {
    pub model: String,
    /// The provider routing would try first.
    pub provider: String,
    pub modality: Modality,
    /// What would be held: the most any candidate provider can charge.
    pub quote: Credits,
    pub max_usage: Usage,
    pub available: Credits,
    /// Whether the balance covers the quote right now (budgets are checked
    /// when the request is made).
    pub affordable: bool,
    /// The routing explanation.
    pub route: String,
}

/// Spend in one window, for budgets and status; open holds count as spent.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WindowView {
    pub window: Window,
    pub limit: Option<Credits>,
    pub spent: Credits,
    pub held: Credits,
    /// `limit - spent - held`, when there is a limit.
    pub remaining: Option<Credits>,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub resets_at: Millis,
}

/// A wallet's figures at one moment.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WalletView {
    pub balance: Credits,
    pub available: Credits,
    pub held: Credits,
    pub open_holds: usize,
    pub budget: BudgetConfig,
    pub windows: Vec<WindowView>,
}

/// Who may do what (the domain's `access` module).
pub use oneflow::access::Role;

/// A new user and their key, shown once.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    /// Shown only here; store it.
    pub api_key: String,
    pub balance: Credits,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
}

/// A key as listings show it: who it belongs to and how to tell it apart,
/// never the secret or its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeyView {
    /// What `DELETE /api/keys/{id}` takes.
    pub id: String,
    pub user_id: String,
    pub role: Role,
    /// The first characters of the secret, as its owner saw them.
    pub prefix: String,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    /// The team whose wallet the key spends from; absent: its user's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The only models the key may use; absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// The only providers its requests may be routed to; absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
    /// When the key stops working (RFC 3339, UTC); absent: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// The key's own caps, inside its wallet's; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<oneflow::budget::SpenderBudget>,
}

/// A team: its members and their roles in it (`docs/auth.md`). Its money
/// is the wallet under its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TeamView {
    pub id: String,
    pub name: String,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    /// User id -> role in the team (`team_admin`, `member`, `viewer`,
    /// `billing`).
    pub members: std::collections::BTreeMap<String, Role>,
}

/// A new key: the only time its secret is shown.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    /// The secret: shown this once, stored only as a hash.
    pub api_key: String,
}

/// One page of a newest-first listing.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Where a provider's circuit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Too many consecutive failures: no calls until `open_ms` has passed.
    Open,
    /// One probe call is allowed; its result closes or reopens the circuit.
    HalfOpen,
}

impl CircuitState {
    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    /// The state as the circuit gauge counts it (`oneflow_provider_circuit_state`).
    pub fn gauge_value(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

/// A provider as the API shows it: config (no secrets) and live figures.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub name: String,
    pub modality: Modality,
    pub models: Vec<String>,
    pub region: Region,
    pub quality: u32,
    pub rates: RateCard,
    pub up: bool,
    /// Smoothed latency and success rate.
    pub health: Health,
    pub circuit: CircuitState,
    pub limits: ProviderLimits,
    pub queued: usize,
    pub in_flight: usize,
    pub calls: u64,
    pub failures: u64,
    pub rejected: u64,
}

/// Where a video job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Held, not yet taken by a provider.
    Queued,
    /// A provider is rendering it.
    Running,
    /// Done and charged by the seconds made; its file is at `content_url`.
    Succeeded,
    /// Every provider failed; the hold was released.
    Failed,
    /// The broker stopped while it ran; the hold was released at the next
    /// start and nothing was charged.
    Interrupted,
}

/// A video job, running or finished (`GET /api/jobs/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct JobView {
    /// The job's id, which is also its request's id in the history.
    pub id: String,
    pub status: JobStatus,
    /// Percent done, as the provider last said (100 once it succeeded).
    pub progress: u8,
    pub model: String,
    /// The provider running or that ran it.
    pub provider: String,
    /// What is held while it runs, and what was held.
    pub quote: Credits,
    /// What was charged, once it ended (0 if it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Credits>,
    /// Seconds of video made, once it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    /// Where its file can be fetched, once it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_url: Option<String>,
}

/// A background task and its last run (`/api/status`, for admins).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    pub name: String,
    /// Its period, in milliseconds.
    pub every_ms: u64,
    /// When its last run began (milliseconds since the Unix epoch); null
    /// before the first.
    #[schema(value_type = Option<i64>)]
    pub last_run_at: Option<Millis>,
    pub last_duration_ms: Option<u64>,
    /// Why the last run failed; null when it succeeded.
    pub last_error: Option<String>,
    /// When the next run is due (milliseconds since the Unix epoch).
    #[schema(value_type = Option<i64>)]
    pub next_run_at: Option<Millis>,
    pub runs: u64,
    pub failures: u64,
}

/// Where the ledger is kept and which nodes share it (`/api/status`, for
/// admins).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// `redb` (this node alone) or `postgres` (shared by every node on it).
    pub storage: &'static str,
    /// This node's name on a shared store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Every node seen on the shared store, newest first (at most 100).
    pub nodes: Vec<NodeSeen>,
    /// `shared` (Redis coordinates the nodes' provider limits), `fallback`
    /// (Redis is configured but unreachable: each node admits its share,
    /// the limit divided by the nodes it last saw) or `per-node` (no
    /// Redis: each node keeps its own).
    pub limits: &'static str,
}

/// A node as `/api/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct NodeSeen {
    pub id: String,
    pub version: String,
    pub started_at: i64,
    /// The last renewal of its lease, by the database's clock; 0 once the
    /// node stopped cleanly.
    pub heartbeat_at: i64,
    /// Renewed within the lease.
    pub alive: bool,
}
