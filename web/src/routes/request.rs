//! `POST /api/quote` and `POST /api/request`.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Serialize;

use oneflow::request::AiRequest;
use oneflow_actors::views::RequestOutcome;
use oneflow_actors::{BrokerError, CacheResult};

use super::idempotency_key;
use crate::access::Spender;
use crate::error::{ApiError, status_of};
use crate::state::AppState;

#[post("/api/quote")]
pub async fn quote(
    s: web::Data<AppState>,
    c: Spender,
    body: super::Object<AiRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.broker.quote(&c.0.user_id, &body).await?))
}

#[post("/api/request")]
pub async fn request(
    s: web::Data<AppState>,
    c: Spender,
    req: HttpRequest,
    body: super::Object<AiRequest>,
) -> Result<HttpResponse, ApiError> {
    let idem = idempotency_key(&req, &*body)?;
    let payer = oneflow_actors::Payer::of(&c.0);
    let ttl = super::cached::asked_ttl(&req)?;
    if let Some(mode) = s.broker.cache_mode(&payer, super::cached::asked(&req)?) {
        let (outcome, replayed, result) = s
            .broker
            .request_cached(&payer, body.into_inner(), idem, mode, ttl)
            .await?;
        return Ok(respond(outcome, replayed, Some(result)));
    }
    let (outcome, replayed) = s.broker.request(&payer, body.into_inner(), idem).await?;
    Ok(respond(outcome, replayed, None))
}

/// Succeeded requests answer 200 with the outcome; failed ones answer with
/// our error shape plus the outcome (the hold was released: `cost` is 0),
/// with the status and code of the broker's error for it.
fn respond(outcome: RequestOutcome, replayed: bool, cache: Option<CacheResult>) -> HttpResponse {
    let failure = BrokerError::from_outcome(&outcome);
    let mut res = HttpResponse::build(failure.as_ref().map_or(StatusCode::OK, status_of));
    super::cached::tell(&mut res, cache);
    if replayed {
        res.insert_header(("idempotent-replayed", "true"));
    }
    if let Ok(route) = HeaderValue::from_str(&outcome.route) {
        res.insert_header(("x-oneflow-route", route));
    }
    let Some(e) = failure else {
        return res.json(outcome);
    };
    if let Some(secs) = e.retry_after() {
        res.insert_header((RETRY_AFTER, secs.to_string()));
    }
    res.json(FailedRequest {
        error: ErrorDetail {
            code: e.code(),
            message: outcome.error.as_deref().unwrap_or_default(),
            request_id: &outcome.request_id,
        },
        request: &outcome,
    })
}

/// A failed native request's answer.
#[derive(Serialize)]
struct FailedRequest<'a> {
    error: ErrorDetail<'a>,
    request: &'a RequestOutcome,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'static str,
    message: &'a str,
    request_id: &'a str,
}
