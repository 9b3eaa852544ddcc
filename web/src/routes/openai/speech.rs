//! `POST /v1/audio/speech`.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, post, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use oneflow::request::Ask;
use oneflow_actors::RequestJob;
use oneflow_actors::{Operation, Output};

use super::error::V1Result;
use super::{RouteWish, body, caller, ok, pass_through, preview, route_wish, settled};
use crate::error::ApiError;
use crate::state::AppState;

/// OpenAI's speech request. `response_format`, `speed` and `instructions`
/// pass through to the provider; other fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(
    as = SpeechRequest,
    example = json!({"model": "audio", "input": "Hello there", "voice": "alloy"})
)]
pub(crate) struct SpeechBody {
    model: String,
    /// 1 to 4096 characters.
    #[schema(min_length = 1, max_length = 4096)]
    input: String,
    /// Default `alloy`.
    #[serde(default)]
    voice: Option<String>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    oneflow: Option<RouteWish>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[post("/v1/audio/speech")]
pub async fn speech(s: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> V1Result {
    let user = caller(&req, oneflow::access::Permission::Spend).await?;
    let (b, idem): (SpeechBody, _) = body(&s, &req, payload).await?;
    if b.input.trim().is_empty() || b.input.chars().count() > 4096 {
        return Err(ApiError::BadRequest("`input` must be 1 to 4096 characters".into()).into());
    }
    let (strategy, constraints) = route_wish(&req, b.oneflow)?;
    let ask = Ask::Speech {
        input: b.input.clone(),
    };
    let job = RequestJob {
        spenders: Vec::new(),
        key: None,
        key_id: None,
        member: None,
        model: b.model.clone(),
        preview: preview(&b.input),
        op: Operation::Speech {
            input: b.input,
            voice: b.voice.unwrap_or_else(|| "alloy".into()),
            extra: pass_through(&b.extra, &["response_format", "speed", "instructions"]),
        },
        planner: Box::new(move |p| ask.plan(p)),
        constraints,
        strategy,
        idem,
    };
    let a = s.broker.run(&user, job).await?;
    settled(&a)?;
    let mut res = ok(&a);
    match a.output {
        Some(Output::Audio {
            bytes,
            content_type,
        }) => Ok(res.insert_header((CONTENT_TYPE, content_type)).body(bytes)),
        Some(other) => Ok(res.json(json!({"output": other.summary()}))),
        None => Ok(res.finish()),
    }
}
