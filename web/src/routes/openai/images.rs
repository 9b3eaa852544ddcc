//! `POST /v1/images/generations`.

use actix_web::{HttpRequest, post, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use oneflow::request::Ask;
use oneflow_actors::RequestJob;
use oneflow_actors::{Operation, Output};

use super::error::V1Result;
use super::{RouteWish, body, caller, created, ok, pass_through, preview, route_wish, settled};
use crate::error::ApiError;
use crate::state::AppState;

/// OpenAI's image request. `response_format`, `style` and `user` pass
/// through to the provider, and `quality` when it is `standard`; other
/// fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(
    as = ImageRequest,
    example = json!({"model": "image", "prompt": "A lighthouse at dusk", "n": 1, "size": "512x512"})
)]
pub(crate) struct ImageBody {
    // Required: read as optional only to say so in OpenAI's error shape.
    #[schema(value_type = String, required = true)]
    model: Option<String>,
    /// Not blank.
    #[schema(pattern = r"\S")]
    prompt: String,
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    n: Option<u32>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    oneflow: Option<RouteWish>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[post("/v1/images/generations")]
pub async fn images(s: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> V1Result {
    let user = caller(&req, oneflow::access::Permission::Spend).await?;
    let (b, idem): (ImageBody, _) = body(&s, &req, payload).await?;
    if b.prompt.trim().is_empty() {
        return Err(ApiError::BadRequest("`prompt` must not be empty".into()).into());
    }
    let model = b
        .model
        .ok_or_else(|| ApiError::BadRequest("`model` is required".into()))?;
    // A rate card prices an image by its size; a quality above standard
    // costs the provider more than that price, so it is refused rather than
    // passed on unpriced. (`style` does not change OpenAI's price.)
    if let Some(q) = b
        .extra
        .get("quality")
        .filter(|q| q.as_str() != Some("standard"))
    {
        return Err(ApiError::BadRequest(format!(
            "`quality` {q} is not priced by this broker; leave it out or send \"standard\""
        ))
        .into());
    }
    let (strategy, constraints) = route_wish(&req, b.oneflow)?;
    let ask = Ask::Image {
        n: b.n,
        size: b.size,
    };
    let job = RequestJob {
        spenders: Vec::new(),
        key: None,
        key_id: None,
        member: None,
        model: model.clone(),
        preview: preview(&b.prompt),
        op: Operation::Image {
            prompt: b.prompt,
            n: 0,
            size: String::new(),
            extra: pass_through(&b.extra, &["response_format", "quality", "style", "user"]),
        },
        planner: Box::new(move |p| ask.plan(p)),
        constraints,
        strategy,
        idem,
    };
    let a = s.broker.run(&user, job).await?;
    settled(&a)?;
    let mut res = ok(&a);
    let data = match a.output {
        Some(Output::Images(d)) => d,
        _ => Vec::new(),
    };
    Ok(res.json(json!({"created": created(&a.outcome), "data": data})))
}
