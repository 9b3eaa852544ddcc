//! `POST /v1/responses` and `GET /v1/responses/{id}`: OpenAI's Responses
//! API, read as a chat (`oneflow::chat::responses`) so that any text
//! provider serves it, with the same quote, hold and settlement as a chat
//! completion. A response is kept (unless `store: false`) as long as
//! idempotency records are, for retrieval and for `previous_response_id`.

use std::sync::Arc;

use actix_web::{HttpRequest, get, post, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use oneflow::chat::anthropic::uncarried;
use oneflow::chat::{openai, responses};
use oneflow::config::ProviderKind;
use oneflow::request::{Ask, RequestError};
use oneflow_actors::{Operation, Output, RequestJob};

use super::error::V1Result;
use super::items;
use super::responses_stream::stream;
use super::{RouteWish, body, caller, created, images_within, ok, preview, route_wish, settled};
use crate::error::ApiError;
use crate::routes::TextOr;
use crate::state::AppState;

/// `input`: text, or items (their schema is in `items`).
#[allow(
    dead_code,
    reason = "read to check the body's shape; the items themselves are read by `oneflow::chat::responses`"
)]
#[derive(Debug)]
enum Input {
    Text(String),
    Items(Vec<Map<String, Value>>),
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match crate::routes::text_or_objects(d)? {
            TextOr::Text(t) => Input::Text(t),
            TextOr::Objects(i) => Input::Items(i),
        })
    }
}

/// A function tool (the only kind carried).
#[allow(
    dead_code,
    reason = "checked for shape; read by `oneflow::chat::responses`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResponsesTool)]
struct ToolIn {
    #[serde(rename = "type")]
    #[schema(pattern = "^function$")]
    kind: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-zA-Z0-9_-]+$")]
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// A JSON Schema object.
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    #[schema(value_type = Option<Object>)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    strict: Option<bool>,
}

/// `text.format`: `text`, `json_object`, or `json_schema` with `name` and
/// `schema`.
#[allow(
    dead_code,
    reason = "checked for shape; read by `oneflow::chat::responses`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ResponsesFormat)]
struct Format {
    #[serde(rename = "type")]
    #[schema(pattern = "^(text|json_object|json_schema)$")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    #[schema(value_type = Option<Object>)]
    schema: Option<Map<String, Value>>,
    #[serde(default)]
    strict: Option<bool>,
}

#[allow(
    dead_code,
    reason = "checked for shape; read by `oneflow::chat::responses`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResponsesText)]
struct TextIn {
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    format: Option<Format>,
}

/// `reasoning`: its `effort` goes on as `reasoning_effort`.
#[allow(
    dead_code,
    reason = "checked for shape; read by `oneflow::chat::responses`"
)]
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ResponsesReasoning)]
struct Reasoning {
    #[serde(default)]
    effort: Option<String>,
}

/// OpenAI's Responses request, as far as a chat completion can carry it:
/// text or items (messages with text and image parts, function calls and
/// their outputs), `instructions`, function tools, `text.format`. Built-in
/// tools, `reasoning` items and other fields are refused (400).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = ResponsesRequest,
    example = json!({"model": "gpt", "input": "Say hello", "max_output_tokens": 20})
)]
pub(crate) struct ResponsesBody {
    model: String,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[schema(schema_with = items::input)]
    input: Input,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default)]
    instructions: Option<String>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default, deserialize_with = "crate::routes::objects_or_null")]
    tools: Option<Vec<ToolIn>>,
    /// `auto`, `none`, `required`, or `{"type": "function", "name"}`.
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default)]
    #[schema(schema_with = items::tool_choice)]
    tool_choice: Option<Value>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default, deserialize_with = "oneflow::request::whole_u32")]
    #[schema(minimum = 1)]
    max_output_tokens: Option<u32>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default)]
    temperature: Option<f64>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default)]
    top_p: Option<f64>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    text: Option<TextIn>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    reasoning: Option<Reasoning>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default)]
    user: Option<String>,
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    /// Keep the response for retrieval and `previous_response_id`
    /// (default true), for `idempotency.retention_hours`.
    #[serde(default)]
    store: Option<bool>,
    /// A kept response of the caller's this one continues: its
    /// conversation and answer come before `input` (its instructions do
    /// not).
    #[serde(default)]
    previous_response_id: Option<String>,
    /// Returned with the response; not sent on.
    #[allow(dead_code, reason = "echoed from the body as given")]
    #[serde(default)]
    metadata: Option<std::collections::BTreeMap<String, String>>,
    /// Only `disabled`.
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default)]
    #[schema(pattern = "^disabled$")]
    truncation: Option<String>,
    /// Only `false`.
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default)]
    #[schema(schema_with = items::only_false)]
    background: Option<bool>,
    /// Only empty.
    #[allow(
        dead_code,
        reason = "checked for shape; read by `oneflow::chat::responses`"
    )]
    #[serde(default)]
    #[schema(max_items = 0)]
    include: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::routes::object_or_null")]
    oneflow: Option<RouteWish>,
}

/// What a kept response holds: the response as answered, and the
/// conversation that led to it with its output (Responses items, without
/// the instructions) for a response that continues it.
#[derive(serde::Serialize, Deserialize)]
struct Kept {
    response: Value,
    items: Vec<Value>,
}

async fn kept(s: &AppState, user: &str, id: &str) -> Result<Kept, ApiError> {
    let body = s
        .broker
        .kept_response(user, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("response `{id}`")))?;
    serde_json::from_str(&body).map_err(|e| ApiError::Internal(format!("kept response {id}: {e}")))
}

/// The `response` object: its own fields, then the request's settings as
/// it was given them (OpenAI echoes them back).
pub(super) fn response_object(
    id: &str,
    created_at: u64,
    model: &str,
    status: &str,
    output: Vec<Value>,
    usage: Option<(u64, u64)>,
    request: &Value,
) -> Value {
    let given = |k: &str, default: Value| match &request[k] {
        Value::Null => default,
        v => v.clone(),
    };
    let (_, incomplete) = match status {
        "incomplete" => responses::status("length"),
        _ => ("completed", Value::Null),
    };
    json!({
        "id": id, "object": "response", "created_at": created_at, "status": status,
        "model": model, "output": output, "error": null, "incomplete_details": incomplete,
        "usage": usage.map(|(i, o)| json!({
            "input_tokens": i, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": o, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": i + o,
        })),
        "instructions": given("instructions", Value::Null),
        "max_output_tokens": given("max_output_tokens", Value::Null),
        "parallel_tool_calls": given("parallel_tool_calls", json!(true)),
        "previous_response_id": given("previous_response_id", Value::Null),
        "store": given("store", json!(true)),
        "temperature": given("temperature", json!(1.0)),
        "top_p": given("top_p", json!(1.0)),
        "tool_choice": given("tool_choice", json!("auto")),
        "tools": given("tools", json!([])),
        "text": given("text", json!({"format": {"type": "text"}})),
        "truncation": "disabled",
        "metadata": given("metadata", json!({})),
        "user": given("user", Value::Null),
    })
}

#[post("/v1/responses")]
pub async fn create(s: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> V1Result {
    let user = caller(&req, oneflow::access::Permission::Spend).await?;
    let (mut value, idem): (Value, _) = body(&s, &req, payload).await?;
    let b: ResponsesBody = crate::routes::typed(&value)?;
    // Echoed as read (`20.0` is 20).
    if let Some(n) = b.max_output_tokens {
        value["max_output_tokens"] = json!(n);
    }
    if b.max_output_tokens == Some(0) {
        return Err(ApiError::BadRequest("`max_output_tokens` must be at least 1".into()).into());
    }
    let previous = match &b.previous_response_id {
        Some(id) => kept(&s, &user, id).await?.items,
        None => Vec::new(),
    };
    let read = responses::read_request(&value, &previous)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let chat =
        openai::read_request(&read.chat).map_err(|e| ApiError::Inconsistent(e.to_string()))?;
    if chat.turns.is_empty() {
        return Err(
            ApiError::Inconsistent("`input` holds no user or assistant message".into()).into(),
        );
    }
    images_within(&chat, &s)?;
    let max_chars = s.broker.config().server.max_prompt_chars;
    if chat.text().chars().count() > max_chars {
        return Err(
            ApiError::BadRequest(format!("input is longer than {max_chars} characters")).into(),
        );
    }
    let (strategy, constraints) = route_wish(&req, b.oneflow)?;
    let contents = chat.counted();
    let shown = preview(&contents[0]);
    let ask = Ask::Chat {
        contents,
        max_tokens: b.max_output_tokens,
        images: chat.images() as u64,
        n: 1,
    };
    let refused = uncarried(1, read.extra.keys());
    // For an upstream that speaks the Responses API: the request as it
    // came, its `input` the whole conversation.
    let mut native = value.clone();
    native["input"] = Value::Array(read.items.clone());
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
            n: 1,
            extra: read.extra,
            responses: Some(Arc::new(native)),
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
    let store = b.store.unwrap_or(true);
    if b.stream.unwrap_or(false) {
        return stream(&s, &user, job, value, read.items, store).await;
    }
    let a = s.broker.run(&user, job).await?;
    settled(&a)?;
    let o = &a.outcome;
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
    let id = format!("resp_{}", o.request_id);
    let (status, _) = responses::status(choice["finish_reason"].as_str().unwrap_or("stop"));
    let output = responses::output_items(&choice, &o.request_id);
    let response = response_object(
        &id,
        created(o),
        &o.model,
        status,
        output.clone(),
        Some((o.usage.input_tokens, o.usage.output_tokens)),
        &value,
    );
    // A replay answers what the first answer kept; only the first keeps.
    if store && !a.replayed {
        let mut items = read.items;
        items.extend(output);
        let kept = Kept {
            response: response.clone(),
            items,
        };
        let body = serde_json::to_string(&kept).map_err(|e| ApiError::Internal(e.to_string()))?;
        s.broker.keep_response(&user, &id, Some(o), body).await?;
    }
    Ok(ok(&a).json(response))
}

/// Keeps a streamed response once its stream is over.
pub(super) async fn keep_streamed(
    s: &AppState,
    user: &str,
    id: &str,
    response: &Value,
    items: Vec<Value>,
) -> Result<(), ApiError> {
    let kept = Kept {
        response: response.clone(),
        items,
    };
    let body = serde_json::to_string(&kept).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.broker.keep_response(user, id, None, body).await?;
    Ok(())
}

#[get("/v1/responses/{id}")]
pub async fn retrieve(s: web::Data<AppState>, req: HttpRequest, id: web::Path<String>) -> V1Result {
    let user = caller(&req, oneflow::access::Permission::Read).await?;
    let k = kept(&s, &user, &id).await?;
    Ok(actix_web::HttpResponse::Ok().json(k.response))
}
