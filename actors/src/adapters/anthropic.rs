//! Anthropic's Messages API, translated to and from the OpenAI shape.
//! `base_url` is what Anthropic's SDKs take, e.g. `https://api.anthropic.com`.

use futures_util::future::BoxFuture;
use futures_util::stream::StreamExt;
use serde_json::{Value, json};

use oneflow::chat::anthropic::CARRIED;
use oneflow::chat::{ChatRequest, Part, Role, Turn};
use oneflow::config::ProviderConfig;
use oneflow::pricing::Usage;

use super::{
    Adapter, CallError, CallRequest, CallResult, Chunk, ChunkStream, Operation, Output, Thinking,
    count, malformed, sse, url,
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

/// A chat (or a bare prompt) as a Messages request, written by the shared
/// chat shape's Anthropic writer. `top_k` and `user` are the extra fields
/// of OpenAI's format it takes; the planner keeps requests in that format
/// with any other away from this adapter (`chat::anthropic::uncarried`),
/// so a chat's other extra fields came in Anthropic's own format
/// (`/v1/messages`) and go out as given.
fn body(model: &str, op: &Operation, stream: bool) -> Result<Value, String> {
    let (chat, max_tokens, extra, is_chat) = match op {
        Operation::Chat {
            chat,
            max_tokens,
            n: 1,
            extra,
            ..
        } => (chat.clone(), *max_tokens, extra, true),
        Operation::Chat { .. } => return Err("give more than one answer".into()),
        Operation::Completion {
            prompt,
            max_tokens,
            extra,
        } => {
            let chat = ChatRequest {
                turns: vec![Turn {
                    role: Role::User,
                    parts: vec![Part::Text(prompt.clone())],
                }],
                stop: match extra.get("stop") {
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                },
                temperature: extra.get("temperature").and_then(Value::as_f64),
                top_p: extra.get("top_p").and_then(Value::as_f64),
                ..ChatRequest::default()
            };
            (chat, *max_tokens, extra, false)
        }
        other => return Err(format!("serve {} requests", other.name())),
    };
    // The plan's bound, which the format requires.
    let chat = ChatRequest {
        max_tokens: Some(max_tokens),
        ..chat
    };
    let mut v = oneflow::chat::anthropic::write_request(&chat).map_err(|e| e.to_string())?;
    v["model"] = json!(model);
    v["max_tokens"] = json!(max_tokens);
    if let Some(o) = v.as_object_mut() {
        o.remove("stream");
    }
    if stream {
        v["stream"] = json!(true);
    }
    if let Some(k) = extra.get("top_k") {
        v["top_k"] = k.clone();
    }
    if let Some(u) = extra.get("user").and_then(Value::as_str) {
        v["metadata"] = json!({"user_id": u});
    }
    if is_chat {
        for (k, x) in extra.iter().filter(|(k, _)| !CARRIED.contains(&k.as_str())) {
            v[k.as_str()] = x.clone();
        }
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
            if !v["content"].is_array() {
                return Err(malformed(&name, "no content"));
            }
            let input = count(&v, "/usage/input_tokens");
            let output = count(&v, "/usage/output_tokens");
            let (Some(input_tokens), Some(output_tokens)) = (input, output) else {
                return Err(malformed(&name, "no usage"));
            };
            let usage = Usage {
                input_tokens,
                output_tokens,
                ..Usage::default()
            };
            let model = v
                .get("model")
                .and_then(|m| m.as_str())
                .unwrap_or(&req.model)
                .to_string();
            let blocks = v["content"].as_array().map_or(&[][..], Vec::as_slice);
            let output = if blocks.iter().any(|b| {
                matches!(
                    b["type"].as_str(),
                    Some("tool_use" | "thinking" | "redacted_thinking")
                )
            }) {
                // OpenAI's shape of the same answer: its one choice.
                let answer = oneflow::chat::anthropic::read_response(&v)
                    .map_err(|e| malformed(&name, &e.to_string()))?;
                let whole = oneflow::chat::openai::write_response(&answer, 0);
                Output::Choices(whole["choices"].as_array().cloned().unwrap_or_default())
            } else {
                Output::Text {
                    text: blocks
                        .iter()
                        .filter(|b| b["type"] == "text")
                        .filter_map(|b| b["text"].as_str())
                        .collect(),
                    finish_reason: finish_reason(
                        v.get("stop_reason").and_then(|s| s.as_str()).unwrap_or(""),
                    ),
                }
            };
            Ok(CallResult {
                output,
                usage,
                model,
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
    // Tool calls so far: a `tool_use` block becomes the next OpenAI-shaped
    // tool call, its `input_json_delta`s that call's arguments.
    let mut tools = 0usize;
    let mut in_tool = false;
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
                            "content_block_start" => {
                                let b = &v["content_block"];
                                in_tool = b["type"] == "tool_use";
                                if b["type"] == "redacted_thinking" {
                                    let data = b["data"].as_str().unwrap_or_default();
                                    return futures_util::stream::iter(vec![Ok(Chunk::Thinking(
                                        Thinking::Redacted(data.to_string()),
                                    ))]);
                                }
                                if !in_tool {
                                    return futures_util::stream::iter(Vec::new());
                                }
                                tools += 1;
                                vec![Ok(Chunk::ToolCall(json!({
                                    "index": tools - 1, "id": b["id"], "type": "function",
                                    "function": {"name": b["name"], "arguments": ""},
                                })))]
                            }
                            "content_block_delta" if in_tool => v
                                .pointer("/delta/partial_json")
                                .and_then(|t| t.as_str())
                                .filter(|t| !t.is_empty())
                                .map(|t| {
                                    vec![Ok(Chunk::ToolCall(json!({
                                        "index": tools - 1, "function": {"arguments": t},
                                    })))]
                                })
                                .unwrap_or_default(),
                            "content_block_delta"
                                if v["delta"]["type"] == "thinking_delta"
                                    || v["delta"]["type"] == "signature_delta" =>
                            {
                                let d = &v["delta"];
                                let piece = match (d["thinking"].as_str(), d["signature"].as_str())
                                {
                                    (Some(t), _) if !t.is_empty() => Thinking::Text(t.to_string()),
                                    (_, Some(s)) if !s.is_empty() => {
                                        Thinking::Signature(s.to_string())
                                    }
                                    _ => return futures_util::stream::iter(Vec::new()),
                                };
                                vec![Ok(Chunk::Thinking(piece))]
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
