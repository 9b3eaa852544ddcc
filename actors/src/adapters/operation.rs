//! What an adapter is asked to do: one variant per kind of call, with
//! what the plan allows already in it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use oneflow::chat::{ChatRequest, Part, Role, Turn};

/// What the upstream is asked to do.
#[derive(Clone, Debug)]
pub enum Operation {
    Chat {
        /// The conversation, tools and settings both chat formats share
        /// (its own `max_tokens` is the client's wish; the field below is
        /// what the plan allows).
        chat: ChatRequest,
        max_tokens: u32,
        /// Answers asked for (OpenAI's `n`), each up to `max_tokens`.
        n: u32,
        /// Fields the shared shape does not hold (`response_format`,
        /// `seed`, `logprobs`, fields newer than OneFlow...), passed to
        /// OpenAI-compatible upstreams as given; a provider of another
        /// format is not planned for a request that has any it cannot
        /// carry.
        extra: serde_json::Map<String, serde_json::Value>,
        /// A `/v1/responses` request as it came (its `input` holding the
        /// whole conversation), for an upstream that speaks the Responses
        /// API (`responses = true`); others are sent `chat`.
        responses: Option<std::sync::Arc<serde_json::Value>>,
    },
    Completion {
        prompt: String,
        max_tokens: u32,
        extra: serde_json::Map<String, serde_json::Value>,
    },
    Embedding {
        input: Vec<String>,
        extra: serde_json::Map<String, serde_json::Value>,
    },
    Image {
        prompt: String,
        n: u32,
        size: String,
        extra: serde_json::Map<String, serde_json::Value>,
    },
    Speech {
        input: String,
        voice: String,
        extra: serde_json::Map<String, serde_json::Value>,
    },
    /// Audio or video clips of the native API: simulated, or a video job
    /// on OpenAI's `/videos` (created, polled until done).
    Clip {
        prompt: String,
        seconds: u32,
        /// Where a background job shows how far it got.
        progress: Option<Arc<JobProgress>>,
    },
    /// A recording to text (`translate`: to English text), `seconds` long.
    Transcription {
        audio: Bytes,
        file_name: String,
        seconds: u64,
        translate: bool,
        /// `language`, `prompt`, `temperature` as given.
        fields: Vec<(String, String)>,
    },
}

impl Operation {
    /// A chat of one user text, as the native API and probes ask.
    pub fn ask(prompt: String, max_tokens: u32) -> Operation {
        Operation::Chat {
            chat: ChatRequest {
                turns: vec![Turn {
                    role: Role::User,
                    parts: vec![Part::Text(prompt)],
                }],
                ..ChatRequest::default()
            },
            max_tokens,
            n: 1,
            extra: Default::default(),
            responses: None,
        }
    }

    /// The text the request is about, for previews, the simulator and
    /// counting a cut stream's prompt: a chat's system prompt, texts, tool
    /// results and tool calls' inputs.
    pub fn prompt_text(&self) -> String {
        match self {
            Operation::Chat { chat, .. } => chat.text(),
            Operation::Completion { prompt, .. }
            | Operation::Image { prompt, .. }
            | Operation::Clip { prompt, .. } => prompt.clone(),
            Operation::Embedding { input, .. } => input.join("\n"),
            Operation::Speech { input, .. } => input.clone(),
            Operation::Transcription { file_name, .. } => file_name.clone(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Operation::Chat { .. } => "chat",
            Operation::Completion { .. } => "completion",
            Operation::Embedding { .. } => "embedding",
            Operation::Image { .. } => "image",
            Operation::Speech { .. } => "speech",
            Operation::Clip { .. } => "clip",
            Operation::Transcription { .. } => "transcription",
        }
    }
}

/// How far a running job got, as its adapter last heard: written by the
/// adapter, read by `GET /api/jobs/{id}` while the job runs and by a
/// graceful stop, which deletes the upstream jobs still rendering.
#[derive(Debug, Default)]
pub struct JobProgress {
    percent: AtomicU8,
    /// The provider and the upstream's id of the job now running (a retry
    /// or a fallback replaces them, and starts its progress again).
    upstream: Mutex<Option<(String, String)>>,
}

impl JobProgress {
    /// `provider` accepted the job under `id`.
    pub fn started(&self, provider: &str, id: &str) {
        if let Ok(mut u) = self.upstream.lock() {
            *u = Some((provider.to_string(), id.to_string()));
        }
        self.percent.store(0, Ordering::Relaxed);
    }

    /// The upstream says it is `percent` done (capped at 100).
    pub fn advanced(&self, percent: u64) {
        self.percent
            .fetch_max(percent.min(100) as u8, Ordering::Relaxed);
    }

    /// The provider and upstream id of the job now running, if one is, and
    /// how far it got.
    pub fn read(&self) -> (Option<(String, String)>, u8) {
        let upstream = self.upstream.lock().ok().and_then(|u| u.clone());
        (upstream, self.percent.load(Ordering::Relaxed))
    }
}
