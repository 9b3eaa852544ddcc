//! Bearer authentication: who a request's credential is, an API key or a
//! sign-in access token. What that caller may do is `access.rs`'s business.

use std::net::IpAddr;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, web};

use oneflow_actors::Principal;

use crate::error::ApiError;
use crate::state::AppState;

/// The key a request carries: `Authorization: Bearer <key>`, or, where
/// Anthropic's clients call (`x_api_key`), their `x-api-key: <key>`.
fn token(req: &HttpRequest, x_api_key: bool) -> Option<String> {
    if x_api_key {
        if let Some(k) = req.headers().get("x-api-key") {
            return k
                .to_str()
                .ok()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty());
        }
    }
    let v = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim().to_string())
        .filter(|k| !k.is_empty())
}

/// Whether `key` could be a key at all: ours are `of_` and 64 hex digits,
/// an operator's admin key is whatever they chose, but nothing shorter
/// than 8 or longer than 256 visible ASCII characters is looked up.
fn plausible(key: &str) -> bool {
    (8..=256).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

pub(crate) async fn authenticate(req: HttpRequest) -> Result<Principal, ApiError> {
    authenticate_by(req, false).await
}

/// As [`authenticate`], also taking the key from `x-api-key` when
/// `x_api_key` (the Anthropic-compatible routes).
pub(crate) async fn authenticate_by(
    req: HttpRequest,
    x_api_key: bool,
) -> Result<Principal, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("no app state".into()))?
        .clone();
    let key = token(&req, x_api_key).ok_or(ApiError::Unauthorized)?;
    let ip = req.peer_addr().map(|a| a.ip());
    throttled(&state, ip)?;
    // A sign-in's access token has a JWT's three dotted parts, which no
    // key of ours has: the shape is checked first, in one pass over the
    // token, so an API key pays nothing more. A dotted key an operator
    // chose is still looked up as a key if it is no good token.
    let mut found = None;
    if oneflow_actors::accounts::looks_like_jwt(&key) {
        found = state.broker.authenticate_token(&key).await?;
    }
    if found.is_none() && plausible(&key) {
        found = state.broker.authenticate(&key).await?;
    }
    if let Some(p) = found {
        return Ok(p);
    }
    failed(&state, ip).await;
    Err(ApiError::Unauthorized)
}

/// 429 while `ip` is over its failed authentications (`throttle.rs`).
pub(crate) fn throttled(state: &AppState, ip: Option<IpAddr>) -> Result<(), ApiError> {
    if let Some(ip) = ip {
        state
            .auth_throttle
            .check(ip)
            .map_err(ApiError::AuthThrottled)?;
    }
    Ok(())
}

/// Counts a failed authentication from `ip`: a wrong key, a wrong
/// password or an unknown refresh token.
pub(crate) async fn failed(state: &AppState, ip: Option<IpAddr>) {
    if let Some(ip) = ip {
        state.auth_throttle.failed(ip);
        // Only failures ask the other nodes, so a good key costs no Redis
        // call; a guesser spread over the nodes is refused by each from its
        // first failure after the shared count is reached.
        let per_minute = state.broker.config().server.auth_failures_per_minute;
        if state
            .broker
            .shared_auth_failure(&ip.to_string(), per_minute)
            .await
        {
            state.auth_throttle.block(ip);
        }
    }
}
