//! OpenAI's HTTP API, and every server that speaks it (vLLM, Ollama, Groq,
//! Together, OpenRouter...). `base_url` is what OpenAI's SDKs take: it
//! includes the version path, e.g. `https://api.openai.com/v1`.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::StreamExt;
use serde_json::{Value, json};

use oneflow::config::ProviderConfig;
use oneflow::pricing::Usage;

use super::{
    Adapter, CallError, CallRequest, CallResult, Chunk, ChunkStream, Content, Operation, Output,
    count, malformed, responses_api, sse, url, videos,
};

pub struct OpenAi {
    name: String,
    base: String,
    client: reqwest::Client,
    key: Option<String>,
    /// `limits.max_response_bytes`: the most read of one answer or event.
    max_body: u64,
    /// It speaks the Responses API too (`responses = true`).
    responses: bool,
    videos: std::sync::Arc<videos::Videos>,
    /// The chat endpoint and the key's header, made once: parsing the URL
    /// and formatting the header on every call were 2% of a chat
    /// request's CPU under load. `None` if either cannot be made, in
    /// which case each call makes them (and reports what is wrong).
    chat_url: Option<reqwest::Url>,
    auth: Option<reqwest::header::HeaderValue>,
}

/// The path of the chat endpoint under the base URL.
const CHAT: &str = "chat/completions";

impl OpenAi {
    pub fn new(cfg: &ProviderConfig, client: reqwest::Client, key: Option<String>) -> OpenAi {
        OpenAi {
            name: cfg.name.clone(),
            base: cfg.base_url.clone(),
            client: client.clone(),
            key: key.clone(),
            max_body: cfg.limits.max_response_bytes,
            responses: cfg.responses,
            videos: std::sync::Arc::new(videos::Videos {
                name: cfg.name.clone(),
                base: cfg.base_url.clone(),
                client: client.clone(),
                key: key.clone(),
                poll: std::time::Duration::from_millis(cfg.poll_interval_ms),
                max_body: cfg.limits.max_response_bytes,
            }),
            chat_url: reqwest::Url::parse(&url(&cfg.base_url, CHAT)).ok(),
            auth: key.as_deref().and_then(|k| {
                let mut h = reqwest::header::HeaderValue::from_str(&format!("Bearer {k}")).ok()?;
                h.set_sensitive(true);
                Some(h)
            }),
        }
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let b = match &self.chat_url {
            Some(u) if path == CHAT => self.client.post(u.clone()),
            _ => self.client.post(url(&self.base, path)),
        };
        self.keyed(b.json(body))
    }

    fn keyed(&self, b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.auth, &self.key) {
            (Some(h), _) => b.header(reqwest::header::AUTHORIZATION, h.clone()),
            (None, Some(k)) => b.bearer_auth(k),
            (None, None) => b,
        }
    }

    /// A transcription's upload: `multipart/form-data` with the model, the
    /// file and the fields given, asking for JSON.
    fn upload(&self, model: &str, op: &Operation) -> Option<reqwest::RequestBuilder> {
        let Operation::Transcription {
            audio,
            file_name,
            translate,
            fields,
            ..
        } = op
        else {
            return None;
        };
        let mut form = super::form::Form::new(audio.len());
        form.field("model", model);
        form.field("response_format", "json");
        for (k, v) in fields {
            form.field(k, v);
        }
        form.file("file", file_name, audio);
        let path = if *translate {
            "audio/translations"
        } else {
            "audio/transcriptions"
        };
        Some(self.keyed(form.send_with(self.client.post(url(&self.base, path)))))
    }
}

/// The request body for `op`, and the path it goes to.
fn body(model: &str, op: &Operation, stream: bool) -> Result<(&'static str, Value), String> {
    let extra_of = |extra: &serde_json::Map<String, Value>, mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            for (k, x) in extra {
                o.entry(k.clone()).or_insert_with(|| x.clone());
            }
        }
        v
    };
    Ok(match op {
        Operation::Chat {
            chat,
            max_tokens,
            n,
            extra,
            ..
        } => {
            let mut v = oneflow::chat::openai::write_request(chat).map_err(|e| e.to_string())?;
            v["model"] = json!(model);
            v["max_tokens"] = json!(max_tokens);
            if *n > 1 {
                v["n"] = json!(n);
            }
            if let Some(o) = v.as_object_mut() {
                o.remove("stream");
            }
            if stream {
                v["stream"] = json!(true);
                v["stream_options"] = json!({"include_usage": true});
            }
            (CHAT, extra_of(extra, v))
        }
        Operation::Completion {
            prompt,
            max_tokens,
            extra,
        } => {
            let mut v = json!({"model": model, "prompt": prompt, "max_tokens": max_tokens});
            if stream {
                v["stream"] = json!(true);
                v["stream_options"] = json!({"include_usage": true});
            }
            ("completions", extra_of(extra, v))
        }
        Operation::Embedding { input, extra } => (
            "embeddings",
            extra_of(extra, json!({"model": model, "input": input})),
        ),
        Operation::Image {
            prompt,
            n,
            size,
            extra,
        } => (
            "images/generations",
            extra_of(
                extra,
                json!({"model": model, "prompt": prompt, "n": n, "size": size}),
            ),
        ),
        Operation::Speech {
            input,
            voice,
            extra,
        } => (
            "audio/speech",
            extra_of(
                extra,
                json!({"model": model, "input": input, "voice": voice}),
            ),
        ),
        Operation::Clip { .. } => return Err("make audio or video clips".into()),
        // Sent as a form (`OpenAi::upload`), not as JSON.
        Operation::Transcription { .. } => return Err("take transcriptions as JSON".into()),
    })
}

fn usage_of(v: &Value) -> Option<Usage> {
    v.get("usage").and_then(usage_in)
}

/// The `usage` object of an answer or event.
fn usage_in(u: &Value) -> Option<Usage> {
    let u = Some(u).filter(|u| u.is_object())?;
    Some(Usage {
        input_tokens: count(u, "/prompt_tokens").unwrap_or(0),
        output_tokens: count(u, "/completion_tokens").unwrap_or(0),
        ..Usage::default()
    })
}

/// A chat or completion answer, read for the parts the broker uses only
/// and borrowing its text where it can (the usual case, and most of the
/// broker's traffic).
#[derive(serde::Deserialize)]
struct AnswerIn<'a> {
    #[serde(default, borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Vec<ChoiceIn<'a>>,
    #[serde(default)]
    usage: Option<Value>,
}

/// Reads a chat or completion answer of the usual shape; `None` for any
/// other operation or shape, which [`parse`] then reads.
fn parse_text(req: &CallRequest, bytes: &[u8]) -> Option<Result<CallResult, CallError>> {
    if !matches!(
        req.op,
        Operation::Chat { .. } | Operation::Completion { .. }
    ) {
        return None;
    }
    let a: AnswerIn<'_> = serde_json::from_slice(bytes).ok()?;
    // Tool calls and several answers are read by `parse`, into choices.
    if a.choices.len() > 1
        || a.choices
            .iter()
            .any(|c| c.delta.as_ref().is_some_and(|d| d.tool_calls.is_some()))
    {
        return None;
    }
    let choice = a.choices.into_iter().next()?;
    let usage = a.usage.as_ref().and_then(usage_in)?;
    let text = choice.delta.and_then(|m| m.content).or(choice.text);
    Some(Ok(CallResult {
        output: Output::Text {
            text: text.map(|t| t.into_owned()).unwrap_or_default(),
            finish_reason: choice
                .finish_reason
                .map_or_else(|| "stop".to_string(), |f| f.into_owned()),
        },
        usage,
        model: a
            .model
            .map_or_else(|| req.model.clone(), |m| m.into_owned()),
    }))
}

/// A chat answer with tool calls or more than one choice: kept as its
/// choices, not as one text.
fn has_calls_or_choices(v: &Value) -> bool {
    let choices = v["choices"].as_array().map_or(&[][..], Vec::as_slice);
    choices.len() > 1
        || choices.iter().any(|c| {
            c["message"]["tool_calls"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
}

/// Reads a non-streamed answer.
fn parse(provider: &str, req: &CallRequest, v: &Value) -> Result<CallResult, CallError> {
    let model = v
        .get("model")
        .and_then(|m| m.as_str())
        .unwrap_or(&req.model)
        .to_string();
    let (output, usage) = match &req.op {
        Operation::Chat { .. } if has_calls_or_choices(v) => {
            let choices = v["choices"].as_array().cloned().unwrap_or_default();
            let usage = usage_of(v).ok_or_else(|| malformed(provider, "no usage"))?;
            (Output::Choices(choices), usage)
        }
        Operation::Chat { .. } | Operation::Completion { .. } => {
            let choice = v
                .pointer("/choices/0")
                .ok_or_else(|| malformed(provider, "no choices"))?;
            let text = choice
                .pointer("/message/content")
                .or_else(|| choice.get("text"))
                .and_then(|t| t.as_str())
                .unwrap_or("")
                .to_string();
            let finish_reason = choice
                .get("finish_reason")
                .and_then(|f| f.as_str())
                .unwrap_or("stop")
                .to_string();
            let usage = usage_of(v).ok_or_else(|| malformed(provider, "no usage"))?;
            (
                Output::Text {
                    text,
                    finish_reason,
                },
                usage,
            )
        }
        Operation::Embedding { .. } => {
            let data = v
                .get("data")
                .and_then(|d| d.as_array())
                .ok_or_else(|| malformed(provider, "no data"))?
                .clone();
            let usage = usage_of(v).ok_or_else(|| malformed(provider, "no usage"))?;
            (Output::Embeddings(data), usage)
        }
        Operation::Image { .. } => {
            let data = v
                .get("data")
                .and_then(|d| d.as_array())
                .ok_or_else(|| malformed(provider, "no data"))?
                .clone();
            let usage = Usage {
                images: data.len() as u64,
                ..Usage::default()
            };
            (Output::Images(data), usage)
        }
        Operation::Transcription { seconds, .. } => {
            let text = v
                .get("text")
                .and_then(|t| t.as_str())
                .ok_or_else(|| malformed(provider, "no text"))?;
            let output = Output::Text {
                text: text.to_string(),
                finish_reason: "stop".into(),
            };
            // Billed by the seconds OneFlow read from the file, which the
            // quote held for.
            let usage = Usage {
                seconds: *seconds,
                ..Usage::default()
            };
            (output, usage)
        }
        Operation::Speech { .. } | Operation::Clip { .. } => {
            return Err(malformed(provider, "unexpected JSON"));
        }
    };
    Ok(CallResult {
        output,
        usage,
        model,
    })
}

impl Adapter for OpenAi {
    fn call(&self, req: CallRequest) -> BoxFuture<'static, Result<CallResult, CallError>> {
        if matches!(req.op, Operation::Clip { .. }) {
            return Box::pin(self.videos.clone().make(req));
        }
        let name = self.name.clone();
        let key = self.key.clone();
        let max_body = self.max_body;
        let native = self
            .responses
            .then(|| responses_api::body(&req.model, &req.op, false))
            .flatten();
        let as_responses = native.is_some();
        let built = match (self.upload(&req.model, &req.op), native) {
            (Some(form), _) => Ok(form),
            (None, Some(b)) => Ok(self.post("responses", &b)),
            (None, None) => body(&req.model, &req.op, false).map(|(path, b)| self.post(path, &b)),
        };
        Box::pin(async move {
            let res = super::send(&name, key.as_deref(), built).await?;
            if let Operation::Speech { input, .. } = &req.op {
                let content_type = res
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("audio/mpeg")
                    .to_string();
                let bytes: Bytes = super::read_body(&name, res, max_body).await?;
                // OpenAI bills speech by input character.
                let usage = Usage {
                    input_tokens: input.chars().count() as u64,
                    ..Usage::default()
                };
                return Ok(CallResult {
                    output: Output::Audio {
                        bytes,
                        content_type,
                    },
                    usage,
                    model: req.model.clone(),
                });
            }
            let bytes = super::read_body(&name, res, max_body).await?;
            if as_responses {
                let v: Value =
                    serde_json::from_slice(&bytes).map_err(|_| malformed(&name, "not JSON"))?;
                return responses_api::parse(&name, &req, &v);
            }
            if let Some(r) = parse_text(&req, &bytes) {
                return r;
            }
            let v: Value =
                serde_json::from_slice(&bytes).map_err(|_| malformed(&name, "not JSON"))?;
            parse(&name, &req, &v)
        })
    }

    fn cancel(&self, id: &str) -> BoxFuture<'static, ()> {
        let (videos, id) = (self.videos.clone(), id.to_string());
        Box::pin(async move { videos.delete(&id).await })
    }

    fn content(&self, address: &str, limit: u64) -> BoxFuture<'static, Result<Content, CallError>> {
        let (videos, id) = (self.videos.clone(), address.to_string());
        Box::pin(async move { videos.content(&id, limit).await })
    }

    fn stream(&self, req: CallRequest) -> BoxFuture<'static, Result<ChunkStream, CallError>> {
        let name = self.name.clone();
        let key = self.key.clone();
        let max_body = self.max_body;
        let native = self
            .responses
            .then(|| responses_api::body(&req.model, &req.op, true))
            .flatten();
        let as_responses = native.is_some();
        let built = match (&req.op, native) {
            (_, Some(b)) => Ok(self.post("responses", &b)),
            (Operation::Chat { .. } | Operation::Completion { .. }, None) => {
                body(&req.model, &req.op, true).map(|(path, b)| self.post(path, &b))
            }
            _ => Err(format!("stream a {} request", req.op.name())),
        };
        Box::pin(async move {
            let res = super::send(&name, key.as_deref(), built).await?;
            let events = sse::events(res.bytes_stream().boxed(), max_body);
            if as_responses {
                return Ok(responses_api::chunks(name, events));
            }
            Ok(chunks(name, events))
        })
    }
}

/// OpenAI's stream: `data:` events of `chat.completion.chunk` (or text
/// completion) objects, then `data: [DONE]`.
fn chunks(
    name: String,
    events: futures_util::stream::BoxStream<'static, Result<sse::Event, sse::Fault>>,
) -> ChunkStream {
    events
        .flat_map(move |ev| {
            let out: Vec<Result<Chunk, CallError>> = match ev {
                Err(e) => vec![Err(super::stream_fault(&name, e))],
                Ok(ev) if ev.data.trim() == "[DONE]" => Vec::new(),
                Ok(ev) => match serde_json::from_str::<EventIn<'_>>(&ev.data) {
                    Ok(e) if e.error.is_none() && !e.has_tool_calls() => e.chunks(),
                    // An error event, or one not of the usual shape: read
                    // it the slow, forgiving way.
                    _ => event_chunks(&name, &ev.data),
                },
            };
            futures_util::stream::iter(out)
        })
        .boxed()
}

/// The usual stream event, read for the parts the broker uses and nothing
/// else, borrowing its text where it can: events come one per token, so
/// reading each into a `serde_json::Value` was a cost per token.
#[derive(serde::Deserialize)]
struct EventIn<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChoiceIn<'a>>,
    /// Once per stream, read as the whole-answer path reads it.
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct ChoiceIn<'a> {
    /// `delta` in stream events, `message` in whole answers.
    #[serde(default, borrow, alias = "message")]
    delta: Option<DeltaIn<'a>>,
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct DeltaIn<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    /// Present: the event is read the forgiving way, which keeps them.
    #[serde(default)]
    tool_calls: Option<serde::de::IgnoredAny>,
}

impl EventIn<'_> {
    fn has_tool_calls(&self) -> bool {
        self.choices
            .iter()
            .any(|c| c.delta.as_ref().is_some_and(|d| d.tool_calls.is_some()))
    }

    fn chunks(self) -> Vec<Result<Chunk, CallError>> {
        let mut out = Vec::new();
        if let Some(choice) = self.choices.into_iter().next() {
            let text = choice.delta.and_then(|d| d.content).or(choice.text);
            if let Some(t) = text.filter(|t| !t.is_empty()) {
                out.push(Ok(Chunk::Delta(t.into_owned())));
            }
            if let Some(f) = choice.finish_reason {
                out.push(Ok(Chunk::Finish(f.into_owned())));
            }
        }
        if let Some(u) = self.usage.as_ref().and_then(usage_in) {
            out.push(Ok(Chunk::Usage(u)));
        }
        out
    }
}

/// Any stream event, read into a `serde_json::Value`.
fn event_chunks(name: &str, data: &str) -> Vec<Result<Chunk, CallError>> {
    match serde_json::from_str::<Value>(data) {
        Err(_) => vec![Err(malformed(name, "stream event is not JSON"))],
        Ok(v) if v.get("error").is_some() => {
            let msg = v
                .pointer("/error/message")
                .and_then(|m| m.as_str())
                .unwrap_or("error event");
            vec![Err(CallError::upstream(name, msg))]
        }
        Ok(v) => {
            let mut out = Vec::new();
            if let Some(choice) = v.pointer("/choices/0") {
                let text = choice
                    .pointer("/delta/content")
                    .or_else(|| choice.get("text"))
                    .and_then(|t| t.as_str());
                if let Some(t) = text.filter(|t| !t.is_empty()) {
                    out.push(Ok(Chunk::Delta(t.to_string())));
                }
                let calls = choice
                    .pointer("/delta/tool_calls")
                    .and_then(Value::as_array);
                for c in calls.into_iter().flatten() {
                    out.push(Ok(Chunk::ToolCall(c.clone())));
                }
                if let Some(f) = choice.get("finish_reason").and_then(|f| f.as_str()) {
                    out.push(Ok(Chunk::Finish(f.to_string())));
                }
            }
            if let Some(u) = usage_of(&v) {
                out.push(Ok(Chunk::Usage(u)));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(v: Vec<Result<Chunk, CallError>>) -> String {
        format!(
            "{:?}",
            v.into_iter()
                .map(|c| c.map_err(|e| e.to_string()))
                .collect::<Vec<_>>()
        )
    }

    /// The fast reading of stream events says what the forgiving one says,
    /// for the usual shapes and the odd ones it hands over.
    #[test]
    fn typed_and_forgiving_event_readings_agree() {
        let events = [
            r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{"content":"lo \"quoted\" \u00e9"},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":null}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
            r#"{"choices":[{"text":"plain","finish_reason":"length"}]}"#,
            r#"{"choices":[{"delta":{"content":""}}]}"#,
            r#"{"choices":[{"delta":{"content":5}}]}"#,
            r#"{"choices":[{"text":["odd"],"finish_reason":7}]}"#,
            r#"{"usage":{"prompt_tokens":-1,"completion_tokens":"x"}}"#,
        ];
        for data in events {
            let fast = match serde_json::from_str::<EventIn<'_>>(data) {
                Ok(e) if e.error.is_none() && !e.has_tool_calls() => e.chunks(),
                _ => event_chunks("p", data),
            };
            assert_eq!(show(fast), show(event_chunks("p", data)), "{data}");
        }
        // Whole answers: the fast reading agrees with `parse`.
        let req = CallRequest {
            request_id: "r".into(),
            model: "asked".into(),
            op: Operation::Completion {
                prompt: "p".into(),
                max_tokens: 5,
                extra: Default::default(),
            },
            plan: oneflow::request::Plan {
                provider: "p".into(),
                modality: oneflow::pricing::Modality::Text,
                max_usage: Usage::default(),
                size: None,
                quote: oneflow::Credits::ZERO,
            },
        };
        for body in [
            r#"{"model":"m","choices":[{"message":{"role":"assistant","content":"hi \"x\""},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
            r#"{"choices":[{"text":"t"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
            r#"{"choices":[{"message":{"content":"a"},"finish_reason":"length"}],"usage":{"prompt_tokens":-4,"completion_tokens":2.5}}"#,
        ] {
            let fast = parse_text(&req, body.as_bytes()).expect("the usual shape");
            let slow = parse("p", &req, &serde_json::from_str(body).unwrap());
            assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{body}");
        }
        for odd in [
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#,
            r#"{"choices":[{"message":{"content":["parts"]}}],"usage":{}}"#,
            r#"{"choices":[{"text":"no usage"}]}"#,
        ] {
            assert!(parse_text(&req, odd.as_bytes()).is_none(), "{odd}");
        }

        let err = r#"{"error":{"message":"boom"}}"#;
        let typed = serde_json::from_str::<EventIn<'_>>(err).unwrap();
        assert!(
            typed.error.is_some(),
            "error events take the forgiving path"
        );
    }
}
