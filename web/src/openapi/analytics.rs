//! The routes of past requests and ledger entries, figures over them, and exports. One doc-only function per
//! route, never called: its attributes describe the route; the handler is
//! in `routes/`.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow::ledger::LedgerEntry;
use oneflow::records::RequestRecord;

use super::schema::*;
use crate::routes::analytics::{BurnDownQuery, RangeQuery};
use crate::routes::export::{AnalyticsExportParams, ExportParams};

// The server reads `PageQuery` for both listings and `RangeQuery` for both
// analytics answers; each operation's own parameters are written out here
// because what they take differs: the cursors have different shapes, and
// `provider` is refused by the totals (they split by provider already).

/// Paging of the requests listing.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestPage {
    /// 1 to 1000; default 50.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page (`<created_at>.<id>`).
    #[param(pattern = r"^[0-9]{1,18}\.")]
    pub cursor: Option<String>,
    /// Whose data (default: the caller's): an admin's choice of user.
    /// A team's id: the team's, for its team_admin, viewers and billing members (docs/auth.md).
    pub user_id: Option<String>,
}

/// Paging of the ledger listing.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransactionPage {
    /// 1 to 1000; default 50.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page (a sequence number).
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
    /// Whose data (default: the caller's): an admin's choice of user.
    /// A team's id: the team's, for its team_admin, viewers and billing members (docs/auth.md).
    pub user_id: Option<String>,
}

/// `/api/analytics`' range: `RangeQuery` without `provider`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TotalsQuery {
    /// An admin: one user's figures (without it, every user's).
    /// A team's id: the team's, for its team_admin, viewers and billing members (docs/auth.md).
    pub user_id: Option<String>,
    /// Milliseconds since the epoch or RFC 3339, widened to whole buckets.
    pub from: Option<String>,
    /// Milliseconds since the epoch or RFC 3339, widened to whole buckets.
    pub to: Option<String>,
    /// `minute`, `hour` or `day`.
    #[param(pattern = "^(minute|hour|day)$")]
    pub bucket: Option<String>,
}

#[utoipa::path(get, path = "/api/history/requests", tag = "history",
    params(RequestPage),
    responses(
        (status = 200, description = "One page of requests", body = Page<RequestRecord>),
        (status = 400, description = "Bad `limit` or `cursor`", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn history_requests() {}

#[utoipa::path(get, path = "/api/history/requests/{id}", tag = "history",
    params(("id" = String, Path, description = "A request id, as `request_id` in answers")),
    responses(
        (status = 200, description = "The request, with every upstream attempt", body = RequestRecord),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such request of the caller's", body = ErrorBody),
    ))]
pub fn history_request() {}

#[utoipa::path(get, path = "/api/history/transactions", tag = "history",
    params(TransactionPage),
    responses(
        (status = 200, description = "One page of ledger entries", body = Page<LedgerEntry>),
        (status = 400, description = "Bad `limit` or `cursor`", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn history_transactions() {}

#[utoipa::path(get, path = "/api/analytics", tag = "analytics",
    params(TotalsQuery),
    responses(
        (status = 200, description = "Totals and per-provider figures (count, successes, success rate, cost, tokens, latency p50/p95/p99) from the rollups over the range; all time without `from`/`to`. An admin without `user_id` gets every user's totals.", body = Analytics),
        (status = 400, description = "A time or bucket that is not one", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "`from` not before `to`, a day its month lacks, or a range of more than 10,000 buckets of the size asked (`invalid_range`)", body = ErrorBody),
    ))]
pub fn analytics() {}

#[utoipa::path(get, path = "/api/analytics/series", tag = "analytics",
    params(RangeQuery),
    responses(
        (status = 200, description = "One point per bucket over the range (default: the last 24 hours by hour), from the rollups only", body = Series),
        (status = 400, description = "A time or bucket that is not one", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "`from` not before `to`, a day its month lacks, or more than 10,000 points (`invalid_range`)", body = ErrorBody),
    ))]
pub fn analytics_series() {}

#[utoipa::path(get, path = "/api/analytics/burndown", tag = "analytics",
    params(BurnDownQuery),
    responses(
        (status = 200, description = "Spend rate over the recent window, and when the balance and each budget run out at that rate (null when the rate is zero)", body = BurnDown),
        (status = 400, description = "Bad window", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn burn_down() {}

#[utoipa::path(get, path = "/api/export/{kind}", tag = "analytics",
    params(("kind" = String, Path, description = "`requests` or `transactions` (the analytics export has its own path)", pattern = "^(requests|transactions)$"), ExportParams),
    responses(
        (status = 200, description = "Streamed, any size: CSV with a header row, one JSON array, or one JSON object a line", content(
            (Vec<serde_json::Value> = "application/json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "Unknown kind or format, or a time that is not one", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "`from` not before `to`, or a day its month lacks (`invalid_range`)", body = ErrorBody),
        (status = 429, description = "`server.max_exports` exports are running, or `server.max_exports_per_user` of the caller's (`too_many_exports`); see Retry-After", body = ErrorBody),
    ))]
pub fn export() {}

#[utoipa::path(get, path = "/api/export/analytics", tag = "analytics",
    params(AnalyticsExportParams),
    responses(
        (status = 200, description = "The rollups, one row per bucket × provider × model, streamed: CSV with a header row, one JSON array, or one JSON object a line", content(
            (Vec<serde_json::Value> = "application/json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "Unknown format or bucket, or a time that is not one", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "`from` not before `to`, or a day its month lacks (`invalid_range`)", body = ErrorBody),
        (status = 429, description = "`server.max_exports` exports are running, or `server.max_exports_per_user` of the caller's (`too_many_exports`); see Retry-After", body = ErrorBody),
    ))]
pub fn export_analytics() {}
