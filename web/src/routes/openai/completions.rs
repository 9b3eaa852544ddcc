//! `POST /v1/completions`.

use actix_web::{HttpRequest, post, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use oneflow::request::Ask;
use oneflow_actors::Operation;
use oneflow_actors::RequestJob;

use super::error::V1Result;
use super::stream::{Kind, stream};
use super::{
    PASS_THROUGH, Prompt, RouteWish, StreamOptions, body, caller, created, ok, pass_through,
    preview, refuse_unsupported, route_wish, settled, text_of, usage_json,
};
use crate::error::ApiError;
use crate::state::AppState;

/// OpenAI's (legacy) completion request. `tools`, `functions`,
/// `tool_choice`, `function_call` and `logprobs` are refused (unless null
/// or false); `temperature`, `top_p`, `stop`, `presence_penalty`,
/// `frequency_penalty`, `seed`, `user`, `logit_bias` and `response_format`
/// pass through to the provider; other fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(
    as = CompletionRequest,
    example = json!({"model": "gpt", "prompt": "Once upon a time", "max_tokens": 20})
)]
pub(crate) struct CompletionBody {
    model: String,
    /// A string, or an array of one string.
    #[schema(schema_with = super::completion_prompt)]
    prompt: Prompt,
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    max_tokens: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    stream_options: Option<StreamOptions>,
    /// Only 1.
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    #[schema(minimum = 1, maximum = 1)]
    n: Option<u32>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    oneflow: Option<RouteWish>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[post("/v1/completions")]
pub async fn completions(
    s: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> V1Result {
    let user = caller(&req, oneflow::access::Permission::Spend).await?;
    let (b, idem): (CompletionBody, _) = body(&s, &req, payload).await?;
    refuse_unsupported(&b.extra, b.n)?;
    let prompt = match b.prompt {
        Prompt::One(p) => p,
        Prompt::Many(mut v) if v.len() == 1 => v.remove(0),
        Prompt::Many(_) => {
            return Err(ApiError::BadRequest("send one prompt per request".into()).into());
        }
    };
    if prompt.trim().is_empty() {
        return Err(ApiError::BadRequest("`prompt` must not be empty".into()).into());
    }
    if prompt.chars().count() > s.broker.config().server.max_prompt_chars {
        return Err(ApiError::BadRequest("`prompt` is too long".into()).into());
    }
    let (strategy, constraints) = route_wish(&req, b.oneflow)?;
    let ask = Ask::Completion {
        prompt: prompt.clone(),
        max_tokens: b.max_tokens,
    };
    let job = RequestJob {
        spenders: Vec::new(),
        key: None,
        key_id: None,
        member: None,
        model: b.model.clone(),
        preview: preview(&prompt),
        op: Operation::Completion {
            prompt,
            max_tokens: 0,
            extra: pass_through(&b.extra, PASS_THROUGH),
        },
        planner: Box::new(move |p| ask.plan(p)),
        constraints,
        strategy,
        idem,
    };
    if b.stream.unwrap_or(false) {
        let usage = b.stream_options.is_some_and(|o| o.include_usage);
        return stream(&s, &user, job, usage, Kind::Completion).await;
    }
    let a = s.broker.run(&user, job).await?;
    settled(&a)?;
    let mut res = ok(&a);
    let (text, finish) = text_of(a.output);
    Ok(res.json(json!({
        "id": format!("cmpl-{}", a.outcome.request_id),
        "object": "text_completion",
        "created": created(&a.outcome),
        "model": a.outcome.model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": null}],
        "usage": usage_json(&a.outcome),
    })))
}
