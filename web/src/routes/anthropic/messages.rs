//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's
//! Messages request read into the shared chat shape, quoted, held, routed
//! to any text provider and answered as a Messages `message` (or its
//! events).

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use oneflow::chat::{ChatRequest, ChatResponse, anthropic, openai};
use oneflow::config::ProviderKind;
use oneflow::request::{Ask, RequestError};
use oneflow_actors::{Answer, Operation, Output, RequestJob};

use super::blocks;
use super::error::{AnthropicError, MessagesResult};
use super::stream::stream;
use crate::error::ApiError;
use crate::routes::openai::{RouteWish, body, images_within, ok, preview, route_wish, settled};
use crate::routes::{TextOr, text_or_objects};
use crate::state::AppState;

/// A message's or the system prompt's content: a string, or blocks (whose
/// fields `oneflow::chat::anthropic` reads; their schema is in `blocks`).
#[allow(
    dead_code,
    reason = "read to check the body's shape; the conversation itself is read by `oneflow::chat::anthropic`"
)]
#[derive(Debug)]
enum Content {
    Text(String),
    Blocks(Vec<Map<String, Value>>),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match text_or_objects(d)? {
            TextOr::Text(t) => Content::Text(t),
            TextOr::Objects(b) => Content::Blocks(b),
        })
    }
}

#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::anthropic`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = MessagesMessage)]
struct MessageIn {
    #[schema(pattern = "^(user|assistant)$")]
    role: String,
    #[schema(schema_with = blocks::content)]
    content: Content,
}

/// A client tool the model may call.
#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::anthropic`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = MessagesTool)]
struct ToolIn {
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-zA-Z0-9_-]+$")]
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// A JSON Schema object.
    #[serde(deserialize_with = "crate::routes::object")]
    #[schema(value_type = Object)]
    input_schema: Map<String, Value>,
}

/// `metadata`: only `user_id`, as Anthropic has it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MessagesMetadata)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

/// Anthropic's Messages request. `max_tokens` is required, as Anthropic
/// requires it. Fields not listed here (`thinking`, `service_tier`, newer
/// ones) go to Anthropic providers as given; a provider of another format
/// is not chosen for a request that has one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(
    as = MessagesRequest,
    example = json!({"model": "gpt", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]})
)]
pub(crate) struct MessagesBody {
    model: String,
    #[serde(deserialize_with = "required_u32")]
    #[schema(minimum = 1)]
    max_tokens: u32,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::anthropic`"
    )]
    #[serde(deserialize_with = "crate::routes::objects")]
    #[schema(min_items = 1)]
    messages: Vec<MessageIn>,
    /// A string, or text blocks.
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::anthropic`"
    )]
    #[serde(default)]
    #[schema(schema_with = blocks::system)]
    system: Option<Content>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::anthropic`"
    )]
    #[serde(default, deserialize_with = "crate::routes::objects_or_null")]
    tools: Option<Vec<ToolIn>>,
    /// `{"type": "auto" | "any" | "none"}` or `{"type": "tool", "name"}`,
    /// with `disable_parallel_tool_use`.
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::anthropic`"
    )]
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    #[schema(schema_with = blocks::tool_choice)]
    tool_choice: Option<Map<String, Value>>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::anthropic`"
    )]
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    temperature: Option<f64>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    top_p: Option<f64>,
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    top_k: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    metadata: Option<Metadata>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    oneflow: Option<RouteWish>,
}

/// `count_tokens`' body: a Messages request without `max_tokens`.
#[allow(
    dead_code,
    reason = "read to check the body's shape and to derive its schema; the conversation itself is read by `oneflow::chat::anthropic`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(
    as = CountTokensRequest,
    example = json!({"model": "gpt", "messages": [{"role": "user", "content": "Say hello"}]})
)]
pub(crate) struct CountBody {
    model: String,
    #[serde(deserialize_with = "crate::routes::objects")]
    #[schema(min_items = 1)]
    messages: Vec<MessageIn>,
    #[serde(default)]
    #[schema(schema_with = blocks::system)]
    system: Option<Content>,
    #[serde(default, deserialize_with = "crate::routes::objects_or_null")]
    tools: Option<Vec<ToolIn>>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    #[schema(schema_with = blocks::tool_choice)]
    tool_choice: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    oneflow: Option<RouteWish>,
}

/// Fields the route reads itself; every other non-null field goes to
/// Anthropic providers as given.
const OWN: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "stop_sequences",
    "temperature",
    "top_p",
    "stream",
    "metadata",
    "oneflow",
];

/// A count that must be there: a whole number (as `whole_u32` reads it),
/// not null.
fn required_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    oneflow::request::whole_u32(d)?
        .ok_or_else(|| serde::de::Error::custom("`max_tokens` is required"))
}

fn shape<'a, T: Deserialize<'a>>(value: &'a Value) -> Result<T, AnthropicError> {
    crate::routes::typed(value).map_err(Into::into)
}

/// Reads the conversation: its blocks' shape (400, as the schema says),
/// then whether its parts agree (422, as on `/v1/chat/completions`: turns
/// that do not alternate, a tool result answering no call, a tool choice
/// naming no tool are what no schema can say). Bounds its text.
fn conversation(value: &Value, max_chars: usize) -> Result<ChatRequest, AnthropicError> {
    let chat = anthropic::parse_request(value).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if chat.turns.is_empty() {
        return Err(
            ApiError::BadRequest("`messages` must hold at least one message".into()).into(),
        );
    }
    chat.check()
        .map_err(|e| ApiError::Inconsistent(e.to_string()))?;
    if chat.text().chars().count() > max_chars {
        return Err(ApiError::BadRequest(format!(
            "messages are longer than {max_chars} characters"
        ))
        .into());
    }
    Ok(chat)
}

/// The job for a conversation: its quote counts its text, its tools and
/// each image at its largest; a provider of OpenAI's format is not chosen
/// when the request has a field only Anthropic's carries.
fn job(
    req: &HttpRequest,
    model: String,
    chat: ChatRequest,
    max_tokens: u32,
    extra: Map<String, Value>,
    wish: Option<RouteWish>,
    idem: Option<oneflow_actors::IdemKey>,
) -> Result<RequestJob, AnthropicError> {
    let (strategy, constraints) = route_wish(req, wish)?;
    let contents = chat.counted();
    let shown = preview(&contents[0]);
    let ask = Ask::Chat {
        contents,
        max_tokens: Some(max_tokens),
        images: chat.images() as u64,
        n: 1,
    };
    // `user` (from `metadata.user_id`) is the one extra field both formats
    // have.
    let own_only = extra.keys().find(|k| *k != "user").cloned();
    Ok(RequestJob {
        spenders: Vec::new(),
        key: None,
        key_id: None,
        member: None,
        model,
        preview: shown,
        op: Operation::Chat {
            chat,
            max_tokens: 0,
            n: 1,
            extra,
            responses: None,
        },
        planner: Box::new(move |p| {
            if let (ProviderKind::Openai, Some(field)) = (p.kind, &own_only) {
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
    })
}

#[post("/v1/messages")]
pub async fn messages(
    s: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> MessagesResult {
    let user = crate::auth::authenticate_by(req.clone(), true).await?;
    crate::access::check(&user, oneflow::access::Permission::Spend)?;
    let (value, idem): (Value, _) = body(&s, &req, payload).await?;
    let b: MessagesBody = shape(&value)?;
    if b.max_tokens == 0 {
        return Err(ApiError::BadRequest("`max_tokens` must be at least 1".into()).into());
    }
    let max_tokens = b.max_tokens;
    for (name, x) in [("temperature", b.temperature), ("top_p", b.top_p)] {
        if x.is_some_and(|x| !(0.0..=1.0).contains(&x)) {
            return Err(ApiError::BadRequest(format!("`{name}` must be 0 to 1")).into());
        }
    }
    let chat = conversation(&value, s.broker.config().server.max_prompt_chars)?;
    images_within(&chat, &s)?;
    let mut extra: Map<String, Value> = value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| !OWN.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(u) = b.metadata.and_then(|m| m.user_id) {
        extra.insert("user".into(), json!(u));
    }
    if let Some(k) = b.top_k {
        extra.insert("top_k".into(), json!(k));
    }
    let job = job(&req, b.model, chat, max_tokens, extra, b.oneflow, idem)?;
    if b.stream.unwrap_or(false) {
        return stream(&s, &oneflow_actors::Payer::of(&user), job).await;
    }
    let a = s.broker.run(&oneflow_actors::Payer::of(&user), job).await?;
    settled(&a)?;
    let mut res = ok(&a);
    Ok(res.json(anthropic::write_response(&answer(&a)?)))
}

/// A whole answer in the shared shape, from the broker's output (text, or
/// OpenAI-shaped choices when it holds tool calls).
fn answer(a: &Answer) -> Result<ChatResponse, AnthropicError> {
    let choice = match &a.output {
        Some(Output::Choices(c)) if !c.is_empty() => c[0].clone(),
        Some(Output::Text {
            text,
            finish_reason,
        }) => {
            json!({"message": {"role": "assistant", "content": text}, "finish_reason": finish_reason})
        }
        _ => json!({"message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}),
    };
    let read = openai::read_response(&json!({"choices": [choice]}))
        .map_err(|e| ApiError::Internal(format!("the answer cannot be written: {e}")))?;
    let o = &a.outcome;
    Ok(ChatResponse {
        id: format!("msg_{}", o.request_id),
        model: o.model.clone(),
        input_tokens: o.usage.input_tokens,
        output_tokens: o.usage.output_tokens,
        ..read
    })
}

/// Counts a request's input tokens as OneFlow quotes them for the
/// provider it would be routed to: exact for the simulated providers, an
/// upper bound for others (a byte per token). Nothing is held or charged.
#[post("/v1/messages/count_tokens")]
pub async fn count_tokens(
    s: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> MessagesResult {
    let user = crate::auth::authenticate_by(req.clone(), true).await?;
    crate::access::check(&user, oneflow::access::Permission::Spend)?;
    let (mut value, _): (Value, _) = body(&s, &req, payload).await?;
    let b: CountBody = shape(&value)?;
    // Counting needs no answer's bound; the reader wants one.
    value["max_tokens"] = json!(1);
    let chat = conversation(&value, s.broker.config().server.max_prompt_chars)?;
    let job = job(&req, b.model, chat, 1, Map::new(), b.oneflow, None)?;
    let quote = s.broker.quote_job(&user.user_id, job).await?;
    Ok(HttpResponse::Ok().json(json!({"input_tokens": quote.max_usage.input_tokens})))
}
