//! Streamed answers: OpenAI's server-sent events, written straight from
//! the broker's stream events.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, HttpResponseBuilder};
use bytes::Bytes;
use serde_json::{Value, json};

use tokio::sync::mpsc;

use oneflow_actors::{RequestJob, StreamEvent, StreamStart, Thinking};

use super::error::V1Result;
use super::now_secs;
use crate::state::AppState;

#[derive(Clone, Copy)]
pub(super) enum Kind {
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
    /// Thinking text (Anthropic providers), in the field other gateways
    /// and reasoning servers use for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a [Value]>,
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

/// Waits for the stream's next event, then takes those already queued
/// behind it (up to [`STREAM_COALESCE`]), handing each to `write`; true
/// once `write` says the stream is over. Events queued when the client's
/// socket is written go out in one write: a stream is many small events,
/// and a write each was an eighth of a stream's CPU. Nothing waits to be
/// coalesced. Every format's stream writer reads its events through this.
pub(crate) async fn drain(
    rx: &mut mpsc::Receiver<StreamEvent>,
    mut write: impl FnMut(Option<StreamEvent>) -> bool,
) -> bool {
    let mut event = rx.recv().await;
    for _ in 0..STREAM_COALESCE {
        if write(event) {
            return true;
        }
        match rx.try_recv() {
            Ok(e) => event = Some(e),
            // Nothing more yet (or the sender is gone: the next poll's
            // `recv` says so).
            Err(_) => return false,
        }
    }
    false
}

/// A stream's answer head: server-sent events, and the request, its quote
/// and its route.
pub(crate) fn sse_head(start: &StreamStart) -> HttpResponseBuilder {
    let mut res = HttpResponse::Ok();
    res.insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("x-oneflow-request-id", start.request_id.clone()))
        .insert_header(("x-oneflow-quote", start.quote.to_string()));
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&start.route) {
        res.insert_header(("x-oneflow-route", v));
    }
    res
}

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
                            reasoning_content: None,
                            tool_calls: None,
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
            // Thinking text shows as `reasoning_content`; signatures and
            // redacted blocks have no place in this format's stream.
            Some(StreamEvent::Thinking(Thinking::Text(t))) => {
                if let Kind::Chat = kind {
                    let choice = ChunkChoice::Delta {
                        index: 0,
                        delta: Delta {
                            role: first.then_some("assistant"),
                            content: None,
                            reasoning_content: Some(&t),
                            tool_calls: None,
                        },
                        finish_reason: None,
                    };
                    self.write(out, &[choice], None);
                }
                false
            }
            Some(StreamEvent::Thinking(_)) => false,
            // Only chat requests have tools.
            Some(StreamEvent::ToolCall(call)) => {
                if let Kind::Chat = kind {
                    let calls = [call];
                    let choice = ChunkChoice::Delta {
                        index: 0,
                        delta: Delta {
                            role: first.then_some("assistant"),
                            content: None,
                            reasoning_content: None,
                            tool_calls: Some(&calls),
                        },
                        finish_reason: None,
                    };
                    self.write(out, &[choice], None);
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
pub(super) async fn stream(
    s: &AppState,
    user: &oneflow_actors::Payer,
    job: RequestJob,
    include_usage: bool,
    kind: Kind,
) -> V1Result {
    let start = s.broker.stream(user, job).await?;
    Ok(respond(start, include_usage, kind, None))
}

/// A started stream as OpenAI's server-sent events (see [`stream`]), with
/// what the response cache did, if it was asked.
pub(super) fn respond(
    start: StreamStart,
    include_usage: bool,
    kind: Kind,
    cache: Option<oneflow_actors::CacheResult>,
) -> HttpResponse {
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
    let mut res = sse_head(&start);
    crate::routes::cached::tell(&mut res, cache);
    let body = futures_util::stream::unfold(
        (start.events, true, false),
        move |(mut rx, mut first, done)| {
            let head = head.clone();
            async move {
                if done {
                    return None;
                }
                let mut out = Vec::with_capacity(512);
                let finished = drain(&mut rx, |event| {
                    let over = head.write_event(&mut out, event, kind, first, include_usage);
                    first = false;
                    over
                })
                .await;
                Some((
                    Ok::<_, actix_web::Error>(Bytes::from(out)),
                    (rx, first, finished),
                ))
            }
        },
    );
    res.streaming(body)
}
