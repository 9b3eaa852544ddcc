//! `POST /api/keys`, `GET /api/keys`, `DELETE /api/keys/{id}`: API keys.
//! Users manage their own keys; an admin manages anyone's. Secrets are shown
//! once, by the create call; listings show ids and prefixes only.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use serde_json::json;

use oneflow::budget::SpenderBudget;
use oneflow::key_scope::KeyScope;
use oneflow::time::{TimeError, parse_time};
use oneflow_actors::BrokerError;

use crate::access::{Manager, Reader};
use crate::error::ApiError;
use crate::routes::ForUser;
use crate::state::AppState;

/// Whom the new key is for: the caller when absent.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "usr_...", "role": "viewer"}))]
pub struct NewKey {
    /// Admins only: whose key to make. Default: the caller.
    pub user_id: Option<String>,
    /// What the key may do (docs/auth.md): at most what the user and the
    /// calling credential may. Default: the user's own role.
    pub role: Option<KeyRole>,
    /// The only models the key may use (1 to 64 configured names, each
    /// once). Default: any.
    pub models: Option<Vec<String>>,
    /// The only providers its requests may be routed to (1 to 64
    /// configured names, each once). Default: any.
    pub providers: Option<Vec<String>>,
    /// When the key stops working: an RFC 3339 date-time in the future.
    /// Default: never.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// The key's own caps, checked on the same hold as its wallet's.
    /// Default: none.
    pub budget: Option<SpenderBudget>,
    /// Whether its requests use the response cache (docs/cache.md):
    /// `use`, or `bypass` to forbid it whatever a request's header says.
    /// Default: the header, then `[cache] default`.
    pub cache: Option<oneflow::cache::CacheMode>,
}

/// A key's scope from the fields of a new key's body. `expires_at` must
/// be a date-time (not the bare milliseconds or day other time fields
/// take); one the calendar lacks is well formed, so a 422.
pub(crate) fn scope_of(
    models: Option<Vec<String>>,
    providers: Option<Vec<String>>,
    expires_at: Option<String>,
    budget: Option<SpenderBudget>,
) -> Result<KeyScope, ApiError> {
    let expires_at = match expires_at {
        None => None,
        Some(t) if !t.contains(['T', 't']) => {
            return Err(ApiError::BadRequest(
                "`expires_at` must be an RFC 3339 date-time like 2026-11-25T13:00:00Z".into(),
            ));
        }
        Some(t) => Some(parse_time(&t).map_err(|e| match e {
            TimeError::Malformed(_) => ApiError::BadRequest(format!("`expires_at`: {e}")),
            e => BrokerError::BadScope(format!("`expires_at`: {e}")).into(),
        })?),
    };
    Ok(KeyScope {
        models,
        providers,
        expires_at,
        budget,
        cache: None,
    })
}

/// A new key's body: a JSON object, its budget's caps objects too (serde
/// alone would read caps from an array of them).
pub(crate) fn key_body<T: serde::de::DeserializeOwned>(
    v: serde_json::Value,
) -> Result<T, ApiError> {
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    if let Some(b) = v.get("budget").filter(|b| !b.is_null()) {
        if !crate::routes::budget::objects_all_the_way(b) {
            return Err(ApiError::BadRequest(
                "`budget` and each provider's caps in it must be JSON objects".into(),
            ));
        }
    }
    crate::routes::typed(v)
}

/// The roles an account's own key may have (`team_admin` is a role within
/// a team).
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    Admin,
    Member,
    Viewer,
    Billing,
}

impl From<KeyRole> for oneflow::access::Role {
    fn from(r: KeyRole) -> Self {
        use oneflow::access::Role;
        match r {
            KeyRole::Admin => Role::Admin,
            KeyRole::Member => Role::Member,
            KeyRole::Viewer => Role::Viewer,
            KeyRole::Billing => Role::Billing,
        }
    }
}

#[post("/api/keys")]
pub async fn create(
    s: web::Data<AppState>,
    c: Manager,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The body is optional, but a body that is there must be right: parsed
    // here because `Option<Json<_>>` would turn a bad one into "absent".
    let body: NewKey = if body.iter().all(u8::is_ascii_whitespace) {
        NewKey::default()
    } else {
        // `null` is the absent body spelled out, as the schema allows; any
        // other body must be an object (serde alone would also read the
        // struct from an array of its fields).
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
        match v {
            serde_json::Value::Null => NewKey::default(),
            v => key_body(v)?,
        }
    };
    let user_id = c.subject(body.user_id.as_deref())?;
    let role = body.role.map(Into::into);
    let mut scope = scope_of(body.models, body.providers, body.expires_at, body.budget)?;
    scope.cache = body.cache;
    let key = s.broker.create_key(&user_id, role, c.0.role, scope).await?;
    Ok(HttpResponse::Created().json(key))
}

/// The caller's keys; an admin without `user_id` sees every key.
#[get("/api/keys")]
pub async fn list(
    s: web::Data<AppState>,
    c: Reader,
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
    c: Manager,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = s.broker.revoke_key(&c.0, &id).await?;
    Ok(HttpResponse::Ok().json(json!({"revoked": true, "key": key})))
}
