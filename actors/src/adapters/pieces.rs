//! A whole answer cut into stream chunks: how a provider that does not
//! stream (or the simulated one, word by word) still answers a stream,
//! tool calls included.

use super::{Chunk, Output};

/// A whole answer as stream chunks and its finish reason: the first
/// choice's text cut by `split` (one piece, or word by word), then its
/// tool calls. A stream carries one choice.
pub(crate) fn pieces(out: Output, split: impl Fn(&str) -> Vec<String>) -> (Vec<Chunk>, String) {
    let (text, calls, finish) = match out {
        Output::Text {
            text,
            finish_reason,
        } => (text, Vec::new(), finish_reason),
        Output::Choices(mut v) if !v.is_empty() => {
            let c = v.swap_remove(0);
            let m = &c["message"];
            let calls = m["tool_calls"].as_array().cloned().unwrap_or_default();
            let finish = c["finish_reason"].as_str().unwrap_or("stop").to_string();
            (
                m["content"].as_str().unwrap_or_default().to_string(),
                calls,
                finish,
            )
        }
        other => (other.summary(), Vec::new(), "stop".to_string()),
    };
    let mut chunks: Vec<Chunk> = if text.is_empty() {
        Vec::new()
    } else {
        split(&text).into_iter().map(Chunk::Delta).collect()
    };
    for (i, call) in calls.iter().enumerate() {
        let args = call["function"]["arguments"].as_str().unwrap_or_default();
        let head = serde_json::json!({
            "index": i, "id": call["id"], "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        });
        chunks.push(Chunk::ToolCall(head));
        // Arguments go in pieces after each comma, as upstreams send them.
        for a in args.split_inclusive(',') {
            chunks.push(Chunk::ToolCall(
                serde_json::json!({"index": i, "function": {"arguments": a}}),
            ));
        }
    }
    (chunks, finish)
}
