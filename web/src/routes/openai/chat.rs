//! `POST /v1/chat/completions`.

use actix_web::{HttpRequest, post, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use oneflow::request::Ask;
use oneflow_actors::RequestJob;
use oneflow_actors::{ChatMessage, Operation};

use super::error::{OpenAiError, V1Result};
use super::stream::{Kind, stream};
use super::{
    PASS_THROUGH, RouteWish, StreamOptions, body, caller, created, ok, pass_through, preview,
    refuse_unsupported, route_wish, settled, text_of, usage_json,
};
use crate::error::ApiError;
use crate::state::AppState;

/// Message content: a string, or parts of which only text is supported.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = MessageContent)]
enum Content {
    Text(String),
    Parts(#[serde(deserialize_with = "crate::routes::objects")] Vec<Part>),
}

/// A part of a message's content; only `text` parts are taken.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ContentPart)]
struct Part {
    /// `text`.
    #[serde(rename = "type")]
    #[schema(pattern = "^text$")]
    kind: String,
    #[serde(default)]
    #[schema(required = true, value_type = String)]
    text: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ChatMessage)]
struct InMessage {
    /// `system`, `developer`, `user` or `assistant`.
    #[schema(pattern = "^(system|developer|user|assistant)$")]
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// OpenAI's chat request. `tools`, `functions`, `tool_choice`,
/// `function_call` and `logprobs` are refused (unless null or false);
/// `temperature`, `top_p`, `stop`, `presence_penalty`,
/// `frequency_penalty`, `seed`, `user`, `logit_bias` and `response_format`
/// pass through to the provider; other fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(
    as = ChatCompletionRequest,
    example = json!({"model": "gpt", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20})
)]
pub(crate) struct ChatBody {
    model: String,
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "crate::routes::objects")]
    messages: Vec<InMessage>,
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    max_tokens: Option<u32>,
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    max_completion_tokens: Option<u32>,
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

fn messages(body: &[InMessage], max_chars: usize) -> Result<Vec<ChatMessage>, OpenAiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest("`messages` must not be empty".into()).into());
    }
    let mut out = Vec::with_capacity(body.len());
    let mut total = 0usize;
    for m in body {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant"
        ) {
            return Err(ApiError::BadRequest(format!(
                "message role `{}` is not supported",
                m.role
            ))
            .into());
        }
        let content = match &m.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut t = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(x)) => t.push_str(x),
                        _ => {
                            return Err(ApiError::BadRequest(format!(
                                "content parts of type `{}` are not supported",
                                p.kind
                            ))
                            .into());
                        }
                    }
                }
                t
            }
        };
        total += content.chars().count();
        out.push(ChatMessage {
            role: m.role.clone(),
            content,
        });
    }
    if total > max_chars {
        return Err(ApiError::BadRequest(format!(
            "messages are longer than {max_chars} characters"
        ))
        .into());
    }
    Ok(out)
}

#[post("/v1/chat/completions")]
pub async fn chat(s: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> V1Result {
    let user = caller(&req).await?;
    let (b, idem): (ChatBody, _) = body(&s, &req, payload).await?;
    refuse_unsupported(&b.extra, b.n)?;
    let msgs = messages(&b.messages, s.broker.config().server.max_prompt_chars)?;
    let (strategy, constraints) = route_wish(&req, b.oneflow)?;
    let max_tokens = b.max_completion_tokens.or(b.max_tokens);
    let ask = Ask::Chat {
        contents: msgs.iter().map(|m| m.content.clone()).collect(),
        max_tokens,
    };
    let job = RequestJob {
        model: b.model.clone(),
        preview: preview(&msgs.last().map(|m| m.content.clone()).unwrap_or_default()),
        op: Operation::Chat {
            messages: msgs,
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
        return stream(&s, &user, job, usage, Kind::Chat).await;
    }
    let a = s.broker.run(&user, job).await?;
    settled(&a)?;
    let mut res = ok(&a);
    let (text, finish) = text_of(a.output);
    Ok(res.json(json!({
        "id": format!("chatcmpl-{}", a.outcome.request_id),
        "object": "chat.completion",
        "created": created(&a.outcome),
        "model": a.outcome.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": null}],
        "usage": usage_json(&a.outcome),
    })))
}
