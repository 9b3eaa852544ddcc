//! Webhooks: a user's subscriptions (create, list, read, delete, rotate
//! the secret, the delivery log), the outbox that delivers events
//! (`outbox.rs`) and the checks that raise them (`alerts.rs`).
//!
//! Everything is kept as documents (`store/docs.rs`), so it is durable and
//! shared by every node on one store:
//!
//! | kind | id | what |
//! |---|---|---|
//! | `webhook` | webhook id | the subscription and its secrets |
//! | `webhook-user` | user id | the user's webhook ids: one document, so the per-user bound holds under concurrent creates |
//! | `webhook-delivery` | `<webhook>/<inverted time><delivery>` | one delivery (its body, attempts, status); ids sort newest first |
//! | `webhook-pending` | `<due time>/<delivery>` | a delivery still to send; ids sort by when it is due |
//! | `webhook-backlog` | user id | how many of the user's deliveries are pending |
//! | `webhook-fired` | `<webhook>/<event instance>` | an alert already raised, so it is raised once |

use serde::{Deserialize, Serialize};

use oneflow::access::Permission;
use oneflow::time::Millis;
use oneflow::webhook::{WebhookSettings, WebhookSpec, WebhookView, WebhookWithSecret};

use super::{Services, blocking, teams};
use crate::error::BrokerError;
use crate::ids::{new_id, now_ms};
use crate::store::{DocWrite, StoreError};
use crate::usecase::keys::Principal;

pub(crate) mod alerts;
pub(crate) mod outbox;

pub(crate) const KIND: &str = "webhook";
const USER_KIND: &str = "webhook-user";
pub(crate) const DELIVERY_KIND: &str = "webhook-delivery";
pub(crate) const PENDING_KIND: &str = "webhook-pending";
pub(crate) const BACKLOG_KIND: &str = "webhook-backlog";
pub(crate) const FIRED_KIND: &str = "webhook-fired";

/// How long a rotated-out secret still signs deliveries.
const ROTATION_GRACE_MS: Millis = 24 * 3_600_000;
/// Most webhooks an admin's listing of everyone's answers with.
pub(crate) const MAX_LISTED: usize = 1000;
/// Tries of a compare-and-set that lost to another writer before giving
/// up with 503: each loss means someone else made progress.
pub(crate) const CAS_TRIES: usize = 8;

/// A subscription as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) settings: WebhookSettings,
    pub(crate) secret: String,
    /// The secret `rotate-secret` replaced, and until when it still signs.
    pub(crate) previous: Option<(String, Millis)>,
    pub(crate) created_at: Millis,
}

impl Stored {
    fn view(&self) -> WebhookView {
        WebhookView {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            settings: self.settings.clone(),
            created_at: self.created_at,
            previous_secret_until: self.previous.as_ref().map(|p| p.1),
        }
    }

    /// The secrets deliveries are signed with at `now`, newest first.
    pub(crate) fn secrets(&self, now: Millis) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let Some((old, until)) = &self.previous {
            if *until > now {
                out.push(old);
            }
        }
        out
    }
}

/// A user's webhook ids.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct UserIndex {
    ids: Vec<String>,
}

fn secret() -> Result<String, BrokerError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|_| BrokerError::Unavailable("no randomness available for a secret".into()))?;
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("whsec_{hex}"))
}

fn lost_race() -> BrokerError {
    BrokerError::Unavailable("webhooks are being changed concurrently; retry".into())
}

/// Makes a webhook for `user_id`, committed before the answer; the secret
/// is in this answer only.
pub(crate) async fn create(
    s: &Services,
    user_id: &str,
    spec: WebhookSpec,
) -> Result<WebhookWithSecret, BrokerError> {
    let settings = spec
        .check(s.config.webhooks.allow_private)
        .map_err(BrokerError::BadInput)?;
    let max = s.config.webhooks.max_per_user;
    let stored = Stored {
        id: new_id("wh"),
        user_id: user_id.to_string(),
        settings,
        secret: secret()?,
        previous: None,
        created_at: now_ms(),
    };
    let store = s.store.clone();
    let hook = stored.clone();
    blocking(move || {
        if store.user(&hook.user_id)?.is_none() {
            return Ok(Err(BrokerError::NotFound("user")));
        }
        for _ in 0..CAS_TRIES {
            let (version, mut index) = match store.doc(USER_KIND, &hook.user_id)? {
                Some(d) => (d.version, d.decode::<UserIndex>()?),
                None => (0, UserIndex::default()),
            };
            if index.ids.len() >= max {
                return Ok(Err(BrokerError::Conflict(format!(
                    "a user may have at most {max} webhooks; delete one first"
                ))));
            }
            index.ids.push(hook.id.clone());
            let writes = vec![
                DocWrite::replace(USER_KIND, &hook.user_id, version, &index)?,
                DocWrite::create(KIND, &hook.id, &hook)?,
            ];
            if store.write_docs(writes)? {
                return Ok(Ok(()));
            }
        }
        Ok(Err(lost_race()))
    })
    .await??;
    Ok(WebhookWithSecret {
        webhook: stored.view(),
        secret: stored.secret,
    })
}

/// Every webhook of a user, oldest first.
pub(crate) fn of_user(
    store: &dyn crate::store::Store,
    user_id: &str,
) -> Result<Vec<Stored>, StoreError> {
    let Some(index) = store.doc(USER_KIND, user_id)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for id in index.decode::<UserIndex>()?.ids {
        if let Some(d) = store.doc(KIND, &id)? {
            out.push(d.decode::<Stored>()?);
        }
    }
    Ok(out)
}

/// Up to `limit` webhooks of everyone, in id order.
pub(crate) fn all(
    store: &dyn crate::store::Store,
    limit: usize,
) -> Result<Vec<Stored>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    while out.len() < limit {
        let page = store.docs(KIND, "", after.as_deref(), 200.min(limit - out.len()))?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (_, d) in page {
            out.push(d.decode::<Stored>()?);
        }
    }
    Ok(out)
}

/// A user's webhooks, or everyone's (at most [`MAX_LISTED`]) with `None`.
pub(crate) async fn list(
    s: &Services,
    user_id: Option<&str>,
) -> Result<Vec<WebhookView>, BrokerError> {
    let store = s.store.clone();
    let user = user_id.map(str::to_string);
    let hooks = blocking(move || match user {
        Some(u) => of_user(&*store, &u),
        None => all(&*store, MAX_LISTED),
    })
    .await?;
    Ok(hooks.iter().map(Stored::view).collect())
}

/// The webhook `id` and its version, if the caller may act on it for
/// `need`: their own; a team's, by their role in the team
/// (`teams::act_for`); an admin's: any. Anyone else's is "not found", as
/// if absent.
async fn owned(
    s: &Services,
    who: &Principal,
    id: &str,
    need: Permission,
) -> Result<(u64, Stored), BrokerError> {
    let store = s.store.clone();
    let key = id.to_string();
    let found = blocking(move || match store.doc(KIND, &key)? {
        Some(d) => Ok(Some((d.version, d.decode::<Stored>()?))),
        None => Ok(None),
    })
    .await?;
    match found {
        Some((v, h)) if who.is_admin() || h.user_id == who.user_id => Ok((v, h)),
        Some((v, h)) if teams::is_team(&h.user_id) => {
            teams::act_for(s, who, &h.user_id, need)
                .await
                .map_err(|e| match e {
                    BrokerError::NotFound(_) => BrokerError::NotFound("webhook"),
                    e => e,
                })?;
            Ok((v, h))
        }
        _ => Err(BrokerError::NotFound("webhook")),
    }
}

pub(crate) async fn view(
    s: &Services,
    who: &Principal,
    id: &str,
) -> Result<WebhookView, BrokerError> {
    Ok(owned(s, who, id, Permission::Read).await?.1.view())
}

/// Deletes a webhook. Its pending deliveries end as `failed` when they
/// come due; its log and alert marks are dropped here (best effort: a
/// leftover is never read again).
pub(crate) async fn delete(s: &Services, who: &Principal, id: &str) -> Result<(), BrokerError> {
    let (_, hook) = owned(s, who, id, Permission::Manage).await?;
    let store = s.store.clone();
    blocking(move || {
        for _ in 0..CAS_TRIES {
            let Some(current) = store.doc(KIND, &hook.id)? else {
                return Ok(Ok(()));
            };
            let Some(index) = store.doc(USER_KIND, &hook.user_id)? else {
                return Ok(Ok(()));
            };
            let mut ids = index.decode::<UserIndex>()?;
            ids.ids.retain(|i| i != &hook.id);
            let writes = vec![
                DocWrite::replace(USER_KIND, &hook.user_id, index.version, &ids)?,
                DocWrite::delete(KIND, &hook.id, current.version),
            ];
            if store.write_docs(writes)? {
                outbox::forget(&*store, &hook.id)?;
                return Ok(Ok(()));
            }
        }
        Ok(Err(lost_race()))
    })
    .await?
}

/// A new secret, shown once; the old one still signs for 24 hours.
pub(crate) async fn rotate(
    s: &Services,
    who: &Principal,
    id: &str,
) -> Result<WebhookWithSecret, BrokerError> {
    let (version, mut hook) = owned(s, who, id, Permission::Manage).await?;
    let now = now_ms();
    let old = std::mem::replace(&mut hook.secret, secret()?);
    hook.previous = Some((old, now + ROTATION_GRACE_MS));
    let store = s.store.clone();
    let write = DocWrite::replace(KIND, &hook.id, version, &hook)?;
    if !blocking(move || store.write_docs(vec![write])).await? {
        // Deleted or rotated meanwhile: the caller asks again and sees which.
        return Err(BrokerError::Conflict(
            "the webhook changed meanwhile; retry".into(),
        ));
    }
    Ok(WebhookWithSecret {
        webhook: hook.view(),
        secret: hook.secret,
    })
}

/// The webhook's delivery log, newest first (at most the last
/// `oneflow::webhook::LOG_KEEP`).
pub(crate) async fn deliveries(
    s: &Services,
    who: &Principal,
    id: &str,
) -> Result<Vec<oneflow::webhook::DeliveryView>, BrokerError> {
    let (_, hook) = owned(s, who, id, Permission::Read).await?;
    let store = s.store.clone();
    blocking(move || outbox::log(&*store, &hook.id)).await
}

/// Starts the two background tasks: sending due deliveries and raising
/// alerts. They hold the services weakly, so a stopped broker frees them.
pub(crate) fn start(s: &std::sync::Arc<Services>) -> Result<(), BrokerError> {
    use std::time::Duration;
    let c = &s.config.webhooks;
    let reach = oneflow::reach::Reach::Public.or_anywhere(c.allow_private);
    let client = crate::adapters::http_client(reach).map_err(BrokerError::Unavailable)?;
    let deliver = Duration::from_millis(c.deliver_every_ms);
    let check = Duration::from_millis(c.check_every_ms);
    super::every(s, "webhook-deliveries", deliver, move |s| {
        let client = client.clone();
        async move { outbox::deliver_due(&s, &client).await }
    });
    super::every(s, "webhook-alerts", check, |s| async move {
        alerts::check(&s).await
    });
    Ok(())
}
