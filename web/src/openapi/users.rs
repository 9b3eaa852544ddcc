//! The routes of users, their API keys, and their wallets (credits and budgets). One doc-only function per
//! route, never called: its attributes describe the route; the handler is
//! in `routes/`.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow::budget::BudgetConfig;

use super::schema::*;
use crate::routes::ForUser;
use crate::routes::credits::AddCredits;
use crate::routes::keys::NewKey;
use crate::routes::users::NewUser;

#[utoipa::path(post, path = "/api/users", tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created; `api_key` is shown this once", body = CreatedUser),
        (status = 400, description = "Bad name, email or balance", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
    ))]
pub fn create_user() {}

#[utoipa::path(get, path = "/api/users", tag = "users",
    responses(
        (status = 200, description = "Every user", body = UserList),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
    ))]
pub fn list_users() {}

#[utoipa::path(post, path = "/api/keys", tag = "users",
    request_body(content = Option<NewKey>, description = "Optional: an admin names the user; a user makes a key for themself; `role` narrows what the key may do"),
    responses(
        (status = 201, description = "Created; `api_key` is shown this once", body = CreatedKey),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "`role` would let the key do what its user or the calling credential may not (docs/auth.md)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "`invalid_key_scope`: `models` or `providers` name what is not configured, or a name twice; a model none of `providers` serves; a budget naming an unknown provider; `expires_at` not in the future", body = ErrorBody),
    ))]
pub fn create_key() {}

#[utoipa::path(get, path = "/api/keys", tag = "users",
    params(ForUser),
    responses(
        (status = 200, description = "The caller's keys (an admin without `user_id`: every key); never a secret", body = KeyList),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn list_keys() {}

#[utoipa::path(delete, path = "/api/keys/{id}", tag = "users",
    params(("id" = String, Path, description = "The key's id, as listed")),
    responses(
        (status = 200, description = "Revoked: the key stops working at once, durably", body = RevokedKey),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such key of the caller's", body = ErrorBody),
        (status = 409, description = "The last admin key cannot be revoked", body = ErrorBody),
    ))]
pub fn revoke_key() {}

#[utoipa::path(post, path = "/api/credits/add", tag = "wallet",
    request_body = AddCredits,
    responses(
        (status = 200, description = "Added and committed", body = CreditsAdded),
        (status = 400, description = "Amount not positive, too precise or out of range", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub fn add_credits() {}

#[utoipa::path(get, path = "/api/budget", tag = "wallet",
    params(ForUser),
    responses(
        (status = 200, description = "The budget and each window's spending", body = BudgetView),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
    ))]
pub fn get_budget() {}

#[utoipa::path(put, path = "/api/budget", tag = "wallet",
    params(ForUser),
    request_body(content = BudgetConfig, description = "The whole budget: limits left out are removed"),
    responses(
        (status = 200, description = "The budget now in force (an admin's is marked `set_by_admin`)", body = BudgetView),
        (status = 400, description = "Negative limit or unknown provider", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "A user raising or removing a cap an admin set", body = ErrorBody),
        (status = 404, description = "`user_id` given by a non-admin, or no such user", body = ErrorBody),
    ))]
pub fn put_budget() {}
