//! The checks that raise alert events, run by the scheduler off the
//! request path: for every webhook subscribed to an alert, its owner's
//! wallet (budget windows, balance) and request figures are read and
//! compared with what the webhook asks.
//!
//! Each alert instance is raised once, across nodes and restarts: its
//! deliveries are committed together with a "fired" mark created at
//! version 0, so of two checkers that see the same crossing only one
//! commit lands. A budget threshold's instance is its window (by start)
//! and percentage; a failure alert's, its window; a low balance's, the
//! time it stays low (the mark is removed when the balance is back at or
//! above the line, which re-arms it).
//!
//! `key.revoked` is not checked for: the revocation raises it
//! ([`key_revoked`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use oneflow::time::Millis;
use oneflow::webhook::{EventKind, failing, failure_window_start, thresholds_reached};

use super::outbox::{Event, enqueue};
use super::{FIRED_KIND, Stored};
use crate::error::BrokerError;
use crate::ids::now_ms;
use crate::store::{DocWrite, Store, StoreError};
use crate::usecase::{Services, blocking, budgets};
use crate::views::WalletView;

/// Webhooks looked at per run at most (in id order).
const MAX_CHECKED: usize = 10_000;
/// Marks of one webhook read per run for clean-up.
const MARKS_PER_RUN: usize = 100;

/// A raised alert's mark.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Fired {
    at: Millis,
    /// When the instance is over and the mark can go (`None`: a low
    /// balance's, which goes when the balance recovers).
    expires_at: Option<Millis>,
}

/// One scheduler run over every subscribed webhook.
pub(crate) async fn check(s: &Services) -> Result<(), String> {
    let store = s.store.clone();
    let hooks = blocking(move || super::all(&*store, MAX_CHECKED))
        .await
        .map_err(|e| e.to_string())?;
    let mut by_user: BTreeMap<String, Vec<Stored>> = BTreeMap::new();
    for h in hooks {
        let alerts = [
            EventKind::BudgetThreshold,
            EventKind::BalanceLow,
            EventKind::RequestFailures,
        ];
        if h.settings.events.iter().any(|e| alerts.contains(e)) {
            by_user.entry(h.user_id.clone()).or_default().push(h);
        }
    }
    let mut errors = Vec::new();
    for (user, hooks) in by_user {
        let wallet = match budgets::wallet(s, &user).await {
            Ok(w) => w,
            // A user gone since: nothing to watch.
            Err(BrokerError::NotFound(_)) => continue,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let store = s.store.clone();
        let max = s.config.webhooks.max_pending_per_user;
        let checked = blocking(move || {
            for h in &hooks {
                check_one(&*store, max, h, &wallet, now_ms())?;
            }
            Ok(())
        })
        .await;
        if let Err(e) = checked {
            errors.push(e.to_string());
        }
    }
    match errors.first() {
        None => Ok(()),
        Some(e) => Err(format!("{} users could not be checked: {e}", errors.len())),
    }
}

/// Raises what one webhook is owed now.
fn check_one(
    store: &dyn Store,
    max: u64,
    h: &Stored,
    wallet: &WalletView,
    now: Millis,
) -> Result<(), StoreError> {
    let wants = |k| h.settings.events.contains(&k);
    if wants(EventKind::BudgetThreshold) {
        for w in &wallet.windows {
            let Some(limit) = w.limit else { continue };
            let start = w.window.start(w.resets_at - 1);
            for pct in thresholds_reached(w.spent, limit) {
                let mark = format!("{}/budget/{}/{start}/{pct}", h.id, w.window.name());
                let data = json!({
                    "window": w.window,
                    "threshold_percent": pct,
                    "limit": limit,
                    "spent": w.spent,
                    "window_start": start,
                    "resets_at": w.resets_at,
                });
                raise(
                    store,
                    max,
                    h,
                    EventKind::BudgetThreshold,
                    data,
                    &mark,
                    Some(w.resets_at),
                )?;
            }
        }
    }
    if let (true, Some(line)) = (wants(EventKind::BalanceLow), h.settings.balance_below) {
        let mark = format!("{}/balance-low", h.id);
        if wallet.balance < line {
            let data = json!({"balance": wallet.balance, "balance_below": line});
            raise(store, max, h, EventKind::BalanceLow, data, &mark, None)?;
        } else if let Some(d) = store.doc(FIRED_KIND, &mark)? {
            // Back above the line: the next drop is a new crossing.
            store.write_docs(vec![DocWrite::delete(FIRED_KIND, &mark, d.version)])?;
        }
    }
    if wants(EventKind::RequestFailures) {
        let minutes = h.settings.failure_window_minutes;
        let start = failure_window_start(now, minutes);
        let end = start + Millis::from(minutes) * 60_000;
        let summary = store.summary(&h.user_id, Some((start, end)))?;
        let failed = summary
            .total_requests
            .saturating_sub(summary.total_successes);
        if failing(summary.total_requests, failed, h.settings.failure_rate) {
            let mark = format!("{}/failures/{start}", h.id);
            let data = json!({
                "window_start": start,
                "window_end": end,
                "requests": summary.total_requests,
                "failed": failed,
                "failure_rate": h.settings.failure_rate,
            });
            raise(
                store,
                max,
                h,
                EventKind::RequestFailures,
                data,
                &mark,
                Some(end),
            )?;
        }
    }
    clean_marks(store, h, now)
}

/// Raises `kind` once for the instance `mark` names.
fn raise(
    store: &dyn Store,
    max: u64,
    h: &Stored,
    kind: EventKind,
    data: serde_json::Value,
    mark: &str,
    expires_at: Option<Millis>,
) -> Result<(), StoreError> {
    if store.doc(FIRED_KIND, mark)?.is_some() {
        return Ok(());
    }
    let fired = Fired {
        at: now_ms(),
        expires_at,
    };
    let write = DocWrite::create(FIRED_KIND, mark, &fired)?;
    enqueue(
        store,
        max,
        &h.user_id,
        &[h],
        Event { kind, data },
        vec![write],
    )
    .map(|_| ())
}

/// Drops marks of instances that are over (a day after, for clocks that
/// differ between nodes), so they do not pile up window after window.
fn clean_marks(store: &dyn Store, h: &Stored, now: Millis) -> Result<(), StoreError> {
    let day = 86_400_000;
    for (id, d) in store.docs(FIRED_KIND, &format!("{}/", h.id), None, MARKS_PER_RUN)? {
        let f: Fired = d.decode()?;
        if f.expires_at.is_some_and(|e| e + day < now) {
            store.write_docs(vec![DocWrite::delete(FIRED_KIND, &id, d.version)])?;
        }
    }
    Ok(())
}

/// Raises `key.revoked` to the user's webhooks that subscribe to it, from
/// the revocation itself (after its commit). A failure here is logged and
/// does not undo the revocation.
pub(crate) async fn key_revoked(s: &Services, user_id: &str, key_id: &str, prefix: &str) {
    let store = s.store.clone();
    let max = s.config.webhooks.max_pending_per_user;
    let (user, data) = (
        user_id.to_string(),
        json!({"key_id": key_id, "prefix": prefix, "revoked_at": now_ms()}),
    );
    let done = blocking(move || {
        let hooks = super::of_user(&*store, &user)?;
        let to: Vec<&Stored> = hooks
            .iter()
            .filter(|h| h.settings.events.contains(&EventKind::KeyRevoked))
            .collect();
        if to.is_empty() {
            return Ok(());
        }
        let event = Event {
            kind: EventKind::KeyRevoked,
            data,
        };
        enqueue(&*store, max, &user, &to, event, Vec::new()).map(|_| ())
    })
    .await;
    if let Err(e) = done {
        eprintln!("oneflow: key.revoked for user {user_id} not queued: {e}");
    }
}
