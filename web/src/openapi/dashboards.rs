//! The routes of saved dashboards and the grouped series their panels
//! draw. One doc-only function per route, never called: its attributes
//! describe the route; the handlers are in `routes/dashboards.rs`.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow::dashboard::DashboardSpec;
use oneflow_actors::dashboards::{DashboardView, PanelData};
use oneflow_actors::grouped::GroupedSeries;
use utoipa::ToSchema;

use super::schema::ErrorBody;
use crate::routes::ForUser;
use crate::routes::dashboards::{GroupsQuery, PanelQuery};

// `json!` around the list, in routes/dashboards.rs.
#[derive(ToSchema)]
pub struct DashboardList {
    /// Whose dashboards these are.
    pub user_id: String,
    /// By name.
    pub dashboards: Vec<DashboardView>,
}

#[utoipa::path(get, path = "/api/analytics/groups", tag = "analytics",
    params(GroupsQuery),
    responses(
        (status = 200, description = "One dense series per group over the range (default: the last 24 hours by hour), most requests first; past 20 groups the rest are summed as `(other)`. By provider from the rollups; by model, key or member from the request records of the range", body = GroupedSeries),
        (status = 400, description = "A grouping, time or bucket that is not one", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "`from` not before `to`, a day its month lacks, more than 2,000 buckets, or more than 200,000 requests to split by model, key or member (`invalid_range`)", body = ErrorBody),
    ))]
pub fn analytics_groups() {}

#[utoipa::path(get, path = "/api/dashboards", tag = "dashboards",
    params(ForUser),
    responses(
        (status = 200, description = "The caller's dashboards, or a team's (`user_id`: for those who read its figures)", body = DashboardList),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "`user_id` names no user or team of the caller's", body = ErrorBody),
    ))]
pub fn list_dashboards() {}

#[utoipa::path(get, path = "/api/dashboards/{name}", tag = "dashboards",
    params(
        ("name" = String, Path, description = "The dashboard's name", max_length = 64),
        ForUser,
    ),
    responses(
        (status = 200, description = "The dashboard, as it was saved", body = DashboardView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such dashboard of the owner's, or `user_id` names no user or team of the caller's", body = ErrorBody),
    ))]
pub fn get_dashboard() {}

#[utoipa::path(put, path = "/api/dashboards/{name}", tag = "dashboards",
    params(
        ("name" = String, Path, description = "1 to 64 of a-z, 0-9, `-` and `_`, starting with a letter or digit (else 422)", max_length = 64),
        ForUser,
    ),
    request_body = DashboardSpec,
    responses(
        (status = 200, description = "Replaced", body = DashboardView),
        (status = 201, description = "Created", body = DashboardView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "`user_id` names no user or team of the caller's", body = ErrorBody),
        (status = 409, description = "The owner already has 50 dashboards (`conflict`); nothing is stored", body = ErrorBody),
        (status = 422, description = "A name that is not one, an empty or too long title, more than 16 panels, an unknown metric, grouping, window, bucket or chart (the message names the field), `from`/`to` missing, misordered or given without `window: range`, or a window of more than 2,000 buckets (`invalid_dashboard`); nothing is stored", body = ErrorBody),
        (status = 503, description = "Changed concurrently too often, or storage unavailable; retry", body = ErrorBody),
    ))]
pub fn put_dashboard() {}

#[utoipa::path(delete, path = "/api/dashboards/{name}", tag = "dashboards",
    params(
        ("name" = String, Path, description = "The dashboard's name", max_length = 64),
        ForUser,
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such dashboard of the owner's, or `user_id` names no user or team of the caller's", body = ErrorBody),
        (status = 503, description = "Changed concurrently too often, or storage unavailable; retry", body = ErrorBody),
    ))]
pub fn delete_dashboard() {}

#[utoipa::path(get, path = "/api/dashboards/{name}/panels/{index}", tag = "dashboards",
    params(
        ("name" = String, Path, description = "The dashboard's name", max_length = 64),
        ("index" = u32, Path, description = "The panel's place, from 0", minimum = 0, maximum = 15),
        PanelQuery,
    ),
    responses(
        (status = 200, description = "The panel's metric per group and bucket over its window as resolved now: the figures `GET /api/analytics/groups` gives for the same `group_by`, `from`, `to` and `bucket`. With `format=csv` (or `Accept: text/csv`): `start,time,group,<metric>` rows", content(
            (PanelData = "application/json"),
            (String = "text/csv"),
        )),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such dashboard or panel of the owner's, or `user_id` names no user or team of the caller's", body = ErrorBody),
        (status = 422, description = "More than 200,000 requests in the window to split by model, key or member (`invalid_range`)", body = ErrorBody),
    ))]
pub fn dashboard_panel() {}
