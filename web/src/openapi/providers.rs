//! The routes of liveness, the caller's standing, providers, the config and routing preferences. One doc-only function per
//! route, never called: its attributes describe the route; the handler is
//! in `routes/`.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use super::schema::*;
use crate::routes::ForUser;
use crate::routes::routing::RoutingPrefs;

#[utoipa::path(get, path = "/health", tag = "status", security(()),
    responses((status = 200, description = "The server is up", body = Health)))]
pub fn health() {}

#[utoipa::path(get, path = "/api/status", tag = "status",
    params(ForUser),
    responses(
        (status = 200, description = "The caller's wallet and providers up; for admins, the broker's runtime figures too", body = Status),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn status() {}

#[utoipa::path(get, path = "/api/providers", tag = "providers",
    responses(
        (status = 200, description = "Every configured provider with its rates, limits and live health", body = ProviderList),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn providers() {}

#[utoipa::path(get, path = "/api/config", tag = "providers",
    responses(
        (status = 200, description = "The configuration in force (it holds no secrets); admins only", body = serde_json::Value),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
    ))]
pub fn config() {}

#[utoipa::path(get, path = "/api/backup", tag = "providers",
    responses(
        (status = 200, description = "A consistent copy of the broker's redb file, made while requests go on, with its length in Content-Length; admins only. `oneflow backup` downloads and checks it (docs/deploy.md)", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("x-oneflow-backup-rows" = u64, description = "Rows in the copy, over every table"))),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 409, description = "A backup is being made already, or the ledger is in PostgreSQL (back that up with its own tools)", body = ErrorBody),
        (status = 500, description = "The copy could not be written (a full disk, say)", body = ErrorBody),
    ))]
pub fn backup() {}

#[utoipa::path(get, path = "/api/routing", tag = "requests",
    params(ForUser),
    responses(
        (status = 200, description = "The caller's default routing strategy and the one in effect", body = RoutingView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn get_routing() {}

#[utoipa::path(put, path = "/api/routing", tag = "requests",
    params(ForUser),
    request_body(content = RoutingPrefs, description = "The default strategy for requests that name none; null follows the global one"),
    responses(
        (status = 200, description = "Stored (committed before this answer)", body = RoutingView),
        (status = 400, description = "Unknown strategy", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn put_routing() {}
