//! `GET /api/providers` and `GET /api/config`. Config holds no secrets
//! (providers name the environment variable their key is in, never the
//! key), but it maps the deployment (data directory, upstream addresses,
//! limits): admins only.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::access::{AdminCaller, Reader};
use crate::error::ApiError;
use crate::state::AppState;

#[get("/api/providers")]
pub async fn providers(s: web::Data<AppState>, _c: Reader) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({"providers": s.broker.providers()})))
}

#[get("/api/config")]
pub async fn config(s: web::Data<AppState>, _c: AdminCaller) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.broker.config()))
}
