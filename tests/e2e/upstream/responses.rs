//! OpenAI's Responses API (`POST /v1/responses`) as the mock speaks it:
//! text input or items in, a `response` object out, or its events when
//! streamed; a `function_call` item when function tools are offered, and
//! text about a tool's output after a `function_call_output` item.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::openai::{bad, headers, next_id};
use super::tools::{Content, arguments_for, json_answer, tool_answer};
use super::{Finish, Route, TextFormat, Tokens, Work, content_text, event, now_secs, words};

pub(super) fn responses(body: &Value, model: &str) -> Route {
    let (prompt, last) = match body.get("input") {
        Some(Value::String(s)) => (s.clone(), None),
        Some(Value::Array(items)) => {
            let prompt = items
                .iter()
                .map(|i| match i.get("content") {
                    Some(c) => content_text(c),
                    None => i.get("output").map(content_text).unwrap_or_default(),
                })
                .collect::<Vec<_>>()
                .join(" ");
            (prompt, items.last())
        }
        _ => return bad("'input' must be a string or an array"),
    };
    let tool = match chosen_function(body) {
        Ok(t) => t,
        Err(why) => return bad(&why),
    };
    // After a function's output, text about it; else a call of the chosen
    // function; else text, as JSON when `text.format` asks.
    let (content, call) = match (last, tool) {
        (Some(it), _) if it["type"] == "function_call_output" => {
            let output = content_text(&it["output"]);
            (Content::of(&tool_answer(&output)), None)
        }
        (_, Some((name, parameters))) => {
            let id = next_id();
            let call = FunctionCall {
                item_id: format!("fc_mock{id:06}"),
                call_id: format!("call_mock{id:06}"),
                name,
            };
            (Content::of(&arguments_for(&parameters)), Some(call))
        }
        _ => {
            let format = &body["text"]["format"];
            match format["type"].as_str() {
                Some("json_object") => (Content::of(&json_answer()), None),
                Some("json_schema") => (Content::of(&arguments_for(&format["schema"])), None),
                _ => (Content::Answer, None),
            }
        }
    };
    Route::Work(Work::Text {
        format: Box::new(Responses {
            id: format!("resp_mock{}", next_id()),
            model: model.to_string(),
            seq: AtomicU64::new(0),
            call,
        }),
        content,
        prompt_tokens: words(&prompt),
        max_tokens: body.get("max_output_tokens").and_then(|m| m.as_u64()),
        stream: body.get("stream").and_then(|s| s.as_bool()) == Some(true),
    })
}

/// The function a response calls, with its parameters' schema: the one
/// `tool_choice` names, else the first function tool, unless `tool_choice`
/// is `"none"` or no function tool was given (other tools, such as
/// `web_search`, the mock never calls). An error for a function the real
/// API refuses.
fn chosen_function(body: &Value) -> Result<Option<(String, Value)>, String> {
    let mut functions = Vec::new();
    for (i, t) in body["tools"].as_array().into_iter().flatten().enumerate() {
        if t["type"] != "function" {
            continue;
        }
        match t["name"].as_str() {
            Some(name) if !name.is_empty() => {
                let parameters = match &t["parameters"] {
                    Value::Null => json!({"type": "object"}),
                    p => p.clone(),
                };
                functions.push((name.to_string(), parameters));
            }
            _ => return Err(format!("Missing required parameter: 'tools[{i}].name'.")),
        }
    }
    match &body["tool_choice"] {
        Value::String(c) if c == "none" => Ok(None),
        Value::Object(c) if c.get("type").and_then(Value::as_str) == Some("function") => {
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            match functions.into_iter().find(|(n, _)| n == name) {
                Some(f) => Ok(Some(f)),
                None => Err(format!(
                    "Tool choice 'function' not found in 'tools' parameter: '{name}'."
                )),
            }
        }
        _ => Ok(functions.into_iter().next()),
    }
}

/// A `function_call` output item's names.
struct FunctionCall {
    item_id: String,
    call_id: String,
    name: String,
}

/// `response` objects and their events; with `call`, the text is the
/// arguments of a `function_call` item instead of a message's.
struct Responses {
    id: String,
    model: String,
    seq: AtomicU64,
    call: Option<FunctionCall>,
}

const MESSAGE_ID: &str = "msg_mock";

impl Responses {
    /// The output item holding `text`.
    fn item(&self, status: &str, text: &str) -> Value {
        match &self.call {
            Some(c) => json!({
                "type": "function_call", "id": c.item_id, "call_id": c.call_id,
                "name": c.name, "arguments": text, "status": status,
            }),
            None => json!({
                "type": "message", "id": MESSAGE_ID, "status": status, "role": "assistant",
                "content": if status == "in_progress" { json!([]) } else {
                    json!([{"type": "output_text", "text": text, "annotations": []}])
                },
            }),
        }
    }

    /// A `response`: in progress (no output yet), or done with `text`.
    fn response(&self, done: Option<(&str, Finish, Tokens)>) -> Value {
        let Some((text, finish, t)) = done else {
            return json!({
                "id": self.id, "object": "response", "created_at": now_secs(),
                "status": "in_progress", "model": self.model, "incomplete_details": null,
                "error": null, "output": [], "usage": null,
            });
        };
        let (status, incomplete) = match finish {
            Finish::Stop => ("completed", Value::Null),
            Finish::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        };
        json!({
            "id": self.id, "object": "response", "created_at": now_secs(), "status": status,
            "model": self.model, "incomplete_details": incomplete, "error": null,
            "output": if text.is_empty() { json!([]) } else { json!([self.item(status, text)]) },
            "usage": {
                "input_tokens": t.prompt, "output_tokens": t.completion,
                "total_tokens": t.prompt + t.completion,
            },
        })
    }

    fn frame(&self, mut v: Value) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        v["sequence_number"] = json!(n);
        let name = v["type"].as_str().unwrap_or_default().to_string();
        event(&name, &v)
    }
}

impl TextFormat for Responses {
    fn plain(&self, text: &str, finish: Finish, tokens: Tokens) -> Value {
        self.response(Some((text, finish, tokens)))
    }

    fn open(&self, _prompt_tokens: u64) -> Vec<String> {
        let r = self.response(None);
        let mut out = vec![
            self.frame(json!({"type": "response.created", "response": r})),
            self.frame(json!({"type": "response.in_progress", "response": r})),
            self.frame(
                json!({"type": "response.output_item.added", "output_index": 0,
                "item": self.item("in_progress", "")}),
            ),
        ];
        if self.call.is_none() {
            out.push(self.frame(json!({"type": "response.content_part.added",
                "item_id": MESSAGE_ID, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}})));
        }
        out
    }

    fn piece(&self, text: &str) -> String {
        match &self.call {
            Some(c) => self.frame(json!({"type": "response.function_call_arguments.delta",
                "item_id": c.item_id, "output_index": 0, "delta": text})),
            None => self.frame(json!({"type": "response.output_text.delta",
                "item_id": MESSAGE_ID, "output_index": 0, "content_index": 0, "delta": text})),
        }
    }

    fn close(&self, text: &str, finish: Finish, tokens: Tokens) -> Vec<String> {
        let r = self.response(Some((text, finish, tokens)));
        let status = r["status"].as_str().unwrap_or_default().to_string();
        let mut out = match &self.call {
            Some(c) => vec![
                self.frame(json!({"type": "response.function_call_arguments.done",
                "item_id": c.item_id, "output_index": 0, "arguments": text})),
            ],
            None => vec![
                self.frame(
                    json!({"type": "response.output_text.done", "item_id": MESSAGE_ID,
                    "output_index": 0, "content_index": 0, "text": text}),
                ),
                self.frame(
                    json!({"type": "response.content_part.done", "item_id": MESSAGE_ID,
                    "output_index": 0, "content_index": 0,
                    "part": {"type": "output_text", "text": text, "annotations": []}}),
                ),
            ],
        };
        out.push(self.frame(
            json!({"type": "response.output_item.done", "output_index": 0,
            "item": self.item(&status, text)}),
        ));
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        out.push(self.frame(json!({"type": kind, "response": r})));
        out
    }

    fn headers(&self) -> Vec<(String, String)> {
        headers()
    }

    fn error_frame(&self) -> String {
        self.frame(json!({"type": "error", "code": "server_error", "message": "The server had an error while processing your request."}))
    }
}
