//! Budget alerts by e-mail, run by the scheduler's `email-budget-alerts`
//! task: every wallet with a budget is looked at, and when spend in one of
//! its windows reaches a percentage of `[email] budget_alerts`, its
//! recipients (`mail::recipients`: the user, or a team's admins and
//! billing members) get one message for that window.
//!
//! Once across nodes and restarts, as reports are: each window instance
//! has one mark, `budget-mail/<user>/<window>/<window start>`, holding the
//! highest percentage mailed. It is claimed by compare-and-set (created at
//! version 0, or replaced at the version read) before the message goes, so
//! of two nodes only one sends; a failed send is retried by a later run,
//! up to [`MAX_ATTEMPTS`] sends for that percentage. Spend is what settled
//! (`WindowView::spent`), not what is held: a hold that is released
//! costs nothing and should alarm nobody.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{MultiPart, SinglePart};
use serde::{Deserialize, Serialize};

use oneflow::budget_alert::{BudgetAlert, reached};
use oneflow::time::Millis;

use super::{ADMIN_ID, Services, blocking, budgets, mail, teams};
use crate::error::BrokerError;
use crate::ids::now_ms;
use crate::store::DocWrite;

/// The document kind of the marks.
pub const MARK_KIND: &str = "budget-mail";
/// Sends of one alert before it is given up.
pub const MAX_ATTEMPTS: u32 = 3;
/// Wallets with a budget looked at per run at most (in id order).
const MAX_CHECKED: usize = 10_000;
/// A mark outlives its window by this much (clocks differ between
/// nodes), then goes.
const KEEP_AFTER_RESET: Millis = 86_400_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Mark {
    /// The highest percentage claimed for this window instance.
    percent: u8,
    /// `sending`, `sent` or `failed`.
    state: String,
    /// Sends of `percent` so far.
    attempts: u32,
    resets_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Starts the scheduler's `email-budget-alerts` task when an SMTP server
/// is configured and `[email] budget_alerts` lists a percentage.
pub(crate) fn schedule(services: &Arc<Services>) {
    let e = &services.config.email;
    if !e.enabled() || e.budget_alerts.is_empty() {
        return;
    }
    let every = Duration::from_secs(e.check_every_secs);
    super::every(services, "email-budget-alerts", every, |s| async move {
        run(&s).await
    });
}

/// One run: checks each budgeted wallet, sends what is due, at most
/// `email.max_per_run` messages. Errors name how many sends failed.
pub(crate) async fn run(s: &Services) -> Result<(), String> {
    let cfg = &s.config.email;
    if cfg.budget_alerts.is_empty() || !cfg.enabled() {
        return Ok(());
    }
    let store = s.store.clone();
    let mut budgeted = blocking(move || store.budgets())
        .await
        .map_err(|e| e.to_string())?;
    budgeted.retain(|(id, b)| {
        id != ADMIN_ID && (b.daily.is_some() || b.weekly.is_some() || b.monthly.is_some())
    });
    budgeted.sort_by(|a, b| a.0.cmp(&b.0));
    budgeted.truncate(MAX_CHECKED);
    let (mut sent, mut failures) = (0usize, Vec::new());
    for (user_id, _) in budgeted {
        if sent + failures.len() >= cfg.max_per_run {
            break;
        }
        match one(s, &user_id).await {
            Ok(n) => sent += n,
            Err(e) => failures.push(format!("{user_id}: {e}")),
        }
    }
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{} budget alerts failed (sent {sent}); first: {first}",
            failures.len()
        )),
    }
}

/// One wallet's windows: how many messages went out.
async fn one(s: &Services, user_id: &str) -> Result<usize, BrokerError> {
    let wallet = match budgets::wallet(s, user_id).await {
        Ok(w) => w,
        Err(BrokerError::NotFound(_)) => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = now_ms();
    let (mut sent, mut new_instance) = (0, false);
    for w in &wallet.windows {
        let Some(limit) = w.limit else { continue };
        let Some(&percent) = reached(&s.config.email.budget_alerts, w.spent, limit).last() else {
            continue;
        };
        let start = w.window.start(w.resets_at - 1);
        let id = format!("{user_id}/{}/{start}", w.window.name());
        let store = s.store.clone();
        let key = id.clone();
        let existing = blocking(move || store.doc(MARK_KIND, &key)).await?;
        let (expected, attempts) = match &existing {
            None => (0, 0),
            Some(doc) => {
                let m: Mark = doc.decode()?;
                let retry = m.state == "failed" && m.attempts < MAX_ATTEMPTS;
                match (m.percent.cmp(&percent), retry) {
                    (std::cmp::Ordering::Less, _) => (doc.version, 0),
                    (std::cmp::Ordering::Equal, true) => (doc.version, m.attempts),
                    _ => continue,
                }
            }
        };
        let mark = |state: &str, attempts, error| Mark {
            percent,
            state: state.into(),
            attempts,
            resets_at: w.resets_at,
            error,
        };
        let claim = DocWrite::replace(
            MARK_KIND,
            &id,
            expected,
            &mark("sending", attempts + 1, None),
        )?;
        if !write(s, claim).await? {
            continue; // another node (or run) took it
        }
        new_instance |= expected == 0;
        let store = s.store.clone();
        let uid = user_id.to_string();
        let Some(user) = blocking(move || store.user(&uid)).await? else {
            continue;
        };
        let alert = BudgetAlert {
            owner_name: user.name.clone(),
            owner_id: user.id.clone(),
            is_team: teams::is_team(&user.id),
            window: w.window,
            percent,
            limit,
            spent: w.spent,
            resets_at: w.resets_at,
        };
        let outcome = send(s, &user, &alert).await;
        let after = match &outcome {
            Ok(_) => mark("sent", attempts + 1, None),
            Err(e) => mark("failed", attempts + 1, Some(e.to_string())),
        };
        // The claim's version is one past what it replaced. Best effort: a
        // mark left `sending` is never sent again, which is what must hold.
        let _ = write(s, DocWrite::replace(MARK_KIND, &id, expected + 1, &after)?).await;
        outcome?;
        sent += 1;
    }
    // Marks of windows over can only have piled up since this wallet's
    // last new crossing: look for them then, not every run for every
    // budgeted wallet (one store read each, every minute).
    if new_instance {
        forget_old(s, user_id, now).await?;
    }
    Ok(sent)
}

async fn send(
    s: &Services,
    user: &crate::store::User,
    alert: &BudgetAlert,
) -> Result<(), BrokerError> {
    let to = mail::recipients(s, user).await?;
    let _slot = s
        .reports
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| BrokerError::Unavailable("mail slots closed".into()))?;
    let body = MultiPart::alternative().singlepart(SinglePart::plain(alert.text()));
    mail::send(&s.config.email, to, alert.subject(), body).await?;
    Ok(())
}

/// Drops the wallet's marks of windows long over.
async fn forget_old(s: &Services, user_id: &str, now: Millis) -> Result<(), BrokerError> {
    let store = s.store.clone();
    let prefix = format!("{user_id}/");
    blocking(move || {
        let mut gone = Vec::new();
        for (id, doc) in store.docs(MARK_KIND, &prefix, None, 100)? {
            let m: Mark = doc.decode()?;
            if m.resets_at + KEEP_AFTER_RESET < now {
                gone.push(DocWrite::delete(MARK_KIND, &id, doc.version));
            }
        }
        if !gone.is_empty() {
            store.write_docs(gone)?;
        }
        Ok(())
    })
    .await
}

async fn write(s: &Services, w: DocWrite) -> Result<bool, BrokerError> {
    let store = s.store.clone();
    blocking(move || store.write_docs(vec![w])).await
}
