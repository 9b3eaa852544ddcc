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
    let user_id = c.subject(q.user_id.as_deref())?;
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
    let limits = body.get("per_provider").and_then(|p| p.as_object());
    if !body.is_object() || limits.is_some_and(|l| l.values().any(|v| !v.is_object())) {
        return Err(ApiError::BadRequest(
            "the budget and each provider's limits must be JSON objects".into(),
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
