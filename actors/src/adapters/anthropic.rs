//! Anthropic's Messages API, translated to and from the OpenAI shape.
//! `base_url` is what Anthropic's SDKs take, e.g. `https://api.anthropic.com`.

use futures_util::future::BoxFuture;
use futures_util::stream::StreamExt;
use serde_json::{Value, json};

use oneflow::config::ProviderConfig;
use oneflow::pricing::Usage;

use super::{
    Adapter, CallError, CallRequest, CallResult, Chunk, ChunkStream, Operation, Output, count,
    malformed, sse, url,
};

const VERSION: &str = "2023-06-01";

pub struct Anthropic {
    name: String,
    base: String,
    client: reqwest::Client,
    key: Option<String>,
    /// `limits.max_response_bytes`: the most read of one answer or event.
    max_body: u64,
}

impl Anthropic {
    pub fn new(cfg: &ProviderConfig, client: reqwest::Client, key: Option<String>) -> Anthropic {
        Anthropic {
            name: cfg.name.clone(),
            base: cfg.base_url.clone(),
            client,
            key,
            max_body: cfg.limits.max_response_bytes,
        }
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let b = self
            .client
            .post(url(&self.base, "v1/messages"))
            .header("anthropic-version", VERSION)
            .json(body);
        match &self.key {
            Some(k) => b.header("x-api-key", k),
            None => b,
        }
    }
}

/// OpenAI chat (or a bare prompt) as a Messages request: system messages
/// move to `system`, `stop` becomes `stop_sequences`.
fn body(model: &str, op: &Operation, stream: bool) -> Result<Value, String> {
    let (messages, max_tokens, extra) = match op {
        Operation::Chat {
            messages,
            max_tokens,
            extra,
        } => (messages.clone(), *max_tokens, extra),
        Operation::Completion {
            prompt,
            max_tokens,
            extra,
        } => (
            vec![super::ChatMessage {
                role: "user".into(),
                content: prompt.clone(),
            }],
            *max_tokens,
            extra,
        ),
        other => return Err(format!("serve {} requests", other.name())),
    };
    let system: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == "system" || m.role == "developer")
        .map(|m| m.content.as_str())
        .collect();
    let turns: Vec<Value> = messages
        .iter()
        .filter(|m| m.role != "system" && m.role != "developer")
        .map(|m| {
            let role = if m.role == "assistant" {
                "assistant"
            } else {
                "user"
            };
            json!({"role": role, "content": m.content})
        })
        .collect();
    let mut v = json!({"model": model, "max_tokens": max_tokens, "messages": turns});
    if !system.is_empty() {
        v["system"] = json!(system.join("\n"));
    }
    if stream {
        v["stream"] = json!(true);
    }
    for k in ["temperature", "top_p", "top_k"] {
        if let Some(x) = extra.get(k) {
            v[k] = x.clone();
        }
    }
    match extra.get("stop") {
        Some(Value::String(s)) => v["stop_sequences"] = json!([s]),
        Some(Value::Array(a)) => v["stop_sequences"] = json!(a),
        _ => {}
    }
    Ok(v)
}

/// Anthropic's stop reasons in OpenAI's words.
fn finish_reason(stop: &str) -> String {
    match stop {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
    .to_string()
}

impl Adapter for Anthropic {
    fn call(&self, req: CallRequest) -> BoxFuture<'static, Result<CallResult, CallError>> {
        let name = self.name.clone();
        let key = self.key.clone();
        let max_body = self.max_body;
        let built = body(&req.model, &req.op, false).map(|b| self.post(&b));
        Box::pin(async move {
            let res = super::send(&name, key.as_deref(), built).await?;
            let bytes = super::read_body(&name, res, max_body).await?;
            let v: Value =
                serde_json::from_slice(&bytes).map_err(|_| malformed(&name, "not JSON"))?;
            let blocks = v
                .get("content")
                .and_then(|c| c.as_array())
                .ok_or_else(|| malformed(&name, "no content"))?;
            let text: String = blocks
                .iter()
                .filter(|b| b.get("type").and_then(|t| t.as_str()) == Some("text"))
                .filter_map(|b| b.get("text").and_then(|t| t.as_str()))
                .collect();
            let input = count(&v, "/usage/input_tokens");
            let output = count(&v, "/usage/output_tokens");
            let (Some(input_tokens), Some(output_tokens)) = (input, output) else {
                return Err(malformed(&name, "no usage"));
            };
            Ok(CallResult {
                output: Output::Text {
                    text,
                    finish_reason: finish_reason(
                        v.get("stop_reason").and_then(|s| s.as_str()).unwrap_or(""),
                    ),
                },
                usage: Usage {
                    input_tokens,
                    output_tokens,
                    ..Usage::default()
                },
                model: v
                    .get("model")
                    .and_then(|m| m.as_str())
                    .unwrap_or(&req.model)
                    .to_string(),
            })
        })
    }

    fn stream(&self, req: CallRequest) -> BoxFuture<'static, Result<ChunkStream, CallError>> {
        let name = self.name.clone();
        let key = self.key.clone();
        let max_body = self.max_body;
        let built = body(&req.model, &req.op, true).map(|b| self.post(&b));
        Box::pin(async move {
            let res = super::send(&name, key.as_deref(), built).await?;
            let events = sse::events(res.bytes_stream().boxed(), max_body);
            Ok(chunks(name, events))
        })
    }
}

/// Named events: `message_start` carries input tokens, `content_block_delta`
/// text, `message_delta` the stop reason and output tokens so far.
fn chunks(
    name: String,
    events: futures_util::stream::BoxStream<'static, Result<sse::Event, sse::Fault>>,
) -> ChunkStream {
    let mut input_tokens = 0u64;
    events
        .flat_map(move |ev| {
            let out: Vec<Result<Chunk, CallError>> = match ev {
                Err(e) => vec![Err(super::stream_fault(&name, e))],
                Ok(ev) => match serde_json::from_str::<Value>(&ev.data) {
                    Err(_) => vec![Err(malformed(&name, "stream event is not JSON"))],
                    Ok(v) => {
                        let kind = ev
                            .event
                            .as_deref()
                            .or_else(|| v.get("type").and_then(|t| t.as_str()))
                            .unwrap_or("")
                            .to_string();
                        match kind.as_str() {
                            "message_start" => {
                                input_tokens =
                                    count(&v, "/message/usage/input_tokens").unwrap_or(0);
                                vec![Ok(Chunk::Usage(Usage {
                                    input_tokens,
                                    output_tokens: count(&v, "/message/usage/output_tokens")
                                        .unwrap_or(0),
                                    ..Usage::default()
                                }))]
                            }
                            "content_block_delta" => v
                                .pointer("/delta/text")
                                .and_then(|t| t.as_str())
                                .filter(|t| !t.is_empty())
                                .map(|t| vec![Ok(Chunk::Delta(t.to_string()))])
                                .unwrap_or_default(),
                            "message_delta" => {
                                let mut out = Vec::new();
                                if let Some(o) = count(&v, "/usage/output_tokens") {
                                    out.push(Ok(Chunk::Usage(Usage {
                                        input_tokens: count(&v, "/usage/input_tokens")
                                            .unwrap_or(input_tokens),
                                        output_tokens: o,
                                        ..Usage::default()
                                    })));
                                }
                                if let Some(s) =
                                    v.pointer("/delta/stop_reason").and_then(|s| s.as_str())
                                {
                                    out.push(Ok(Chunk::Finish(finish_reason(s))));
                                }
                                out
                            }
                            "error" => {
                                let msg = v
                                    .pointer("/error/message")
                                    .and_then(|m| m.as_str())
                                    .unwrap_or("error event");
                                vec![Err(CallError::Upstream {
                                    provider: name.clone(),
                                    status: None,
                                    message: msg.to_string(),
                                    retry_after: None,
                                    transient: true,
                                })]
                            }
                            _ => Vec::new(),
                        }
                    }
                },
            };
            futures_util::stream::iter(out)
        })
        .boxed()
}
