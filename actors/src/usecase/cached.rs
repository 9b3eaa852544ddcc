//! The response cache on the request path (docs/cache.md): a request that
//! uses it is fingerprinted (the wallet, its routing constraints and every
//! field of its body that changes the answer, serialised canonically and
//! hashed); a stored answer is served as a request of its own, held and
//! settled at `[cache] price` through the wallet like any other and
//! recorded as `cached`; a miss runs the request and stores a succeeded,
//! whole answer. Streams are replayed from the stored text, and a stream
//! that ended normally fills the cache as a whole answer does.
//!
//! Nothing here runs unless `[cache] enabled` and the request or its key
//! asked for the cache: the request path of everyone else is unchanged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use oneflow::cache::CacheMode;
use oneflow::pricing::{Modality, Usage};
use oneflow::records::RequestStatus;
use oneflow::request::Plan;
use oneflow::routing::{Constraints, Route, serves};

use super::held::{Ending, Held, finish, outcome_of};
use super::job::RequestJob;
use super::request::{self, Answer};
use super::stream::{self, StreamEvent, StreamStart};
use super::{Services, scopes};
use crate::error::BrokerError;
use crate::ids::{new_request_id, now_ms};
use crate::metrics;
use crate::provider::Output;
use crate::wallet::{Reserve, Reserved, Settlement};

/// What the cache did for one request, for the `x-oneflow-cache` header
/// and the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    /// Answered from the cache; no provider was called.
    Hit,
    /// Not in the cache: answered upstream (and stored if it succeeded).
    Miss,
    /// The request or its key forbade the cache: answered upstream,
    /// nothing stored.
    Bypass,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// Body fields that never change the answer, left out of the fingerprint:
/// how it is delivered (`stream`, `stream_options`), who asks (`user`,
/// `metadata`, `store`) and how it is routed or priced (`oneflow`,
/// `strategy`, `max_price`; the providers and region it may go to are
/// taken from the job's constraints instead, since they decide who
/// answers).
const NOT_IN_KEY: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "oneflow",
    "strategy",
    "max_price",
    "provider",
    "region",
];

/// What is stored for one answer: enough to answer it again whole or as a
/// stream.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// The provider that made it: the hit's record names it.
    provider: String,
    output: Output,
    /// The usage the answer took to make, repeated in the hit's body.
    usage: Usage,
    /// When it stops being served (ms since the epoch), when the request
    /// that stored it asked for less than `[cache] ttl_seconds`: the
    /// in-process cache has one lifetime for every entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

/// Where one request's answer is looked up and stored: its fingerprint
/// ([`fingerprint`]) and, if the request asked for it
/// (`x-oneflow-cache-ttl`), a life shorter than `[cache] ttl_seconds`.
#[derive(Clone, Debug)]
pub struct Slot {
    pub key: String,
    pub ttl: Option<Duration>,
}

/// Whether the cache applies to a request of `job`'s key with `header`:
/// `None` when the cache is off.
pub(crate) fn mode(
    s: &Services,
    job_key: Option<CacheMode>,
    header: Option<CacheMode>,
) -> Option<CacheMode> {
    oneflow::cache::decide(&s.config.cache, job_key, header)
}

/// The request's fingerprint: hex SHA-256 over the endpoint `kind`, the
/// paying wallet (answers are never shared across wallets: a prompt may
/// hold what only its sender may read back), the constraints that decide
/// who answers, and the body's fields in canonical form (object keys
/// sorted, top-level nulls as absent, numbers as written).
pub(crate) fn fingerprint(kind: &str, wallet: &str, c: &Constraints, body: &Value) -> String {
    let mut h = Sha256::new();
    h.update(b"oneflow-cache-1\0");
    for part in [kind, wallet] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    let mut providers: Vec<&str> = c.providers.iter().map(String::as_str).collect();
    providers.sort_unstable();
    h.update(providers.join(",").as_bytes());
    h.update(b"\0");
    if let Some(r) = &c.region {
        feed(&mut h, &serde_json::to_value(r).unwrap_or(Value::Null));
    }
    h.update(b"\0");
    if let Value::Object(m) = body {
        let mut keys: Vec<&String> = m
            .iter()
            .filter(|(k, v)| !v.is_null() && !NOT_IN_KEY.contains(&k.as_str()))
            .map(|(k, _)| k)
            .collect();
        keys.sort_unstable();
        for k in keys {
            feed(&mut h, &Value::String(k.clone()));
            h.update(b":");
            feed(&mut h, &m[k]);
            h.update(b",");
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds a value in canonical form: objects by sorted key, the rest as
/// serde_json writes it (strings escaped, numbers as their text).
fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            h.update(b"{");
            for k in keys {
                feed(h, &Value::String(k.clone()));
                h.update(b":");
                feed(h, &m[k]);
                h.update(b",");
            }
            h.update(b"}");
        }
        Value::Array(a) => {
            h.update(b"[");
            for x in a {
                feed(h, x);
                h.update(b",");
            }
            h.update(b"]");
        }
        other => h.update(other.to_string().as_bytes()),
    }
}

/// The `model` label: the model if a configured provider serves it (the
/// label stays low-cardinality), else `other`.
fn label<'a>(s: &Services, model: &'a str) -> &'a str {
    if s.providers.iter().any(|h| serves(&h.config, model)) {
        model
    } else {
        "other"
    }
}

/// The stored entry under `key`, if one is there and reads.
async fn lookup(s: &Services, key: &str) -> Option<Entry> {
    let bytes = s.cache.as_ref()?.get(key).await?;
    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
    entry
        .expires_at
        .is_none_or(|t| now_ms() < t)
        .then_some(entry)
}

/// Stores a succeeded answer, unless it is larger than
/// `[cache] max_entry_bytes` or of a kind the cache does not keep.
async fn fill(s: &Services, slot: Slot, provider: String, output: Output, usage: Usage) {
    let Some(cache) = s.cache.as_ref() else {
        return;
    };
    if !matches!(output, Output::Text { .. } | Output::Choices(_)) {
        return;
    }
    // A life longer than the configured one is cut to it.
    let ttl = slot.ttl.map(|t| t.min(s.config.cache.ttl()));
    let entry = Entry {
        provider,
        output,
        usage,
        expires_at: ttl.map(|t| now_ms().saturating_add(t.as_millis() as i64)),
    };
    let Ok(bytes) = serde_json::to_vec(&entry) else {
        return;
    };
    if bytes.len() as u64 > s.config.cache.max_entry_bytes {
        metrics::cache_fill("too_large");
        return;
    }
    cache.put(slot.key, bytes, ttl).await;
    metrics::cache_fill("stored");
}

/// Runs a job to its whole answer through the cache (`mode` from [`mode`]).
pub(crate) async fn run(
    s: &Arc<Services>,
    user_id: &str,
    job: RequestJob,
    mode: CacheMode,
    slot: Slot,
) -> Result<(Answer, CacheResult), BrokerError> {
    let model = label(s, &job.model).to_string();
    if mode == CacheMode::Bypass {
        metrics::cache_request(&model, "bypass");
        return Ok((request::run(s, user_id, job).await?, CacheResult::Bypass));
    }
    if let Some(entry) = lookup(s, &slot.key).await {
        if let Some((mut outcome, replayed, kept)) = serve(s, user_id, &job, &entry).await? {
            metrics::cache_request(&model, "hit");
            // The body repeats the usage the answer took to make; the
            // record keeps none, since no provider was called.
            let output = if replayed {
                kept
            } else {
                outcome.usage = entry.usage;
                Some(entry.output)
            };
            let answer = Answer {
                outcome,
                output,
                replayed,
            };
            return Ok((answer, CacheResult::Hit));
        }
    }
    metrics::cache_request(&model, "miss");
    let a = request::run(s, user_id, job).await?;
    if !a.replayed && a.outcome.status == RequestStatus::Succeeded {
        if let Some(out) = &a.output {
            let o = &a.outcome;
            fill(s, slot, o.provider.clone(), out.clone(), o.usage).await;
        }
    }
    Ok((a, CacheResult::Miss))
}

/// A hit's outcome, whether it was an idempotent replay, and the replay's
/// own output.
type Served = (crate::views::RequestOutcome, bool, Option<Output>);

/// Serves a stored answer as a request of its own: a hold of `[cache]
/// price` on the wallet (its budgets and the key's scope apply as to any
/// request), settled at once and recorded as cached. `None` when the
/// key's scope does not allow the provider that made the answer: then
/// it is a miss.
async fn serve(
    s: &Arc<Services>,
    user_id: &str,
    job: &RequestJob,
    entry: &Entry,
) -> Result<Option<Served>, BrokerError> {
    scopes::check(s, job)?;
    if !scopes::allowed(job.key.as_deref(), &entry.provider) {
        return Ok(None);
    }
    let price = s.config.cache.price;
    let plan = Plan {
        provider: entry.provider.clone(),
        modality: Modality::Text,
        max_usage: Usage::default(),
        size: None,
        quote: price,
    };
    let request_id = new_request_id();
    let now = now_ms();
    let reserve = Reserve {
        request_id: request_id.clone(),
        provider: entry.provider.clone(),
        amount: price,
        spenders: job.spenders.clone(),
        key: job.key.clone(),
        idem: job.idem.clone(),
        model: job.model.clone(),
        modality: Modality::Text,
        prompt_preview: job.preview.clone(),
        now,
    };
    let held = RequestJob {
        model: job.model.clone(),
        preview: job.preview.clone(),
        op: job.op.clone(),
        // Never asked: a hit is not routed.
        planner: Box::new(|_: &oneflow::config::ProviderConfig| {
            Err(oneflow::request::RequestError::EmptyPrompt)
        }),
        constraints: Constraints::default(),
        strategy: job.strategy,
        idem: job.idem.clone(),
        spenders: job.spenders.clone(),
        member: job.member.clone(),
        key: job.key.clone(),
        // A hit is still the key's request: figures split by key count it.
        key_id: job.key_id.clone(),
    };
    let output = entry.output.clone();
    let this = s.clone();
    let user_id = user_id.to_string();
    let route = Route {
        strategy: job.strategy.unwrap_or(s.config.routing.strategy),
        ranking: Vec::new(),
        explanation: format!("cache hit: the answer {} gave earlier", entry.provider),
        // Not routed, so no experiment's variant: a hit is not counted in one.
        experiment: None,
        request_id: None,
    };
    // Detached, as every held request is: a client that goes away cannot
    // strand the hold or stop the settle.
    let served = actix_rt::spawn(async move {
        let started = Instant::now();
        let hold_id = match this.wallets.reserve(&user_id, reserve).await? {
            Reserved::Held { hold_id } => hold_id,
            Reserved::Replay(v) => return replay(&v),
            Reserved::Wait(rx) => {
                let v = rx.await.map_err(|_| {
                    BrokerError::Unavailable("the original request did not finish".into())
                })?;
                return replay(&v);
            }
        };
        let h = Held {
            user_id,
            job: held,
            route,
            plans: vec![plan.clone()],
            hold: price,
            request_id,
            hold_id,
            created_at: now,
            started,
        };
        let mut outcome = outcome_of(&h, &plan, started);
        outcome.response = Some(output.summary());
        let end = Ending {
            answer: super::held::replay_answer(&this, &h, Some(&output)),
            outcome,
            attempts: Vec::new(),
            cached: true,
        };
        let o = finish(
            &this,
            &h,
            Settlement::Charge(price),
            end,
            &plan,
            Duration::ZERO,
        )
        .await?;
        Ok((o, false, None))
    })
    .await
    .map_err(|e| BrokerError::Unavailable(format!("request task failed: {e}")))??;
    Ok(Some(served))
}

/// An idempotent replay met on a hit: the first answer for that key.
fn replay(record: &crate::store::IdempotencyRecord) -> Result<Served, BrokerError> {
    let a = request::replayed(record)?;
    Ok((a.outcome, true, a.output))
}

/// Starts a streamed job through the cache: a hit is replayed from the
/// stored text; a miss streams upstream and, once its stream ended
/// normally with text alone, stores it.
pub(crate) async fn stream(
    s: &Arc<Services>,
    user_id: &str,
    job: RequestJob,
    mode: CacheMode,
    slot: Slot,
) -> Result<(StreamStart, CacheResult), BrokerError> {
    let model = label(s, &job.model).to_string();
    // A stream takes no Idempotency-Key; `stream::start` says so.
    if mode == CacheMode::Bypass || job.idem.is_some() {
        metrics::cache_request(&model, "bypass");
        return Ok((stream::start(s, user_id, job).await?, CacheResult::Bypass));
    }
    if let Some(entry) = lookup(s, &slot.key).await {
        if let Output::Text {
            text,
            finish_reason,
        } = &entry.output
        {
            let (text, finish_reason) = (text.clone(), finish_reason.clone());
            if let Some((o, _, _)) = serve(s, user_id, &job, &entry).await? {
                metrics::cache_request(&model, "hit");
                return Ok((
                    replayed_stream(o, &text, finish_reason, entry.usage),
                    CacheResult::Hit,
                ));
            }
        }
    }
    metrics::cache_request(&model, "miss");
    let start = stream::start(s, user_id, job).await?;
    Ok((relay(s, start, slot), CacheResult::Miss))
}

/// A stored answer as a stream: its text in pieces (a word and the space
/// after it each), then the end, all queued at once.
fn replayed_stream(
    o: crate::views::RequestOutcome,
    text: &str,
    finish_reason: String,
    usage: Usage,
) -> StreamStart {
    let mut pieces: Vec<String> = Vec::new();
    let mut piece = String::new();
    for c in text.chars() {
        if !c.is_whitespace() && piece.ends_with(char::is_whitespace) {
            pieces.push(std::mem::take(&mut piece));
        }
        piece.push(c);
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    let (tx, rx) = mpsc::channel(pieces.len() + 1);
    for p in pieces {
        let _ = tx.try_send(StreamEvent::Delta(p));
    }
    let _ = tx.try_send(StreamEvent::End {
        finish_reason,
        stopped: None,
        message: None,
        usage,
        cost: o.cost,
    });
    StreamStart {
        request_id: o.request_id,
        provider: o.provider,
        model: o.model,
        route: o.route,
        quote: o.quote,
        events: rx,
    }
}

/// Passes a missed stream's events on to the client, keeping its text;
/// a stream that ended normally with text alone (no tool calls, no
/// thinking) is stored. A client that goes away or stalls ends the relay,
/// which ends the upstream stream as it would have.
fn relay(s: &Arc<Services>, start: StreamStart, slot: Slot) -> StreamStart {
    let (tx, rx) = mpsc::channel(8);
    let StreamStart {
        request_id,
        provider,
        model,
        route,
        quote,
        events: mut inner,
    } = start;
    let this = s.clone();
    let stall = Duration::from_secs(s.config.server.client_stall_secs);
    let who = provider.clone();
    actix_rt::spawn(async move {
        let mut text = String::new();
        let mut plain = true;
        loop {
            let event = tokio::select! {
                e = inner.recv() => e,
                _ = tx.closed() => break,
            };
            let Some(event) = event else { break };
            let stored = match &event {
                StreamEvent::Delta(d) => {
                    text.push_str(d);
                    None
                }
                StreamEvent::ToolCall(_) | StreamEvent::Thinking(_) => {
                    plain = false;
                    None
                }
                StreamEvent::End {
                    finish_reason,
                    stopped: None,
                    usage,
                    ..
                } if plain => Some((finish_reason.clone(), *usage)),
                StreamEvent::End { .. } => None,
            };
            let sent = matches!(
                tokio::time::timeout(stall, tx.send(event)).await,
                Ok(Ok(()))
            );
            if let Some((finish_reason, usage)) = stored {
                let output = Output::Text {
                    text: std::mem::take(&mut text),
                    finish_reason,
                };
                fill(&this, slot, who, output, usage).await;
                break;
            }
            if !sent {
                break;
            }
        }
    });
    StreamStart {
        request_id,
        provider,
        model,
        route,
        quote,
        events: rx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(wallet: &str, body: Value) -> String {
        fingerprint("chat", wallet, &Constraints::default(), &body)
    }

    #[test]
    fn the_fingerprint_is_the_fields_that_change_the_answer() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5});
        let same = json!({"temperature": 0.5, "stream": true, "user": "u", "seed": null,
            "messages": [{"content": "hi", "role": "user"}], "model": "m"});
        assert_eq!(key("w", base.clone()), key("w", same));
        let mut hotter = base.clone();
        hotter["temperature"] = json!(0.9);
        assert_ne!(key("w", base.clone()), key("w", hotter));
        let mut seeded = base.clone();
        seeded["seed"] = json!(7);
        assert_ne!(key("w", base.clone()), key("w", seeded));
        assert_ne!(key("w", base.clone()), key("v", base.clone()));
        let only_a = Constraints {
            providers: vec!["a".into()],
            ..Constraints::default()
        };
        assert_ne!(
            key("w", base.clone()),
            fingerprint("chat", "w", &only_a, &base)
        );
        assert_ne!(
            key("w", base.clone()),
            fingerprint("request", "w", &Constraints::default(), &base)
        );
    }
}
