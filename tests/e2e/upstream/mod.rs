//! Mock upstream providers for end-to-end tests: real HTTP servers on
//! `127.0.0.1:0` that speak the providers' own wire protocols, so the
//! broker's real adapters, HTTP client and SSE parser are what get tested.
//!
//! ```ignore
//! let up = MockUpstream::start(Kind::OpenAi);
//! // point a provider at it: OpenAI's base_url takes the `/v1` (SDK style),
//! // Anthropic's and Stability's do not.
//! let base = format!("{}/v1", up.base_url());
//! up.push(Behavior::Status(429, Some(3)));   // the next call is refused
//! // ... drive the broker ...
//! assert!(up.wait_for_requests(2, Duration::from_secs(5)).await);
//! assert_eq!(up.requests()[0].header("authorization"), Some("Bearer mock-upstream-key"));
//! ```
//!
//! # Each server
//!
//! Every server runs its own single-threaded tokio runtime on its own thread,
//! so it works under `#[tokio::test]`, `#[actix_rt::test]` or plain threads,
//! and stops (closing every connection) when the [`MockUpstream`] is dropped.
//! HTTP/1.1 is hand-written ([`http`]) so a behaviour can cut a body in the
//! middle or notice a client leaving.
//!
//! | Kind | Endpoints (auth) |
//! |---|---|
//! | [`Kind::OpenAi`] | `POST /v1/chat/completions`, `/v1/completions`, `/v1/responses` (all plain and `stream: true`), `/v1/embeddings` (float or base64), `/v1/images/generations` (`b64_json` or `url`), `/v1/audio/speech` (bytes); `GET /v1/models`, `/v1/models/{id}`. `Authorization: Bearer` |
//! | [`Kind::Anthropic`] | `POST /v1/messages`, plain and `stream: true`. `x-api-key` and `anthropic-version` |
//! | [`Kind::Stability`] | `POST /v1/generation/{engine}/text-to-image` (JSON in; JSON `artifacts` out, or PNG bytes for `Accept: image/png`). `Authorization: Bearer` |
//!
//! Image URLs point at `GET /files/{name}.png` on the same server (no auth).
//!
//! The key is [`MOCK_API_KEY`] (or the one given to
//! [`MockUpstream::start_with_key`]); a missing or wrong one is a 401 in
//! the provider's error shape. So are 400s for bodies the real API would
//! refuse (no model, no messages, Anthropic without `max_tokens` or
//! `anthropic-version`, Stability sizes not a multiple of 64) and 404s.
//! Error shapes: OpenAI `{"error": {"message", "type", "param", "code"}}`,
//! Anthropic `{"type": "error", "error": {"type", "message"}}`, Stability
//! `{"id", "name", "message"}`.
//!
//! # Deterministic answers and usage
//!
//! * Prompt tokens are the whitespace-separated words of the input text
//!   ([`words`]): every message's text (and Anthropic's `system` and
//!   `tool_result` contents), the completion prompt, the Responses input
//!   (function outputs included), or every embedding input.
//! * The answer is [`answer_text`]`(n)`: `"mock answer w2 w3 ..."`, `n`
//!   words, where `n` is [`DEFAULT_ANSWER_WORDS`] capped by the request's
//!   `max_tokens` (then the finish reason is `length` / `max_tokens`).
//!   Completion tokens are `n`.
//! * Streams send one word per chunk (the first bare, the rest with a
//!   leading space, so the pieces concatenate to the text). OpenAI: a first
//!   chunk with `role` and empty content, the words, a chunk with
//!   `finish_reason`, then, when `stream_options.include_usage` is true, a
//!   chunk with `choices: []` and `usage` (every earlier chunk then carries
//!   `usage: null`), then `data: [DONE]`. Anthropic: `message_start` (usage
//!   `input_tokens` = prompt words, `output_tokens: 1` as the real API
//!   sends), `content_block_start`, `ping`, one `content_block_delta` per
//!   word, `content_block_stop`, `message_delta` (`stop_reason`,
//!   `usage.output_tokens` = words sent), `message_stop`.
//!   Responses: `response.created`, `response.in_progress`,
//!   `response.output_item.added`, `response.content_part.added`, one
//!   `response.output_text.delta` per word, `response.output_text.done`,
//!   `response.content_part.done`, `response.output_item.done`, then
//!   `response.completed` (or `response.incomplete` when cut) with the
//!   whole output and usage; every event has a `sequence_number`.
//! * Chat completions give `n` choices alike (completion tokens count them
//!   all; a stream sends each piece as one event per choice, in index
//!   order); `response_format` `json_object` makes the text
//!   [`tools::json_answer`], `json_schema` a value of its schema.
//! * Images: one per `n` / `samples`, a 1x1 PNG. Speech: `10 + 16 x chars`
//!   bytes (not a playable file). Embeddings: `dimensions` (default 8)
//!   numbers per input, from the input's bytes.
//!
//! # Tools
//!
//! As the real APIs do, when tools are offered (and the tool choice is not
//! `none`) the answer calls one: the tool the choice names, else the first.
//! Its arguments are [`tools::arguments_for`] its schema: every required
//! property, strings `"mock"`, integers and numbers `1`, booleans `true`,
//! written with a space after each `:` and `,` so that they stream one word
//! a piece and count as words like any text. When the conversation ends
//! with the tool's result, the answer is text about it,
//! [`tools::tool_answer`]: `tool result: <the result's words>`.
//!
//! | Protocol | Call, plain | Call, streamed | After a result |
//! |---|---|---|---|
//! | chat completions | `message.tool_calls: [{id: "call_...", type: "function", function: {name, arguments}}]`, `content: null`, `finish_reason: "tool_calls"` | first chunk `delta.tool_calls: [{index: 0, id, type, function: {name, arguments: ""}}]`, then `{index: 0, function: {arguments: piece}}`s, finish `tool_calls`, usage chunk | last message `role: "tool"` |
//! | Responses | output item `{type: "function_call", id: "fc_...", call_id: "call_...", name, arguments, status: "completed"}` | `response.created`, `response.in_progress`, `response.output_item.added` (arguments `""`), `response.function_call_arguments.delta`s, `.done`, `response.output_item.done`, `response.completed` with usage | last input item `function_call_output` |
//! | Messages | content `[{type: "tool_use", id: "toolu_...", name, input}]`, `stop_reason: "tool_use"` | `content_block_start` (`tool_use`, `input: {}`), `input_json_delta`s (`partial_json`), `content_block_stop`, `message_delta` (`tool_use`, usage) | last message holds a `tool_result` block |
//!
//! `max_tokens` cuts arguments as it cuts text (finish `length` /
//! `max_tokens`, status `incomplete`). A tool without a name (or, for
//! Anthropic, without `input_schema`) or a tool choice naming no tool is a
//! 400, as the real APIs answer.
//!
//! # Behaviours
//!
//! [`MockUpstream::push`] queues a [`Behavior`] for the next request;
//! [`MockUpstream::set_default`] sets the one used when the queue is empty
//! (initially [`Behavior::Ok`]). Behaviours are taken only by POSTs that
//! pass auth and validation: a 401, 400, 404 or a `GET` answers without
//! consuming one, so a broker that forgot the key shows as a 401 rather than
//! as a scripted answer going to the wrong call.
//!
//! | Behaviour | Plain request | Streamed request |
//! |---|---|---|
//! | `Ok` | the answer | the stream, to its proper end |
//! | `Status(code, retry)` | `code`, provider's error body, `Retry-After` | same (no stream) |
//! | `Slow(d)` | `d` before the head, then the answer | `d` before the head, then the stream |
//! | `StreamChunks{n, delay}` | `n` words after `n x delay` | `n` words, `delay` apart, finish `stop` |
//! | `ResetMidStream{after}` | half the body, then the cut | opening events, `after` words, cut |
//! | `Endless{delay}` | no answer until the client leaves | words forever, `delay` apart |
//! | `Malformed` | 200, body not JSON | 200, events not JSON, no `[DONE]` |
//! | `StreamError{after}` | 500 | `after` words, the provider's error event |
//!
//! Non-text endpoints (embeddings, images, speech, Stability) follow the
//! plain column; `StreamChunks` there only delays the normal answer. A
//! behaviour that asks for more words than a tool call's arguments (or
//! other fixed text, such as a JSON answer) has gets answer words after
//! them, as a broken upstream might send.
//!
//! # Observing
//!
//! [`MockUpstream::requests`] has every request that arrived (including
//! refused ones), in order, with lower-case header names and the body as
//! JSON; [`MockUpstream::take_requests`] also forgets them.
//! [`MockUpstream::client_disconnects`] counts responses the client abandoned before they were complete: it closed the
//! connection during a delay, a stream, or while a write was pending. The
//! read side is watched throughout, so this counts promptly; use
//! [`MockUpstream::wait_for_disconnects`] to wait for it without sleeping
//! a fixed time.

pub mod anthropic;
mod chat;
pub mod http;
mod openai;
mod responses;
mod stability;
pub mod tools;
pub mod videos;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use http::{Conn, Outcome, Reply, Request, Stop};
use tools::Content;

/// The key a mock accepts unless started with [`MockUpstream::start_with_key`].
pub const MOCK_API_KEY: &str = "mock-upstream-key";

/// How many words an answer has when nothing caps it.
pub const DEFAULT_ANSWER_WORDS: usize = 6;

/// Which provider a mock imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    OpenAi,
    Anthropic,
    Stability,
}

/// What the mock does with one request (after auth and validation passed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// The normal answer.
    Ok,
    /// This status with an error body in the provider's shape, and
    /// `Retry-After: secs` when given.
    Status(u16, Option<u64>),
    /// Waits this long before the response head, then answers normally.
    Slow(Duration),
    /// Text: exactly `n` words (whatever `max_tokens` says), streamed one per
    /// chunk with `delay` between chunks; a plain request gets its answer
    /// after `n x delay`. Other endpoints: the normal answer after
    /// `n x delay`.
    StreamChunks { n: usize, delay: Duration },
    /// Streams: the opening events and `after` words, then the connection
    /// is cut (no end of stream). Plain answers: the head and half the body,
    /// then the cut. Counts as no disconnect.
    ResetMidStream { after: usize },
    /// Streams: words forever, `delay` apart, until the client goes away
    /// (counted as a disconnect). Plain requests: never answered, until the
    /// client goes away.
    Endless { delay: Duration },
    /// A 200 whose body is not what the protocol says: broken JSON, or a
    /// stream whose events are not JSON (and which has no proper end).
    Malformed,
    /// Streams: the opening events and `after` words, then the provider's
    /// in-stream error event (OpenAI `data: {"error": {...}}` with type
    /// `server_error`; Anthropic `event: error` with `overloaded_error`),
    /// then a clean end of the HTTP body, with no usage and no `[DONE]`.
    /// Anything else: a 500 in the provider's shape.
    StreamError { after: usize },
    /// A `307 Temporary Redirect` to this URL, as a hostile or compromised
    /// upstream might send to steer the broker (and its key) elsewhere.
    Redirect(String),
    /// A 200 of this many bytes, written as they go (never held): a plain
    /// answer of JSON whitespace with no length given, or for a stream one
    /// `data:` line that never ends. Stops when the client goes away.
    Huge(u64),
    /// OpenAI text: the normal answer, but its `usage` object (plain, or
    /// the stream's usage chunk) replaced by this one, e.g. negative or
    /// 2^64-1 token counts, as a broken or hostile upstream might report.
    Usage(Value),
    /// Streams (OpenAI): the opening events, then only usage events (no
    /// text), `delay` apart, until the client goes away. Anything else: the
    /// normal answer.
    UsageForever { delay: Duration },
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON; `Value::Null` if it is empty or not JSON.
    pub body: Value,
    /// The body as sent (forms, uploads).
    pub raw_body: Vec<u8>,
}

impl Recorded {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// State shared by the test and the server thread. std mutexes: never held
/// across an `.await`.
struct Shared {
    kind: Kind,
    /// The key requests must carry.
    key: String,
    base_url: String,
    queue: Mutex<VecDeque<Behavior>>,
    default: Mutex<Behavior>,
    requests: Mutex<Vec<Recorded>>,
    disconnects: AtomicUsize,
}

impl Shared {
    fn next_behavior(&self) -> Behavior {
        let queued = self.queue.lock().unwrap().pop_front();
        queued.unwrap_or_else(|| self.default.lock().unwrap().clone())
    }

    fn record(&self, r: &Request) {
        let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        self.requests.lock().unwrap().push(Recorded {
            raw_body: r.body.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            headers: r.headers.clone(),
            body,
        });
    }
}

/// A running mock provider. Dropping it stops the server.
pub struct MockUpstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MockUpstream {
    /// Starts a mock of `kind` on a free loopback port, accepting
    /// [`MOCK_API_KEY`].
    pub fn start(kind: Kind) -> MockUpstream {
        Self::start_with_key(kind, MOCK_API_KEY)
    }

    /// Starts a mock that accepts `key` instead: for a broker that reads its
    /// upstream key from an environment variable the test cannot set (edition
    /// 2024 makes `set_var` unsafe), pass a variable's existing value.
    pub fn start_with_key(kind: Kind, key: &str) -> MockUpstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            kind,
            key: key.to_string(),
            base_url: format!("http://{addr}"),
            queue: Mutex::new(VecDeque::new()),
            default: Mutex::new(Behavior::Ok),
            requests: Mutex::new(Vec::new()),
            disconnects: AtomicUsize::new(0),
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("mock-{kind:?}").to_lowercase())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(accept(listener, for_thread, rx));
                // Dropping the runtime cancels every connection task.
            })
            .unwrap();
        MockUpstream {
            shared,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, without a version path (OpenAI callers
    /// append `/v1`).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn kind(&self) -> Kind {
        self.shared.kind
    }

    /// The key this mock accepts.
    pub fn api_key(&self) -> &str {
        &self.shared.key
    }

    /// Queues a behaviour for the next request that reaches one.
    pub fn push(&self, b: Behavior) {
        self.shared.queue.lock().unwrap().push_back(b);
    }

    /// The behaviour used when the queue is empty.
    pub fn set_default(&self, b: Behavior) {
        *self.shared.default.lock().unwrap() = b;
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Every request received so far, forgetting them (for a test that
    /// checks what one step sent).
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.shared.requests.lock().unwrap())
    }

    /// How many requests arrived (since the last [`Self::take_requests`]).
    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Responses the client abandoned before they were complete.
    pub fn client_disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived; `false` if `timeout`
    /// passed first.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        poll(timeout, || self.request_count() >= n).await
    }

    /// Waits until at least `n` client disconnects were seen; `false` if
    /// `timeout` passed first.
    pub async fn wait_for_disconnects(&self, n: usize, timeout: Duration) -> bool {
        poll(timeout, || self.client_disconnects() >= n).await
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn poll(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn accept(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => {
                if let Ok((stream, _)) = r {
                    tokio::spawn(serve(stream, shared.clone()));
                }
            }
        }
    }
}

/// What a valid request asks the mock to produce; behaviours decide how.
pub(crate) enum Work {
    /// Generated text, plain or streamed.
    Text {
        format: Box<dyn TextFormat>,
        /// The words of the answer (of each choice).
        content: Content,
        prompt_tokens: u64,
        max_tokens: Option<u64>,
        stream: bool,
    },
    /// Any other answer (JSON or bytes).
    Reply(Reply),
}

/// What routing decided.
pub(crate) enum Route {
    /// Answer without consuming a behaviour (401, 400, 404, GETs).
    Fixed(Reply),
    Work(Work),
}

/// Why the text stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
}

/// Token counts as the mock reports them: `completion` counts every
/// choice's words.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tokens {
    pub prompt: u64,
    pub completion: u64,
}

/// One provider's text protocol: the plain body and the stream's frames
/// (each a complete SSE event, blank line included). A format made for a
/// tool call writes its text as the call's arguments, and a finish of
/// [`Finish::Stop`] as the protocol's "the model called a tool".
pub(crate) trait TextFormat: Send + Sync {
    /// The whole answer; `text` is each choice's.
    fn plain(&self, text: &str, finish: Finish, tokens: Tokens) -> Value;
    /// Frames before the first word.
    fn open(&self, prompt_tokens: u64) -> Vec<String>;
    /// The frames carrying one piece of text (one per choice).
    fn piece(&self, text: &str) -> String;
    /// Frames after the last word; `text` is what the pieces made.
    fn close(&self, text: &str, finish: Finish, tokens: Tokens) -> Vec<String>;
    /// How many choices the answer has, each of all the content's words
    /// (so completion tokens are words x choices).
    fn choices(&self) -> u64 {
        1
    }
    /// The provider's error event inside a stream.
    fn error_frame(&self) -> String;
    /// Headers sent with every answer.
    fn headers(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A `data:` frame.
pub(crate) fn data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// An `event:` + `data:` frame.
pub(crate) fn event(name: &str, v: &Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

/// Whitespace-separated words of `text`: the mocks' token count.
pub fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The `i`-th word of every answer: `mock`, `answer`, `w2`, `w3`...
pub fn answer_word(i: usize) -> String {
    match i {
        0 => "mock".into(),
        1 => "answer".into(),
        _ => format!("w{i}"),
    }
}

/// An answer of `n` words, as a plain response carries it.
pub fn answer_text(n: usize) -> String {
    Content::Answer.text(n)
}

/// The text of an OpenAI or Anthropic content field: a string, or an array
/// of parts whose text parts count, and the content of Anthropic's
/// `tool_result` blocks.
pub(crate) fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("text").and_then(|t| t.as_str()) {
                Some(t) => Some(t.to_string()),
                None if p["type"] == "tool_result" => Some(content_text(&p["content"])),
                None => None,
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Seconds since the epoch, for `created` fields.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A valid 1x1 RGB PNG.
pub const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x50, 0x68, 0x38, 0x00,
    0x00, 0x02, 0x24, 0x01, 0x61, 0xdd, 0x14, 0x9a, 0x90, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= group.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The provider's error answer for `status`.
fn error_reply(kind: Kind, status: u16, message: &str) -> Reply {
    match kind {
        Kind::OpenAi => openai::error(status, message),
        Kind::Anthropic => anthropic::error(status, message),
        Kind::Stability => stability::error(status, message),
    }
}

/// A plain 400 for a request the HTTP layer could not parse.
fn unparsable(kind: Kind, why: &str) -> Reply {
    error_reply(kind, 400, &format!("could not parse the request: {why}"))
        .with_header("connection", "close")
}

async fn serve(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let mut conn = Conn::new(stream);
    loop {
        let req = match conn.read_request().await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(why) => {
                let _ = conn.reply(&unparsable(shared.kind, &why)).await;
                return;
            }
        };
        shared.record(&req);
        let route = match shared.kind {
            Kind::OpenAi if req.path.starts_with("/v1/videos") => {
                videos::route(&req, &shared.key, &shared.base_url, || {
                    shared.next_behavior()
                })
            }
            Kind::OpenAi => openai::route(&req, &shared.key, &shared.base_url),
            Kind::Anthropic => anthropic::route(&req, &shared.key),
            Kind::Stability => stability::route(&req, &shared.key),
        };
        let outcome = match route {
            Route::Fixed(r) => conn.reply(&r).await,
            Route::Work(w) => {
                let b = shared.next_behavior();
                run(&mut conn, shared.kind, w, b).await
            }
        };
        match outcome {
            Ok(()) if conn.keep_alive() => {}
            Ok(()) | Err(Stop::Cut) => return,
            Err(Stop::Gone) => {
                shared.disconnects.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// How many words, how fast, and how a text answer ends.
enum Plan {
    Words { n: Option<usize>, delay: Duration },
    UsageForever { delay: Duration },
    Cut { after: usize },
    Endless { delay: Duration },
    Malformed,
    StreamError { after: usize },
}

async fn run(conn: &mut Conn, kind: Kind, mut work: Work, b: Behavior) -> Outcome {
    let plan = match b {
        Behavior::Usage(usage) => {
            work = match work {
                Work::Text {
                    format,
                    content,
                    prompt_tokens,
                    max_tokens,
                    stream,
                } => Work::Text {
                    format: Box::new(ReportedUsage {
                        inner: format,
                        usage,
                    }),
                    content,
                    prompt_tokens,
                    max_tokens,
                    stream,
                },
                other => other,
            };
            Plan::Words {
                n: None,
                delay: Duration::ZERO,
            }
        }
        Behavior::Ok => Plan::Words {
            n: None,
            delay: Duration::ZERO,
        },
        Behavior::Status(status, retry_after) => {
            let mut r = error_reply(kind, status, "scripted failure of the mock upstream");
            if let Some(s) = retry_after {
                r = r.with_header("retry-after", s.to_string());
            }
            return conn.reply(&r).await;
        }
        Behavior::Redirect(to) => {
            let r = error_reply(kind, 307, "moved").with_header("location", to);
            return conn.reply(&r).await;
        }
        Behavior::Huge(n) => {
            let stream = matches!(work, Work::Text { stream: true, .. });
            return huge(conn, n, stream).await;
        }
        Behavior::Slow(d) => {
            conn.pause(d).await?;
            Plan::Words {
                n: None,
                delay: Duration::ZERO,
            }
        }
        Behavior::StreamChunks { n, delay } => Plan::Words { n: Some(n), delay },
        Behavior::ResetMidStream { after } => Plan::Cut { after },
        Behavior::Endless { delay } => Plan::Endless { delay },
        Behavior::Malformed => Plan::Malformed,
        Behavior::StreamError { after } => Plan::StreamError { after },
        Behavior::UsageForever { delay } => Plan::UsageForever { delay },
    };
    match work {
        Work::Reply(r) => other(conn, kind, r, plan).await,
        Work::Text {
            format,
            content,
            prompt_tokens,
            max_tokens,
            stream,
        } => {
            let answer = Answer {
                format: format.as_ref(),
                content: &content,
                prompt_tokens,
                max_tokens,
            };
            if stream {
                streamed_text(conn, answer, plan).await
            } else {
                plain_text(conn, kind, answer, plan).await
            }
        }
    }
}

/// [`Behavior::Usage`]: a format whose `usage` objects are replaced.
struct ReportedUsage {
    inner: Box<dyn TextFormat>,
    usage: Value,
}

impl TextFormat for ReportedUsage {
    fn plain(&self, text: &str, finish: Finish, tokens: Tokens) -> Value {
        let mut v = self.inner.plain(text, finish, tokens);
        v["usage"] = self.usage.clone();
        v
    }
    fn open(&self, prompt_tokens: u64) -> Vec<String> {
        self.inner.open(prompt_tokens)
    }
    fn piece(&self, text: &str) -> String {
        self.inner.piece(text)
    }
    fn close(&self, text: &str, finish: Finish, tokens: Tokens) -> Vec<String> {
        let swap = |frame: String| {
            let json = frame.strip_prefix("data: ").map(str::trim);
            match json.and_then(|j| serde_json::from_str::<Value>(j).ok()) {
                Some(mut v) if v.get("usage").is_some_and(|u| !u.is_null()) => {
                    v["usage"] = self.usage.clone();
                    data(&v)
                }
                _ => frame,
            }
        };
        self.inner
            .close(text, finish, tokens)
            .into_iter()
            .map(swap)
            .collect()
    }
    fn error_frame(&self) -> String {
        self.inner.error_frame()
    }
    fn headers(&self) -> Vec<(String, String)> {
        self.inner.headers()
    }
    fn choices(&self) -> u64 {
        self.inner.choices()
    }
}

/// [`Behavior::Huge`]: `n` bytes, 64 KiB a chunk.
async fn huge(conn: &mut Conn, n: u64, stream: bool) -> Outcome {
    const PIECE: usize = 64 << 10;
    let (fill, start): (u8, &[u8]) = if stream {
        conn.start_chunked("text/event-stream").await?;
        (b'x', b"data: ")
    } else {
        conn.start_chunked("application/json").await?;
        (b' ', b"")
    };
    conn.chunk(start).await?;
    let piece = vec![fill; PIECE];
    let mut sent = 0u64;
    while sent < n {
        let len = PIECE.min((n - sent) as usize);
        conn.chunk(&piece[..len]).await?;
        sent += len as u64;
    }
    conn.chunk(if stream { b"\n\n" } else { b"{}" }).await?;
    conn.end_events().await
}

/// A text answer to write: its format and words, and what bounds them.
#[derive(Clone, Copy)]
struct Answer<'a> {
    format: &'a dyn TextFormat,
    content: &'a Content,
    prompt_tokens: u64,
    max_tokens: Option<u64>,
}

impl Answer<'_> {
    /// The number of words and the finish reason of a normal answer: all
    /// of its words, or `max_tokens` of them.
    fn normal_length(&self) -> (usize, Finish) {
        let natural = self.content.natural_len();
        match self.max_tokens {
            Some(m) if (m as usize) < natural => (m as usize, Finish::Length),
            _ => (natural, Finish::Stop),
        }
    }

    /// Usage for `n` words in each choice.
    fn tokens(&self, n: usize) -> Tokens {
        Tokens {
            prompt: self.prompt_tokens,
            completion: n as u64 * self.format.choices(),
        }
    }
}

fn garbage_json() -> Reply {
    Reply {
        status: 200,
        content_type: "application/json".into(),
        headers: Vec::new(),
        body: b"{\"id\": \"mock-broken\", \"choices\": [{\"mess".to_vec(),
    }
}

fn scale(d: Duration, n: usize) -> Duration {
    d.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
}

async fn other(conn: &mut Conn, kind: Kind, r: Reply, plan: Plan) -> Outcome {
    match plan {
        Plan::Words { n, delay } => {
            conn.pause(scale(delay, n.unwrap_or(0))).await?;
            conn.reply(&r).await
        }
        Plan::UsageForever { .. } => conn.reply(&r).await,
        Plan::Cut { .. } => conn.reply_cut(&r).await,
        Plan::Endless { .. } => conn.hang().await,
        Plan::Malformed => conn.reply(&garbage_json()).await,
        Plan::StreamError { .. } => {
            conn.reply(&error_reply(kind, 500, "mock upstream error"))
                .await
        }
    }
}

async fn plain_text(conn: &mut Conn, kind: Kind, a: Answer<'_>, plan: Plan) -> Outcome {
    let body = |n: usize, finish: Finish| {
        let v = a.format.plain(&a.content.text(n), finish, a.tokens(n));
        let mut r = Reply::json(200, &v);
        r.headers = a.format.headers();
        r
    };
    match plan {
        Plan::Words { n: None, delay } | Plan::UsageForever { delay } => {
            let (n, finish) = a.normal_length();
            conn.pause(scale(delay, n)).await?;
            conn.reply(&body(n, finish)).await
        }
        Plan::Words { n: Some(n), delay } => {
            conn.pause(scale(delay, n)).await?;
            conn.reply(&body(n, Finish::Stop)).await
        }
        Plan::Cut { .. } => {
            let (n, finish) = a.normal_length();
            conn.reply_cut(&body(n, finish)).await
        }
        Plan::Endless { .. } => conn.hang().await,
        Plan::Malformed => conn.reply(&garbage_json()).await,
        Plan::StreamError { .. } => {
            conn.reply(&error_reply(kind, 500, "mock upstream error"))
                .await
        }
    }
}

async fn streamed_text(conn: &mut Conn, a: Answer<'_>, plan: Plan) -> Outcome {
    let (format, content, prompt_tokens) = (a.format, a.content, a.prompt_tokens);
    conn.start_events(&format.headers()).await?;
    for f in format.open(prompt_tokens) {
        conn.frame(&f).await?;
    }
    let (n, finish, delay) = match plan {
        Plan::Words { n: None, delay } => {
            let (n, finish) = a.normal_length();
            (n, finish, delay)
        }
        Plan::Words { n: Some(n), delay } => (n, Finish::Stop, delay),
        Plan::Cut { after } => {
            for i in 0..after {
                conn.frame(&format.piece(&content.piece(i))).await?;
            }
            return conn.cut().await;
        }
        Plan::UsageForever { delay } => loop {
            let usage = serde_json::json!({"object": "chat.completion.chunk", "choices": [],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0,
                    "total_tokens": prompt_tokens}});
            conn.frame(&data(&usage)).await?;
            conn.pause(delay).await?;
        },
        Plan::Endless { delay } => {
            let mut i = 0;
            loop {
                if i > 0 {
                    conn.pause(delay).await?;
                }
                conn.frame(&format.piece(&content.piece(i))).await?;
                i += 1;
            }
        }
        Plan::StreamError { after } => {
            for i in 0..after {
                conn.frame(&format.piece(&content.piece(i))).await?;
            }
            conn.frame(&format.error_frame()).await?;
            return conn.end_events().await;
        }
        Plan::Malformed => {
            conn.frame("data: {\"choices\": [{\"delta\": {\"content\": \"mo\n\n")
                .await?;
            conn.frame("data: this is not json\n\n").await?;
            return conn.end_events().await;
        }
    };
    for i in 0..n {
        if i > 0 {
            conn.pause(delay).await?;
        }
        conn.frame(&format.piece(&content.piece(i))).await?;
    }
    for f in format.close(&content.text(n), finish, a.tokens(n)) {
        conn.frame(&f).await?;
    }
    conn.end_events().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn stream_pieces_concatenate_to_the_plain_answer() {
        let joined: String = (0..5).map(|i| Content::Answer.piece(i)).collect();
        assert_eq!(joined, answer_text(5));
        assert_eq!(words(&joined), 5);
    }
}
