//! OpenAI's chat completions (`POST /v1/chat/completions`) as the mock
//! speaks them: text, `n` choices, JSON when `response_format` asks, a call
//! of an offered tool, and text about a tool's result.

use serde_json::{Value, json};

use super::openai::{
    bad, finish_name, headers, max_tokens, next_id, stream_error, streaming, usage,
};
use super::tools::{Content, arguments_for, json_answer, tool_answer};
use super::{Finish, Route, TextFormat, Tokens, Work, content_text, data, now_secs, words};

pub(super) fn chat(body: &Value, model: &str) -> Route {
    let Some(messages) = body
        .get("messages")
        .and_then(|m| m.as_array())
        .filter(|m| !m.is_empty())
    else {
        return bad("'messages' must be a non-empty array");
    };
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if !(1..=128).contains(&n) {
        return bad("Invalid 'n': must be between 1 and 128.");
    }
    let prompt: Vec<String> = messages
        .iter()
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .collect();
    let call = match chosen_tool(body) {
        Ok(c) => c,
        Err(why) => return bad(&why),
    };
    let last = &messages[messages.len() - 1];
    // After a tool's result, text about it; else a call of the chosen tool;
    // else text, as JSON when asked.
    let (content, call) = if last["role"] == "tool" {
        let result = content_text(&last["content"]);
        (Content::of(&tool_answer(&result)), None)
    } else if let Some((name, parameters)) = call {
        (Content::of(&arguments_for(&parameters)), Some(name))
    } else {
        let format = &body["response_format"];
        match format["type"].as_str() {
            Some("json_object") => (Content::of(&json_answer()), None),
            Some("json_schema") => {
                let schema = &format["json_schema"]["schema"];
                (Content::of(&arguments_for(schema)), None)
            }
            _ => (Content::Answer, None),
        }
    };
    let (stream, include_usage) = streaming(body);
    let id = next_id();
    Route::Work(Work::Text {
        format: Box::new(Chat {
            id: format!("chatcmpl-mock{id}"),
            model: model.to_string(),
            created: now_secs(),
            include_usage,
            n,
            call: call.map(|name| ChatCall {
                id: format!("call_mock{id:06}"),
                name,
            }),
        }),
        content,
        prompt_tokens: words(&prompt.join(" ")),
        max_tokens: max_tokens(body),
        stream,
    })
}

/// The tool a chat's answer calls, with its parameters' schema: the one
/// `tool_choice` names, else the first, unless `tool_choice` is `"none"` or
/// no tools were given. An error for a tool the real API refuses.
fn chosen_tool(body: &Value) -> Result<Option<(String, Value)>, String> {
    let Some(tools) = body["tools"].as_array().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut functions = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        if t["type"] != "function" {
            return Err(format!(
                "Invalid value for 'tools[{i}].type': expected 'function'."
            ));
        }
        match t["function"]["name"].as_str() {
            None => {
                return Err(format!(
                    "Missing required parameter: 'tools[{i}].function.name'."
                ));
            }
            Some("") => {
                return Err(format!(
                    "Invalid 'tools[{i}].function.name': empty string. Expected a string with minimum length 1, but got an empty string instead."
                ));
            }
            Some(name) => {
                // A function without parameters is called with `{}`.
                let parameters = match &t["function"]["parameters"] {
                    Value::Null => json!({"type": "object"}),
                    p => p.clone(),
                };
                functions.push((name.to_string(), parameters));
            }
        }
    }
    match &body["tool_choice"] {
        Value::String(c) if c == "none" => Ok(None),
        Value::Object(c) => {
            let name = c
                .get("function")
                .and_then(|f| f["name"].as_str())
                .unwrap_or_default();
            match functions.into_iter().find(|(n, _)| n == name) {
                Some(f) => Ok(Some(f)),
                None => Err(format!(
                    "Invalid value for 'tool_choice': no function named '{name}' was specified in the 'tools' parameter."
                )),
            }
        }
        _ => Ok(functions.into_iter().next()),
    }
}

/// `chat.completion` and `chat.completion.chunk` objects, with `n` choices
/// alike; with `call`, each choice's text is the arguments of a call.
struct Chat {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    n: u64,
    call: Option<ChatCall>,
}

/// The tool call every choice makes.
struct ChatCall {
    id: String,
    name: String,
}

impl ChatCall {
    /// The call's id in choice `k`.
    fn id(&self, k: u64) -> String {
        if k == 0 {
            self.id.clone()
        } else {
            format!("{}_{k}", self.id)
        }
    }
}

impl Chat {
    fn finish(&self, f: Finish) -> &'static str {
        match (f, &self.call) {
            (Finish::Stop, Some(_)) => "tool_calls",
            (f, _) => finish_name(f),
        }
    }

    /// `delta(k)` for each choice `k`: one event each, as the real API
    /// streams several choices (in one SSE frame string).
    fn chunk(&self, delta: impl Fn(u64) -> Value, finish: Option<&str>) -> String {
        (0..self.n)
            .map(|k| {
                let mut v = json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "system_fingerprint": "fp_mock",
                    "choices": [{"index": k, "delta": delta(k), "logprobs": null,
                                 "finish_reason": finish}],
                });
                if self.include_usage {
                    v["usage"] = Value::Null;
                }
                data(&v)
            })
            .collect()
    }
}

impl TextFormat for Chat {
    fn plain(&self, text: &str, finish: Finish, tokens: Tokens) -> Value {
        let choices: Vec<Value> = (0..self.n)
            .map(|k| {
                let message = match &self.call {
                    None => json!({"role": "assistant", "content": text, "refusal": null}),
                    Some(c) => json!({
                        "role": "assistant", "content": null, "refusal": null,
                        "tool_calls": [{"id": c.id(k), "type": "function",
                            "function": {"name": c.name, "arguments": text}}],
                    }),
                };
                json!({"index": k, "message": message, "logprobs": null,
                       "finish_reason": self.finish(finish)})
            })
            .collect();
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_mock",
            "choices": choices,
            "usage": usage(tokens),
        })
    }

    fn open(&self, _prompt_tokens: u64) -> Vec<String> {
        let first = |k: u64| match &self.call {
            None => json!({"role": "assistant", "content": "", "refusal": null}),
            Some(c) => json!({
                "role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"index": 0, "id": c.id(k), "type": "function",
                    "function": {"name": c.name, "arguments": ""}}],
            }),
        };
        vec![self.chunk(first, None)]
    }

    fn piece(&self, text: &str) -> String {
        match self.call {
            None => self.chunk(|_| json!({"content": text}), None),
            Some(_) => self.chunk(
                |_| json!({"tool_calls": [{"index": 0, "function": {"arguments": text}}]}),
                None,
            ),
        }
    }

    fn close(&self, _text: &str, finish: Finish, tokens: Tokens) -> Vec<String> {
        let mut out = vec![self.chunk(|_| json!({}), Some(self.finish(finish)))];
        if self.include_usage {
            out.push(data(&json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_mock",
                "choices": [],
                "usage": usage(tokens),
            })));
        }
        out.push("data: [DONE]\n\n".into());
        out
    }

    fn headers(&self) -> Vec<(String, String)> {
        headers()
    }

    fn error_frame(&self) -> String {
        stream_error()
    }

    fn choices(&self) -> u64 {
        self.n
    }
}
