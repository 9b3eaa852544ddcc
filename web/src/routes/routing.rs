//! `GET /api/routing` and `PUT /api/routing`: the caller's default routing
//! strategy (an admin may name a user). A request's own `strategy` field or
//! `x-oneflow-strategy` header wins over it; without either, the global
//! `[routing] strategy` applies.

use actix_web::{HttpResponse, get, put, web};
use serde::Deserialize;
use serde_json::json;

use oneflow::routing::Strategy;

use crate::access::{Manager, Reader};
use crate::error::ApiError;
use crate::routes::ForUser;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"strategy": "quality"}))]
pub struct RoutingPrefs {
    /// `cost`, `latency`, `quality`, `balanced`, or null to follow the
    /// global default.
    pub strategy: Option<Strategy>,
}

fn view(s: &AppState, user_id: &str, strategy: Option<Strategy>) -> serde_json::Value {
    let global = s.broker.global_strategy();
    json!({
        "user_id": user_id,
        "strategy": strategy,
        "global": global,
        "effective": strategy.unwrap_or(global),
    })
}

#[get("/api/routing")]
pub async fn get_routing(
    s: web::Data<AppState>,
    c: Reader,
    q: web::Query<ForUser>,
) -> Result<HttpResponse, ApiError> {
    let user_id = c.subject(q.user_id.as_deref())?;
    let strategy = s.broker.user_strategy(&user_id).await?;
    Ok(HttpResponse::Ok().json(view(&s, &user_id, strategy)))
}

#[put("/api/routing")]
pub async fn put_routing(
    s: web::Data<AppState>,
    c: Manager,
    q: web::Query<ForUser>,
    body: super::Object<RoutingPrefs>,
) -> Result<HttpResponse, ApiError> {
    let user_id = c.subject(q.user_id.as_deref())?;
    let strategy = s
        .broker
        .set_user_strategy(&user_id, body.into_inner().strategy)
        .await?;
    Ok(HttpResponse::Ok().json(view(&s, &user_id, strategy)))
}
