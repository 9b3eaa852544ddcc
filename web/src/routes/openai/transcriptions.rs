//! `POST /v1/audio/transcriptions` and `/v1/audio/translations`: a
//! recording uploaded as `multipart/form-data`, bounded by
//! `server.max_audio_bytes`, quoted and charged by the seconds it holds
//! (read from the file's own headers, whatever its name says: WAV, MP3,
//! MP4/M4A, FLAC, Ogg, WebM; `oneflow::audio`), and answered as OpenAI
//! does: `{"text"}` as JSON, or the bare text.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, post, web};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

use oneflow::audio::{Format, billed_seconds, format_of, seconds as audio_seconds};
use oneflow::request::Ask;
use oneflow_actors::{Operation, Output, RequestJob};

use super::error::V1Result;
use super::{caller, ok, route_wish, settled};
use crate::error::ApiError;
use crate::state::AppState;

/// One part of a form: its name, its file name if it is a file, its bytes.
struct Field {
    name: String,
    file_name: Option<String>,
    data: Bytes,
}

/// The value of `key="..."` in a part's `Content-Disposition`.
fn param(disposition: &str, key: &str) -> Option<String> {
    disposition.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Splits a `multipart/form-data` body by its boundary (RFC 7578).
fn parse_form(body: &Bytes, boundary: &str) -> Result<Vec<Field>, ApiError> {
    let bad = |why: &str| ApiError::BadRequest(format!("the form is malformed: {why}"));
    let delimiter = format!("--{boundary}");
    let mut at = find(body, delimiter.as_bytes(), 0).ok_or_else(|| bad("no boundary"))?;
    let mut fields = Vec::new();
    loop {
        at += delimiter.len();
        if body.get(at..at + 2) == Some(b"--") {
            return Ok(fields);
        }
        let head_start = find(body, b"\r\n", at).ok_or_else(|| bad("a part has no head"))? + 2;
        let head_end =
            find(body, b"\r\n\r\n", head_start).ok_or_else(|| bad("a part has no head"))?;
        let head = std::str::from_utf8(&body[head_start..head_end])
            .map_err(|_| bad("a part's head is not text"))?;
        let disposition = head
            .split("\r\n")
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then(|| v.to_string())
            })
            .ok_or_else(|| bad("a part has no Content-Disposition"))?;
        let name = param(&disposition, "name").ok_or_else(|| bad("a part has no name"))?;
        let data_start = head_end + 4;
        let next = find(body, format!("\r\n{delimiter}").as_bytes(), data_start)
            .ok_or_else(|| bad("a part is not closed"))?;
        fields.push(Field {
            name,
            file_name: param(&disposition, "filename"),
            data: body.slice(data_start..next),
        });
        at = next + 2;
    }
}

/// Reads the body up to `limit` bytes (413 past it).
async fn read(mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The form, as the document describes it (the handler reads the parts
/// itself: a typed reader would hold the whole upload twice).
#[allow(dead_code, reason = "doc-only: read by #[derive(ToSchema)]")]
#[derive(utoipa::ToSchema)]
#[schema(as = TranscriptionForm)]
pub(crate) struct Form {
    /// A provider name or model of the audio modality.
    model: String,
    /// The recording: WAV, MP3 (MPEG audio), MP4/M4A, FLAC, Ogg (Opus,
    /// Vorbis) or WebM, told by its first bytes. Its length is read from
    /// its headers; a file whose length cannot be read (another format, or
    /// malformed, or over 24 hours) is 422 `inconsistent_request`.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    // A form has no null: the optional fields are left out, not null.
    /// `json` (default) or `text`.
    #[serde(default)]
    #[schema(pattern = "^(json|text)$")]
    response_format: String,
    /// Passed on as given (transcriptions only).
    #[serde(default)]
    language: String,
    /// Passed on as given.
    #[serde(default)]
    prompt: String,
    /// From 0 to 1; passed on.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    temperature: f64,
}

/// Form fields passed on to the upstream as given.
const PASSED: &[&str] = &["language", "prompt", "temperature"];

async fn transcribe(
    s: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    translate: bool,
) -> V1Result {
    let user = caller(req, oneflow::access::Permission::Spend).await?;
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = ct
        .strip_prefix("multipart/form-data")
        .and_then(|rest| param(rest, "boundary"))
        .filter(|b| (1..=70).contains(&b.len()))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "send the recording as `multipart/form-data` with a boundary".into(),
            )
        })?;
    let body = read(payload, s.broker.config().server.max_audio_bytes).await?;
    let fields = parse_form(&body, &boundary)?;
    let text_of = |name: &str| -> Result<Option<String>, ApiError> {
        fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| {
                String::from_utf8(f.data.to_vec())
                    .map_err(|_| ApiError::BadRequest(format!("`{name}` must be text")))
            })
            .transpose()
    };
    let model = text_of("model")?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::BadRequest("`model` is required".into()))?;
    let file = fields
        .iter()
        .find(|f| f.name == "file")
        .ok_or_else(|| ApiError::BadRequest("`file` (the recording) is required".into()))?;
    let plain = match text_of("response_format")?.as_deref() {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`response_format` `{other}` is not served; `json` or `text`"
            ))
            .into());
        }
    };
    // Well formed, but no length OneFlow can read: what the form's
    // schema cannot say, so 422.
    let seconds = billed_seconds(
        audio_seconds(&file.data).map_err(|e| ApiError::Inconsistent(format!("`file`: {e}")))?,
    );
    if let Some(t) = text_of("temperature")? {
        if !t
            .trim()
            .parse::<f64>()
            .is_ok_and(|t| (0.0..=1.0).contains(&t))
        {
            return Err(
                ApiError::BadRequest("`temperature` must be a number from 0 to 1".into()).into(),
            );
        }
    }
    let mut passed = Vec::new();
    for k in PASSED {
        if let Some(v) = text_of(k)? {
            passed.push((k.to_string(), v));
        }
    }
    if let Some(f) = fields.iter().find(|f| {
        !["model", "file", "response_format"].contains(&f.name.as_str())
            && !PASSED.contains(&f.name.as_str())
    }) {
        return Err(
            ApiError::BadRequest(format!("`{}` is not a field of this form", f.name)).into(),
        );
    }
    // The key's body is the form's fields and the file's digest.
    let digest: String = Sha256::digest(&file.data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let idem = crate::routes::idempotency_key(
        req,
        &json!({"model": model, "translate": translate, "fields": passed, "plain": plain, "file": digest}),
    )?;
    let (strategy, constraints) = route_wish(req, None)?;
    // Upstreams tell the format by the name's extension: a file sent
    // without a name gets one that matches its bytes.
    let file_name = file.file_name.clone().unwrap_or_else(|| {
        let ext = match format_of(&file.data) {
            Some(Format::Mpeg) => "mp3",
            Some(Format::Mp4) => "m4a",
            Some(Format::Flac) => "flac",
            Some(Format::Ogg) => "ogg",
            Some(Format::Matroska) => "webm",
            Some(Format::Wav) | None => "wav",
        };
        format!("audio.{ext}")
    });
    let ask = Ask::Transcription { seconds };
    let job = RequestJob {
        spenders: Vec::new(),
        key: None,
        key_id: None,
        member: None,
        model,
        preview: format!("{file_name} ({seconds} s)"),
        op: Operation::Transcription {
            audio: file.data.clone(),
            file_name,
            seconds,
            translate,
            fields: passed,
        },
        planner: Box::new(move |p| ask.plan(p)),
        constraints,
        strategy,
        idem,
    };
    let a = s.broker.run(&user, job).await?;
    settled(&a)?;
    let text = match &a.output {
        Some(Output::Text { text, .. }) => text.clone(),
        _ => String::new(),
    };
    let mut res = ok(&a);
    if plain {
        return Ok(res.content_type("text/plain; charset=utf-8").body(text));
    }
    Ok(res.json(json!({"text": text, "usage": {"type": "duration", "seconds": seconds}})))
}

#[post("/v1/audio/transcriptions")]
pub async fn transcriptions(
    s: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> V1Result {
    transcribe(&s, &req, payload, false).await
}

#[post("/v1/audio/translations")]
pub async fn translations(
    s: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> V1Result {
    transcribe(&s, &req, payload, true).await
}
