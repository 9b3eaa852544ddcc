//! The route of e-mailed usage reports (docs/email.md). One doc-only
//! function per route, never called: its attributes describe the route;
//! the handler is in `routes/reports.rs`.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow_actors::broker::SentReport;

use super::schema::*;
use crate::routes::reports::SendNow;

#[utoipa::path(post, path = "/api/reports/send-now", tag = "reports",
    request_body = SendNow,
    responses(
        (status = 200, description = "The SMTP server took the report", body = SentReport),
        (status = 400, description = "Bad body or time", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such user, or another user's for a non-admin", body = ErrorBody),
        (status = 409, description = "`email_not_configured`: the server has no `[email]` SMTP server; or `conflict`: the user's address cannot be mailed", body = ErrorBody),
        (status = 422, description = "`period` with `from`/`to`, one of `from`/`to` alone, `from` not before `to`, or more than 366 days", body = ErrorBody),
        (status = 502, description = "`email_failed`: the SMTP server refused the report, could not be reached, or took longer than `email.timeout_secs`", body = ErrorBody),
        (status = 503, description = "Too many reports being sent at once; see Retry-After", body = ErrorBody),
    ))]
pub fn send_now() {}
