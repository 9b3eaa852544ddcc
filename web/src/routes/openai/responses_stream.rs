//! Streamed responses in the Responses API's events: `response.created`
//! and `response.in_progress`; per output item `response.output_item.added`,
//! its deltas (`response.output_text.delta` within a content part,
//! `response.function_call_arguments.delta`), their `.done` events and
//! `response.output_item.done`; then `response.completed` (or
//! `response.incomplete` when the token bound or the hold cut it, with a
//! `oneflow` field saying so when the broker did), or `response.failed`
//! when the upstream failed midway. Every event has its `sequence_number`.

use bytes::Bytes;
use serde_json::{Value, json};

use oneflow::chat::responses::{function_call, status};
use oneflow_actors::views::ErrorCode;
use oneflow_actors::{RequestJob, StreamEvent};

use super::error::V1Result;
use super::now_secs;
use super::responses::{keep_streamed, response_object};
use super::stream::{drain, sse_head};
use crate::state::AppState;

/// The item being written.
enum Open {
    None,
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        args: String,
    },
}

/// How the stream ended, once the broker said so: the last event's type
/// and the response it carries (written after the response is kept).
struct Last {
    kind: &'static str,
    response: Value,
}

struct Writer {
    out: Vec<u8>,
    seq: u64,
    id: String,
    model: String,
    created: u64,
    request: Value,
    open: Open,
    items: Vec<Value>,
    last: Option<Last>,
}

impl Writer {
    fn event(&mut self, mut data: Value) {
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.out.extend_from_slice(b"event: ");
        self.out
            .extend_from_slice(data["type"].as_str().unwrap_or_default().as_bytes());
        self.out.extend_from_slice(b"\ndata: ");
        // A `Value` always serialises; were it not to, the event would be
        // cut short, not the stream.
        let _ = serde_json::to_writer(&mut self.out, &data);
        self.out.extend_from_slice(b"\n\n");
    }

    fn response(&self, status: &str, usage: Option<(u64, u64)>) -> Value {
        response_object(
            &self.id,
            self.created,
            &self.model,
            status,
            self.items.clone(),
            usage,
            &self.request,
        )
    }

    fn close(&mut self) {
        let index = self.items.len();
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return,
            Open::Message { id, text } => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.event(json!({"type": "response.output_text.done", "item_id": id,
                    "output_index": index, "content_index": 0, "text": text, "logprobs": []}));
                self.event(json!({"type": "response.content_part.done", "item_id": id,
                    "output_index": index, "content_index": 0, "part": part}));
                let item = json!({"type": "message", "id": id, "status": "completed",
                    "role": "assistant", "content": [part]});
                self.items.push(item.clone());
            }
            Open::Call {
                id,
                call_id,
                name,
                args,
            } => {
                self.event(json!({"type": "response.function_call_arguments.done",
                    "item_id": id, "output_index": index, "arguments": args}));
                self.items.push(function_call(&id, &call_id, &name, &args));
            }
        }
        let item = self.items[index].clone();
        self.event(
            json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
    }

    fn open_message(&mut self) {
        self.close();
        let index = self.items.len();
        let id = format!("msg_{}", &self.id["resp_".len()..]);
        self.event(json!({"type": "response.output_item.added", "output_index": index,
            "item": {"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []}}));
        self.event(json!({"type": "response.content_part.added", "item_id": id,
            "output_index": index, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}));
        self.open = Open::Message {
            id,
            text: String::new(),
        };
    }

    /// Writes what `event` says; true if the stream is over.
    fn write(&mut self, event: Option<StreamEvent>) -> bool {
        let index = self.items.len();
        match event {
            Some(StreamEvent::Delta(d)) => {
                if !matches!(self.open, Open::Message { .. }) {
                    self.open_message();
                }
                if let Open::Message { id, text } = &mut self.open {
                    text.push_str(&d);
                    let id = id.clone();
                    self.event(json!({"type": "response.output_text.delta", "item_id": id,
                        "output_index": index, "content_index": 0, "delta": d, "logprobs": []}));
                }
                false
            }
            // Anthropic's thinking has no item of this format to go in
            // (reasoning items are OpenAI's own, encrypted).
            Some(StreamEvent::Thinking(_)) => false,
            Some(StreamEvent::ToolCall(call)) => {
                // A call's first piece has its id and name; the rest carry
                // arguments only.
                if let Some(call_id) = call["id"].as_str() {
                    self.close();
                    let id = format!("fc_{}_{}", &self.id["resp_".len()..], self.items.len());
                    let name = call["function"]["name"].as_str().unwrap_or_default();
                    let mut item = function_call(&id, call_id, name, "");
                    item["status"] = json!("in_progress");
                    self.event(json!({"type": "response.output_item.added",
                        "output_index": self.items.len(), "item": item}));
                    self.open = Open::Call {
                        id,
                        call_id: call_id.to_string(),
                        name: name.to_string(),
                        args: String::new(),
                    };
                }
                let piece = call["function"]["arguments"].as_str().unwrap_or_default();
                if let Open::Call { id, args, .. } = &mut self.open {
                    if !piece.is_empty() {
                        args.push_str(piece);
                        let id = id.clone();
                        self.event(json!({"type": "response.function_call_arguments.delta",
                            "item_id": id, "output_index": index, "delta": piece}));
                    }
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
                let usage = Some((usage.input_tokens, usage.output_tokens));
                let (kind, mut response) = match stopped {
                    None | Some(ErrorCode::HoldExhausted) => match status(&finish_reason) {
                        ("incomplete", _) => {
                            ("response.incomplete", self.response("incomplete", usage))
                        }
                        _ => ("response.completed", self.response("completed", usage)),
                    },
                    Some(code) => {
                        let mut r = self.response("failed", usage);
                        r["error"] = json!({"code": code.as_str(), "message": message.clone().unwrap_or_default()});
                        ("response.failed", r)
                    }
                };
                if stopped.is_some() {
                    response["oneflow"] =
                        json!({"stopped": stopped, "message": message, "cost": cost});
                }
                self.last = Some(Last { kind, response });
                true
            }
            None => {
                self.close();
                let mut r = self.response("failed", None);
                r["error"] = json!({"code": "upstream_error", "message": "the stream ended before its answer did"});
                self.last = Some(Last {
                    kind: "response.failed",
                    response: r,
                });
                true
            }
        }
    }
}

/// Streams the job's answer as Responses events; a completed (or
/// incomplete) response is kept, when `store`, before its last event is
/// sent.
pub(super) async fn stream(
    s: &actix_web::web::Data<AppState>,
    user: &oneflow_actors::Payer,
    job: RequestJob,
    request: Value,
    items: Vec<Value>,
    store: bool,
) -> V1Result {
    let start = s.broker.stream(user, job).await?;
    let mut w = Writer {
        out: Vec::with_capacity(512),
        seq: 0,
        id: format!("resp_{}", start.request_id),
        model: start.model.clone(),
        created: now_secs(),
        request,
        open: Open::None,
        items: Vec::new(),
        last: None,
    };
    let opening = w.response("in_progress", None);
    w.event(json!({"type": "response.created", "response": opening}));
    w.event(json!({"type": "response.in_progress", "response": opening}));
    let keep = store.then(|| (s.clone(), user.to_string(), items));
    let mut res = sse_head(&start);
    let body = futures_util::stream::unfold(
        (start.events, w, keep, false),
        |(mut rx, mut w, mut keep, done)| async move {
            if done {
                return None;
            }
            let finished = drain(&mut rx, |event| w.write(event)).await;
            if let Some(Last { kind, mut response }) = w.last.take() {
                if let (Some((s, user, mut items)), false) =
                    (keep.take(), kind == "response.failed")
                {
                    items.extend(w.items.iter().cloned());
                    if let Err(e) = keep_streamed(&s, &user, &w.id, &response, items).await {
                        eprintln!("oneflow: streamed response {} could not be kept: {e}", w.id);
                        response["store"] = json!(false);
                    }
                }
                w.event(json!({"type": kind, "response": response}));
            }
            let out = Bytes::from(std::mem::replace(&mut w.out, Vec::with_capacity(512)));
            Some((Ok::<_, actix_web::Error>(out), (rx, w, keep, finished)))
        },
    );
    Ok(res.streaming(body))
}
