//! `POST /api/credits/add` (admin), and the answer a team's top-up shares.

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use oneflow::Credits;
use oneflow_actors::ToppedUp;

use super::idempotency_key;
use crate::access::AdminCaller;
use crate::error::ApiError;
use crate::state::AppState;

/// Top-up of a user's wallet (admin).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "usr_0123", "amount": 25, "note": "invoice 7"}))]
pub struct AddCredits {
    pub user_id: String,
    /// Greater than zero.
    pub amount: Credits,
    #[serde(default)]
    pub note: Option<String>,
}

#[post("/api/credits/add")]
pub async fn add(
    s: web::Data<AppState>,
    _admin: AdminCaller,
    req: HttpRequest,
    body: super::Object<AddCredits>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency_key(&req, &*body)?;
    let b = body.into_inner();
    let done = s
        .broker
        .add_credits(&b.user_id, b.amount, b.note, idem)
        .await?;
    Ok(added(&b.user_id, b.amount, done))
}

/// The answer to a top-up (`CreditsAdded` in the document), here and for
/// a team's (`POST /api/teams/{id}/credits`).
pub(crate) fn added(user_id: &str, amount: Credits, done: ToppedUp) -> HttpResponse {
    let entry = done.entry;
    let mut res = HttpResponse::Ok();
    if done.replayed {
        res.insert_header(("idempotent-replayed", "true"));
    }
    res.json(json!({
        "user_id": user_id,
        "added": amount,
        "balance": entry.balance_after,
        "available": entry.available_after,
        "transaction": entry,
    }))
}
