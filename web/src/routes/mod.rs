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
    let key = v
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?
        .trim();
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 characters".into(),
        ));
    }
    let canonical = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Some(IdemKey::new(key.to_string(), body_hash(&canonical))))
}
