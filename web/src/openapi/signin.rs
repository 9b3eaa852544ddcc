//! The routes of accounts and sign-in (`docs/auth.md`). One doc-only
//! function per route, never called: its attributes describe the route;
//! the handler is in `routes/signin.rs`. The four `/api/auth` routes take
//! no key (`security(())`): they are how a person gets a token.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use oneflow_actors::accounts::{CreatedInvitation, TokenPair};

use super::schema::*;
use crate::routes::signin::{Login, NewInvitation, RefreshToken, Register};

#[utoipa::path(post, path = "/api/auth/register", tag = "auth",
    security(()),
    request_body = Register,
    responses(
        (status = 201, description = "Registered: a user of role `user` with no credits and no API key; sign in for a token", body = User),
        (status = 400, description = "Invalid body, name or e-mail address (`invalid_request`), or a password the rules refuse (`weak_password`: shorter than 12 characters, longer than 1024, or one of the 10,000 most common; the message says which)", body = ErrorBody),
        (status = 403, description = "No invitation while registration is by invitation (`registration_closed`), or an invitation that is unknown, used, expired or for another address (`invalid_invitation`)", body = ErrorBody),
        (status = 409, description = "An account with this e-mail address exists, in any case (`email_taken`)", body = ErrorBody),
        (status = 413, description = "Body larger than `server.max_body_bytes`", body = ErrorBody),
        (status = 503, description = "Too many passwords being hashed at once (`overloaded`); see Retry-After", body = ErrorBody),
    ))]
pub fn register() {}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    security(()),
    request_body = Login,
    responses(
        (status = 200, description = "Signed in: an access token (a JWT, good for `expires_in` seconds) and a refresh token", body = TokenPair),
        (status = 400, description = "Invalid body or e-mail address", body = ErrorBody),
        (status = 401, description = "Wrong e-mail address or password (`invalid_credentials`)", body = ErrorBody),
        (status = 429, description = "Ten wrong passwords for this account in 15 minutes (`account_locked`): refused, even with the right one, until the window passes; see Retry-After", body = ErrorBody),
        (status = 503, description = "Too many passwords being hashed at once, or the account's count of wrong passwords kept changing under the write (`overloaded`); see Retry-After", body = ErrorBody),
    ))]
pub fn login() {}

#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth",
    security(()),
    request_body = RefreshToken,
    responses(
        (status = 200, description = "A new pair; the refresh token sent is spent", body = TokenPair),
        (status = 401, description = "Unknown, expired or revoked refresh token (`invalid_token`); one already spent also revokes every token of its sign-in", body = ErrorBody),
        (status = 503, description = "The sign-in's record kept changing under the write (`overloaded`); see Retry-After", body = ErrorBody),
    ))]
pub fn refresh() {}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    security(()),
    request_body = RefreshToken,
    responses(
        (status = 204, description = "Signed out: no refresh token of this sign-in works any more (its access tokens expire within minutes)"),
        (status = 401, description = "Unknown refresh token (`invalid_token`)", body = ErrorBody),
        (status = 503, description = "The sign-in's record kept changing under the write (`overloaded`); see Retry-After", body = ErrorBody),
    ))]
pub fn logout() {}

#[utoipa::path(post, path = "/api/invitations", tag = "users",
    request_body = NewInvitation,
    responses(
        (status = 201, description = "Created; `token` is shown this once and is good for one registration", body = CreatedInvitation),
        (status = 400, description = "Bad e-mail address or `expires_in_hours` out of 1..=720", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
pub fn invite() {}
