//! How to talk to each kind of provider, behind one [`Adapter`] trait.
//!
//! Every adapter takes a normalised [`CallRequest`] (an [`Operation`] in the
//! OpenAI vocabulary plus the plan that priced it) and answers with a
//! normalised [`CallResult`] carrying the usage the upstream reported, or a
//! stream of [`Chunk`]s. Translation to and from each wire protocol lives in
//! the adapter's own file.

pub mod anthropic;
mod form;
pub mod openai;
mod operation;
mod pieces;
mod responses_api;
pub mod simulated;
pub mod sse;
pub mod stability;
mod videos;

pub use operation::{JobProgress, Operation};
pub(crate) use pieces::pieces;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use oneflow::config::{ProviderConfig, ProviderKind};
use oneflow::pricing::Usage;
use oneflow::reach::Reach;
use oneflow::request::Plan;

/// A call as an adapter sees it.
#[derive(Clone, Debug)]
pub struct CallRequest {
    pub request_id: String,
    /// The model name to send upstream.
    pub model: String,
    pub op: Operation,
    pub plan: Plan,
}

/// What came back, normalised. Serialised (as JSON) only to keep a whole
/// answer for idempotent replays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Output {
    /// One plain text answer: a completion, or a chat answer that is text
    /// alone (the usual case, read and written without a tree).
    Text { text: String, finish_reason: String },
    /// A chat answer of OpenAI-shaped choices (`index`, `message` with
    /// `content` and `tool_calls`, `finish_reason`): tool calls, or more
    /// than one answer.
    Choices(Vec<serde_json::Value>),
    /// OpenAI-shaped embedding objects, as the upstream sent them.
    Embeddings(Vec<serde_json::Value>),
    /// OpenAI-shaped image objects (`b64_json` or `url`).
    Images(Vec<serde_json::Value>),
    Audio {
        #[serde(with = "base64_bytes")]
        bytes: Bytes,
        content_type: String,
    },
    /// A simulated clip's address.
    Clip(String),
}

/// Audio bytes as base64 text: a quarter larger, not four times (as a
/// JSON array of numbers would be).
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

impl Output {
    /// A text form for the native API and history.
    pub fn summary(&self) -> String {
        match self {
            Output::Text { text, .. } => text.clone(),
            Output::Choices(v) => v.iter().map(choice_summary).collect::<Vec<_>>().join("\n"),
            Output::Embeddings(v) => format!("{} embeddings", v.len()),
            Output::Images(v) => v
                .iter()
                .map(|i| match i.get("url").and_then(|u| u.as_str()) {
                    Some(u) => u.to_string(),
                    None => "image (base64)".to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Output::Audio {
                bytes,
                content_type,
            } => format!("{content_type}, {} bytes", bytes.len()),
            Output::Clip(s) => s.clone(),
        }
    }
}

/// One OpenAI-shaped choice as text: its content, then each tool call as
/// `name(arguments)`.
fn choice_summary(c: &serde_json::Value) -> String {
    let m = &c["message"];
    let mut out = m["content"].as_str().unwrap_or_default().to_string();
    for t in m["tool_calls"].as_array().into_iter().flatten() {
        if !out.is_empty() {
            out.push('\n');
        }
        let f = &t["function"];
        out.push_str(f["name"].as_str().unwrap_or("?"));
        out.push('(');
        out.push_str(f["arguments"].as_str().unwrap_or_default());
        out.push(')');
    }
    out
}

/// A finished call.
#[derive(Clone, Debug, PartialEq)]
pub struct CallResult {
    pub output: Output,
    pub usage: Usage,
    /// The model the upstream says answered.
    pub model: String,
}

/// One piece of a streamed answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Chunk {
    /// Text to pass to the client.
    Delta(String),
    /// A piece of a tool call, OpenAI-shaped as in a chunk's
    /// `delta.tool_calls[]`: `index`, and `id`, `type`, `function.name`
    /// with the first piece; `function.arguments` text in every piece.
    ToolCall(serde_json::Value),
    /// A piece of the model's thinking (Anthropic's extended thinking).
    Thinking(Thinking),
    /// Usage the upstream reported (input, output or both so far).
    Usage(Usage),
    /// The upstream's reason for stopping.
    Finish(String),
}

pub type ChunkStream = BoxStream<'static, Result<Chunk, CallError>>;

/// A streamed piece of thinking, as Anthropic sends it: text, then the
/// block's signature; or a redacted block whole.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Thinking {
    Text(String),
    Signature(String),
    Redacted(String),
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CallError {
    /// Our own queue in front of the provider is full.
    #[error("provider {provider} is overloaded; retry after {retry_after_secs}s")]
    Overloaded {
        provider: String,
        retry_after_secs: u64,
    },
    /// The upstream answered with an error, or could not be reached.
    #[error("provider {provider} failed: {message}")]
    Upstream {
        provider: String,
        /// HTTP status, if one came back.
        status: Option<u16>,
        message: String,
        /// Seconds the upstream asked us to wait.
        retry_after: Option<u64>,
        /// Worth trying again (connection errors, 429, 5xx).
        transient: bool,
    },
    #[error("provider {provider} did not answer within {ms} ms")]
    Timeout { provider: String, ms: u64 },
    #[error("provider {0} is unavailable")]
    Unavailable(String),
    /// The call asked for something this kind of provider cannot do.
    #[error("provider {provider} cannot {what}")]
    Unsupported { provider: String, what: String },
    /// The answer (or one streamed event) was larger than
    /// `limits.max_response_bytes`; what came was dropped unread.
    #[error("provider {provider} sent more than {limit} bytes in one answer or event")]
    TooLarge { provider: String, limit: u64 },
}

impl CallError {
    pub fn upstream(provider: &str, message: impl Into<String>) -> CallError {
        CallError::Upstream {
            provider: provider.to_string(),
            status: None,
            message: message.into(),
            retry_after: None,
            transient: false,
        }
    }

    /// Worth retrying on the same provider after a backoff.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Upstream { transient, .. } => *transient,
            CallError::Timeout { .. } | CallError::Overloaded { .. } => true,
            CallError::Unavailable(_)
            | CallError::Unsupported { .. }
            | CallError::TooLarge { .. } => false,
        }
    }

    /// Counts against the provider's circuit: the provider misbehaved, as
    /// opposed to the request being one it cannot take.
    pub fn is_provider_fault(&self) -> bool {
        match self {
            CallError::Upstream { status, .. } => !matches!(status, Some(400 | 404 | 413 | 422)),
            CallError::Timeout { .. } | CallError::Unavailable(_) | CallError::TooLarge { .. } => {
                true
            }
            CallError::Overloaded { .. } | CallError::Unsupported { .. } => false,
        }
    }

    /// Seconds the upstream (or our queue) asked to wait.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            CallError::Upstream { retry_after, .. } => *retry_after,
            CallError::Overloaded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// A stable, low-cardinality code for the API, records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Overloaded { .. } => "provider_overloaded",
            CallError::Upstream {
                status: Some(429), ..
            } => "upstream_rate_limited",
            CallError::Upstream {
                status: Some(s), ..
            } if *s >= 500 => "upstream_server_error",
            CallError::Upstream { status: None, .. } => "upstream_unreachable",
            CallError::Upstream { .. } => "provider_error",
            CallError::Timeout { .. } => "upstream_timeout",
            CallError::Unavailable(_) => "provider_unavailable",
            CallError::TooLarge { .. } => "upstream_too_large",
            CallError::Unsupported { .. } => "unsupported",
        }
    }
}

/// A finished job's file as its upstream serves it, passed on as it comes.
pub struct Content {
    pub content_type: String,
    pub length: Option<u64>,
    pub body: BoxStream<'static, Result<Bytes, CallError>>,
}

/// How to talk to one provider.
pub trait Adapter: Send + Sync + 'static {
    fn call(&self, req: CallRequest) -> BoxFuture<'static, Result<CallResult, CallError>>;

    /// Streams a chat or completion. Adapters without streaming answer
    /// with the whole text as one delta.
    fn stream(&self, req: CallRequest) -> BoxFuture<'static, Result<ChunkStream, CallError>> {
        let call = self.call(req);
        Box::pin(async move {
            let r = call.await?;
            let (mut chunks, finish) = pieces(r.output, |t| vec![t.to_string()]);
            chunks.push(Chunk::Usage(r.usage));
            chunks.push(Chunk::Finish(finish));
            Ok(Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok))) as ChunkStream)
        })
    }
    /// Stops a job still running upstream (`id` as the upstream named it).
    /// Only providers that run jobs have one.
    fn cancel(&self, id: &str) -> BoxFuture<'static, ()> {
        let _ = id;
        Box::pin(async {})
    }

    /// The file a finished job made, `address` being what its call gave
    /// ([`Output::Clip`]), at most `limit` bytes. Only providers that make
    /// files later (video jobs) have one.
    fn content(&self, address: &str, limit: u64) -> BoxFuture<'static, Result<Content, CallError>> {
        let _ = (address, limit);
        Box::pin(async {
            Err(CallError::Unsupported {
                provider: "this".into(),
                what: "serve a job's content".into(),
            })
        })
    }
}

/// The HTTP client adapters and webhook deliveries share: connection
/// pooling, a connect timeout; per-call timeouts are the caller's.
/// Redirects are never followed: an upstream's 3xx is its answer (an
/// error), not a place to send the request and its key next. A host name
/// is connected to only at the addresses `reach` allows (checked at every
/// resolution, so a DNS answer that changes later is caught too; addresses
/// written out in a URL are checked when it is accepted).
pub fn http_client(reach: Reach) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none());
    if reach != Reach::Anywhere {
        b = b.dns_resolver(std::sync::Arc::new(Within(reach)));
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Resolves host names to the addresses its reach allows only.
struct Within(Reach);

impl reqwest::dns::Resolve for Within {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let reach = self.0;
        Box::pin(async move {
            let all = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<std::net::SocketAddr> = all.filter(|a| reach.allows(a.ip())).collect();
            if allowed.is_empty() {
                let why = format!(
                    "{host} resolves only to {}es (allow_private is off)",
                    reach.refuses()
                );
                return Err(why.into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Reads the API key from the environment variable the config names. The
/// key is kept only inside the adapter.
fn api_key(cfg: &ProviderConfig) -> Option<String> {
    if cfg.api_key_env.is_empty() {
        return None;
    }
    std::env::var(&cfg.api_key_env)
        .ok()
        .filter(|k| !k.trim().is_empty())
}

/// Builds the adapter `cfg` names.
pub fn build(cfg: &ProviderConfig, client: &reqwest::Client) -> std::sync::Arc<dyn Adapter> {
    use std::sync::Arc;
    match cfg.kind {
        ProviderKind::Simulated => {
            Arc::new(simulated::Simulated::new(&cfg.name, cfg.simulated.clone()))
        }
        ProviderKind::Openai => Arc::new(openai::OpenAi::new(cfg, client.clone(), api_key(cfg))),
        ProviderKind::Anthropic => {
            Arc::new(anthropic::Anthropic::new(cfg, client.clone(), api_key(cfg)))
        }
        ProviderKind::Stability => {
            Arc::new(stability::Stability::new(cfg, client.clone(), api_key(cfg)))
        }
    }
}

/// Turns a failed HTTP exchange into a [`CallError`]: the status, the
/// upstream's own message if its body has one, and `Retry-After`.
/// Sends a built request: a request the adapter could not build is
/// `Unsupported`, a transport failure is transient, and a non-2xx answer is
/// the upstream's error; otherwise the response, its body unread.
pub(crate) async fn send(
    provider: &str,
    key: Option<&str>,
    built: Result<reqwest::RequestBuilder, String>,
) -> Result<reqwest::Response, CallError> {
    let builder = built.map_err(|what| CallError::Unsupported {
        provider: provider.to_string(),
        what,
    })?;
    let res = builder
        .send()
        .await
        .map_err(|e| transport_error(provider, &e))?;
    if !res.status().is_success() {
        return Err(error_from_response(provider, key, res).await);
    }
    Ok(res)
}

/// An upstream's error answer as a [`CallError`]: its status, its message
/// (from `error.message`, or `message` as Stability has it) with the API key
/// blanked out should the upstream echo it, and its `Retry-After`.
pub(crate) async fn error_from_response(
    provider: &str,
    key: Option<&str>,
    res: reqwest::Response,
) -> CallError {
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Only the message is wanted: an error body past this is cut, not read.
    let body = read_body(provider, res, ERROR_BODY_BYTES)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            // OpenAI and Anthropic nest it under `error`; Stability does not.
            ["/error/message", "/message"]
                .iter()
                .find_map(|p| v.pointer(p).and_then(|m| m.as_str()))
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("HTTP {status}"));
    CallError::Upstream {
        provider: provider.to_string(),
        status: Some(status),
        message: format!("HTTP {status}: {}", truncate(&redact(&message, key), 300)),
        retry_after,
        // 529 is Anthropic's "overloaded"; it falls under >= 500.
        transient: status == 408 || status == 409 || status == 429 || status >= 500,
    }
}

/// The most read of an upstream's error answer.
const ERROR_BODY_BYTES: u64 = 64 << 10;

/// Reads a whole answer, at most `limit` bytes of it: a larger one (by its
/// Content-Length, or once that many bytes have come) is
/// [`CallError::TooLarge`] and the rest is never read.
pub(crate) async fn read_body(
    provider: &str,
    mut res: reqwest::Response,
    limit: u64,
) -> Result<Bytes, CallError> {
    let too_large = || CallError::TooLarge {
        provider: provider.to_string(),
        limit,
    };
    if res.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| transport_error(provider, &e))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A fault of an upstream's event stream as a [`CallError`].
pub(crate) fn stream_fault(provider: &str, e: sse::Fault) -> CallError {
    match e {
        sse::Fault::TooLarge(limit) => CallError::TooLarge {
            provider: provider.to_string(),
            limit,
        },
        sse::Fault::Broken(m) => CallError::upstream(provider, m),
    }
}

/// `text` with every occurrence of the key replaced.
fn redact(text: &str, key: Option<&str>) -> String {
    match key {
        Some(k) if k.len() >= 8 && text.contains(k) => text.replace(k, "[redacted]"),
        _ => text.to_string(),
    }
}

/// A transport error (refused, reset, TLS, body read) as a transient
/// failure. Never includes headers, so never the key.
pub(crate) fn transport_error(provider: &str, e: &reqwest::Error) -> CallError {
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    CallError::Upstream {
        provider: provider.to_string(),
        status: None,
        message: what.to_string(),
        retry_after: None,
        transient: true,
    }
}

/// A 2xx body that does not parse as the protocol says.
pub(crate) fn malformed(provider: &str, what: &str) -> CallError {
    CallError::Upstream {
        provider: provider.to_string(),
        status: Some(200),
        message: format!("malformed response: {what}"),
        retry_after: None,
        transient: true,
    }
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Joins a base URL and a path with exactly one slash.
pub(crate) fn url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Reads a usage figure that may be absent or null.
pub(crate) fn count(v: &serde_json::Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(|x| x.as_u64())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn an_echoed_key_is_blanked_out_of_upstream_messages() {
        let key = "sk-live-0123456789abcdef";
        let said = format!("Incorrect API key provided: {key}. Check {key} again");
        let shown = redact(&said, Some(key));
        assert!(!shown.contains(key), "{shown}");
        assert_eq!(
            shown,
            "Incorrect API key provided: [redacted]. Check [redacted] again"
        );
        // No key, or nothing of it in the text: unchanged.
        assert_eq!(redact("rate limited", Some(key)), "rate limited");
        assert_eq!(redact("rate limited", None), "rate limited");
    }
}
