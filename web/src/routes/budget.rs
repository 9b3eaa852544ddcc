//! `GET /api/budget` and `PUT /api/budget`.

use actix_web::{HttpResponse, get, put, web};
use serde_json::json;

use oneflow::budget::BudgetConfig;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::ForUser;
use crate::state::AppState;

#[get("/api/budget")]
pub async fn get_budget(
    s: web::Data<AppState>,
    c: Caller,
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
    c: Caller,
    q: web::Query<ForUser>,
    body: web::Json<BudgetConfig>,
) -> Result<HttpResponse, ApiError> {
    let user_id = c.subject(q.user_id.as_deref())?;
    let w = s
        .broker
        .set_budget(&user_id, body.into_inner(), c.0.is_admin())
        .await?;
    Ok(HttpResponse::Ok().json(json!({"user_id": user_id, "budget": w.budget, "windows": w.windows, "available": w.available})))
}
