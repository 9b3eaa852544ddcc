//! `POST /api/keys`, `GET /api/keys`, `DELETE /api/keys/{id}`: API keys.
//! Users manage their own keys; an admin manages anyone's. Secrets are shown
//! once, by the create call; listings show ids and prefixes only.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::ForUser;
use crate::state::AppState;

/// Whom the new key is for: the caller when absent.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "usr_..."}))]
pub struct NewKey {
    /// Admins only: whose key to make. Default: the caller.
    pub user_id: Option<String>,
}

#[post("/api/keys")]
pub async fn create(
    s: web::Data<AppState>,
    c: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The body is optional, but a body that is there must be right: parsed
    // here because `Option<Json<_>>` would turn a bad one into "absent".
    let body: NewKey = if body.iter().all(u8::is_ascii_whitespace) {
        NewKey::default()
    } else {
        // `null` is the absent body spelled out, as the schema allows.
        serde_json::from_slice::<Option<NewKey>>(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
            .unwrap_or_default()
    };
    let user_id = c.subject(body.user_id.as_deref())?;
    Ok(HttpResponse::Created().json(s.broker.create_key(&user_id).await?))
}

/// The caller's keys; an admin without `user_id` sees every key.
#[get("/api/keys")]
pub async fn list(
    s: web::Data<AppState>,
    c: Caller,
    q: web::Query<ForUser>,
) -> Result<HttpResponse, ApiError> {
    let subject = if c.0.is_admin() && q.user_id.is_none() {
        None
    } else {
        Some(c.subject(q.user_id.as_deref())?)
    };
    Ok(HttpResponse::Ok().json(json!({"keys": s.broker.list_keys(subject.as_deref()).await?})))
}

#[delete("/api/keys/{id}")]
pub async fn revoke(
    s: web::Data<AppState>,
    c: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = s.broker.revoke_key(&c.0, &id).await?;
    Ok(HttpResponse::Ok().json(json!({"revoked": true, "key": key})))
}
