//! Streamed Messages answers in Anthropic's event sequence: `message_start`
//! and a `ping`, then per content block `content_block_start`, its
//! `content_block_delta`s (`thinking_delta` and `signature_delta` for
//! thinking, `text_delta` for text, `input_json_delta` for a tool call's
//! arguments) and `content_block_stop`, then `message_delta`
//! with the stop reason and usage, and `message_stop`.
//!
//! Where the broker ended the stream (the hold ran out: `max_tokens`, as
//! Anthropic says when its own bound is met) `message_delta` also carries a
//! `oneflow` field saying why; where the upstream failed midway an `error`
//! event follows it, as Anthropic's own streams end when they fail.

use bytes::Bytes;
use serde_json::{Value, json};

use oneflow::chat::{anthropic::stop_reason, openai};
use oneflow_actors::views::ErrorCode;
use oneflow_actors::{RequestJob, StreamEvent, Thinking};

use super::error::MessagesResult;
use crate::routes::openai::stream::{drain, sse_head};
use crate::state::AppState;

/// The block being written: none yet, text, or the tool call of this
/// index (OpenAI's numbering of the calls, as the broker's events carry).
#[derive(Clone, Copy, PartialEq)]
enum Open {
    None,
    Thinking,
    Text,
    Tool(u64),
}

/// Turns the broker's events into Anthropic's, keeping which block is open
/// and how many there were.
struct Writer {
    out: Vec<u8>,
    open: Open,
    /// The index the next block gets.
    next: u32,
}

impl Writer {
    fn event(&mut self, name: &str, data: &Value) {
        self.out.extend_from_slice(b"event: ");
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\ndata: ");
        // A `Value` always serialises; were it not to, the event would be
        // cut short, not the stream.
        let _ = serde_json::to_writer(&mut self.out, data);
        self.out.extend_from_slice(b"\n\n");
    }

    fn close(&mut self) {
        if self.open != Open::None {
            let index = self.next - 1;
            self.event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
            self.open = Open::None;
        }
    }

    fn start(&mut self, open: Open, block: Value) {
        self.close();
        let index = self.next;
        self.next += 1;
        self.open = open;
        self.event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
    }

    fn delta(&mut self, delta: Value) {
        let index = self.next - 1;
        self.event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    /// Writes what `event` says; true if the stream is over.
    fn write(&mut self, event: Option<StreamEvent>) -> bool {
        match event {
            Some(StreamEvent::Delta(text)) => {
                if self.open != Open::Text {
                    self.start(Open::Text, json!({"type": "text", "text": ""}));
                }
                self.delta(json!({"type": "text_delta", "text": text}));
                false
            }
            Some(StreamEvent::Thinking(t)) => {
                match t {
                    Thinking::Text(text) => {
                        if self.open != Open::Thinking {
                            self.start(
                                Open::Thinking,
                                json!({"type": "thinking", "thinking": "", "signature": ""}),
                            );
                        }
                        self.delta(json!({"type": "thinking_delta", "thinking": text}));
                    }
                    Thinking::Signature(sig) => {
                        if self.open != Open::Thinking {
                            self.start(
                                Open::Thinking,
                                json!({"type": "thinking", "thinking": "", "signature": ""}),
                            );
                        }
                        self.delta(json!({"type": "signature_delta", "signature": sig}));
                        // A signature ends its block.
                        self.close();
                    }
                    Thinking::Redacted(data) => {
                        self.start(
                            Open::None,
                            json!({"type": "redacted_thinking", "data": data}),
                        );
                        let index = self.next - 1;
                        self.event(
                            "content_block_stop",
                            &json!({"type": "content_block_stop", "index": index}),
                        );
                    }
                }
                false
            }
            Some(StreamEvent::ToolCall(call)) => {
                let i = call["index"].as_u64().unwrap_or(0);
                // A call's first piece has its id and name; the rest carry
                // arguments only.
                if let Some(id) = call["id"].as_str() {
                    let name = call["function"]["name"].as_str().unwrap_or_default();
                    self.start(
                        Open::Tool(i),
                        json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    );
                } else if self.open != Open::Tool(i) {
                    self.start(
                        Open::Tool(i),
                        json!({"type": "tool_use", "id": format!("call_{i}"), "name": "", "input": {}}),
                    );
                }
                let args = call["function"]["arguments"].as_str().unwrap_or_default();
                if !args.is_empty() {
                    self.delta(json!({"type": "input_json_delta", "partial_json": args}));
                }
                false
            }
            Some(StreamEvent::End {
                finish_reason,
                stopped,
                message,
                usage,
                cost,
            }) => {
                self.close();
                let stop = openai::stop_reason(&finish_reason).map(stop_reason);
                let mut delta = json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": stop.unwrap_or("end_turn"), "stop_sequence": null},
                    "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
                });
                if stopped.is_some() {
                    delta["oneflow"] =
                        json!({"stopped": stopped, "message": message, "cost": cost});
                }
                self.event("message_delta", &delta);
                match stopped {
                    None | Some(ErrorCode::HoldExhausted) => {
                        self.event("message_stop", &json!({"type": "message_stop"}));
                    }
                    Some(code) => self.error(&format!(
                        "{}: {}",
                        code.as_str(),
                        message.unwrap_or_default()
                    )),
                }
                true
            }
            None => {
                self.close();
                self.error("the stream ended before its answer did");
                true
            }
        }
    }

    fn error(&mut self, message: &str) {
        self.event(
            "error",
            &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
        );
    }
}

/// Streams the job's answer in Anthropic's events.
pub(super) async fn stream(
    s: &AppState,
    user: &oneflow_actors::Payer,
    job: RequestJob,
) -> MessagesResult {
    let start = s.broker.stream(user, job).await?;
    let mut w = Writer {
        out: Vec::with_capacity(512),
        open: Open::None,
        next: 0,
    };
    // The opening: the message, its input usage not yet known (the last
    // `message_delta` carries both counts).
    w.event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": format!("msg_{}", start.request_id), "type": "message", "role": "assistant",
            "model": start.model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }}),
    );
    w.event("ping", &json!({"type": "ping"}));
    let mut res = sse_head(&start);
    let body = futures_util::stream::unfold(
        (start.events, w, false),
        |(mut rx, mut w, done)| async move {
            if done {
                return None;
            }
            let finished = drain(&mut rx, |event| w.write(event)).await;
            let out = Bytes::from(std::mem::replace(&mut w.out, Vec::with_capacity(512)));
            Some((Ok::<_, actix_web::Error>(out), (rx, w, finished)))
        },
    );
    Ok(res.streaming(body))
}
