//! `GET /api/budget` and `PUT /api/budget`.

use actix_web::{HttpResponse, get, put, web};
use serde_json::json;

use oneflow::budget::BudgetConfig;

use crate::access::{Manager, Reader};
use crate::error::ApiError;
use crate::routes::ForUser;
use crate::state::AppState;

#[get("/api/budget")]
pub async fn get_budget(
    s: web::Data<AppState>,
    c: Reader,
    q: web::Query<ForUser>,
) -> Result<HttpResponse, ApiError> {
    let user_id = c.subject_or_team(&s, q.user_id.as_deref()).await?;
    let w = s.broker.wallet(&user_id).await?;
    Ok(HttpResponse::Ok().json(json!({"user_id": user_id, "budget": w.budget, "windows": w.windows, "available": w.available})))
}

/// Replaces the caller's budget (an admin may name a user). Limits absent
/// from the body are removed.
#[put("/api/budget")]
pub async fn put_budget(
    s: web::Data<AppState>,
    c: Manager,
    q: web::Query<ForUser>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    // JSON objects only: serde would also read `[5, null]` as the fields
    // in order, which the document does not allow.
    let body = body.into_inner();
    if !objects_all_the_way(&body) {
        return Err(ApiError::BadRequest(
            "the budget, each provider's limits and each spender's caps must be JSON objects"
                .into(),
        ));
    }
    let budget: BudgetConfig = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let user_id = c.subject(q.user_id.as_deref())?;
    let w = s
        .broker
        .set_budget(&user_id, budget, c.0.is_admin())
        .await?;
    Ok(HttpResponse::Ok().json(json!({"user_id": user_id, "budget": w.budget, "windows": w.windows, "available": w.available})))
}

/// Whether a budget body and every nested set of caps in it (per provider;
/// per spender, and its own per provider) are JSON objects.
pub(crate) fn objects_all_the_way(body: &serde_json::Value) -> bool {
    fn values_are_objects(v: Option<&serde_json::Value>) -> bool {
        v.and_then(|p| p.as_object())
            .is_none_or(|m| m.values().all(serde_json::Value::is_object))
    }
    if !body.is_object() || !values_are_objects(body.get("per_provider")) {
        return false;
    }
    if !values_are_objects(body.get("spenders")) {
        return false;
    }
    body.get("spenders")
        .and_then(|s| s.as_object())
        .is_none_or(|m| {
            m.values()
                .all(|caps| values_are_objects(caps.get("per_provider")))
        })
}
