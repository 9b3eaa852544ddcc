//! `GET /api/users` and `POST /api/users` (admin).

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use serde_json::json;

use oneflow::Credits;

use crate::access::AdminCaller;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada", "email": "ada@example.com", "initial_balance": 10}))]
pub struct NewUser {
    /// 1 to 200 characters, once trimmed.
    #[schema(min_length = 1)]
    pub name: String,
    /// An address with an `@`, at most 320 characters once trimmed.
    #[schema(min_length = 3)]
    pub email: String,
    /// Not negative; default 0.
    #[serde(default)]
    pub initial_balance: Credits,
}

#[post("/api/users")]
pub async fn create(
    s: web::Data<AppState>,
    _admin: AdminCaller,
    body: super::Object<NewUser>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let user = s
        .broker
        .create_user(b.name, b.email, b.initial_balance)
        .await?;
    Ok(HttpResponse::Created().json(user))
}

#[get("/api/users")]
pub async fn list(s: web::Data<AppState>, _admin: AdminCaller) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({"users": s.broker.users().await?})))
}
