//! OpenAI's Responses format, read as a chat: its `instructions`, `input`
//! items, function tools, tool choice and `text.format` become an OpenAI
//! chat completions request (read on by `openai::read_request`), so any
//! text provider serves it; an answer's first choice becomes the
//! `response`'s output items.
//!
//! What has no counterpart in chat completions is refused with its name
//! (built-in tools, `reasoning` items, `truncation: "auto"`), never dropped.

use serde_json::{Map, Value, json};

use super::{TranslateError, bad};

/// A Responses request as a chat completions request.
#[derive(Clone, Debug, PartialEq)]
pub struct Read {
    /// The chat completions body: `model`, `messages`, `tools`,
    /// `tool_choice`, `parallel_tool_calls`, `max_tokens`, `temperature`,
    /// `top_p`.
    pub chat: Value,
    /// Chat completions fields with no place in the shared shape, for
    /// OpenAI-compatible upstreams: `response_format`, `reasoning_effort`,
    /// `service_tier`, `user`.
    pub extra: Map<String, Value>,
    /// The conversation without the instructions as Responses items (the
    /// previous response's, then this input): what a kept response keeps,
    /// with its output after it, and what an upstream that speaks the
    /// Responses API is sent as `input`.
    pub items: Vec<Value>,
}

/// Top-level fields taken only at the value that changes nothing here.
fn at_default(k: &str, v: &Value) -> bool {
    match k {
        "truncation" => v == "disabled",
        "background" => v == false,
        "include" => v.as_array().is_some_and(Vec::is_empty),
        _ => false,
    }
}

/// Fields read by [`read_request`] or by the route (`stream`, `store`,
/// `previous_response_id`, `metadata`, `oneflow`).
const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "text",
    "reasoning",
    "user",
    "service_tier",
    "stream",
    "store",
    "previous_response_id",
    "metadata",
    "oneflow",
];

fn text_part(p: &Value, at: &str) -> Result<Value, TranslateError> {
    match p["type"].as_str() {
        Some("input_text" | "output_text") => match p["text"].as_str() {
            Some(t) => Ok(json!({"type": "text", "text": t})),
            None => Err(bad(format!("{at}: a text part needs `text`"))),
        },
        Some("input_image") => match p["image_url"].as_str() {
            Some(u) => Ok(json!({"type": "image_url", "image_url": {"url": u}})),
            None => Err(bad(format!(
                "{at}: an image needs `image_url` (uploaded files cannot be carried)"
            ))),
        },
        other => Err(bad(format!(
            "{at}: content parts of type `{}` cannot be carried",
            other.unwrap_or("?")
        ))),
    }
}

fn item(it: &Value, i: usize) -> Result<Value, TranslateError> {
    let at = format!("input[{i}]");
    let field = |k: &str| {
        it[k]
            .as_str()
            .ok_or_else(|| bad(format!("{at}: needs `{k}` as a string")))
    };
    match it["type"].as_str().unwrap_or("message") {
        "message" => {
            let role = match it["role"].as_str() {
                Some(r @ ("user" | "assistant" | "system" | "developer")) => r,
                other => {
                    return Err(bad(format!(
                        "{at}: role `{}` is not known",
                        other.unwrap_or("?")
                    )));
                }
            };
            let content = match &it["content"] {
                Value::String(s) => json!(s),
                Value::Array(parts) => Value::Array(
                    parts
                        .iter()
                        .map(|p| text_part(p, &at))
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(bad(format!("{at}: `content` must be text or parts"))),
            };
            Ok(json!({"role": role, "content": content}))
        }
        "function_call" => Ok(
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": field("call_id")?, "type": "function",
                "function": {"name": field("name")?, "arguments": field("arguments")?},
            }]}),
        ),
        "function_call_output" => {
            let output = match &it["output"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => {
                    let mut texts = Vec::new();
                    for p in parts {
                        match (p["type"].as_str(), p["text"].as_str()) {
                            (Some("input_text" | "output_text"), Some(t)) => texts.push(t),
                            _ => return Err(bad(format!("{at}: `output` may hold text only"))),
                        }
                    }
                    texts.join("\n")
                }
                _ => return Err(bad(format!("{at}: `output` must be text"))),
            };
            Ok(json!({"role": "tool", "tool_call_id": field("call_id")?, "content": output}))
        }
        other => Err(bad(format!(
            "{at}: items of type `{other}` cannot be carried"
        ))),
    }
}

fn tool(t: &Value, i: usize) -> Result<Value, TranslateError> {
    match t["type"].as_str() {
        Some("function") => {}
        other => {
            return Err(bad(format!(
                "tools[{i}]: `{}` tools cannot be carried; only `function` tools",
                other.unwrap_or("?")
            )));
        }
    }
    let mut f = Map::new();
    for k in ["name", "description", "parameters", "strict"] {
        if !t[k].is_null() {
            f.insert(k.into(), t[k].clone());
        }
    }
    Ok(json!({"type": "function", "function": f}))
}

/// Reads a Responses request, after the conversation of the response it
/// continues (`previous`, as items).
pub fn read_request(v: &Value, previous: &[Value]) -> Result<Read, TranslateError> {
    let o = v
        .as_object()
        .ok_or_else(|| bad("the body must be an object"))?;
    if let Some((k, _)) = o
        .iter()
        .find(|(k, x)| !x.is_null() && !KNOWN.contains(&k.as_str()) && !at_default(k, x))
    {
        return Err(bad(format!("`{k}` cannot be carried to a chat completion")));
    }
    let mut items = previous.to_vec();
    match &v["input"] {
        Value::String(s) => items.push(json!({"role": "user", "content": s})),
        Value::Array(given) => items.extend(given.iter().cloned()),
        _ => return Err(bad("`input` must be text or an array of items")),
    }
    let mut all = Vec::with_capacity(items.len() + 1);
    match &v["instructions"] {
        Value::Null => {}
        Value::String(s) => all.push(json!({"role": "system", "content": s})),
        _ => return Err(bad("`instructions` must be text")),
    }
    for (i, it) in items.iter().enumerate() {
        // Positions past the previous response's are the input's own.
        let at = i.checked_sub(previous.len()).unwrap_or(i);
        all.push(item(it, at)?);
    }
    let mut chat = Map::new();
    chat.insert("model".into(), v["model"].clone());
    chat.insert("messages".into(), Value::Array(all));
    if let Some(tools) = v["tools"].as_array() {
        let tools = tools
            .iter()
            .enumerate()
            .map(|(i, t)| tool(t, i))
            .collect::<Result<Vec<_>, _>>()?;
        chat.insert("tools".into(), Value::Array(tools));
    }
    match &v["tool_choice"] {
        Value::Null => {}
        c @ Value::String(_) => {
            chat.insert("tool_choice".into(), c.clone());
        }
        c if c["type"] == "function" => {
            let name = c["name"]
                .as_str()
                .ok_or_else(|| bad("a `function` tool choice needs `name`"))?;
            chat.insert(
                "tool_choice".into(),
                json!({"type": "function", "function": {"name": name}}),
            );
        }
        c => {
            return Err(bad(format!(
                "`tool_choice` of type `{}` cannot be carried",
                c["type"].as_str().unwrap_or("?")
            )));
        }
    }
    for (from, to) in [
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("parallel_tool_calls", "parallel_tool_calls"),
    ] {
        if !v[from].is_null() {
            chat.insert(to.into(), v[from].clone());
        }
    }
    let mut extra = Map::new();
    for k in ["user", "service_tier"] {
        if !v[k].is_null() {
            extra.insert(k.into(), v[k].clone());
        }
    }
    let format = &v["text"]["format"];
    match format["type"].as_str() {
        None | Some("text") => {}
        Some("json_object") => {
            extra.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some("json_schema") => {
            let mut schema = Map::new();
            for k in ["name", "description", "schema", "strict"] {
                if !format[k].is_null() {
                    schema.insert(k.into(), format[k].clone());
                }
            }
            extra.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": schema}),
            );
        }
        Some(other) => return Err(bad(format!("`text.format` `{other}` is not known"))),
    }
    match &v["reasoning"] {
        Value::Null => {}
        r => {
            if let Some(e) = r.get("effort").filter(|e| !e.is_null()) {
                extra.insert("reasoning_effort".into(), e.clone());
            }
        }
    }
    Ok(Read {
        chat: Value::Object(chat),
        extra,
        items,
    })
}

/// The output items of an answer's first choice (an OpenAI chat choice):
/// its text as a `message` item, then each tool call as a `function_call`
/// item. `base` makes the items' ids.
pub fn output_items(choice: &Value, base: &str) -> Vec<Value> {
    let m = &choice["message"];
    let mut out = Vec::new();
    if let Some(text) = m["content"].as_str().filter(|t| !t.is_empty()) {
        out.push(json!({
            "type": "message", "id": format!("msg_{base}"), "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }));
    }
    for (i, c) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
        out.push(function_call(
            &format!("fc_{base}_{i}"),
            c["id"].as_str().unwrap_or_default(),
            c["function"]["name"].as_str().unwrap_or_default(),
            c["function"]["arguments"].as_str().unwrap_or_default(),
        ));
    }
    out
}

/// A `function_call` output item.
pub fn function_call(id: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
           "arguments": arguments, "status": "completed"})
}

/// A response's `status` and `incomplete_details` for a finish reason.
pub fn status(finish_reason: &str) -> (&'static str, Value) {
    match finish_reason {
        "length" => ("incomplete", json!({"reason": "max_output_tokens"})),
        "content_filter" => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// A whole Responses answer (`output` items, `status`, `usage`) as an
/// OpenAI chat choice, as the broker keeps answers: the messages' text,
/// the function calls as `tool_calls`, the status as a finish reason; and
/// its input and output tokens.
pub fn choice_of(v: &Value) -> (Value, u64, u64) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for it in v["output"].as_array().into_iter().flatten() {
        match it["type"].as_str() {
            Some("message") => {
                for p in it["content"].as_array().into_iter().flatten() {
                    text.push_str(p["text"].as_str().unwrap_or_default());
                }
            }
            Some("function_call") => calls.push(json!({
                "id": it["call_id"], "type": "function",
                "function": {"name": it["name"], "arguments": it["arguments"]},
            })),
            _ => {}
        }
    }
    let finish = match (
        v["status"].as_str(),
        v["incomplete_details"]["reason"].as_str(),
    ) {
        (Some("incomplete"), Some("content_filter")) => "content_filter",
        (Some("incomplete"), _) => "length",
        _ if !calls.is_empty() => "tool_calls",
        _ => "stop",
    };
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = json!(calls);
    }
    let u = &v["usage"];
    (
        json!({"index": 0, "message": message, "finish_reason": finish, "logprobs": null}),
        u["input_tokens"].as_u64().unwrap_or(0),
        u["output_tokens"].as_u64().unwrap_or(0),
    )
}
