//! Anthropic's Messages format, read into and written from the shared
//! shape (see `mod.rs`).
//!
//! Reading normalises: consecutive messages of one side are one turn, an
//! assistant turn's text comes before its tool calls (as OpenAI's format
//! keeps them), a system prompt in blocks is their text. Writing refuses
//! what Anthropic does not take: no `max_tokens`, a temperature above 1.

use serde_json::{Map, Value, json};

use super::{
    ChatRequest, ChatResponse, Image, Part, Role, StopReason, Tool, ToolChoice, TranslateError,
    Turn, bad, insert_present,
};

fn text_blocks(v: &Value, what: &str) -> Result<String, TranslateError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for b in blocks {
                match (b["type"].as_str(), b["text"].as_str()) {
                    (Some("text"), Some(t)) => out.push(t),
                    _ => return Err(bad(format!("{what} may hold text blocks only"))),
                }
            }
            Ok(out.join("\n"))
        }
        _ => Err(bad(format!("{what} must be a string or text blocks"))),
    }
}

pub(super) fn block(b: &Value, i: usize) -> Result<Part, TranslateError> {
    let at = |what: &str| bad(format!("messages[{i}]: {what}"));
    match b["type"].as_str() {
        Some("text") => b["text"]
            .as_str()
            .map(|t| Part::Text(t.to_string()))
            .ok_or_else(|| at("a text block needs `text`")),
        Some("image") => {
            let s = &b["source"];
            match s["type"].as_str() {
                Some("base64") => match (s["media_type"].as_str(), s["data"].as_str()) {
                    (Some(m), Some(d)) => Ok(Part::Image(Image::Base64 {
                        media_type: m.to_string(),
                        data: d.to_string(),
                    })),
                    _ => Err(at("a base64 image needs `media_type` and `data`")),
                },
                Some("url") => s["url"]
                    .as_str()
                    .map(|u| Part::Image(Image::Url(u.to_string())))
                    .ok_or_else(|| at("a url image needs `url`")),
                _ => Err(at("an image's source must be `base64` or `url`")),
            }
        }
        Some("tool_use") => match (b["id"].as_str(), b["name"].as_str()) {
            (Some(id), Some(name)) if b["input"].is_object() => Ok(Part::ToolCall {
                id: id.to_string(),
                name: name.to_string(),
                input: b["input"].clone(),
            }),
            _ => Err(at(
                "a tool_use block needs `id`, `name` and an object `input`",
            )),
        },
        Some("tool_result") => {
            let call_id = b["tool_use_id"]
                .as_str()
                .ok_or_else(|| at("a tool_result block needs `tool_use_id`"))?;
            let content = match &b["content"] {
                Value::Null => String::new(),
                c => text_blocks(c, &format!("messages[{i}]: a tool result"))?,
            };
            let is_error = match &b["is_error"] {
                Value::Null => false,
                Value::Bool(e) => *e,
                _ => return Err(at("a tool_result's `is_error` must be true or false")),
            };
            Ok(Part::ToolResult {
                call_id: call_id.to_string(),
                content,
                is_error,
            })
        }
        Some("thinking") => match (b["thinking"].as_str(), b["signature"].as_str()) {
            (Some(text), Some(signature)) => Ok(Part::Thinking {
                text: text.to_string(),
                signature: signature.to_string(),
            }),
            _ => Err(at("a thinking block needs `thinking` and `signature`")),
        },
        Some("redacted_thinking") => b["data"]
            .as_str()
            .map(|d| Part::RedactedThinking {
                data: d.to_string(),
            })
            .ok_or_else(|| at("a redacted_thinking block needs `data`")),
        other => Err(at(&format!(
            "content blocks of type `{}` cannot be carried",
            other.unwrap_or("?")
        ))),
    }
}

/// Reads an Anthropic Messages request and checks that its parts agree
/// ([`ChatRequest::check`]).
pub fn read_request(v: &Value) -> Result<ChatRequest, TranslateError> {
    let req = parse_request(v)?;
    req.check()?;
    Ok(req)
}

/// Reads an Anthropic Messages request's shape: every field and block of
/// the kind the format says, without checking that the turns agree.
pub fn parse_request(v: &Value) -> Result<ChatRequest, TranslateError> {
    let model = v["model"]
        .as_str()
        .ok_or_else(|| bad("`model` is required"))?;
    // A count may be written `64.0`, as JSON Schema's integers may.
    let max_tokens = v["max_tokens"]
        .as_u64()
        .or_else(|| {
            v["max_tokens"]
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(f))
                .map(|f| f as u64)
        })
        .ok_or_else(|| bad("`max_tokens` is required"))?;
    let messages = v["messages"]
        .as_array()
        .ok_or_else(|| bad("`messages` must be an array"))?;
    let mut turns: Vec<Turn> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = match m["role"].as_str() {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            other => {
                return Err(bad(format!(
                    "messages[{i}]: role `{}` is not known",
                    other.unwrap_or("?")
                )));
            }
        };
        let parts = match &m["content"] {
            Value::String(s) => vec![Part::Text(s.clone())],
            Value::Array(blocks) if !blocks.is_empty() => blocks
                .iter()
                .map(|b| block(b, i))
                .collect::<Result<Vec<_>, _>>()?,
            Value::Array(_) => return Err(bad(format!("messages[{i}].content holds no block"))),
            _ => {
                return Err(bad(format!(
                    "messages[{i}].content must be a string or blocks"
                )));
            }
        };
        match turns.last_mut() {
            Some(t) if t.role == role => t.parts.extend(parts),
            _ => turns.push(Turn { role, parts }),
        }
    }
    for t in turns.iter_mut().filter(|t| t.role == Role::Assistant) {
        order_assistant(&mut t.parts);
    }
    let tools = v["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, t)| {
            let name = t["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad(format!("tools[{i}] needs a `name`")))?;
            match &t["type"] {
                Value::Null => {}
                Value::String(k) if k == "custom" => {}
                k => {
                    return Err(bad(format!(
                        "tools[{i}]: server tools (`{}`) cannot be carried",
                        k.as_str().unwrap_or("?")
                    )));
                }
            }
            if !t["input_schema"].is_object() {
                return Err(bad(format!(
                    "tools[{i}]: `input_schema` must be a JSON Schema object"
                )));
            }
            Ok(Tool {
                name: name.to_string(),
                description: t["description"].as_str().map(str::to_string),
                parameters: t["input_schema"].clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    let c = &v["tool_choice"];
    if !(c.is_null() || c.is_object()) {
        return Err(bad("`tool_choice` must be an object"));
    }
    if !(c["disable_parallel_tool_use"].is_null() || c["disable_parallel_tool_use"].is_boolean()) {
        return Err(bad(
            "`tool_choice.disable_parallel_tool_use` must be true or false",
        ));
    }
    let tool_choice = match c["type"].as_str() {
        None if c.is_null() => None,
        None => return Err(bad("`tool_choice` needs a `type`")),
        Some("auto") => Some(ToolChoice::Auto),
        Some("any") => Some(ToolChoice::Required),
        Some("none") => Some(ToolChoice::None),
        Some("tool") => Some(ToolChoice::Named(
            c["name"]
                .as_str()
                .ok_or_else(|| bad("a `tool` choice needs a `name`"))?
                .to_string(),
        )),
        Some(other) => return Err(bad(format!("`tool_choice` type `{other}` is not known"))),
    };
    Ok(ChatRequest {
        model: model.to_string(),
        system: match &v["system"] {
            Value::Null => None,
            s => Some(text_blocks(s, "`system`")?),
        },
        turns,
        tools,
        tool_choice,
        max_tokens: Some(u32::try_from(max_tokens).map_err(|_| bad("`max_tokens` is too large"))?),
        stop: v["stop_sequences"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("`stop_sequences` must hold strings"))
            })
            .collect::<Result<_, _>>()?,
        temperature: v["temperature"].as_f64(),
        top_p: v["top_p"].as_f64(),
        parallel_tool_calls: c["disable_parallel_tool_use"].as_bool().map(|d| !d),
        stream: v["stream"].as_bool().unwrap_or(false),
    })
}

/// An assistant turn's parts as Anthropic orders them: thinking first,
/// then text, then the calls, each in its order.
pub(super) fn order_assistant(parts: &mut [Part]) {
    parts.sort_by_key(|p| match p {
        Part::Thinking { .. } | Part::RedactedThinking { .. } => 0,
        Part::ToolCall { .. } => 2,
        _ => 1,
    });
}

fn write_part(p: &Part) -> Value {
    match p {
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::Image(Image::Url(u)) => json!({"type": "image", "source": {"type": "url", "url": u}}),
        Part::Image(Image::Base64 { media_type, data }) => json!({
            "type": "image", "source": {"type": "base64", "media_type": media_type, "data": data},
        }),
        Part::ToolCall { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Part::ToolResult {
            call_id,
            content,
            is_error,
        } => {
            let mut b = json!({"type": "tool_result", "tool_use_id": call_id, "content": content});
            if *is_error {
                b["is_error"] = json!(true);
            }
            b
        }
        Part::Thinking { text, signature } => {
            json!({"type": "thinking", "thinking": text, "signature": signature})
        }
        Part::RedactedThinking { data } => json!({"type": "redacted_thinking", "data": data}),
    }
}

/// Writes the request in Anthropic's format.
pub fn write_request(r: &ChatRequest) -> Result<Value, TranslateError> {
    let max_tokens = r
        .max_tokens
        .ok_or_else(|| bad("`max_tokens` is required by Anthropic's format"))?;
    if r.temperature.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return Err(bad(
            "`temperature` above 1 cannot be carried to Anthropic's format (its range is 0 to 1)",
        ));
    }
    let messages: Vec<Value> = r
        .turns
        .iter()
        .map(|t| {
            let role = if t.role == Role::User {
                "user"
            } else {
                "assistant"
            };
            let content = match t.parts.as_slice() {
                [Part::Text(s)] => json!(s),
                parts => Value::Array(parts.iter().map(write_part).collect()),
            };
            json!({"role": role, "content": content})
        })
        .collect();
    let mut out = Map::new();
    out.insert("model".into(), json!(r.model));
    out.insert("max_tokens".into(), json!(max_tokens));
    if let Some(s) = &r.system {
        out.insert("system".into(), json!(s));
    }
    out.insert("messages".into(), Value::Array(messages));
    if !r.tools.is_empty() {
        let tools = r
            .tools
            .iter()
            .map(|t| {
                let mut o = Map::new();
                o.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    o.insert("description".into(), json!(d));
                }
                o.insert("input_schema".into(), t.parameters.clone());
                Value::Object(o)
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    // Anthropic says "no parallel calls" inside the tool choice, so a
    // request that says it without a choice gets `auto`, the default.
    if r.tool_choice.is_some() || r.parallel_tool_calls.is_some() {
        let mut c = match r.tool_choice.as_ref().unwrap_or(&ToolChoice::Auto) {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Named(n) => json!({"type": "tool", "name": n}),
        };
        if let Some(p) = r.parallel_tool_calls {
            c["disable_parallel_tool_use"] = json!(!p);
        }
        out.insert("tool_choice".into(), c);
    }
    let fields = [
        (
            "stop_sequences",
            (!r.stop.is_empty()).then(|| json!(r.stop)),
        ),
        ("temperature", r.temperature.map(|x| json!(x))),
        ("top_p", r.top_p.map(|x| json!(x))),
        ("stream", r.stream.then_some(json!(true))),
    ];
    insert_present(&mut out, fields);
    Ok(Value::Object(out))
}

/// A stop reason in Anthropic's words.
pub fn stop_reason(s: StopReason) -> &'static str {
    match s {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::ToolUse => "tool_use",
        StopReason::Refused => "refusal",
    }
}

/// Reads a whole Messages answer.
pub fn read_response(v: &Value) -> Result<ChatResponse, TranslateError> {
    let parts = v["content"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| block(b, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let stop = match v["stop_reason"].as_str() {
        Some("end_turn" | "stop_sequence" | "pause_turn") | None => StopReason::EndTurn,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("tool_use") => StopReason::ToolUse,
        Some("refusal") => StopReason::Refused,
        Some(other) => return Err(bad(format!("stop reason `{other}` is not known"))),
    };
    Ok(ChatResponse {
        id: v["id"].as_str().unwrap_or_default().to_string(),
        model: v["model"].as_str().unwrap_or_default().to_string(),
        parts,
        stop,
        input_tokens: v["usage"]["input_tokens"].as_u64().unwrap_or(0),
        output_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
    })
}

/// Writes a whole answer as a Messages `message`.
pub fn write_response(r: &ChatResponse) -> Value {
    json!({
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": r.parts.iter().map(write_part).collect::<Vec<_>>(),
        "stop_reason": stop_reason(r.stop),
        "stop_sequence": null,
        "usage": {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens},
    })
}

/// The extra OpenAI fields (beyond the shared shape) a Messages request
/// carries: `top_k` as itself, `user` as `metadata.user_id`.
pub const CARRIED: &[&str] = &["top_k", "user"];

/// Fields a Messages request takes as OpenAI clients write them, so an
/// OpenAI-format request may carry them to Anthropic as given: `thinking`
/// (`{"type": "enabled", "budget_tokens"}`), whose blocks come back as
/// `reasoning_content` and `thinking_blocks`.
pub const AS_GIVEN: &[&str] = &["thinking"];

/// The first field of an OpenAI chat request's extra fields that a Messages
/// request cannot carry (`n` above 1 counts as one), if any.
pub fn uncarried<'a>(n: u32, extra: impl IntoIterator<Item = &'a String>) -> Option<String> {
    if n > 1 {
        return Some("n".into());
    }
    extra
        .into_iter()
        .find(|k| !CARRIED.contains(&k.as_str()) && !AS_GIVEN.contains(&k.as_str()))
        .cloned()
}
