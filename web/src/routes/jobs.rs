//! `POST /api/jobs`, `GET /api/jobs/{id}`, `GET /api/jobs/{id}/content`:
//! video requests run in the background. The start answers 202 once the
//! job's hold is committed; the state is asked for until it ended; the
//! file is passed on from the provider as it comes.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use futures_util::StreamExt;

use oneflow::request::AiRequest;

use crate::access::{Reader, Spender};
use crate::error::ApiError;
use crate::state::AppState;

#[post("/api/jobs")]
pub async fn start(
    s: web::Data<AppState>,
    c: Spender,
    req: HttpRequest,
    body: super::Object<AiRequest>,
) -> Result<HttpResponse, ApiError> {
    // A replay would have to wait for the first job to end, minutes later;
    // refused rather than taken and ignored, which would run a job twice.
    if req.headers().contains_key("idempotency-key") {
        return Err(ApiError::BadRequest(
            "POST /api/jobs takes no Idempotency-Key: a job's id is its answer; ask GET /api/jobs/{id} before starting it again".into(),
        ));
    }
    let started = s.broker.start_job(&c.0, body.into_inner()).await?;
    Ok(HttpResponse::build(StatusCode::ACCEPTED)
        .insert_header(("location", format!("/api/jobs/{}", started.id)))
        .json(started))
}

#[get("/api/jobs/{id}")]
pub async fn job(
    s: web::Data<AppState>,
    c: Reader,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.broker.job(&c.0, &id).await?))
}

#[get("/api/jobs/{id}/content")]
pub async fn content(
    s: web::Data<AppState>,
    c: Reader,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let content = s.broker.job_content(&c.0, &id).await?;
    let mut res = HttpResponse::Ok();
    // The upstream's type only if it says video: anything else is passed
    // on as bytes to save, never as something a browser would render.
    let ct = content.content_type.to_ascii_lowercase();
    if ct.starts_with("video/") && ct.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        res.content_type(ct);
    } else {
        res.content_type("application/octet-stream");
    }
    res.insert_header((
        "content-disposition",
        format!("attachment; filename=\"{}.mp4\"", id.as_str()),
    ));
    if let Some(n) = content.length {
        res.no_chunking(n);
    }
    // A failure midway can only cut the answer: its head is sent.
    let body = content
        .body
        .map(|r| r.map_err(actix_web::error::ErrorBadGateway));
    Ok(res.streaming(body))
}
