//! Anthropic's Messages API as the mock speaks it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::http::{Reply, Request};
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
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    Route::Work(Work::Text {
        format: Box::new(Messages {
            id: format!("msg_mock{id:08}"),
            request_id: format!("req_mock{id:08}"),
            model: model.to_string(),
        }),
        prompt_tokens: words(&text.join(" ")),
        max_tokens: Some(max_tokens),
        stream: body.get("stream").and_then(|s| s.as_bool()) == Some(true),
    })
}

/// `message` objects and their stream of named events.
struct Messages {
    id: String,
    request_id: String,
    model: String,
}

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
    }
}

impl TextFormat for Messages {
    fn plain(&self, text: &str, finish: Finish, tokens: Tokens) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason(finish),
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
                        "content_block": {"type": "text", "text": ""}}),
            ),
            event("ping", &json!({"type": "ping"})),
        ]
    }

    fn piece(&self, text: &str) -> String {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": text}}),
        )
    }

    fn close(&self, finish: Finish, tokens: Tokens) -> Vec<String> {
        vec![
            event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            event(
                "message_delta",
                &json!({"type": "message_delta",
                        "delta": {"stop_reason": stop_reason(finish), "stop_sequence": null},
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
