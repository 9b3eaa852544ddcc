//! The outbox: an event becomes one delivery document per webhook,
//! committed before anything is sent; a scheduler task sends the due ones.
//!
//! Each attempt is claimed first: the pending document is moved, by a
//! compare-and-set on its version, to a lease a little past the send's
//! timeout, and the attempt counted. Of two nodes that read the same due
//! delivery only one claim lands, so no attempt is sent twice; a node that
//! dies mid-send leaves the lease, which comes due again (at-least-once:
//! receivers dedupe by the `OneFlow-Delivery` header). After the answer
//! the claimant records it and either drops the pending document
//! (delivered, or given up after `retry_for_hours`) or moves it to the
//! next retry.
//!
//! Bounds: each user has at most `max_pending_per_user` pending
//! deliveries, counted in one document changed with them; a new event
//! that would pass it is refused (dropped and logged), never an older
//! one, so what is already queued keeps its order. A webhook's log keeps
//! its last `LOG_KEEP` deliveries plus any still pending.

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use oneflow::time::Millis;
use oneflow::webhook::{DeliveryStatus, DeliveryView, EventKind, LOG_KEEP, backoff_ms, signature};

use super::{BACKLOG_KIND, CAS_TRIES, DELIVERY_KIND, FIRED_KIND, KIND, PENDING_KIND, Stored};
use crate::ids::{new_id, now_ms, random_hex};
use crate::store::{DocWrite, Store, StoreError};
use crate::usecase::{Services, blocking};

/// Deliveries sent per run at most.
const PER_RUN: usize = 100;
/// Deliveries sent at once within a run.
const AT_ONCE: usize = 16;
/// How long one attempt may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A claim's lease: the send's timeout and room to record its outcome.
/// A claim older than this is taken to have died with its node.
const LEASE_MS: Millis = 30_000;
/// Longest error text kept for an attempt.
const MAX_ERROR_CHARS: usize = 300;

/// A delivery as stored: what its log shows and what is sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Delivery {
    #[serde(flatten)]
    view: DeliveryView,
    webhook_id: String,
    user_id: String,
    /// The exact bytes sent every attempt (the signature covers them).
    body: String,
}

/// A delivery still to send; its id says when it is due.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    /// The `webhook-delivery` document's id.
    record: String,
    user_id: String,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Backlog {
    pending: u64,
}

fn pending_id(due: Millis, delivery: &str) -> String {
    format!("{:016x}/{delivery}", due.max(0))
}

fn due_of(pending_id: &str) -> Option<Millis> {
    let hex = pending_id.split('/').next()?;
    i64::from_str_radix(hex, 16).ok()
}

/// Newest first in id order: the time counted down from the largest.
fn record_id(webhook: &str, created: Millis, delivery: &str) -> String {
    let inverted = u64::MAX - u64::try_from(created).unwrap_or(0);
    format!("{webhook}/{inverted:016x}{delivery}")
}

/// One event to send to some of a user's webhooks.
pub(crate) struct Event {
    pub(crate) kind: EventKind,
    pub(crate) data: serde_json::Value,
}

/// Writes one delivery per webhook in `hooks` (all of `user_id`), with
/// `extra` in the same commit (an alert's "fired" mark, which makes the
/// whole event happen once). `Ok(false)` if `extra` could not be written
/// because another writer got there first (the event was raised there).
/// Blocking: call through `blocking`.
pub(crate) fn enqueue(
    store: &dyn Store,
    max_pending: u64,
    user_id: &str,
    hooks: &[&Stored],
    event: Event,
    extra: Vec<DocWrite>,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let event_id = new_id("evt");
    let body = json!({
        "id": event_id,
        "type": event.kind,
        "created_at": now,
        "data": event.data,
    })
    .to_string();
    let mut docs = Vec::new();
    for hook in hooks {
        let id = new_id("dlv");
        let record = record_id(&hook.id, now, &id);
        let delivery = Delivery {
            view: DeliveryView {
                id: id.clone(),
                event_id: event_id.clone(),
                event: event.kind,
                status: DeliveryStatus::Pending,
                attempts: 0,
                last_status: None,
                last_error: None,
                created_at: now,
                last_attempt_at: None,
                next_attempt_at: Some(now),
            },
            webhook_id: hook.id.clone(),
            user_id: user_id.to_string(),
            body: body.clone(),
        };
        let pending = Pending {
            record: record.clone(),
            user_id: user_id.to_string(),
        };
        docs.push(DocWrite::create(DELIVERY_KIND, &record, &delivery)?);
        docs.push(DocWrite::create(
            PENDING_KIND,
            &pending_id(now, &id),
            &pending,
        )?);
    }
    let count = hooks.len() as u64;
    for _ in 0..CAS_TRIES {
        let (version, backlog) = read_backlog(store, user_id)?;
        let mut writes = extra.clone();
        if backlog.pending + count > max_pending {
            eprintln!(
                "oneflow: webhook event {} of user {user_id} refused: {} deliveries already pending (webhooks.max_pending_per_user)",
                event.kind.name(),
                backlog.pending
            );
        } else {
            let next = Backlog {
                pending: backlog.pending + count,
            };
            writes.push(DocWrite::replace(BACKLOG_KIND, user_id, version, &next)?);
            writes.extend(docs.iter().cloned());
        }
        if writes.is_empty() || store.write_docs(writes)? {
            for hook in hooks {
                prune(store, &hook.id)?;
            }
            return Ok(true);
        }
        // Lost a race: on a mark someone else wrote (the event is theirs),
        // or on the backlog count (read it again).
        for w in &extra {
            if w.expected == 0 && store.doc(&w.kind, &w.id)?.is_some() {
                return Ok(false);
            }
        }
    }
    Err(StoreError::Backend(
        "webhook backlog kept changing; event not queued".into(),
    ))
}

fn read_backlog(store: &dyn Store, user_id: &str) -> Result<(u64, Backlog), StoreError> {
    Ok(match store.doc(BACKLOG_KIND, user_id)? {
        Some(d) => (d.version, d.decode()?),
        None => (0, Backlog::default()),
    })
}

/// Drops a webhook's delivered and failed deliveries past the newest
/// [`LOG_KEEP`] (a few per call: the log grows one event at a time).
fn prune(store: &dyn Store, webhook: &str) -> Result<(), StoreError> {
    let page = store.docs(DELIVERY_KIND, &format!("{webhook}/"), None, LOG_KEEP + 20)?;
    let mut drop = Vec::new();
    for (id, d) in page.into_iter().skip(LOG_KEEP) {
        if d.decode::<Delivery>()?.view.status != DeliveryStatus::Pending {
            drop.push(DocWrite::delete(DELIVERY_KIND, &id, d.version));
        }
    }
    // One at a time: a delete that lost to a claimant's write is skipped.
    for w in drop {
        store.write_docs(vec![w])?;
    }
    Ok(())
}

/// A deleted webhook's log and alert marks (its pending deliveries stay,
/// to be closed as `failed` and leave the backlog count right).
pub(super) fn forget(store: &dyn Store, webhook: &str) -> Result<(), StoreError> {
    let prefix = format!("{webhook}/");
    for (id, d) in store.docs(DELIVERY_KIND, &prefix, None, LOG_KEEP + 20)? {
        if d.decode::<Delivery>()?.view.status != DeliveryStatus::Pending {
            store.write_docs(vec![DocWrite::delete(DELIVERY_KIND, &id, d.version)])?;
        }
    }
    for (id, d) in store.docs(FIRED_KIND, &prefix, None, 1000)? {
        store.write_docs(vec![DocWrite::delete(FIRED_KIND, &id, d.version)])?;
    }
    Ok(())
}

/// The log of one webhook, newest first.
pub(super) fn log(store: &dyn Store, webhook: &str) -> Result<Vec<DeliveryView>, StoreError> {
    let page = store.docs(DELIVERY_KIND, &format!("{webhook}/"), None, LOG_KEEP)?;
    page.into_iter()
        .map(|(_, d)| Ok(d.decode::<Delivery>()?.view))
        .collect()
}

/// One scheduler run: sends up to [`PER_RUN`] due deliveries,
/// [`AT_ONCE`] at a time.
pub(crate) async fn deliver_due(s: &Services, client: &reqwest::Client) -> Result<(), String> {
    let now = now_ms();
    let store = s.store.clone();
    let due = blocking(move || store.docs(PENDING_KIND, "", None, PER_RUN))
        .await
        .map_err(|e| e.to_string())?;
    let due: Vec<_> = due
        .into_iter()
        .filter(|(id, _)| due_of(id).is_some_and(|t| t <= now))
        .collect();
    let failures: Vec<String> = futures_util::stream::iter(due)
        .map(|(id, doc)| async move { attempt(s, client, id, doc.version).await })
        .buffer_unordered(AT_ONCE)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    match failures.first() {
        None => Ok(()),
        Some(e) => Err(format!(
            "{} deliveries could not be recorded: {e}",
            failures.len()
        )),
    }
}

/// What an attempt came to.
enum Outcome {
    Answered(u16),
    NoAnswer(String),
}

/// Claims, sends and records one attempt of the pending document `id`.
async fn attempt(
    s: &Services,
    client: &reqwest::Client,
    id: String,
    version: u64,
) -> Result<(), String> {
    let store = s.store.clone();
    let retry_for = s.config.webhooks.retry_for_ms();
    let claimed = blocking(move || claim(&*store, &id, version, retry_for))
        .await
        .map_err(|e| e.to_string())?;
    let Some(c) = claimed else { return Ok(()) };
    let now = now_ms();
    let t = now.div_euclid(1000);
    let signature = signature::header(&c.hook.secrets(now), t, c.delivery.body.as_bytes());
    let sent = client
        .post(&c.hook.settings.url)
        .timeout(SEND_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, "OneFlow-Webhooks")
        .header(signature::HEADER, signature)
        .header("OneFlow-Delivery", &c.delivery.view.id)
        .header("OneFlow-Event", c.delivery.view.event.name())
        .body(c.delivery.body.clone())
        .send()
        .await;
    let outcome = match sent {
        Ok(r) => Outcome::Answered(r.status().as_u16()),
        Err(e) => Outcome::NoAnswer(error_text(&e)),
    };
    let store = s.store.clone();
    blocking(move || record(&*store, c, outcome, retry_for))
        .await
        .map_err(|e| e.to_string())
}

/// An error with its causes (reqwest's own text hides the one that says
/// a host resolves only to private addresses).
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text.chars().take(MAX_ERROR_CHARS).collect()
}

/// A claimed attempt: the lease's pending id and the record's version.
struct Claim {
    lease: String,
    record: String,
    record_version: u64,
    delivery: Delivery,
    hook: Stored,
}

/// Takes the attempt: moves the pending document to a lease and counts
/// the attempt, all or nothing. `None` if another node took it first, or
/// if it needed no sending (its webhook is gone, or its time is up: then
/// it is closed as failed here).
fn claim(
    store: &dyn Store,
    id: &str,
    version: u64,
    retry_for: Millis,
) -> Result<Option<Claim>, StoreError> {
    let Some(doc) = store.doc(PENDING_KIND, id)? else {
        return Ok(None);
    };
    if doc.version != version {
        return Ok(None);
    }
    let pending: Pending = doc.decode()?;
    let Some(rec) = store.doc(DELIVERY_KIND, &pending.record)? else {
        // Nothing to send; drop the pointer and its count.
        let gone = vec![DocWrite::delete(PENDING_KIND, id, version)];
        finish(store, &pending.user_id, gone)?;
        return Ok(None);
    };
    let mut delivery: Delivery = rec.decode()?;
    let now = now_ms();
    let hook = match store.doc(KIND, &delivery.webhook_id)? {
        Some(h) => Some(h.decode::<Stored>()?),
        None => None,
    };
    let hook_gone = hook.is_none();
    let give_up = match &hook {
        None => Some("the webhook was deleted"),
        Some(_) if now > delivery.view.created_at + retry_for => Some("retry_for_hours passed"),
        Some(_) => None,
    };
    let (Some(hook), None) = (hook, give_up) else {
        delivery.view.status = DeliveryStatus::Failed;
        delivery.view.last_error = give_up.map(str::to_string);
        delivery.view.next_attempt_at = None;
        // A deleted webhook's log is gone with it: its last records too.
        let closed = if hook_gone {
            DocWrite::delete(DELIVERY_KIND, &pending.record, rec.version)
        } else {
            DocWrite::replace(DELIVERY_KIND, &pending.record, rec.version, &delivery)?
        };
        let writes = vec![DocWrite::delete(PENDING_KIND, id, version), closed];
        finish(store, &pending.user_id, writes)?;
        return Ok(None);
    };
    let lease = pending_id(now + LEASE_MS, &delivery.view.id);
    delivery.view.attempts += 1;
    delivery.view.last_attempt_at = Some(now);
    delivery.view.next_attempt_at = Some(now + LEASE_MS);
    let writes = vec![
        DocWrite::delete(PENDING_KIND, id, version),
        DocWrite::create(PENDING_KIND, &lease, &pending)?,
        DocWrite::replace(DELIVERY_KIND, &pending.record, rec.version, &delivery)?,
    ];
    if !store.write_docs(writes)? {
        return Ok(None);
    }
    Ok(Some(Claim {
        lease,
        record: pending.record,
        record_version: rec.version + 1,
        delivery,
        hook,
    }))
}

/// Records an attempt's outcome under its claim: delivered, given up, or
/// due again after the backoff.
fn record(
    store: &dyn Store,
    c: Claim,
    outcome: Outcome,
    retry_for: Millis,
) -> Result<(), StoreError> {
    let now = now_ms();
    let mut d = c.delivery;
    let ok = match &outcome {
        Outcome::Answered(code) => {
            d.view.last_status = Some(*code);
            d.view.last_error = None;
            (200..300).contains(code)
        }
        Outcome::NoAnswer(e) => {
            d.view.last_status = None;
            d.view.last_error = Some(e.clone());
            false
        }
    };
    let record = c.record;
    let mut writes = vec![DocWrite::delete(PENDING_KIND, &c.lease, 1)];
    let next = now + backoff_ms(d.view.attempts, jitter());
    let closes = if ok {
        d.view.status = DeliveryStatus::Delivered;
        d.view.next_attempt_at = None;
        true
    } else if next > d.view.created_at + retry_for {
        d.view.status = DeliveryStatus::Failed;
        d.view.next_attempt_at = None;
        true
    } else {
        d.view.next_attempt_at = Some(next);
        let pending = Pending {
            record: record.clone(),
            user_id: d.user_id.clone(),
        };
        writes.push(DocWrite::create(
            PENDING_KIND,
            &pending_id(next, &d.view.id),
            &pending,
        )?);
        false
    };
    writes.push(DocWrite::replace(
        DELIVERY_KIND,
        &record,
        c.record_version,
        &d,
    )?);
    if closes {
        finish(store, &d.user_id, writes)
    } else {
        // A lost write means the lease ran out and another node holds the
        // delivery now: its outcome stands.
        store.write_docs(writes).map(|_| ())
    }
}

/// Applies `writes`, which close one pending delivery of `user_id`, with
/// the backlog count one lower. Gives up quietly when `writes` themselves
/// no longer apply (another node's lease took over).
fn finish(store: &dyn Store, user_id: &str, writes: Vec<DocWrite>) -> Result<(), StoreError> {
    for _ in 0..CAS_TRIES {
        let (version, backlog) = read_backlog(store, user_id)?;
        let next = Backlog {
            pending: backlog.pending.saturating_sub(1),
        };
        let mut all = writes.clone();
        all.push(DocWrite::replace(BACKLOG_KIND, user_id, version, &next)?);
        if store.write_docs(all)? {
            return Ok(());
        }
        if read_backlog(store, user_id)?.0 == version {
            return Ok(());
        }
    }
    Err(StoreError::Backend(
        "webhook backlog kept changing; outcome not recorded".into(),
    ))
}

/// A fraction in [0, 1) for the backoff's jitter.
fn jitter() -> f64 {
    let hex = random_hex(4);
    u32::from_str_radix(&hex, 16).map_or(0.0, |r| f64::from(r) / (f64::from(u32::MAX) + 1.0))
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
