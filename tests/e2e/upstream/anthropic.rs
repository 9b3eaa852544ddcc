//! Anthropic's Messages API as the mock speaks it: text, a `tool_use`
//! block when tools are offered, and text about a tool's result after a
//! `tool_result` block. With `thinking` enabled, every answer opens with a
//! signed thinking block, and a tool loop is refused, as the real API
//! refuses it, unless the assistant turn before the tool results starts
//! with the thinking block it was given, signature intact.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::http::{Reply, Request};
use super::tools::{Content, arguments_for, tool_answer};
use super::{Finish, Route, TextFormat, Tokens, Work, content_text, event, words};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Anthropic's error body for `status`.
pub fn error(status: u16, message: &str) -> Reply {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    };
    Reply::json(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn bad(message: &str) -> Route {
    Route::Fixed(error(400, message))
}

pub fn route(req: &Request, key: &str) -> Route {
    match req.header("x-api-key") {
        Some(k) if k == key => {}
        _ => return Route::Fixed(error(401, "invalid x-api-key")),
    }
    if req.header("anthropic-version").is_none() {
        return bad("anthropic-version: header is required");
    }
    if req.method != "POST" || req.path != "/v1/messages" {
        return Route::Fixed(error(404, "Not found"));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return bad("There was an error parsing the body of your request.");
    };
    let Some(model) = body
        .get("model")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty())
    else {
        return bad("model: Field required");
    };
    let Some(max_tokens) = body.get("max_tokens").and_then(|m| m.as_u64()) else {
        return bad("max_tokens: Field required");
    };
    if max_tokens == 0 {
        return bad("max_tokens: must be greater than or equal to 1");
    }
    let Some(messages) = body
        .get("messages")
        .and_then(|m| m.as_array())
        .filter(|m| !m.is_empty())
    else {
        return bad("messages: at least one message is required");
    };
    if messages.iter().any(|m| {
        !matches!(
            m.get("role").and_then(|r| r.as_str()),
            Some("user" | "assistant")
        )
    }) {
        return bad("messages: roles must be 'user' or 'assistant'");
    }
    let mut text = vec![content_text(body.get("system").unwrap_or(&Value::Null))];
    text.extend(
        messages
            .iter()
            .map(|m| content_text(m.get("content").unwrap_or(&Value::Null))),
    );
    let tool = match chosen_tool(&body) {
        Ok(t) => t,
        Err(why) => return bad(&why),
    };
    let thinking = match thinking(&body, max_tokens, messages) {
        Ok(t) => t,
        Err(why) => return bad(&why),
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    // After a tool's result, text about it; else a call of the chosen tool.
    let results: Vec<String> = messages[messages.len() - 1]["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| content_text(&b["content"]))
        .collect();
    let (content, call) = match tool {
        _ if !results.is_empty() => (Content::of(&tool_answer(&results.join(" "))), None),
        Some((name, schema)) => {
            let call = ToolUse {
                id: format!("toolu_mock{id:08}"),
                name,
            };
            (Content::of(&arguments_for(&schema)), Some(call))
        }
        None => (Content::Answer, None),
    };
    Route::Work(Work::Text {
        format: Box::new(Messages {
            id: format!("msg_mock{id:08}"),
            request_id: format!("req_mock{id:08}"),
            model: model.to_string(),
            call,
            thinking,
        }),
        content,
        prompt_tokens: words(&text.join(" ")),
        max_tokens: Some(max_tokens),
        stream: body.get("stream").and_then(|s| s.as_bool()) == Some(true),
    })
}

/// The thinking every answer opens with when `thinking` is enabled.
pub const THINKING: &str = "mock thinks it over";

/// What the mock signs a thinking block's text with: a signature a
/// client cannot make without being given it.
pub fn signature(text: &str) -> String {
    let sum = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("mocksig{sum:016x}")
}

/// With `thinking` enabled: its text, after checking its budget and, when
/// the request ends with tool results, that the assistant turn before
/// them opens with a thinking block the mock signed.
fn thinking(body: &Value, max_tokens: u64, messages: &[Value]) -> Result<Option<String>, String> {
    let t = &body["thinking"];
    match t["type"].as_str() {
        None | Some("disabled") => return Ok(None),
        Some("enabled") => {}
        Some(other) => return Err(format!("thinking.type: unknown kind '{other}'")),
    }
    let budget = t["budget_tokens"].as_u64().unwrap_or(0);
    if budget < 1024 {
        return Err("thinking.enabled.budget_tokens: must be at least 1024".into());
    }
    if budget >= max_tokens {
        return Err("max_tokens must be greater than thinking.budget_tokens".into());
    }
    let last = &messages[messages.len() - 1];
    let answers_tools = last["role"] == "user"
        && last["content"]
            .as_array()
            .is_some_and(|c| c.iter().any(|b| b["type"] == "tool_result"));
    if answers_tools && messages.len() >= 2 {
        let i = messages.len() - 2;
        let first = &messages[i]["content"][0];
        match first["type"].as_str() {
            Some("thinking") => {
                let text = first["thinking"].as_str().unwrap_or_default();
                if first["signature"].as_str() != Some(signature(text).as_str()) {
                    return Err(format!(
                        "messages.{i}.content.0: the thinking block's `signature` is not valid"
                    ));
                }
            }
            Some("redacted_thinking") => {}
            other => {
                return Err(format!(
                    "messages.{i}.content.0.type: expected `thinking` or `redacted_thinking`, found `{}`: with thinking enabled, the assistant turn before tool results must open with its thinking block",
                    other.unwrap_or("text")
                ));
            }
        }
    }
    Ok(Some(THINKING.to_string()))
}

/// The tool an answer calls, with its input schema: the one `tool_choice`
/// names, else the first tool the client defines, unless `tool_choice` is
/// `none` or no such tool was given (server tools, such as web search, the
/// mock never calls). An error for a tool the real API refuses.
fn chosen_tool(body: &Value) -> Result<Option<(String, Value)>, String> {
    let mut defined = Vec::new();
    for (i, t) in body["tools"].as_array().into_iter().flatten().enumerate() {
        if !matches!(t["type"].as_str(), None | Some("custom")) {
            continue;
        }
        match (t["name"].as_str(), t.get("input_schema")) {
            (None | Some(""), _) => return Err(format!("tools.{i}.custom.name: Field required")),
            (_, None) => return Err(format!("tools.{i}.custom.input_schema: Field required")),
            (Some(name), Some(schema)) => defined.push((name.to_string(), schema.clone())),
        }
    }
    let choice = &body["tool_choice"];
    match choice["type"].as_str() {
        Some("none") => Ok(None),
        Some("tool") => {
            let name = choice["name"].as_str().unwrap_or_default();
            match defined.into_iter().find(|(n, _)| n == name) {
                Some(t) => Ok(Some(t)),
                None => Err(format!(
                    "tool_choice: tool '{name}' was not found in the provided tools"
                )),
            }
        }
        _ => Ok(defined.into_iter().next()),
    }
}

/// `message` objects and their stream of named events; with `call`, the
/// text is the input of a `tool_use` block instead of a `text` block's.
struct Messages {
    id: String,
    request_id: String,
    model: String,
    call: Option<ToolUse>,
    /// The thinking block the answer opens with, if thinking is enabled.
    thinking: Option<String>,
}

/// A `tool_use` block's id and tool.
struct ToolUse {
    id: String,
    name: String,
}

impl Messages {
    fn stop_reason(&self, f: Finish) -> &'static str {
        match (f, &self.call) {
            (Finish::Stop, None) => "end_turn",
            (Finish::Stop, Some(_)) => "tool_use",
            (Finish::Length, _) => "max_tokens",
        }
    }
}

impl Messages {
    /// Output tokens: the answer's and the thinking's.
    fn output(&self, tokens: Tokens) -> u64 {
        tokens.completion + self.thinking.as_deref().map_or(0, words)
    }

    /// The index of the answer's block: after the thinking block, if any.
    fn index(&self) -> u64 {
        u64::from(self.thinking.is_some())
    }
}

impl TextFormat for Messages {
    fn plain(&self, text: &str, finish: Finish, tokens: Tokens) -> Value {
        let block = match &self.call {
            None => json!({"type": "text", "text": text}),
            // Input cut short by max_tokens does not parse: an empty one.
            Some(c) => json!({"type": "tool_use", "id": c.id, "name": c.name,
                "input": serde_json::from_str::<Value>(text).unwrap_or_else(|_| json!({}))}),
        };
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": match &self.thinking {
                None => json!([block]),
                Some(t) => json!([{"type": "thinking", "thinking": t, "signature": signature(t)}, block]),
            },
            "stop_reason": self.stop_reason(finish),
            "stop_sequence": null,
            "usage": {
                "input_tokens": tokens.prompt,
                "output_tokens": self.output(tokens),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        })
    }

    fn open(&self, prompt_tokens: u64) -> Vec<String> {
        let mut frames = vec![event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
            }}),
        )];
        if let Some(t) = &self.thinking {
            let block =
                |kind: &str, v: Value| event(kind, &json!({"type": kind, "index": 0, "delta": v}));
            frames.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            ));
            for (i, w) in t.split(' ').enumerate() {
                let piece = if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                };
                frames.push(block(
                    "content_block_delta",
                    json!({"type": "thinking_delta", "thinking": piece}),
                ));
            }
            frames.push(block(
                "content_block_delta",
                json!({"type": "signature_delta", "signature": signature(t)}),
            ));
            frames.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
        }
        frames.extend([
            event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": self.index(),
                "content_block": match &self.call {
                    None => json!({"type": "text", "text": ""}),
                    Some(c) => json!({"type": "tool_use", "id": c.id, "name": c.name,
                        "input": {}}),
                }}),
            ),
            event("ping", &json!({"type": "ping"})),
        ]);
        frames
    }

    fn piece(&self, text: &str) -> String {
        let delta = match self.call {
            None => json!({"type": "text_delta", "text": text}),
            Some(_) => json!({"type": "input_json_delta", "partial_json": text}),
        };
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.index(), "delta": delta}),
        )
    }

    fn close(&self, _text: &str, finish: Finish, tokens: Tokens) -> Vec<String> {
        vec![
            event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.index()}),
            ),
            event(
                "message_delta",
                &json!({"type": "message_delta",
                        "delta": {"stop_reason": self.stop_reason(finish), "stop_sequence": null},
                        "usage": {"output_tokens": self.output(tokens)}}),
            ),
            event("message_stop", &json!({"type": "message_stop"})),
        ]
    }

    fn headers(&self) -> Vec<(String, String)> {
        vec![("request-id".into(), self.request_id.clone())]
    }

    fn error_frame(&self) -> String {
        event(
            "error",
            &json!({"type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        )
    }
}
