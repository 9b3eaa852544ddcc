//! The built-in offline provider: deterministic output derived from the
//! prompt, real usage figures within the plan, a configurable latency and a
//! reproducible failure rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::StreamExt;

use serde_json::{Value, json};

use oneflow::chat::{ChatRequest, Part, ToolChoice};
use oneflow::config::SimulatedSettings;
use oneflow::pricing::{Modality, Usage, count_words};

use super::{
    Adapter, CallError, CallRequest, CallResult, Chunk, ChunkStream, Content, Operation, Output,
};

pub struct Simulated {
    name: String,
    settings: SimulatedSettings,
    draws: AtomicU64,
}

impl Simulated {
    pub fn new(name: &str, settings: SimulatedSettings) -> Simulated {
        Simulated {
            name: name.to_string(),
            settings,
            draws: AtomicU64::new(0),
        }
    }

    /// SplitMix64 over (seed, call number): uniform in [0, 1).
    fn draw(&self) -> f64 {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .settings
            .seed
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fails(&self) -> bool {
        self.settings.failure_rate > 0.0 && self.draw() < self.settings.failure_rate
    }
}

fn fingerprint(s: &str) -> u64 {
    // FNV-1a: stable across builds, unlike the std hasher.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// "Simulated answer:" and the prompt's words backwards, at most `limit`
/// words; the finish reason says whether it was cut.
fn reversed(prompt: &str, limit: u64) -> (String, &'static str) {
    let words: Vec<&str> = prompt.split_whitespace().collect();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let n = (words.len() + 2).min(limit);
    let mut out: Vec<String> = vec!["Simulated".into(), "answer:".into()];
    out.extend(words.iter().rev().map(|w| w.to_string()));
    let finish = if out.len() > n { "length" } else { "stop" };
    out.truncate(n);
    (out.join(" "), finish)
}

/// The arguments a simulated tool call gives: every required property of
/// the tool's schema, strings "sim", numbers 1, booleans true.
fn arguments(schema: &Value) -> Value {
    let mut args = serde_json::Map::new();
    for name in schema["required"].as_array().into_iter().flatten() {
        let Some(name) = name.as_str() else { continue };
        let v = match schema["properties"][name]["type"].as_str() {
            Some("number" | "integer") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => json!("sim"),
        };
        args.insert(name.to_string(), v);
    }
    Value::Object(args)
}

/// A simulated chat answer: a call to the tool the request names (or its
/// first) when it offers tools and its last turn is not tool results;
/// otherwise text, as a JSON object when `response_format` asks for one.
/// `n` answers, each within `limit` tokens.
fn chat_answer(
    chat: &ChatRequest,
    n: u32,
    extra: &serde_json::Map<String, Value>,
    prompt: &str,
    limit: u64,
) -> (Output, Usage) {
    let answered = chat
        .turns
        .last()
        .and_then(|t| t.parts.first())
        .is_some_and(|p| matches!(p, Part::ToolResult { .. }));
    let tool = match &chat.tool_choice {
        Some(ToolChoice::None) => None,
        Some(ToolChoice::Named(name)) => chat.tools.iter().find(|t| &t.name == name),
        _ => chat.tools.first(),
    };
    let json_wanted = matches!(
        extra
            .get("response_format")
            .and_then(|f| f["type"].as_str()),
        Some("json_object" | "json_schema")
    );
    let mut output_tokens = 0;
    let mut choices = Vec::new();
    let mut plain = None;
    for i in 0..n.max(1) {
        let (message, finish) = match tool.filter(|_| !answered) {
            Some(t) => {
                let args = arguments(&t.parameters).to_string();
                output_tokens += count_words(&args).max(1);
                let id = format!("call_{:016x}_{i}", fingerprint(prompt));
                let call = json!({"id": id, "type": "function", "function": {"name": t.name, "arguments": args}});
                (
                    json!({"role": "assistant", "content": null, "tool_calls": [call]}),
                    "tool_calls",
                )
            }
            None => {
                let (mut text, finish) = reversed(prompt, limit);
                if json_wanted {
                    text = json!({"answer": text}).to_string();
                }
                output_tokens += count_words(&text);
                plain.get_or_insert((text.clone(), finish));
                (json!({"role": "assistant", "content": text}), finish)
            }
        };
        choices.push(
            json!({"index": i, "message": message, "finish_reason": finish, "logprobs": null}),
        );
    }
    let usage = Usage {
        input_tokens: chat.counted().iter().map(|c| count_words(c)).sum(),
        output_tokens,
        ..Usage::default()
    };
    let output = match plain {
        Some((text, finish)) if n <= 1 => Output::Text {
            text,
            finish_reason: finish.into(),
        },
        _ => Output::Choices(choices),
    };
    (output, usage)
}

/// The simulated answer to `req`, without latency or failures.
pub fn simulate(req: &CallRequest) -> CallResult {
    let plan = &req.plan;
    let prompt = req.op.prompt_text();
    let id = fingerprint(&prompt);
    let (output, usage) = match (&req.op, plan.modality) {
        (Operation::Embedding { input, .. }, _) => {
            let data = input
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let f = fingerprint(text);
                    let v: Vec<f64> = (0..8)
                        .map(|k| ((f >> (k * 8)) & 0xff) as f64 / 255.0)
                        .collect();
                    serde_json::json!({"object": "embedding", "index": i, "embedding": v})
                })
                .collect();
            let usage = Usage {
                input_tokens: input.iter().map(|t| count_words(t)).sum(),
                ..Usage::default()
            };
            (Output::Embeddings(data), usage)
        }
        (
            Operation::Transcription {
                seconds, translate, ..
            },
            _,
        ) => {
            let what = if *translate {
                "translation"
            } else {
                "transcript"
            };
            let text = format!("Simulated {what} of {seconds} seconds of audio.");
            let usage = Usage {
                seconds: *seconds,
                ..Usage::default()
            };
            let finish_reason = "stop".into();
            (
                Output::Text {
                    text,
                    finish_reason,
                },
                usage,
            )
        }
        (Operation::Chat { chat, n, extra, .. }, Modality::Text) => {
            let per_answer = plan.max_usage.output_tokens / u64::from((*n).max(1));
            chat_answer(chat, *n, extra, &prompt, per_answer)
        }
        (_, Modality::Text) => {
            let (text, finish) = reversed(&prompt, plan.max_usage.output_tokens);
            let usage = Usage {
                input_tokens: count_words(&prompt),
                output_tokens: count_words(&text),
                ..Usage::default()
            };
            (
                Output::Text {
                    text,
                    finish_reason: finish.into(),
                },
                usage,
            )
        }
        (_, Modality::Image) => {
            let size = plan.size.clone().unwrap_or_default();
            let n = plan.max_usage.images;
            let data = (0..n)
                .map(|i| serde_json::json!({"url": format!("sim://image/{id:016x}/{i}?size={size}")}))
                .collect();
            let usage = Usage {
                images: n,
                ..Usage::default()
            };
            (Output::Images(data), usage)
        }
        (_, Modality::Audio | Modality::Video) => {
            let s = plan.max_usage.seconds;
            let kind = plan.modality.name();
            let usage = Usage {
                seconds: s,
                ..Usage::default()
            };
            (
                Output::Clip(format!("sim://{kind}/{id:016x}?seconds={s}")),
                usage,
            )
        }
    };
    CallResult {
        output,
        usage,
        model: req.model.clone(),
    }
}

impl Adapter for Simulated {
    fn call(&self, req: CallRequest) -> BoxFuture<'static, Result<CallResult, CallError>> {
        let latency = Duration::from_millis(self.settings.latency_ms);
        let fail = self.fails();
        let name = self.name.clone();
        let progress = match &req.op {
            Operation::Clip {
                progress: Some(p), ..
            } => Some(p.clone()),
            _ => None,
        };
        Box::pin(async move {
            if let Some(p) = &progress {
                // A clip renders in four steps of its latency, as a job
                // upstream reports progress while it runs.
                p.started(&name, &req.request_id);
                for step in 1..=4u64 {
                    tokio::time::sleep(latency / 4).await;
                    p.advanced(step * 25);
                }
            } else if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if fail {
                return Err(CallError::upstream(&name, "simulated failure"));
            }
            Ok(simulate(&req))
        })
    }

    /// A simulated clip's file: the MP4 file-type box and nothing else
    /// (the simulator makes no pictures), so that clients can be tested
    /// end to end offline.
    fn content(&self, address: &str, limit: u64) -> BoxFuture<'static, Result<Content, CallError>> {
        let ours = address.starts_with("sim://video/");
        let name = self.name.clone();
        Box::pin(async move {
            if !ours {
                return Err(CallError::Unsupported {
                    provider: name,
                    what: "serve content it did not make".into(),
                });
            }
            let mut b = Vec::with_capacity(24);
            b.extend_from_slice(&24u32.to_be_bytes());
            b.extend_from_slice(b"ftypisom");
            b.extend_from_slice(&0x200u32.to_be_bytes());
            b.extend_from_slice(b"isommp41");
            if b.len() as u64 > limit {
                return Err(CallError::TooLarge {
                    provider: name,
                    limit,
                });
            }
            let body = bytes::Bytes::from(b);
            Ok(Content {
                content_type: "video/mp4".into(),
                length: Some(body.len() as u64),
                body: futures_util::stream::once(async { Ok(body) }).boxed(),
            })
        })
    }

    /// Streams the simulated text (or a tool call's arguments) word by
    /// word, usage last.
    fn stream(&self, req: CallRequest) -> BoxFuture<'static, Result<ChunkStream, CallError>> {
        let call = self.call(req);
        Box::pin(async move {
            let r = call.await?;
            let (chunks, finish) = super::pieces(r.output, |t| {
                t.split_inclusive(' ').map(str::to_string).collect()
            });
            let mut chunks: Vec<Result<Chunk, CallError>> = chunks.into_iter().map(Ok).collect();
            chunks.push(Ok(Chunk::Usage(r.usage)));
            chunks.push(Ok(Chunk::Finish(finish)));
            Ok(futures_util::stream::iter(chunks).boxed())
        })
    }
}
