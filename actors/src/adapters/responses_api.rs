//! OpenAI's Responses API as an upstream speaks it (`responses = true` on
//! an `openai` provider): a `/v1/responses` request is sent on as it came,
//! with the plan's token bound, and its answer or events are read back
//! into the broker's own (an OpenAI chat choice, chunks), so that metering,
//! holds and the client's rendering are the same as for any text answer.

use futures_util::stream::{BoxStream, StreamExt};
use serde_json::{Value, json};

use oneflow::chat::responses::choice_of;
use oneflow::pricing::Usage;

use super::{
    CallError, CallRequest, CallResult, Chunk, ChunkStream, Operation, Output, malformed, sse,
};

/// The body to send to `/responses` for `op`, if it is a Responses
/// request: the client's, with the upstream's model, the plan's bound, no
/// upstream storage (OneFlow keeps responses itself; `input` already holds
/// the whole conversation) and the stream flag.
pub(super) fn body(model: &str, op: &Operation, stream: bool) -> Option<Value> {
    let Operation::Chat {
        max_tokens,
        responses: Some(given),
        ..
    } = op
    else {
        return None;
    };
    let mut v = Value::clone(given);
    let o = v.as_object_mut()?;
    for k in ["previous_response_id", "oneflow", "stream"] {
        o.remove(k);
    }
    o.insert("model".into(), json!(model));
    o.insert("max_output_tokens".into(), json!(max_tokens));
    o.insert("store".into(), json!(false));
    if stream {
        o.insert("stream".into(), json!(true));
    }
    Some(v)
}

/// A whole Responses answer as the broker keeps answers.
pub(super) fn parse(provider: &str, req: &CallRequest, v: &Value) -> Result<CallResult, CallError> {
    if v["object"] != "response" {
        return Err(malformed(provider, "not a response"));
    }
    let (choice, input, output) = choice_of(v);
    let finish = choice["finish_reason"]
        .as_str()
        .unwrap_or("stop")
        .to_string();
    let out = match (
        &choice["message"]["content"],
        choice["message"].get("tool_calls"),
    ) {
        (Value::String(text), None) => Output::Text {
            text: text.clone(),
            finish_reason: finish,
        },
        _ => Output::Choices(vec![choice]),
    };
    Ok(CallResult {
        output: out,
        usage: Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        },
        model: v["model"].as_str().unwrap_or(&req.model).to_string(),
    })
}

/// The Responses API's stream as the broker's chunks: text deltas,
/// function calls (numbered in order, OpenAI-shaped as chat deltas carry
/// them), and the usage and finish of `response.completed` or
/// `response.incomplete`; `response.failed` or `error` is the upstream's
/// failure.
pub(super) fn chunks(
    name: String,
    events: BoxStream<'static, Result<sse::Event, sse::Fault>>,
) -> ChunkStream {
    let mut calls: u64 = 0;
    events
        .flat_map(move |ev| {
            let out: Vec<Result<Chunk, CallError>> = match ev {
                Err(e) => vec![Err(super::stream_fault(&name, e))],
                Ok(ev) => match serde_json::from_str::<Value>(&ev.data) {
                    Err(_) => vec![Err(malformed(&name, "an event is not JSON"))],
                    Ok(e) => event(&name, &e, &mut calls),
                },
            };
            futures_util::stream::iter(out)
        })
        .boxed()
}

fn event(name: &str, e: &Value, calls: &mut u64) -> Vec<Result<Chunk, CallError>> {
    match e["type"].as_str().unwrap_or_default() {
        "response.output_text.delta" => {
            vec![Ok(Chunk::Delta(
                e["delta"].as_str().unwrap_or_default().to_string(),
            ))]
        }
        "response.output_item.added" if e["item"]["type"] == "function_call" => {
            *calls += 1;
            let it = &e["item"];
            vec![Ok(Chunk::ToolCall(json!({
                "index": *calls - 1, "id": it["call_id"], "type": "function",
                "function": {"name": it["name"], "arguments": ""},
            })))]
        }
        "response.function_call_arguments.delta" => vec![Ok(Chunk::ToolCall(json!({
            "index": calls.saturating_sub(1), "function": {"arguments": e["delta"]},
        })))],
        "response.completed" | "response.incomplete" => {
            let (choice, input, output) = choice_of(&e["response"]);
            vec![
                Ok(Chunk::Usage(Usage {
                    input_tokens: input,
                    output_tokens: output,
                    ..Usage::default()
                })),
                Ok(Chunk::Finish(
                    choice["finish_reason"]
                        .as_str()
                        .unwrap_or("stop")
                        .to_string(),
                )),
            ]
        }
        "response.failed" | "error" => {
            let message = e["response"]["error"]["message"]
                .as_str()
                .or(e["message"].as_str())
                .unwrap_or("the upstream's response failed");
            vec![Err(CallError::upstream(name, message))]
        }
        _ => Vec::new(),
    }
}
