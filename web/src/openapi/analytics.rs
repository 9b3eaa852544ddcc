//! The routes of past requests and ledger entries, figures over them, and exports. One doc-only function per
//! route, never called: its attributes describe the route; the handler is
//! in `routes/`.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow::ledger::LedgerEntry;
use oneflow::records::RequestRecord;

use super::schema::*;
use crate::routes::analytics::{BurnDownQuery, RangeQuery};
use crate::routes::export::ExportParams;
use crate::routes::history::PageQuery;

#[utoipa::path(get, path = "/api/history/requests", tag = "history",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of requests", body = Page<RequestRecord>),
        (status = 400, description = "Bad `limit` or `cursor`", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
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
    params(PageQuery),
    responses(
        (status = 200, description = "One page of ledger entries", body = Page<LedgerEntry>),
        (status = 400, description = "Bad `limit` or `cursor`", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
    ))]
pub fn history_transactions() {}

#[utoipa::path(get, path = "/api/analytics", tag = "analytics",
    params(RangeQuery),
    responses(
        (status = 200, description = "Totals and per-provider figures (count, successes, success rate, cost, tokens, latency p50/p95/p99) from the rollups over the range; all time without `from`/`to`. An admin without `user_id` gets every user's totals.", body = Analytics),
        (status = 400, description = "Bad range or bucket", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
    ))]
pub fn analytics() {}

#[utoipa::path(get, path = "/api/analytics/series", tag = "analytics",
    params(RangeQuery),
    responses(
        (status = 200, description = "One point per bucket over the range (default: the last 24 hours by hour), from the rollups only", body = Series),
        (status = 400, description = "Bad range or bucket, or more than 10,000 points", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
    ))]
pub fn analytics_series() {}

#[utoipa::path(get, path = "/api/analytics/burndown", tag = "analytics",
    params(BurnDownQuery),
    responses(
        (status = 200, description = "Spend rate over the recent window, and when the balance and each budget run out at that rate (null when the rate is zero)", body = BurnDown),
        (status = 400, description = "Bad window", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
    ))]
pub fn burn_down() {}

#[utoipa::path(get, path = "/api/export/{kind}", tag = "analytics",
    params(("kind" = String, Path, description = "`requests`, `transactions` or `analytics`"), ExportParams),
    responses(
        (status = 200, description = "Streamed, any size: CSV with a header row, one JSON array, or one JSON object a line", content(
            (Vec<serde_json::Value> = "application/json"),
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "Unknown kind or format, bad range", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "`user_id` given by a non-admin", body = ErrorBody),
        (status = 429, description = "`server.max_exports` exports are running, or `server.max_exports_per_user` of the caller's (`too_many_exports`); see Retry-After", body = ErrorBody),
    ))]
pub fn export() {}
