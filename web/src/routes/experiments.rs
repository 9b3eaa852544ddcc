//! `/api/experiments`: A/B experiments of providers, and
//! `POST /api/feedback`, a rating of one request. Experiments are an
//! operator's tool: every experiment route is for admins alone, reading
//! included, since an experiment's figures add up everyone's requests.
//! A rating is sent by anyone who may spend and may see the request.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use serde_json::json;

use oneflow::experiment::ExperimentSpec;

use crate::access::{AdminCaller, Spender};
use crate::error::ApiError;
use crate::state::AppState;

/// Longest experiment or request id a route looks up; ours are shorter.
const MAX_ID: usize = 64;

fn checked(id: &str, what: &str) -> Result<(), ApiError> {
    if id.len() > MAX_ID {
        return Err(ApiError::NotFound(what.into()));
    }
    Ok(())
}

/// Which variant to promote.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"variant": "B"}))]
pub struct Promotion {
    /// A variant's name in the experiment.
    #[schema(min_length = 1, max_length = 32)]
    pub variant: String,
}

/// A rating of one request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"request_id": "req_0192a4c3b2e1f0a1b2c3d4e5", "score": 5}))]
pub struct Feedback {
    /// A request the caller may see (their own, their team's as its
    /// reader, any for an admin).
    #[schema(min_length = 1, max_length = 64)]
    pub request_id: String,
    /// 1 to 5; 4 and 5 count as positive.
    #[serde(deserialize_with = "score")]
    #[schema(minimum = 1, maximum = 5)]
    pub score: u32,
}

fn score<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    match oneflow::request::whole_u32(d)? {
        Some(n @ 1..=5) => Ok(n),
        _ => Err(D::Error::custom(
            "`score` must be a whole number from 1 to 5",
        )),
    }
}

#[post("/api/experiments")]
pub async fn create(
    s: web::Data<AppState>,
    c: AdminCaller,
    body: super::Object<ExperimentSpec>,
) -> Result<HttpResponse, ApiError> {
    let spec = body.into_inner();
    // Each field well formed, the whole not fitting this broker's
    // providers (or weights adding up to 0): 422, nothing stored.
    s.broker
        .check_experiment(&spec)
        .map_err(|e| ApiError::Inconsistent(e.0))?;
    let e = s.broker.create_experiment(&c.0, spec).await?;
    Ok(HttpResponse::Created().json(e))
}

#[get("/api/experiments")]
pub async fn list(s: web::Data<AppState>, _c: AdminCaller) -> Result<HttpResponse, ApiError> {
    let (experiments, pins) = s.broker.experiments().await?;
    Ok(HttpResponse::Ok().json(json!({ "experiments": experiments, "pins": pins })))
}

#[get("/api/experiments/{id}")]
pub async fn get_one(
    s: web::Data<AppState>,
    _c: AdminCaller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    checked(&id, "experiment")?;
    Ok(HttpResponse::Ok().json(s.broker.experiment(&id).await?))
}

#[post("/api/experiments/{id}/stop")]
pub async fn stop(
    s: web::Data<AppState>,
    _c: AdminCaller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    checked(&id, "experiment")?;
    Ok(HttpResponse::Ok().json(s.broker.end_experiment(&id, None).await?))
}

#[post("/api/experiments/{id}/promote")]
pub async fn promote(
    s: web::Data<AppState>,
    _c: AdminCaller,
    id: web::Path<String>,
    body: super::Object<Promotion>,
) -> Result<HttpResponse, ApiError> {
    checked(&id, "experiment")?;
    let variant = body.into_inner().variant;
    let e = s.broker.end_experiment(&id, Some(variant)).await?;
    Ok(HttpResponse::Ok().json(e))
}

#[delete("/api/experiments/{id}/promotion")]
pub async fn unpin(
    s: web::Data<AppState>,
    _c: AdminCaller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    checked(&id, "experiment")?;
    Ok(HttpResponse::Ok().json(s.broker.unpin_experiment(&id).await?))
}

#[post("/api/feedback")]
pub async fn feedback(
    s: web::Data<AppState>,
    c: Spender,
    body: super::Object<Feedback>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    checked(&b.request_id, "request")?;
    // `score` is 1 to 5 here: the body's reader refused anything else.
    let score = u8::try_from(b.score).unwrap_or(u8::MAX);
    let (rating, replaced) = s.broker.rate(&c.0, &b.request_id, score).await?;
    Ok(if replaced {
        HttpResponse::Ok().json(rating)
    } else {
        HttpResponse::Created().json(rating)
    })
}
