//! `POST /v1/embeddings`.

use actix_web::{HttpRequest, post, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use oneflow::request::Ask;
use oneflow_actors::RequestJob;
use oneflow_actors::{Operation, Output};

use super::error::V1Result;
use super::{Prompt, RouteWish, body, caller, ok, pass_through, preview, route_wish, settled};
use crate::error::ApiError;
use crate::state::AppState;

/// OpenAI's embedding request. `encoding_format`, `dimensions` and `user`
/// pass through to the provider; other fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(
    as = EmbeddingRequest,
    example = json!({"model": "gpt", "input": ["first text", "second text"]})
)]
pub(crate) struct EmbeddingBody {
    model: String,
    /// A string or an array of 1 to 2048 strings.
    #[schema(schema_with = super::embedding_input)]
    input: Prompt,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    oneflow: Option<RouteWish>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[post("/v1/embeddings")]
pub async fn embeddings(
    s: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> V1Result {
    let user = caller(&req, oneflow::access::Permission::Spend).await?;
    let (b, idem): (EmbeddingBody, _) = body(&s, &req, payload).await?;
    let inputs = match b.input {
        Prompt::One(p) => vec![p],
        Prompt::Many(v) => v,
    };
    if inputs.is_empty() || inputs.len() > 2048 {
        return Err(ApiError::BadRequest("`input` must hold 1 to 2048 texts".into()).into());
    }
    let chars: usize = inputs.iter().map(|i| i.chars().count()).sum();
    if chars > s.broker.config().server.max_prompt_chars {
        return Err(ApiError::BadRequest("`input` is too long".into()).into());
    }
    let (strategy, constraints) = route_wish(&req, b.oneflow)?;
    let ask = Ask::Embedding {
        inputs: inputs.clone(),
    };
    let job = RequestJob {
        spenders: Vec::new(),
        key: None,
        key_id: None,
        member: None,
        model: b.model.clone(),
        preview: preview(&inputs.join(" ")),
        op: Operation::Embedding {
            input: inputs,
            extra: pass_through(&b.extra, &["encoding_format", "dimensions", "user"]),
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
        Some(Output::Embeddings(d)) => d,
        _ => Vec::new(),
    };
    let tokens = a.outcome.usage.input_tokens;
    Ok(res.json(json!({
        "object": "list",
        "data": data,
        "model": a.outcome.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}
