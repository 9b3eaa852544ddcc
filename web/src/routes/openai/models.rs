//! `GET /v1/models`.

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde_json::json;

use super::caller;
use super::error::V1Result;
use crate::state::AppState;

#[get("/v1/models")]
pub async fn models(s: web::Data<AppState>, req: HttpRequest) -> V1Result {
    caller(&req, oneflow::access::Permission::Read).await?;
    let mut data = Vec::new();
    for p in &s.broker.config().providers {
        for id in std::iter::once(&p.name).chain(p.models.iter()) {
            data.push(json!({"id": id, "object": "model", "created": 0, "owned_by": p.name}));
        }
    }
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}
