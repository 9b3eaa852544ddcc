//! `GET /metrics`: the Prometheus text exposition, for a scraper.
//!
//! Open like `/health`: Prometheus scrapes without credentials, and the
//! series carry no user ids unless `[metrics] per_user_labels` is set (then
//! keep the port away from untrusted networks, or put a proxy with auth in
//! front).

use actix_web::{HttpResponse, get, web};

use crate::error::ApiError;
use crate::state::AppState;

/// The exposition format's content type (text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[get("/metrics")]
pub async fn metrics(s: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = s.broker.render_metrics().ok_or_else(|| {
        ApiError::Unavailable("metrics are off: another recorder was installed first".into())
    })?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}
