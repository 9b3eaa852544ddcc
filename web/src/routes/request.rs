//! `POST /api/quote` and `POST /api/request`.

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde_json::json;

use oneflow::request::AiRequest;
use oneflow_actors::ids::body_hash;
use oneflow_actors::wallet::IdemKey;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

#[post("/api/quote")]
pub async fn quote(
    s: web::Data<AppState>,
    c: Caller,
    body: web::Json<AiRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.broker.quote(&c.0.user_id, &body).await?))
}

/// The `Idempotency-Key` header, checked.
fn idempotency_key(req: &HttpRequest, body: &AiRequest) -> Result<Option<IdemKey>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?
        .trim();
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 255 characters".into(),
        ));
    }
    // The parsed body, re-serialised: the same request spelled with other
    // whitespace or key order is still the same request.
    let canonical = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Some(IdemKey::new(key.to_string(), body_hash(&canonical))))
}

#[post("/api/request")]
pub async fn request(
    s: web::Data<AppState>,
    c: Caller,
    req: HttpRequest,
    body: web::Json<AiRequest>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency_key(&req, &body)?;
    let (outcome, replayed) = s
        .broker
        .request(&c.0.user_id, body.into_inner(), idem)
        .await?;
    Ok(respond(outcome, replayed))
}

/// Succeeded requests answer 200 with the outcome; failed ones answer with
/// our error shape plus the outcome (the hold was released: `cost` is 0).
fn respond(outcome: serde_json::Value, replayed: bool) -> HttpResponse {
    let code = outcome
        .get("error_code")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let mut res = match code.as_deref() {
        None => HttpResponse::Ok(),
        Some("provider_overloaded") => HttpResponse::TooManyRequests(),
        Some("provider_unavailable") => HttpResponse::ServiceUnavailable(),
        Some("provider_timeout") => HttpResponse::GatewayTimeout(),
        Some(_) => HttpResponse::BadGateway(),
    };
    if replayed {
        res.insert_header(("idempotent-replayed", "true"));
    }
    if let Some(route) = outcome
        .get("route")
        .and_then(|v| v.as_str())
        .and_then(|r| HeaderValue::from_str(r).ok())
    {
        res.insert_header(("x-oneflow-route", route));
    }
    match code {
        None => res.json(outcome),
        Some(code) => {
            if let Some(secs) = outcome.get("retry_after_secs").and_then(|v| v.as_u64()) {
                res.insert_header((RETRY_AFTER, secs.to_string()));
            }
            let message = outcome.get("error").cloned().unwrap_or_default();
            let request_id = outcome.get("request_id").cloned().unwrap_or_default();
            res.json(json!({"error": {"code": code, "message": message, "request_id": request_id}, "request": outcome}))
        }
    }
}
