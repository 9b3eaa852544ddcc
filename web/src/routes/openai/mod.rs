//! The OpenAI-compatible API under `/v1`: same wallet, budgets, holds and
//! history as the native API, OpenAI's request, response, stream and error
//! shapes, so existing SDKs work unchanged.
//!
//! One file per resource (`chat`, `completions`, `embeddings`, `images`,
//! `speech`, `transcriptions`, `models`, `responses` with `responses_stream` and
//! `items`); `stream` writes server-sent events, `error` is
//! OpenAI's error shape. What several resources share is here.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod error;
pub mod images;
pub(crate) mod items;
pub mod models;
pub mod responses;
mod responses_stream;
pub mod speech;
pub mod stream;
pub mod transcriptions;

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use oneflow::Credits;
use oneflow::routing::{Constraints, Region, Strategy};
use oneflow_actors::BrokerError;
use oneflow_actors::views::RequestOutcome;
use oneflow_actors::{Answer, IdemKey, Output};

use crate::error::ApiError;
use crate::state::AppState;

pub use error::OpenAiError;

/// Who pays for the caller's requests (their wallet, or their team's for
/// a team key), once their role allows `need`.
async fn caller(
    req: &HttpRequest,
    need: oneflow::access::Permission,
) -> Result<oneflow_actors::Payer, OpenAiError> {
    let p = crate::auth::authenticate(req.clone()).await?;
    crate::access::check(&p, need)?;
    Ok(oneflow_actors::Payer::of(&p))
}

/// Reads the body (bounded) and parses it, with errors in OpenAI's shape;
/// with the `Idempotency-Key` header, also the key and the body's hash.
pub(crate) async fn body<T: serde::de::DeserializeOwned>(
    s: &AppState,
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<(T, Option<IdemKey>), OpenAiError> {
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
    let bad = |e: serde_json::Error| ApiError::BadRequest(format!("invalid JSON body: {e}"));
    // An object, not an array read as the fields in order (see
    // `routes::Object`).
    if buf.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest("the body must be a JSON object".into()).into());
    }
    if req.headers().contains_key("idempotency-key") {
        let value: Value = serde_json::from_slice(&buf).map_err(bad)?;
        let idem = crate::routes::idempotency_key(req, &value)?;
        return Ok((crate::routes::typed(value)?, idem));
    }
    let mut de = serde_json::Deserializer::from_slice(&buf);
    let body = crate::routes::typed(&mut de)?;
    de.end().map_err(bad)?;
    Ok((body, None))
}

/// Routing wishes: the `oneflow` body field, or `x-oneflow-*` headers.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteWish {
    pub strategy: Option<Strategy>,
    pub region: Option<Region>,
    /// Provider names allowed to serve.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Only providers whose quote is at most this.
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

/// `x-oneflow-max-price`: plain decimal credits, as its documented pattern
/// says (`^[0-9]{1,12}(\.[0-9]{1,6})?$`): no sign, exponent or spaces.
fn max_price_header(req: &HttpRequest) -> Result<Option<Credits>, OpenAiError> {
    let Some(v) = req.headers().get("x-oneflow-max-price") else {
        return Ok(None);
    };
    // No sign: a price cap is not negative.
    let parsed = v
        .to_str()
        .ok()
        .filter(|t| !t.starts_with('-'))
        .and_then(Credits::parse_plain);
    match parsed {
        Some(c) => Ok(Some(c)),
        None => Err(ApiError::BadRequest(
            "`x-oneflow-max-price` must be credits as a plain decimal number (at most 6 places)"
                .into(),
        )
        .into()),
    }
}

pub(crate) fn route_wish(
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
    if let Some(m) = max_price_header(req)? {
        w.max_price = Some(m);
    }
    if let Some(v) = req.headers().get("x-oneflow-providers") {
        let p = v
            .to_str()
            .map_err(|_| ApiError::BadRequest("`x-oneflow-providers` must be ASCII".into()))?;
        let named: Vec<String> = p
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect();
        // An empty header names nobody: it leaves the body's wish alone.
        if !named.is_empty() {
            w.providers = named;
        }
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

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A whole answer's `created`: when the request began, so that an
/// idempotent replay renders the same bytes.
fn created(o: &RequestOutcome) -> u64 {
    u64::try_from(o.created_at / 1000).unwrap_or(0)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
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

/// A text, or an array of texts.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
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

/// A failed outcome becomes an error (with the status and code of the
/// broker's error for it), and so does a replay whose answer was too large
/// to keep; a good one is passed on.
pub(crate) fn settled(a: &Answer) -> Result<(), OpenAiError> {
    let outcome = &a.outcome;
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
        None if a.replayed && a.output.is_none() => {
            Err(BrokerError::AnswerNotKept(outcome.request_id.clone()).into())
        }
        None => Ok(()),
    }
}

/// The answer's headers: the request, its route and its cost, and whether
/// it is an idempotent replay.
pub(crate) fn ok(a: &Answer) -> actix_web::HttpResponseBuilder {
    let o = &a.outcome;
    let mut r = HttpResponse::Ok();
    if a.replayed {
        r.insert_header(("idempotent-replayed", "true"));
    }
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

/// Refuses a chat with an image part over `server.max_image_bytes`.
pub(crate) fn images_within(
    chat: &oneflow::chat::ChatRequest,
    s: &AppState,
) -> Result<(), ApiError> {
    let max = s.broker.config().server.max_image_bytes;
    if chat.largest_image() > max {
        return Err(ApiError::ImageTooLarge(max));
    }
    Ok(())
}

pub(crate) fn preview(text: &str) -> String {
    text.chars().take(200).collect()
}

/// A text with something besides white space: what the handlers take as
/// a prompt (a blank one is refused).
fn not_blank() -> utoipa::openapi::ObjectBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"\S"))
}

/// `/v1/completions`' `prompt`: one text, or an array holding exactly one
/// (a batch of prompts is refused).
fn completion_prompt() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder};
    OneOfBuilder::new()
        .item(not_blank())
        .item(
            ArrayBuilder::new()
                .items(not_blank())
                .min_items(Some(1))
                .max_items(Some(1)),
        )
        .into()
}

/// `/v1/embeddings`' `input`: one text, or an array of 1 to 2048.
fn embedding_input() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String))
                .min_items(Some(1))
                .max_items(Some(2048)),
        )
        .into()
}
