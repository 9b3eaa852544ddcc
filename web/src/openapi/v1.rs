//! The routes of the OpenAI-compatible API under `/v1`. One doc-only function per
//! route, never called: its attributes describe the route; the handler is
//! in `routes/`.

#![allow(dead_code, reason = "doc-only: read by #[utoipa::path], never called")]

use super::v1_schema::*;
use crate::routes::openai::chat::ChatBody;
use crate::routes::openai::completions::CompletionBody;
use crate::routes::openai::embeddings::EmbeddingBody;
use crate::routes::openai::images::ImageBody;
use crate::routes::openai::responses::ResponsesBody;
use crate::routes::openai::speech::SpeechBody;
use crate::routes::openai::transcriptions::Form;

#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    params(RouteHeaders, crate::routes::cached::CacheHeader),
    request_body = ChatBody,
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events of `chat.completion.chunk` objects ending in `data: [DONE]`",
            content(
                (ChatCompletion = "application/json"),
                (String = "text/event-stream"),
            ),
            headers(
                ("x-oneflow-request-id" = String, description = "The request's id in history"),
                ("x-oneflow-route" = String, description = "Why this provider was chosen"),
                ("x-oneflow-cost" = String, description = "Credits charged (not on streams)"),
                ("x-oneflow-quote" = String, description = "Credits held (streams only)"),
                ("x-oneflow-cache" = String, description = "What the response cache did: `hit`, `miss` or `bypass` (only while `[cache] enabled`; docs/cache.md)"),
            )),
        (status = 400, description = "Invalid request", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
        (status = 429, description = "Provider overloaded, or too many of the user's requests in flight; see Retry-After", body = OpenAiErrorBody),
        (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
        (status = 503, description = "Busy or unavailable; see Retry-After", body = OpenAiErrorBody),
    ))]
pub fn v1_chat() {}

#[utoipa::path(post, path = "/v1/completions", tag = "openai",
    params(RouteHeaders),
    request_body = CompletionBody,
    responses(
        (status = 200, description = "The completion; with `stream: true`, server-sent events ending in `data: [DONE]`",
            content(
                (Completion = "application/json"),
                (String = "text/event-stream"),
            )),
        (status = 400, description = "Invalid request", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
        (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
    ))]
pub fn v1_completions() {}

#[utoipa::path(post, path = "/v1/embeddings", tag = "openai",
    params(RouteHeaders),
    request_body = EmbeddingBody,
    responses(
        (status = 200, description = "One vector per input", body = EmbeddingList),
        (status = 400, description = "Invalid request", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
        (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
    ))]
pub fn v1_embeddings() {}

#[utoipa::path(post, path = "/v1/images/generations", tag = "openai",
    params(RouteHeaders),
    request_body = ImageBody,
    responses(
        (status = 200, description = "The generated images", body = ImageList),
        (status = 400, description = "Invalid request", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
        (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
    ))]
pub fn v1_images() {}

#[utoipa::path(post, path = "/v1/audio/speech", tag = "openai",
    params(RouteHeaders),
    request_body = SpeechBody,
    responses(
        (status = 200, description = "The audio, in the provider's format (`audio/mpeg`, `audio/wav`, ...); a provider that returns no audio (the simulated one returns a clip address) answers with JSON",
            content(
                (Vec<u8> = "application/octet-stream"),
                (SpeechSummary = "application/json"),
            )),
        (status = 400, description = "Invalid request", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
        (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
    ))]
pub fn v1_speech() {}

#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses(
        (status = 200, description = "Every provider name and model name a request may use", body = ModelList),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
    ))]
pub fn v1_models() {}

#[utoipa::path(post, path = "/v1/responses", tag = "openai",
    params(RouteHeaders),
    request_body = ResponsesBody,
    responses(
        (status = 200, description = "The response; with `stream: true`, server-sent events: `response.created`, `response.in_progress`, per output item `response.output_item.added`, `response.content_part.added`, `response.output_text.delta` or `response.function_call_arguments.delta`, their `.done` events and `response.output_item.done`, then `response.completed`, `response.incomplete` (the token bound or the hold cut it; a `oneflow` field says when the broker did) or `response.failed`. Kept for `idempotency.retention_hours` unless `store` is false",
            content(
                (ResponseObject = "application/json"),
                (String = "text/event-stream"),
            ),
            headers(
                ("x-oneflow-request-id" = String, description = "The request's id in history"),
                ("x-oneflow-route" = String, description = "Why this provider was chosen"),
                ("x-oneflow-cost" = String, description = "Credits charged (not on streams)"),
                ("x-oneflow-quote" = String, description = "Credits held (streams only)"),
            )),
        (status = 400, description = "Invalid request: not the documented JSON, a model no provider serves, or what a chat completion cannot carry (built-in tools, `reasoning` items)", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
        (status = 404, description = "`previous_response_id` names no response of the caller's that is still kept", body = OpenAiErrorBody),
        (status = 422, description = "The conversation's parts do not agree (a function output answering no call, a system message after the conversation began), no provider can serve it as asked, or the Idempotency-Key was used with another body", body = OpenAiErrorBody),
        (status = 429, description = "Provider overloaded, or too many of the user's requests in flight; see Retry-After", body = OpenAiErrorBody),
        (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
        (status = 503, description = "Busy or unavailable; see Retry-After", body = OpenAiErrorBody),
    ))]
pub fn v1_responses() {}

#[utoipa::path(get, path = "/v1/responses/{id}", tag = "openai",
    params(("id" = String, Path, description = "The response's id (`resp_...`)")),
    responses(
        (status = 200, description = "The response as it was answered", body = ResponseObject),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        (status = 404, description = "No response of the caller's with this id is kept (never made, made with `store: false`, another user's, or past the retention)", body = OpenAiErrorBody),
    ))]
pub fn v1_response() {}

#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "openai",
    params(RouteHeaders),
    request_body(content = Form, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The text (`response_format=text`: the bare text), charged by the recording's seconds as its headers give them (started seconds count)",
            content(
                (Transcription = "application/json"),
                (String = "text/plain"),
            )),
        (status = 400, description = "Invalid request: not a form, `model` or `file` missing, a field this form does not have, `response_format` other than `json` or `text`, `temperature` outside 0 to 1, a model no provider serves", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
        (status = 413, description = "Upload larger than `server.max_audio_bytes`", body = OpenAiErrorBody),
        (status = 422, description = "The file is not a recording whose length can be read (`inconsistent_request`): not WAV, MP3 (MPEG audio), MP4/M4A, FLAC, Ogg (Opus, Vorbis) or WebM by its first bytes, whatever its name; malformed; silent on its length (a FLAC of unknown total, a WebM with neither Duration nor blocks); or over 24 hours. Or no provider can serve it as asked, or the Idempotency-Key was used with another form", body = OpenAiErrorBody),
        (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
    ))]
pub fn v1_transcriptions() {}

#[utoipa::path(post, path = "/v1/audio/translations", tag = "openai",
    params(RouteHeaders),
    request_body(content = Form, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The recording's speech as English text (`response_format=text`: the bare text), charged by its seconds",
            content(
                (Transcription = "application/json"),
                (String = "text/plain"),
            )),
        (status = 400, description = "Invalid request: as for transcriptions", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid API key", body = OpenAiErrorBody),
        (status = 402, description = "Not enough credits or over budget", body = OpenAiErrorBody),
        (status = 413, description = "Upload larger than `server.max_audio_bytes`", body = OpenAiErrorBody),
        (status = 422, description = "The file is not a recording whose length can be read (as for transcriptions: WAV, MP3, MP4/M4A, FLAC, Ogg or WebM, read from its headers), no provider can serve it as asked, or the Idempotency-Key was used with another form", body = OpenAiErrorBody),
        (status = 502, description = "Every provider tried failed", body = OpenAiErrorBody),
    ))]
pub fn v1_translations() {}
