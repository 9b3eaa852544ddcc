//! OpenAI's chat completions format, read into and written from the shared
//! shape (see `mod.rs`).
//!
//! Reading normalises: leading `system`/`developer` messages become the
//! system prompt, `tool` messages open the user turn that follows them,
//! consecutive messages of one side are one turn, a data URL image is
//! inline bytes. Writing gives the plainest form that reads back the same:
//! a turn of one text is a string, tool results are `tool` messages ahead
//! of the user's message.

use serde_json::{Map, Value, json};

use super::{
    ChatRequest, ChatResponse, Image, Part, Role, StopReason, Tool, ToolChoice, TranslateError,
    Turn, bad, insert_present,
};

fn text_of(v: &Value, what: &str) -> Result<String, TranslateError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match (p["type"].as_str(), p["text"].as_str()) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    _ => return Err(bad(format!("{what} may hold text parts only"))),
                }
            }
            Ok(out)
        }
        Value::Null => Ok(String::new()),
        _ => Err(bad(format!("{what} must be a string or text parts"))),
    }
}

fn image(url: &str) -> Image {
    // data:<media type>;base64,<data>
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((media_type, data)) = rest.split_once(";base64,") {
            return Image::Base64 {
                media_type: media_type.to_string(),
                data: data.to_string(),
            };
        }
    }
    Image::Url(url.to_string())
}

fn parts_of(content: &Value, i: usize) -> Result<Vec<Part>, TranslateError> {
    match content {
        Value::String(s) => Ok(vec![Part::Text(s.clone())]),
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|p| match p["type"].as_str() {
                Some("text") => p["text"]
                    .as_str()
                    .map(|t| Part::Text(t.to_string()))
                    .ok_or_else(|| bad(format!("messages[{i}]: a text part needs `text`"))),
                Some("image_url") => p["image_url"]["url"]
                    .as_str()
                    .map(|u| Part::Image(image(u)))
                    .ok_or_else(|| {
                        bad(format!(
                            "messages[{i}]: an image part needs `image_url.url`"
                        ))
                    }),
                other => Err(bad(format!(
                    "messages[{i}]: content parts of type `{}` cannot be carried",
                    other.unwrap_or("?")
                ))),
            })
            .collect(),
        _ => Err(bad(format!(
            "messages[{i}].content must be a string or parts"
        ))),
    }
}

/// Adds `parts` to the conversation as `role`'s: to the last turn if it is
/// that side's, else as a new turn.
/// An assistant message's `thinking_blocks` (Anthropic's thinking, as
/// OneFlow's and other gateways' OpenAI-shaped answers carry it), so a
/// client can send them back in a tool loop.
fn thinking_blocks(m: &Value, i: usize) -> Result<Vec<Part>, TranslateError> {
    let blocks = match &m["thinking_blocks"] {
        Value::Null => return Ok(Vec::new()),
        Value::Array(b) => b,
        _ => {
            return Err(bad(format!(
                "messages[{i}].thinking_blocks must be an array"
            )));
        }
    };
    blocks
        .iter()
        .map(|b| match super::anthropic::block(b, i)? {
            p @ (Part::Thinking { .. } | Part::RedactedThinking { .. }) => Ok(p),
            _ => Err(bad(format!(
                "messages[{i}].thinking_blocks holds thinking blocks only"
            ))),
        })
        .collect()
}

/// The answer fields that show thinking: `reasoning_content` (its text)
/// and `thinking_blocks` (to be sent back), if the parts have any.
fn write_thinking(parts: &[Part], m: &mut Map<String, Value>) {
    let mut text = Vec::new();
    let mut blocks = Vec::new();
    for p in parts {
        match p {
            Part::Thinking { text: t, signature } => {
                text.push(t.as_str());
                blocks.push(json!({"type": "thinking", "thinking": t, "signature": signature}));
            }
            Part::RedactedThinking { data } => {
                blocks.push(json!({"type": "redacted_thinking", "data": data}));
            }
            _ => {}
        }
    }
    if !blocks.is_empty() {
        m.insert("reasoning_content".into(), json!(text.join("\n")));
        m.insert("thinking_blocks".into(), Value::Array(blocks));
    }
}

fn push(turns: &mut Vec<Turn>, role: Role, parts: Vec<Part>) {
    if parts.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(t) if t.role == role => t.parts.extend(parts),
        _ => turns.push(Turn { role, parts }),
    }
}

fn tool_call(c: &Value, i: usize) -> Result<Part, TranslateError> {
    let f = &c["function"];
    let (Some(id), Some(name)) = (c["id"].as_str(), f["name"].as_str()) else {
        return Err(bad(format!(
            "messages[{i}]: a tool call needs `id` and `function.name`"
        )));
    };
    let args = f["arguments"].as_str().unwrap_or("{}");
    let input: Value = serde_json::from_str(if args.trim().is_empty() { "{}" } else { args })
        .map_err(|_| {
            bad(format!(
                "messages[{i}]: tool call `{id}` has arguments that are not JSON"
            ))
        })?;
    if !input.is_object() {
        return Err(bad(format!(
            "messages[{i}]: tool call `{id}` has arguments that are not a JSON object"
        )));
    }
    Ok(Part::ToolCall {
        id: id.to_string(),
        name: name.to_string(),
        input,
    })
}

fn tool(t: &Value, i: usize) -> Result<Tool, TranslateError> {
    if t["type"].as_str() != Some("function") {
        return Err(bad(format!(
            "tools[{i}]: only `function` tools can be carried"
        )));
    }
    let f = &t["function"];
    let name = f["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad(format!("tools[{i}] needs a `function.name`")))?;
    Ok(Tool {
        name: name.to_string(),
        description: f["description"].as_str().map(str::to_string),
        parameters: match &f["parameters"] {
            Value::Null => json!({"type": "object", "properties": {}}),
            p => p.clone(),
        },
    })
}

fn tool_choice(v: &Value) -> Result<Option<ToolChoice>, TranslateError> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => return Err(bad(format!("`tool_choice` `{other}` is not known"))),
        },
        o => match o["function"]["name"].as_str() {
            Some(n) => ToolChoice::Named(n.to_string()),
            None => return Err(bad("`tool_choice` must name a `function.name`")),
        },
    }))
}

/// Reads an OpenAI chat request.
pub fn read_request(v: &Value) -> Result<ChatRequest, TranslateError> {
    let model = v["model"]
        .as_str()
        .ok_or_else(|| bad("`model` is required"))?;
    let messages = v["messages"]
        .as_array()
        .ok_or_else(|| bad("`messages` must be an array"))?;
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m["role"].as_str() {
            Some("system" | "developer") if turns.is_empty() => {
                system.push(text_of(&m["content"], &format!("messages[{i}]"))?);
            }
            Some("system" | "developer") => {
                return Err(bad(format!(
                    "messages[{i}]: a system message after the conversation began cannot be carried"
                )));
            }
            Some("user") => push(&mut turns, Role::User, parts_of(&m["content"], i)?),
            Some("assistant") => {
                let mut parts = thinking_blocks(m, i)?;
                parts.extend(parts_of(&m["content"], i)?);
                if parts.iter().any(|p| matches!(p, Part::Image(_))) {
                    return Err(bad(format!("messages[{i}]: the assistant sends no images")));
                }
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    parts.push(tool_call(c, i)?);
                }
                push(&mut turns, Role::Assistant, parts);
            }
            Some("tool") => {
                let call_id = m["tool_call_id"].as_str().ok_or_else(|| {
                    bad(format!(
                        "messages[{i}]: a tool message needs `tool_call_id`"
                    ))
                })?;
                let result = Part::ToolResult {
                    call_id: call_id.to_string(),
                    content: text_of(&m["content"], &format!("messages[{i}]"))?,
                    is_error: false,
                };
                push(&mut turns, Role::User, vec![result]);
            }
            other => {
                return Err(bad(format!(
                    "messages[{i}]: role `{}` is not known",
                    other.unwrap_or("?")
                )));
            }
        }
    }
    let stop = match &v["stop"] {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("`stop` must hold strings"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("`stop` must be a string or strings")),
    };
    let max_tokens = v["max_completion_tokens"]
        .as_u64()
        .or_else(|| v["max_tokens"].as_u64())
        .map(|n| u32::try_from(n).map_err(|_| bad("`max_tokens` is too large")))
        .transpose()?;
    let req = ChatRequest {
        model: model.to_string(),
        system: (!system.is_empty()).then(|| system.join("\n")),
        turns,
        tools: v["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, t)| tool(t, i))
            .collect::<Result<_, _>>()?,
        tool_choice: tool_choice(&v["tool_choice"])?,
        max_tokens,
        stop,
        temperature: v["temperature"].as_f64(),
        top_p: v["top_p"].as_f64(),
        parallel_tool_calls: v["parallel_tool_calls"].as_bool(),
        stream: v["stream"].as_bool().unwrap_or(false),
    };
    req.check()?;
    Ok(req)
}

fn text_or_parts(parts: Vec<Value>) -> Value {
    match parts.as_slice() {
        [one] if one["type"] == "text" => one["text"].clone(),
        _ => Value::Array(parts),
    }
}

fn part(p: &Part) -> Value {
    match p {
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::Image(Image::Url(u)) => json!({"type": "image_url", "image_url": {"url": u}}),
        Part::Image(Image::Base64 { media_type, data }) => {
            json!({"type": "image_url", "image_url": {"url": format!("data:{media_type};base64,{data}")}})
        }
        // Written by the turn writers, never as content parts.
        Part::ToolCall { .. }
        | Part::ToolResult { .. }
        | Part::Thinking { .. }
        | Part::RedactedThinking { .. } => Value::Null,
    }
}

/// Writes the request in OpenAI's format.
pub fn write_request(r: &ChatRequest) -> Result<Value, TranslateError> {
    let mut messages = Vec::new();
    if let Some(s) = &r.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    for t in &r.turns {
        match t.role {
            Role::User => {
                let mut rest = Vec::new();
                for p in &t.parts {
                    match p {
                        Part::ToolResult {
                            call_id,
                            content,
                            is_error,
                        } => {
                            if *is_error {
                                return Err(bad(
                                    "a tool result marked `is_error` cannot be carried to OpenAI's format",
                                ));
                            }
                            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
                        }
                        p => rest.push(part(p)),
                    }
                }
                if !rest.is_empty() {
                    messages.push(json!({"role": "user", "content": text_or_parts(rest)}));
                }
            }
            Role::Assistant => {
                let texts: Vec<Value> = t
                    .parts
                    .iter()
                    .filter(|p| matches!(p, Part::Text(_)))
                    .map(part)
                    .collect();
                let calls: Vec<Value> = t
                    .parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::ToolCall { id, name, input } => Some(json!({
                            "id": id, "type": "function",
                            "function": {"name": name, "arguments": input.to_string()},
                        })),
                        _ => None,
                    })
                    .collect();
                let mut m = Map::new();
                m.insert("role".into(), json!("assistant"));
                m.insert(
                    "content".into(),
                    if texts.is_empty() {
                        Value::Null
                    } else {
                        text_or_parts(texts)
                    },
                );
                if !calls.is_empty() {
                    m.insert("tool_calls".into(), Value::Array(calls));
                }
                messages.push(Value::Object(m));
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(r.model));
    out.insert("messages".into(), Value::Array(messages));
    if !r.tools.is_empty() {
        let tools = r
            .tools
            .iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    f.insert("description".into(), json!(d));
                }
                f.insert("parameters".into(), t.parameters.clone());
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = &r.tool_choice {
        let v = match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
        };
        out.insert("tool_choice".into(), v);
    }
    let fields = [
        ("max_tokens", r.max_tokens.map(|n| json!(n))),
        ("stop", (!r.stop.is_empty()).then(|| json!(r.stop))),
        ("temperature", r.temperature.map(|x| json!(x))),
        ("top_p", r.top_p.map(|x| json!(x))),
        (
            "parallel_tool_calls",
            r.parallel_tool_calls.map(|x| json!(x)),
        ),
        ("stream", r.stream.then_some(json!(true))),
    ];
    insert_present(&mut out, fields);
    Ok(Value::Object(out))
}

fn finish_reason(s: StopReason) -> &'static str {
    match s {
        StopReason::EndTurn => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::Refused => "content_filter",
    }
}

/// An OpenAI finish reason in the shared words, if it is one.
pub fn stop_reason(finish: &str) -> Option<StopReason> {
    Some(match finish {
        "stop" => StopReason::EndTurn,
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::Refused,
        _ => return None,
    })
}

/// Reads a whole `chat.completion` (its first choice).
pub fn read_response(v: &Value) -> Result<ChatResponse, TranslateError> {
    let choice = &v["choices"][0];
    let m = &choice["message"];
    let mut parts = thinking_blocks(m, 0)?;
    parts.extend(parts_of(&m["content"], 0)?);
    for c in m["tool_calls"].as_array().into_iter().flatten() {
        parts.push(tool_call(c, 0)?);
    }
    let stop = match choice["finish_reason"].as_str() {
        None => StopReason::EndTurn,
        Some(f) => {
            stop_reason(f).ok_or_else(|| bad(format!("finish reason `{f}` is not known")))?
        }
    };
    Ok(ChatResponse {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        model: v["model"].as_str().unwrap_or_default().to_string(),
        parts,
        stop,
        input_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
    })
}

/// Writes a whole answer as a `chat.completion` made at `created` (Unix
/// seconds).
pub fn write_response(r: &ChatResponse, created: u64) -> Value {
    let turn = ChatRequest {
        turns: vec![Turn {
            role: Role::Assistant,
            parts: r.parts.clone(),
        }],
        ..ChatRequest::default()
    };
    let mut message = write_request(&turn)
        .ok()
        .and_then(|v| v["messages"].get(0).cloned())
        .unwrap_or_else(|| json!({"role": "assistant", "content": null}));
    if let Some(m) = message.as_object_mut() {
        write_thinking(&r.parts, m);
    }
    let (i, o) = (r.input_tokens, r.output_tokens);
    json!({
        "id": r.id,
        "object": "chat.completion",
        "created": created,
        "model": r.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(r.stop), "logprobs": null}],
        "usage": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o},
    })
}
