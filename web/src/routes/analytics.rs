//! `GET /api/analytics`: totals and per-provider figures from the rollups.

use actix_web::{HttpResponse, get, web};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::ForUser;
use crate::state::AppState;

#[get("/api/analytics")]
pub async fn analytics(
    s: web::Data<AppState>,
    c: Caller,
    q: web::Query<ForUser>,
) -> Result<HttpResponse, ApiError> {
    // An admin without `user_id` sees every user's totals.
    let subject = if c.0.is_admin() && q.user_id.is_none() {
        None
    } else {
        Some(c.subject(q.user_id.as_deref())?)
    };
    Ok(HttpResponse::Ok().json(s.broker.analytics(subject.as_deref(), 10).await?))
}
