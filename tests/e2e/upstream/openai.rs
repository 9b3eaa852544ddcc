//! OpenAI's API as the mock speaks it (paths under `/v1`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::http::{Reply, Request};
use super::tools::Content;
use super::{Finish, PNG_1X1, Route, TextFormat, Tokens, Work, base64, data, now_secs, words};

/// The models `GET /v1/models` lists. Requests may name any model; the
/// answer echoes it.
pub const MODELS: &[&str] = &["mock-gpt", "mock-embed", "mock-image", "mock-tts"];

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// OpenAI's error body for `status`.
pub fn error(status: u16, message: &str) -> Reply {
    let (kind, code) = match status {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => ("permission_error", Value::Null),
        404 => ("invalid_request_error", Value::Null),
        429 => ("requests", json!("rate_limit_exceeded")),
        s if s >= 500 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    Reply::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

pub(super) fn bad(message: &str) -> Route {
    Route::Fixed(error(400, message))
}

pub(super) fn headers() -> Vec<(String, String)> {
    vec![
        ("x-request-id".into(), format!("req_mock_{}", next_id())),
        ("openai-processing-ms".into(), "1".into()),
    ]
}

fn ok(v: &Value) -> Route {
    let mut r = Reply::json(200, v);
    r.headers = headers();
    Route::Work(Work::Reply(r))
}

pub fn route(req: &Request, key: &str, base_url: &str) -> Route {
    if req.method == "GET" && req.path.starts_with("/files/") {
        return Route::Fixed(Reply {
            status: 200,
            content_type: "image/png".into(),
            headers: Vec::new(),
            body: PNG_1X1.to_vec(),
        });
    }
    match req.bearer() {
        Some(k) if k == key => {}
        Some(_) => {
            return Route::Fixed(error(401, "Incorrect API key provided."));
        }
        None => {
            return Route::Fixed(error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth.",
            ));
        }
    }
    if req.method == "GET" {
        return match req.path.as_str() {
            "/v1/models" => {
                let data: Vec<Value> = MODELS.iter().map(|m| model(m)).collect();
                Route::Fixed(Reply::json(200, &json!({"object": "list", "data": data})))
            }
            p => match p.strip_prefix("/v1/models/") {
                Some(id) if MODELS.contains(&id) => Route::Fixed(Reply::json(200, &model(id))),
                Some(id) => Route::Fixed(error(
                    404,
                    &format!("The model '{id}' does not exist or you do not have access to it."),
                )),
                None => not_found(req),
            },
        };
    }
    if req.method != "POST" {
        return not_found(req);
    }
    if req.path == "/v1/audio/transcriptions" || req.path == "/v1/audio/translations" {
        return transcription(req);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return bad("We could not parse the JSON body of your request.");
    };
    let Some(model) = body
        .get("model")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty())
    else {
        return bad("you must provide a model parameter");
    };
    match req.path.as_str() {
        "/v1/chat/completions" => super::chat::chat(&body, model),
        "/v1/completions" => completion(&body, model),
        "/v1/embeddings" => embeddings(&body, model),
        "/v1/images/generations" => images(&body, model, base_url),
        "/v1/audio/speech" => speech(&body),
        "/v1/responses" => super::responses::responses(&body, model),
        _ => not_found(req),
    }
}

/// A transcription upload: a form with `model` and a `file` part, as
/// OpenAI takes it; the answer names the file's size.
fn transcription(req: &Request) -> Route {
    /// What OpenAI takes, by the file's first bytes: the format's name,
    /// and the extensions it goes by.
    fn format(file: &[u8]) -> Option<(&'static str, &'static [&'static str])> {
        let at = |i: usize, magic: &[u8]| file.get(i..i + magic.len()) == Some(magic);
        let mpeg_sync = file.len() > 1 && file[0] == 0xFF && file[1] & 0xE0 == 0xE0;
        Some(if at(0, b"RIFF") && at(8, b"WAVE") {
            ("wav", &["wav"])
        } else if at(0, b"fLaC") {
            ("flac", &["flac"])
        } else if at(0, b"OggS") {
            ("ogg", &["ogg", "oga", "opus"])
        } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
            ("webm", &["webm"])
        } else if at(4, b"ftyp") {
            ("mp4", &["m4a", "mp4"])
        } else if at(0, b"ID3") || mpeg_sync {
            ("mp3", &["mp3", "mpga", "mpeg"])
        } else {
            return None;
        })
    }
    const INVALID: &str = "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']";
    let ct = req.header("content-type").unwrap_or_default();
    let Some(boundary) = ct.strip_prefix("multipart/form-data; boundary=") else {
        return bad("Expected multipart/form-data.");
    };
    let find = |needle: &[u8], from: usize| {
        req.body
            .get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    if find(b"name=\"model\"", 0).is_none() {
        return bad("you must provide a model parameter");
    }
    let Some(at) = find(b"name=\"file\"", 0) else {
        return bad("you must provide a file");
    };
    // The part's head (its file name), then its bytes up to the boundary.
    let head_end = find(b"\r\n\r\n", at).unwrap_or(req.body.len());
    let head = String::from_utf8_lossy(&req.body[at..head_end]);
    let extension = head
        .split("filename=\"")
        .nth(1)
        .and_then(|n| n.split('"').next())
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase());
    let start = (head_end + 4).min(req.body.len());
    let end = find(format!("\r\n--{boundary}").as_bytes(), start).unwrap_or(req.body.len());
    let Some((kind, extensions)) = format(&req.body[start..end]) else {
        return bad(INVALID);
    };
    if !extension.is_some_and(|e| extensions.contains(&e.as_str())) {
        return bad(INVALID);
    }
    let what = if req.path.ends_with("translations") {
        "translation"
    } else {
        "transcript"
    };
    Route::Fixed(Reply::json(
        200,
        &json!({"text": format!("mock {what} of {} bytes ({kind})", req.body.len())}),
    ))
}

fn not_found(req: &Request) -> Route {
    Route::Fixed(error(
        404,
        &format!("Invalid URL ({} {})", req.method, req.path),
    ))
}

fn model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"})
}

/// `max_completion_tokens` (the current name) or `max_tokens`.
pub(super) fn max_tokens(body: &Value) -> Option<u64> {
    body.get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(|m| m.as_u64())
}

pub(super) fn streaming(body: &Value) -> (bool, bool) {
    let stream = body.get("stream").and_then(|s| s.as_bool()) == Some(true);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(|s| s.as_bool())
        == Some(true);
    (stream, stream && include_usage)
}

pub(super) fn usage(t: Tokens) -> Value {
    json!({
        "prompt_tokens": t.prompt,
        "completion_tokens": t.completion,
        "total_tokens": t.prompt + t.completion,
    })
}

/// OpenAI's error event inside a stream.
pub(super) fn stream_error() -> String {
    data(&json!({"error": {
        "message": "The server had an error while processing your request.",
        "type": "server_error", "param": null, "code": null,
    }}))
}

pub(super) fn finish_name(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

/// A prompt field: a string, an array of strings, or token arrays (each
/// number one token).
fn prompt_words(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => Some(words(s)),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(words(s)),
                Value::Number(_) => Some(1),
                Value::Array(tokens) => Some(tokens.len() as u64),
                _ => None,
            })
            .sum(),
        _ => None,
    }
}

fn completion(body: &Value, model: &str) -> Route {
    let Some(prompt_tokens) = body.get("prompt").and_then(prompt_words) else {
        return bad("'prompt' must be a string or an array of strings");
    };
    let (stream, include_usage) = streaming(body);
    Route::Work(Work::Text {
        format: Box::new(Completion {
            id: format!("cmpl-mock{}", next_id()),
            model: model.to_string(),
            created: now_secs(),
            include_usage,
        }),
        content: Content::Answer,
        prompt_tokens,
        max_tokens: max_tokens(body),
        stream,
    })
}

/// Legacy `text_completion` objects.
struct Completion {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
}

impl Completion {
    fn object(&self, text: &str, finish: Option<&str>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }
}

impl TextFormat for Completion {
    fn plain(&self, text: &str, finish: Finish, tokens: Tokens) -> Value {
        let mut v = self.object(text, Some(finish_name(finish)));
        v["usage"] = usage(tokens);
        v
    }

    fn open(&self, _prompt_tokens: u64) -> Vec<String> {
        Vec::new()
    }

    fn piece(&self, text: &str) -> String {
        data(&self.object(text, None))
    }

    fn close(&self, _text: &str, finish: Finish, tokens: Tokens) -> Vec<String> {
        let mut out = vec![data(&self.object("", Some(finish_name(finish))))];
        if self.include_usage {
            out.push(data(&json!({
                "id": self.id,
                "object": "text_completion",
                "created": self.created,
                "model": self.model,
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
}

/// A deterministic vector for `text`: multiples of 1/16 in [-0.5, 0.5].
fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    (0..dims)
        .map(|j| {
            let x = (h.rotate_left((j * 5 % 64) as u32) % 17) as f32;
            (x - 8.0) / 16.0
        })
        .collect()
}

fn embeddings(body: &Value, model: &str) -> Route {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        // A flat array of numbers is one tokenised input.
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(|i| i.is_number()) => {
            vec![vec!["t"; items.len()].join(" ")]
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::new();
            for i in items {
                match i {
                    Value::String(s) => out.push(s.clone()),
                    // Token arrays: one "word" per token.
                    Value::Array(t) if !t.is_empty() => out.push(vec!["t"; t.len()].join(" ")),
                    _ => return bad("'input' must be a string or an array of strings"),
                }
            }
            out
        }
        _ => return bad("'input' must be a non-empty string or array"),
    };
    if inputs.iter().any(|s| s.is_empty()) {
        return bad("'input' cannot contain an empty string");
    }
    let dims = body
        .get("dimensions")
        .and_then(|d| d.as_u64())
        .unwrap_or(8)
        .clamp(1, 4096) as usize;
    let base64_format = match body.get("encoding_format").and_then(|e| e.as_str()) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return bad(&format!("'{other}' is not a valid encoding_format")),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = vector(text, dims);
            let embedding = if base64_format {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let prompt_tokens: u64 = inputs.iter().map(|s| words(s)).sum();
    ok(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
}

fn images(body: &Value, _model: &str, base_url: &str) -> Route {
    let Some(prompt) = body
        .get("prompt")
        .and_then(|p| p.as_str())
        .filter(|p| !p.trim().is_empty())
    else {
        return bad("'prompt' is required");
    };
    let n = body.get("n").and_then(|n| n.as_u64()).unwrap_or(1);
    if !(1..=10).contains(&n) {
        return bad("'n' must be between 1 and 10");
    }
    let b64 = match body.get("response_format").and_then(|f| f.as_str()) {
        None | Some("url") => false,
        Some("b64_json") => true,
        Some(other) => return bad(&format!("'{other}' is not a valid response_format")),
    };
    let data: Vec<Value> = (0..n)
        .map(|_| {
            if b64 {
                json!({"b64_json": base64(PNG_1X1), "revised_prompt": prompt})
            } else {
                json!({
                    "url": format!("{base_url}/files/img-{}.png", next_id()),
                    "revised_prompt": prompt,
                })
            }
        })
        .collect();
    ok(&json!({"created": now_secs(), "data": data}))
}

fn speech(body: &Value) -> Route {
    let Some(input) = body
        .get("input")
        .and_then(|p| p.as_str())
        .filter(|p| !p.is_empty())
    else {
        return bad("'input' is required");
    };
    if body.get("voice").and_then(|v| v.as_str()).is_none() {
        return bad("'voice' is required");
    }
    let content_type = match body.get("response_format").and_then(|f| f.as_str()) {
        None | Some("mp3") => "audio/mpeg",
        Some("opus") => "audio/opus",
        Some("aac") => "audio/aac",
        Some("flac") => "audio/flac",
        Some("wav") => "audio/wav",
        Some("pcm") => "audio/pcm",
        Some(other) => return bad(&format!("'{other}' is not a valid response_format")),
    };
    // An ID3-looking header, then 16 bytes per input character.
    let mut bytes = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
    for (i, c) in input.chars().enumerate() {
        bytes.extend((0..16u8).map(|k| (c as u32 as u8) ^ (i as u8).wrapping_add(k)));
    }
    Route::Work(Work::Reply(Reply {
        status: 200,
        content_type: content_type.into(),
        headers: headers(),
        body: bytes,
    }))
}
