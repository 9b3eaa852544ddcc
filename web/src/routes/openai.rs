//! The OpenAI-compatible API under `/v1`: same wallet, budgets, holds and
//! history as the native API, OpenAI's request, response, stream and error
//! shapes, so existing SDKs work unchanged.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, post, web};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use oneflow::Credits;
use oneflow::request::Ask;
use oneflow::routing::{Constraints, Region, Strategy};
use oneflow_actors::BrokerError;
use oneflow_actors::provider::{ChatMessage, Operation, Output};
use oneflow_actors::run::{Job, StreamEvent};
use oneflow_actors::views::RequestOutcome;

use crate::error::ApiError;
use crate::state::AppState;

/// An [`ApiError`] in OpenAI's shape: `{"error":{"message","type","code"}}`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenAiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for OpenAiError {
    fn from(e: E) -> Self {
        OpenAiError(e.into())
    }
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let kind = match status.as_u16() {
            401 => "authentication_error",
            402 => "insufficient_quota",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        let mut res = HttpResponse::build(status);
        if let Some(secs) = self.0.retry_after() {
            res.insert_header((RETRY_AFTER, secs.to_string()));
        }
        res.json(json!({"error": {"message": self.0.to_string(), "type": kind, "code": self.0.code(), "param": null}}))
    }
}

type V1Result = Result<HttpResponse, OpenAiError>;

async fn caller(req: &HttpRequest) -> Result<String, OpenAiError> {
    Ok(crate::auth::authenticate(req.clone()).await?.user_id)
}

/// Reads the body (bounded) and parses it, with errors in OpenAI's shape.
async fn body<T: serde::de::DeserializeOwned>(
    s: &AppState,
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<T, OpenAiError> {
    let limit = s.broker.config().server.max_body_bytes;
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(ApiError::BadRequest(
            "send the body as JSON with `Content-Type: application/json`".into(),
        )
        .into());
    }
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit).into());
        }
        buf.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&buf)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")).into())
}

/// Routing wishes: the `oneflow` body field, or `x-oneflow-*` headers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteWish {
    pub strategy: Option<Strategy>,
    pub region: Option<Region>,
    #[serde(default)]
    pub providers: Vec<String>,
    pub max_price: Option<Credits>,
}

fn header<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    name: &str,
) -> Result<Option<T>, OpenAiError> {
    let Some(v) = req.headers().get(name) else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .map_err(|_| ApiError::BadRequest(format!("`{name}` must be ASCII")))?;
    serde_json::from_value(Value::String(text.trim().to_string()))
        .or_else(|_| serde_json::from_str(text.trim()))
        .map(Some)
        .map_err(|_| ApiError::BadRequest(format!("`{name}` has an invalid value")).into())
}

fn route_wish(
    req: &HttpRequest,
    field: Option<RouteWish>,
) -> Result<(Option<Strategy>, Constraints), OpenAiError> {
    let mut w = field.unwrap_or_default();
    if let Some(s) = header::<Strategy>(req, "x-oneflow-strategy")? {
        w.strategy = Some(s);
    }
    if let Some(r) = header::<Region>(req, "x-oneflow-region")? {
        w.region = Some(r);
    }
    if let Some(m) = header::<Credits>(req, "x-oneflow-max-price")? {
        w.max_price = Some(m);
    }
    if let Some(p) = req
        .headers()
        .get("x-oneflow-providers")
        .and_then(|v| v.to_str().ok())
    {
        w.providers = p
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect();
    }
    Ok((
        w.strategy,
        Constraints {
            region: w.region,
            providers: w.providers,
            max_price: w.max_price,
        },
    ))
}

/// Fields passed through to the upstream as given.
const PASS_THROUGH: &[&str] = &[
    "temperature",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
    "logit_bias",
    "response_format",
];

fn pass_through(extra: &Map<String, Value>, allowed: &[&str]) -> Map<String, Value> {
    extra
        .iter()
        .filter(|(k, v)| allowed.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Message content: a string, or parts of which only text is supported.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    oneflow: Option<RouteWish>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn refuse_unsupported(extra: &Map<String, Value>, n: Option<u32>) -> Result<(), OpenAiError> {
    if n.is_some_and(|n| n != 1) {
        return Err(ApiError::BadRequest("only `n` = 1 is supported".into()).into());
    }
    for k in [
        "tools",
        "functions",
        "tool_choice",
        "function_call",
        "logprobs",
    ] {
        if extra
            .get(k)
            .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
        {
            return Err(
                ApiError::BadRequest(format!("`{k}` is not supported by this broker")).into(),
            );
        }
    }
    Ok(())
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
    if out.iter().all(|m| m.content.trim().is_empty()) {
        return Err(ApiError::BadRequest("messages must have some text".into()).into());
    }
    Ok(out)
}

#[post("/v1/chat/completions")]
pub async fn chat(s: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> V1Result {
    let user = caller(&req).await?;
    let b: ChatBody = body(&s, &req, payload).await?;
    refuse_unsupported(&b.extra, b.n)?;
    let msgs = messages(&b.messages, s.broker.config().server.max_prompt_chars)?;
    let (strategy, constraints) = route_wish(&req, b.oneflow)?;
    let max_tokens = b.max_completion_tokens.or(b.max_tokens);
    let ask = Ask::Chat {
        contents: msgs.iter().map(|m| m.content.clone()).collect(),
        max_tokens,
    };
    let job = Job {
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
        idem: None,
    };
    if b.stream.unwrap_or(false) {
        let usage = b.stream_options.is_some_and(|o| o.include_usage);
        return stream(&s, &user, job, usage, Kind::Chat).await;
    }
    let a = s.broker.run(&user, job).await?;
    settled(&a.outcome)?;
    let (text, finish) = text_of(a.output);
    Ok(ok(&a.outcome).json(json!({
        "id": format!("chatcmpl-{}", a.outcome.request_id),
        "object": "chat.completion",
        "created": now_secs(),
        "model": a.outcome.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": null}],
        "usage": usage_json(&a.outcome),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    model: String,
    prompt: Prompt,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
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
    let user = caller(&req).await?;
    let b: CompletionBody = body(&s, &req, payload).await?;
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
    let job = Job {
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
        idem: None,
    };
    if b.stream.unwrap_or(false) {
        let usage = b.stream_options.is_some_and(|o| o.include_usage);
        return stream(&s, &user, job, usage, Kind::Completion).await;
    }
    let a = s.broker.run(&user, job).await?;
    settled(&a.outcome)?;
    let (text, finish) = text_of(a.output);
    Ok(ok(&a.outcome).json(json!({
        "id": format!("cmpl-{}", a.outcome.request_id),
        "object": "text_completion",
        "created": now_secs(),
        "model": a.outcome.model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": null}],
        "usage": usage_json(&a.outcome),
    })))
}

/// The text and finish reason of a whole text answer.
fn text_of(out: Option<Output>) -> (String, String) {
    match out {
        Some(Output::Text {
            text,
            finish_reason,
        }) => (text, finish_reason),
        _ => (String::new(), "stop".into()),
    }
}

#[derive(Debug, Deserialize)]
struct EmbeddingBody {
    model: String,
    input: Prompt,
    #[serde(default)]
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
    let user = caller(&req).await?;
    let b: EmbeddingBody = body(&s, &req, payload).await?;
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
    let job = Job {
        model: b.model.clone(),
        preview: preview(&inputs.join(" ")),
        op: Operation::Embedding {
            input: inputs,
            extra: pass_through(&b.extra, &["encoding_format", "dimensions", "user"]),
        },
        planner: Box::new(move |p| ask.plan(p)),
        constraints,
        strategy,
        idem: None,
    };
    let a = s.broker.run(&user, job).await?;
    settled(&a.outcome)?;
    let data = match a.output {
        Some(Output::Embeddings(d)) => d,
        _ => Vec::new(),
    };
    let tokens = a.outcome.usage.input_tokens;
    Ok(ok(&a.outcome).json(json!({
        "object": "list",
        "data": data,
        "model": a.outcome.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

#[derive(Debug, Deserialize)]
struct ImageBody {
    model: Option<String>,
    prompt: String,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    oneflow: Option<RouteWish>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[post("/v1/images/generations")]
pub async fn images(s: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> V1Result {
    let user = caller(&req).await?;
    let b: ImageBody = body(&s, &req, payload).await?;
    if b.prompt.trim().is_empty() {
        return Err(ApiError::BadRequest("`prompt` must not be empty".into()).into());
    }
    let model = b
        .model
        .ok_or_else(|| ApiError::BadRequest("`model` is required".into()))?;
    let (strategy, constraints) = route_wish(&req, b.oneflow)?;
    let ask = Ask::Image {
        n: b.n,
        size: b.size,
    };
    let job = Job {
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
        idem: None,
    };
    let a = s.broker.run(&user, job).await?;
    settled(&a.outcome)?;
    let data = match a.output {
        Some(Output::Images(d)) => d,
        _ => Vec::new(),
    };
    Ok(ok(&a.outcome).json(json!({"created": now_secs(), "data": data})))
}

#[derive(Debug, Deserialize)]
struct SpeechBody {
    model: String,
    input: String,
    #[serde(default)]
    voice: Option<String>,
    #[serde(default)]
    oneflow: Option<RouteWish>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[post("/v1/audio/speech")]
pub async fn speech(s: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> V1Result {
    let user = caller(&req).await?;
    let b: SpeechBody = body(&s, &req, payload).await?;
    if b.input.trim().is_empty() || b.input.chars().count() > 4096 {
        return Err(ApiError::BadRequest("`input` must be 1 to 4096 characters".into()).into());
    }
    let (strategy, constraints) = route_wish(&req, b.oneflow)?;
    let ask = Ask::Speech {
        input: b.input.clone(),
    };
    let job = Job {
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
        idem: None,
    };
    let a = s.broker.run(&user, job).await?;
    settled(&a.outcome)?;
    match a.output {
        Some(Output::Audio {
            bytes,
            content_type,
        }) => Ok(ok(&a.outcome)
            .insert_header((CONTENT_TYPE, content_type))
            .body(bytes)),
        Some(other) => Ok(ok(&a.outcome).json(json!({"output": other.summary()}))),
        None => Ok(ok(&a.outcome).finish()),
    }
}

#[get("/v1/models")]
pub async fn models(s: web::Data<AppState>, req: HttpRequest) -> V1Result {
    caller(&req).await?;
    let mut data = Vec::new();
    for p in &s.broker.config().providers {
        for id in std::iter::once(&p.name).chain(p.models.iter()) {
            data.push(json!({"id": id, "object": "model", "created": 0, "owned_by": p.name}));
        }
    }
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data})))
}

/// A failed outcome becomes an error (with the status and code of the
/// broker's error for it); a good one is passed on.
fn settled(outcome: &RequestOutcome) -> Result<(), OpenAiError> {
    match BrokerError::from_outcome(outcome) {
        Some(BrokerError::Upstream {
            code,
            message,
            retry_after,
        }) => Err(BrokerError::Upstream {
            code,
            message: format!("{message} (request {})", outcome.request_id),
            retry_after,
        }
        .into()),
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The answer's headers: the request, its route and its cost.
fn ok(o: &RequestOutcome) -> actix_web::HttpResponseBuilder {
    let mut r = HttpResponse::Ok();
    r.insert_header(("x-oneflow-request-id", o.request_id.clone()));
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&o.route) {
        r.insert_header(("x-oneflow-route", v));
    }
    r.insert_header(("x-oneflow-cost", o.cost.to_string()));
    r
}

fn usage_json(o: &RequestOutcome) -> Value {
    let (i, o) = (o.usage.input_tokens, o.usage.output_tokens);
    json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o})
}

fn preview(text: &str) -> String {
    text.chars().take(200).collect()
}

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Completion,
}

/// What every chunk of one stream repeats. Chunks are written straight from
/// these borrowed parts: a stream writes one per piece of text, so building
/// a `serde_json::Value` for each was a cost per token.
#[derive(Clone)]
struct ChunkHead {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
}

#[derive(serde::Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum ChunkChoice<'a> {
    Delta {
        index: u32,
        delta: Delta<'a>,
        finish_reason: Option<&'a str>,
    },
    Text {
        index: u32,
        text: &'a str,
        finish_reason: Option<&'a str>,
    },
}

#[derive(serde::Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<Extra<'a>>,
}

/// One more top-level field (`usage`, or OneFlow's own `oneflow`).
struct Extra<'a>(&'static str, &'a Value);

impl serde::Serialize for Extra<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0, self.1)?;
        m.end()
    }
}

/// Most events one write of a stream carries.
const STREAM_COALESCE: usize = 32;

impl ChunkHead {
    /// Appends what `event` says to the client to `out`; true if the stream
    /// is over (`None`: the broker's side ended without an end event).
    fn write_event(
        &self,
        out: &mut Vec<u8>,
        event: Option<StreamEvent>,
        kind: Kind,
        first: bool,
        include_usage: bool,
    ) -> bool {
        match event {
            Some(StreamEvent::Delta(d)) => {
                let choice = match kind {
                    Kind::Chat => ChunkChoice::Delta {
                        index: 0,
                        delta: Delta {
                            role: first.then_some("assistant"),
                            content: Some(&d),
                        },
                        finish_reason: None,
                    },
                    Kind::Completion => ChunkChoice::Text {
                        index: 0,
                        text: &d,
                        finish_reason: None,
                    },
                };
                self.write(out, &[choice], None);
                false
            }
            Some(StreamEvent::End {
                finish_reason,
                stopped,
                message,
                usage,
                cost,
            }) => {
                let choice = match kind {
                    Kind::Chat => ChunkChoice::Delta {
                        index: 0,
                        delta: Delta::default(),
                        finish_reason: Some(&finish_reason),
                    },
                    Kind::Completion => ChunkChoice::Text {
                        index: 0,
                        text: "",
                        finish_reason: Some(&finish_reason),
                    },
                };
                let note = json!({"stopped": stopped, "message": message, "cost": cost});
                self.write(out, &[choice], Some(("oneflow", &note)));
                if include_usage {
                    let u = json!({"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens, "total_tokens": usage.input_tokens + usage.output_tokens});
                    self.write(out, &[], Some(("usage", &u)));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                true
            }
            None => {
                out.extend_from_slice(b"data: [DONE]\n\n");
                true
            }
        }
    }

    /// Appends one `data:` event to `out`.
    fn write(
        &self,
        out: &mut Vec<u8>,
        choices: &[ChunkChoice<'_>],
        extra: Option<(&'static str, &Value)>,
    ) {
        let chunk = ChunkOut {
            id: &self.id,
            object: self.object,
            created: self.created,
            model: &self.model,
            choices,
            extra: extra.map(|(k, v)| Extra(k, v)),
        };
        out.extend_from_slice(b"data: ");
        // Writing plain structs of strings and numbers into a Vec cannot
        // fail; were it to, the event would be cut short, not the stream.
        let _ = serde_json::to_writer(&mut *out, &chunk);
        out.extend_from_slice(b"\n\n");
    }
}

/// Streams in OpenAI's server-sent events: a chunk per piece of text as it
/// arrives, a last chunk with the finish reason (and, when the broker ended
/// the stream, a `oneflow` field saying why), the usage chunk if asked for,
/// then `[DONE]`.
async fn stream(s: &AppState, user: &str, job: Job, include_usage: bool, kind: Kind) -> V1Result {
    let start = s.broker.stream(user, job).await?;
    let id = match kind {
        Kind::Chat => format!("chatcmpl-{}", start.request_id),
        Kind::Completion => format!("cmpl-{}", start.request_id),
    };
    let object = match kind {
        Kind::Chat => "chat.completion.chunk",
        Kind::Completion => "text_completion",
    };
    let head = ChunkHead {
        id,
        object,
        created: now_secs(),
        model: start.model.clone(),
    };
    let mut first = true;
    // Events already queued when the client's socket is written go out in
    // one write: a stream is many small events, and a write each was an
    // eighth of a stream's CPU. Nothing waits to be coalesced.
    let body = futures_util::stream::unfold((start.events, false), move |(mut rx, done)| {
        let head = head.clone();
        let mut is_first = std::mem::replace(&mut first, false);
        async move {
            if done {
                return None;
            }
            let mut out = Vec::with_capacity(512);
            let mut event = rx.recv().await;
            let mut taken = 0;
            let finished = loop {
                if head.write_event(&mut out, event, kind, is_first, include_usage) {
                    break true;
                }
                is_first = false;
                taken += 1;
                if taken == STREAM_COALESCE {
                    break false;
                }
                match rx.try_recv() {
                    Ok(e) => event = Some(e),
                    // Nothing more yet (or the sender is gone: the next
                    // poll's `recv` says so).
                    Err(_) => break false,
                }
            };
            Some((Ok::<_, actix_web::Error>(Bytes::from(out)), (rx, finished)))
        }
    });
    let mut res = HttpResponse::Ok();
    res.insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("x-oneflow-request-id", start.request_id.clone()))
        .insert_header(("x-oneflow-quote", start.quote.to_string()));
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&start.route) {
        res.insert_header(("x-oneflow-route", v));
    }
    Ok(res.streaming(body))
}
