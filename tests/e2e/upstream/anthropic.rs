//! Anthropic's Messages API as the mock speaks it: text, a `tool_use`
//! block when tools are offered, and text about a tool's result after a
//! `tool_result` block.

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
        }),
        content,
        prompt_tokens: words(&text.join(" ")),
        max_tokens: Some(max_tokens),
        stream: body.get("stream").and_then(|s| s.as_bool()) == Some(true),
    })
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
            "content": [block],
            "stop_reason": self.stop_reason(finish),
            "stop_sequence": null,
            "usage": {
                "input_tokens": tokens.prompt,
                "output_tokens": tokens.completion,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        })
    }

    fn open(&self, prompt_tokens: u64) -> Vec<String> {
        vec![
            event(
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
            ),
            event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                "content_block": match &self.call {
                    None => json!({"type": "text", "text": ""}),
                    Some(c) => json!({"type": "tool_use", "id": c.id, "name": c.name,
                        "input": {}}),
                }}),
            ),
            event("ping", &json!({"type": "ping"})),
        ]
    }

    fn piece(&self, text: &str) -> String {
        let delta = match self.call {
            None => json!({"type": "text_delta", "text": text}),
            Some(_) => json!({"type": "input_json_delta", "partial_json": text}),
        };
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        )
    }

    fn close(&self, _text: &str, finish: Finish, tokens: Tokens) -> Vec<String> {
        vec![
            event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            event(
                "message_delta",
                &json!({"type": "message_delta",
                        "delta": {"stop_reason": self.stop_reason(finish), "stop_sequence": null},
                        "usage": {"output_tokens": tokens.completion}}),
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
