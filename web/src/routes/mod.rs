//! One module per resource. Handlers are thin: extract, authenticate, call
//! one broker method, map the result.

pub mod analytics;
pub mod budget;
pub mod credits;
pub mod dashboard;
pub mod export;
pub mod history;
pub mod keys;
pub mod metrics;
pub mod openai;
pub mod providers;
pub mod request;
pub mod routing;
pub mod status;
pub mod users;

use actix_web::HttpRequest;
use serde::{Deserialize, Serialize};

use oneflow_actors::IdemKey;
use oneflow_actors::ids::body_hash;

use crate::error::ApiError;

/// `?user_id=` for admins acting on a user's data.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForUser {
    /// Admins only: whose data (default: the caller's).
    pub user_id: Option<String>,
}

/// What an `Idempotency-Key` may be: 1 to 255 printable ASCII characters
/// (HTTP has already stripped spaces at either end).
pub const IDEMPOTENCY_KEY_PATTERN: &str = r"^[\x21-\x7E]([\x20-\x7E]{0,253}[\x21-\x7E])?$";

/// The `Idempotency-Key` header, checked, with the hash of the body it
/// came with. The body is hashed as parsed and serialised again, so the
/// same request spelled with other whitespace or key order is the same
/// request.
pub(crate) fn idempotency_key<T: Serialize + ?Sized>(
    req: &HttpRequest,
    body: &T,
) -> Result<Option<IdemKey>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    // HTTP strips the spaces around a header's value; inside it, only
    // printable ASCII (what `IDEMPOTENCY_KEY_PATTERN` says).
    let key = v.as_bytes();
    if key.is_empty() || key.len() > 255 || !key.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
        ));
    }
    let key = String::from_utf8_lossy(key);
    let canonical = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Some(IdemKey::new(key.to_string(), body_hash(&canonical))))
}
