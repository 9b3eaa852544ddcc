//! `/api/webhooks`: a user's signed event deliveries. Users manage their
//! own webhooks (anyone else's answer 404); an admin manages anyone's.
//! The secret is shown by the create and rotate calls only.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use serde_json::json;

use oneflow::Credits;
use oneflow::webhook::{EventKind, WebhookSpec};

use crate::access::{Manager, Reader};
use crate::error::ApiError;
use crate::routes::ForUser;
use crate::state::AppState;

/// Longest id a webhook route looks up; ours are far shorter.
const MAX_ID: usize = 64;

/// A new webhook.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://hooks.example.com/oneflow",
    "events": ["budget.threshold", "balance.low", "key.revoked"],
    "balance_below": 5
}))]
pub struct NewWebhook {
    /// Where events are POSTed: an http or https URL of at most 2048
    /// characters with a host and no credentials; public addresses only:
    /// no loopback, link-local, metadata, private-network or other
    /// non-public address written out (400), nor one a host name resolves
    /// to at delivery, unless the server sets `webhooks.allow_private`.
    #[schema(max_length = 2048, format = "uri", pattern = "^https?://")]
    pub url: String,
    /// At least one; repeats are ignored.
    #[schema(min_items = 1, max_items = 16)]
    pub events: Vec<EventKind>,
    /// Required with `balance.low` (else 422): it fires when the balance
    /// drops below this, once per drop. More than 6 decimal places: 422.
    #[schema(value_type = Option<Credits>)]
    pub balance_below: Option<serde_json::Value>,
    /// For `request.failures`: the share of failed requests in a window
    /// above which it fires (0 < x <= 1; default 0.5).
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub failure_rate: Option<f64>,
    /// For `request.failures`: the window's length in minutes (1 to 1440;
    /// default 5). At least 10 requests in a window are needed.
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    #[schema(minimum = 1, maximum = 1440)]
    pub failure_window_minutes: Option<u32>,
    /// Whose webhook (default: the caller's): an admin's choice of user,
    /// or a team's id, for its team_admin.
    pub user_id: Option<String>,
}

/// Reads `balance_below`. The schema bounds a number and the pattern
/// bounds a string's decimals, but a number's decimals no schema can
/// bound exactly (`multipleOf` is floating point): one within the bounds
/// with too many places is well formed and still refused, so 422.
fn balance_below(v: Option<serde_json::Value>) -> Result<Option<Credits>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match serde_json::from_value::<Credits>(v.clone()) {
        Ok(c) => Ok(Some(c)),
        Err(e) => {
            let why = format!("`balance_below`: {e}");
            let in_bounds = v.as_f64().is_some_and(|f| f.abs() <= 1e12);
            Err(if in_bounds {
                ApiError::Inconsistent(why)
            } else {
                ApiError::BadRequest(format!("invalid JSON body: {why}"))
            })
        }
    }
}

fn checked_id(id: &str) -> Result<&str, ApiError> {
    if id.len() > MAX_ID {
        return Err(ApiError::NotFound("webhook".into()));
    }
    Ok(id)
}

#[post("/api/webhooks")]
pub async fn create(
    s: web::Data<AppState>,
    c: Manager,
    body: super::Object<NewWebhook>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    if b.events.len() > 16 {
        return Err(ApiError::BadRequest(
            "`events` names at most 16 events".into(),
        ));
    }
    // Each field can be right alone and the two still disagree: 422, as
    // for other such bodies, so that 400 means the schema was broken.
    let balance_below = balance_below(b.balance_below)?;
    if b.events.contains(&EventKind::BalanceLow) && balance_below.is_none() {
        return Err(ApiError::Inconsistent(
            "`balance_below` is required with `balance.low`".into(),
        ));
    }
    let user_id = c.subject_or_team(&s, b.user_id.as_deref()).await?;
    let spec = WebhookSpec {
        url: b.url,
        events: b.events,
        balance_below,
        failure_rate: b.failure_rate,
        failure_window_minutes: b.failure_window_minutes,
    };
    let created = s.broker.create_webhook(&user_id, spec).await?;
    Ok(HttpResponse::Created().json(created))
}

/// The caller's webhooks; an admin without `user_id` sees everyone's.
#[get("/api/webhooks")]
pub async fn list(
    s: web::Data<AppState>,
    c: Reader,
    q: web::Query<ForUser>,
) -> Result<HttpResponse, ApiError> {
    let subject = if c.0.is_admin() && q.user_id.is_none() {
        None
    } else {
        Some(c.subject_or_team(&s, q.user_id.as_deref()).await?)
    };
    let hooks = s.broker.webhooks(subject.as_deref()).await?;
    Ok(HttpResponse::Ok().json(json!({ "webhooks": hooks })))
}

#[get("/api/webhooks/{id}")]
pub async fn get_one(
    s: web::Data<AppState>,
    c: Reader,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let hook = s.broker.webhook(&c.0, checked_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(hook))
}

#[delete("/api/webhooks/{id}")]
pub async fn remove(
    s: web::Data<AppState>,
    c: Manager,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    s.broker.delete_webhook(&c.0, checked_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[post("/api/webhooks/{id}/rotate-secret")]
pub async fn rotate(
    s: web::Data<AppState>,
    c: Manager,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let hook = s
        .broker
        .rotate_webhook_secret(&c.0, checked_id(&id)?)
        .await?;
    Ok(HttpResponse::Ok().json(hook))
}

#[get("/api/webhooks/{id}/deliveries")]
pub async fn deliveries(
    s: web::Data<AppState>,
    c: Reader,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let log = s.broker.webhook_deliveries(&c.0, checked_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(json!({ "deliveries": log })))
}
