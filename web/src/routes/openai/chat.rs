//! `POST /v1/chat/completions`: the whole of OpenAI's chat request —
//! tools, tool results, image parts, `n`, `response_format` — read into
//! the shared chat shape (`oneflow::chat`), so that any text provider can
//! serve it; fields OneFlow does not know pass through to OpenAI-compatible
//! upstreams as given.

use actix_web::{HttpRequest, post, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use oneflow::chat::{ChatRequest, anthropic::uncarried, openai::read_request};
use oneflow::config::ProviderKind;
use oneflow::request::{Ask, RequestError};
use oneflow_actors::{Operation, Output, RequestJob};

use super::error::{OpenAiError, V1Result};
use super::stream::{Kind, respond, stream};
use super::{
    RouteWish, StreamOptions, body, caller, created, images_within, ok, preview, route_wish,
    settled, usage_json,
};
use crate::error::ApiError;
use crate::routes::TextOr;
use crate::state::AppState;

/// The most answers one request may ask for (`n`).
pub const MAX_CHOICES: u32 = 8;

/// Message content: a string, or parts.
#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::openai`"
)]
#[derive(Debug, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = MessageContent)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match crate::routes::text_or_objects(d)? {
            TextOr::Text(t) => Content::Text(t),
            TextOr::Objects(p) => Content::Parts(p),
        })
    }
}

/// A part of a message's content: `text` with `text`, or `image_url` (in
/// a user's message) with `image_url.url`, an http(s) or `data:` URL.
#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::openai`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ContentPart {
    #[serde(rename = "type")]
    #[schema(pattern = "^(text|image_url)$")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    image_url: Option<ImageUrl>,
}

#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::openai`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ImageUrl {
    url: String,
    /// `auto`, `low` or `high`: passed on.
    #[serde(default)]
    detail: Option<String>,
}

/// A tool call an assistant message made.
#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::openai`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = MessageToolCall)]
struct ToolCallIn {
    id: String,
    /// `function`.
    #[serde(rename = "type", default)]
    #[schema(pattern = "^function$")]
    kind: Option<String>,
    #[serde(deserialize_with = "crate::routes::object")]
    function: CalledFunction,
}

#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::openai`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CalledFunction {
    name: String,
    /// A JSON object, as text.
    arguments: String,
}

/// One message. `tool` messages carry `tool_call_id` and answer a call of
/// the assistant message before them; only `user` messages hold images.
#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::openai`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ChatMessage)]
struct InMessage {
    #[schema(pattern = "^(system|developer|user|assistant|tool)$")]
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default, deserialize_with = "crate::routes::objects_or_null")]
    tool_calls: Option<Vec<ToolCallIn>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

/// A function the model may call.
#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::openai`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ChatTool)]
struct ToolIn {
    /// `function`.
    #[serde(rename = "type")]
    #[schema(pattern = "^function$")]
    kind: String,
    #[serde(deserialize_with = "crate::routes::object")]
    function: FunctionIn,
}

#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::openai`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct FunctionIn {
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-zA-Z0-9_-]+$")]
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// A JSON Schema object.
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    #[schema(value_type = Option<Object>)]
    parameters: Option<Map<String, Value>>,
}

/// OpenAI's chat request. `tools`, `tool_choice`, tool calls and results,
/// image parts and `n` (up to 8) are served by every text provider;
/// fields not listed here (`response_format`, `seed`, `logprobs`,
/// penalties, `user`, `metadata`, newer ones) pass through to
/// OpenAI-compatible providers as given, and a provider of another format
/// is not chosen for a request whose fields it cannot carry.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(
    as = ChatCompletionRequest,
    example = json!({"model": "gpt", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20})
)]
pub(crate) struct ChatBody {
    model: String,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::openai`"
    )]
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "crate::routes::objects")]
    messages: Vec<InMessage>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::openai`"
    )]
    #[serde(default, deserialize_with = "crate::routes::objects_or_null")]
    tools: Option<Vec<ToolIn>>,
    /// `auto`, `none`, `required`, or `{"type": "function", "function":
    /// {"name"}}` naming one of `tools`.
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::openai`"
    )]
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    tool_choice: Option<Value>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::openai`"
    )]
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    max_tokens: Option<u32>,
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    stream_options: Option<StreamOptions>,
    /// Answers to give, each up to the token bound; held for all of them.
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    #[schema(minimum = 1, maximum = 8)]
    n: Option<u32>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    oneflow: Option<RouteWish>,
}

/// Fields this route reads itself; every other non-null field is passed
/// through.
const OWN: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "stream",
    "stream_options",
    "n",
    "oneflow",
];

/// Reads the body: its shape (400 when a field is of the wrong kind), then
/// the conversation (422 when its parts do not agree).
fn read(value: &Value, max_chars: usize) -> Result<(ChatBody, ChatRequest), OpenAiError> {
    let b: ChatBody = crate::routes::typed(value)?;
    // The name's rule is the schema's, so breaking it is a 400.
    for t in b.tools.iter().flatten() {
        let n = &t.function.name;
        let fine = (1..=64).contains(&n.len())
            && n.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !fine {
            return Err(ApiError::BadRequest(format!(
                "tool name `{n}` must be 1 to 64 letters, digits, `_` or `-`"
            ))
            .into());
        }
    }
    let conversation = read_request(value).map_err(|e| ApiError::Inconsistent(e.to_string()))?;
    if conversation.turns.is_empty() {
        return Err(
            ApiError::Inconsistent("`messages` holds no user or assistant message".into()).into(),
        );
    }
    if b.n.is_some_and(|n| !(1..=MAX_CHOICES).contains(&n)) {
        return Err(ApiError::BadRequest(format!("`n` must be 1 to {MAX_CHOICES}")).into());
    }
    if conversation.text().chars().count() > max_chars {
        return Err(ApiError::BadRequest(format!(
            "messages are longer than {max_chars} characters"
        ))
        .into());
    }
    Ok((b, conversation))
}

#[post("/v1/chat/completions")]
pub async fn chat(s: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> V1Result {
    let user = caller(&req, oneflow::access::Permission::Spend).await?;
    let (value, idem): (Value, _) = body(&s, &req, payload).await?;
    let (b, chat) = read(&value, s.broker.config().server.max_prompt_chars)?;
    images_within(&chat, &s)?;
    let (strategy, constraints) = route_wish(&req, b.oneflow)?;
    let cache = s
        .broker
        .cache_mode(&user, crate::routes::cached::asked(&req)?);
    let ttl = crate::routes::cached::asked_ttl(&req)?;
    let n = b.n.unwrap_or(1);
    let extra: Map<String, Value> = value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| !OWN.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // The quote counts the tools' schemas and the tool calls as prompt
    // text, and each image at its largest.
    let contents = chat.counted();
    let shown = preview(&contents[0]);
    let ask = Ask::Chat {
        contents,
        max_tokens: b.max_completion_tokens.or(b.max_tokens),
        images: chat.images() as u64,
        n,
    };
    let refused = uncarried(n, extra.keys());
    let job = RequestJob {
        spenders: Vec::new(),
        key: None,
        key_id: None,
        member: None,
        model: b.model.clone(),
        preview: shown,
        op: Operation::Chat {
            chat,
            max_tokens: 0,
            n,
            extra,
            responses: None,
        },
        planner: Box::new(move |p| {
            if let (ProviderKind::Anthropic, Some(field)) = (p.kind, &refused) {
                return Err(RequestError::CannotCarry {
                    field: field.clone(),
                    provider: p.name.clone(),
                });
            }
            ask.plan(p)
        }),
        constraints,
        strategy,
        idem,
    };
    if b.stream.unwrap_or(false) {
        if n > 1 {
            return Err(ApiError::BadRequest("`n` above 1 is not streamed".into()).into());
        }
        let usage = b.stream_options.is_some_and(|o| o.include_usage);
        let Some(mode) = cache else {
            return stream(&s, &user, job, usage, Kind::Chat).await;
        };
        let (start, r) = s
            .broker
            .stream_cached(&user, job, mode, ttl, "chat", &value)
            .await?;
        return Ok(respond(start, usage, Kind::Chat, Some(r)));
    }
    let (a, result) = match cache {
        Some(mode) => {
            let (a, r) = s
                .broker
                .run_cached(&user, job, mode, ttl, "chat", &value)
                .await?;
            (a, Some(r))
        }
        None => (s.broker.run(&user, job).await?, None),
    };
    settled(&a)?;
    let mut res = ok(&a);
    crate::routes::cached::tell(&mut res, result);
    let choices = match a.output {
        Some(Output::Choices(c)) => Value::Array(c),
        Some(Output::Text {
            text,
            finish_reason,
        }) => {
            json!([{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason, "logprobs": null}])
        }
        _ => {
            json!([{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop", "logprobs": null}])
        }
    };
    Ok(res.json(json!({
        "id": format!("chatcmpl-{}", a.outcome.request_id),
        "object": "chat.completion",
        "created": created(&a.outcome),
        "model": a.outcome.model,
        "choices": choices,
        "usage": usage_json(&a.outcome),
    })))
}
