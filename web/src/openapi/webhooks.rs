//! The routes of webhooks. One doc-only function per route, never called:
//! its attributes describe the route; the handler is in
//! `routes/webhooks.rs`. Receivers verify deliveries as docs/webhooks.md
//! says.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow::webhook::{DeliveryView, WebhookView, WebhookWithSecret};
use utoipa::ToSchema;

use super::schema::ErrorBody;
use crate::routes::ForUser;
use crate::routes::webhooks::NewWebhook;

// `json!` around the list, in routes/webhooks.rs.
#[derive(ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

// `json!` around the log, in routes/webhooks.rs.
#[derive(ToSchema)]
pub struct DeliveryList {
    /// Newest first; the last 100 deliveries (and any still pending).
    pub deliveries: Vec<DeliveryView>,
}

#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Created, committed; `secret` is shown this once", body = WebhookWithSecret),
        (status = 400, description = "An unknown or no event, a URL that is not http(s), has no host, carries credentials, names an address that is not public (loopback, link-local, metadata, private network, shared, multicast, documentation or reserved; without `webhooks.allow_private`) or is too long, or a rate or window out of range; nothing is stored", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "`user_id` names no user (or, from a non-admin, another user)", body = ErrorBody),
        (status = 409, description = "The user already has `webhooks.max_per_user` (20) webhooks", body = ErrorBody),
        (status = 422, description = "`balance.low` without `balance_below`; nothing is stored", body = ErrorBody),
        (status = 503, description = "Changed concurrently too often, or storage unavailable; retry", body = ErrorBody),
    ))]
pub fn create_webhook() {}

#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks",
    params(ForUser),
    responses(
        (status = 200, description = "The caller's webhooks (an admin without `user_id`: everyone's, at most 1000); never a secret", body = WebhookList),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn list_webhooks() {}

#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "The webhook; never its secret", body = WebhookView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such webhook of the caller's", body = ErrorBody),
    ))]
pub fn get_webhook() {}

#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 204, description = "Deleted; its pending deliveries end as failed"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such webhook of the caller's", body = ErrorBody),
        (status = 503, description = "Changed concurrently too often, or storage unavailable; retry", body = ErrorBody),
    ))]
pub fn delete_webhook() {}

#[utoipa::path(post, path = "/api/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "A new secret, shown this once; for 24 hours deliveries carry a `v1` signature with each secret", body = WebhookWithSecret),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such webhook of the caller's", body = ErrorBody),
        (status = 409, description = "The webhook changed meanwhile (deleted or rotated); retry", body = ErrorBody),
    ))]
pub fn rotate_webhook_secret() {}

#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "The delivery log, newest first", body = DeliveryList),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such webhook of the caller's", body = ErrorBody),
    ))]
pub fn webhook_deliveries() {}
