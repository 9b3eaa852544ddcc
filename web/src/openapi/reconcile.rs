//! The routes of reconciliation against provider invoices
//! (docs/reconcile.md). One doc-only function per route, never called: its
//! attributes describe the route; the handler is in `routes/reconcile.rs`.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow_actors::reconcile::{Report, ReportSummary};

use super::schema::ErrorBody;
use crate::routes::reconcile::{ReconcileParams, ReportParams};

#[utoipa::path(post, path = "/api/reconcile", tag = "reconcile",
    params(ReconcileParams),
    request_body(description = "The provider's usage export, as downloaded: OpenAI's usage and costs pages (JSON) or their fields as CSV, Anthropic's usage and cost report pages (JSON), or a generic CSV `day,model,input_tokens,output_tokens,cost` (optionally `provider`). At most 16 MiB and 100,000 rows; the content type is not needed.",
        content(
            (serde_json::Value = "application/json"),
            (String = "text/csv"),
        )),
    responses(
        (status = 200, description = "The drift report, kept (the last 20 are): JSON, or its cells as CSV with `Accept: text/csv`", content(
            (Report = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "A query parameter out of its pattern (an unknown `format`, a tolerance that is not a fraction from 0 to 1)", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 413, description = "The body is over 16 MiB (`payload_too_large`), the export over 100,000 rows, or the report over 2,000 cells (`export_too_large`); nothing is kept", body = ErrorBody),
        (status = 422, description = "The export cannot be read (`invalid_export`: not JSON or CSV of a known shape, a negative or fractional token count, a negative cost, a model missing, no provider named), spans more than 93 days (`invalid_range`), or names a provider the configuration lacks (`inconsistent_request`); nothing is kept", body = ErrorBody),
        (status = 503, description = "Another reconciliation is running on this node, or storage is unavailable", body = ErrorBody),
    ))]
pub fn reconcile() {}

#[utoipa::path(get, path = "/api/reconcile", tag = "reconcile",
    responses(
        (status = 200, description = "The kept reports, newest first, without their cells", body = Vec<ReportSummary>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn reconciliations() {}

#[utoipa::path(get, path = "/api/reconcile/{id}", tag = "reconcile",
    params(("id" = String, Path, description = "The report's id (`rcn_...`)"), ReportParams),
    responses(
        (status = 200, description = "One kept report: JSON, or its cells as CSV (`?format=csv` or `Accept: text/csv`)", content(
            (Report = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "A `format` other than json or csv", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No kept report has this id", body = ErrorBody),
    ))]
pub fn reconciliation() {}
