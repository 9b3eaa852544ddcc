//! Removing what can no longer be used, hourly on the scheduler:
//! expired refresh tokens and sessions, used or expired invitations,
//! lockouts past their window. Every kind of account document is bounded
//! by time this way, whatever is sent.

use oneflow::time::Millis;

use super::sessions::{Refresh, Session};
use super::{INVITATION, Invitation, REFRESH, SESSION, lockout, off_thread};
use crate::error::BrokerError;
use crate::ids::now_ms;
use crate::store::{Doc, DocWrite, Store};
use crate::usecase::Services;

/// Whether a document of `kind` can go at `now`.
fn dead(kind: &str, doc: &Doc, now: Millis) -> Result<bool, BrokerError> {
    Ok(match kind {
        REFRESH => doc.decode::<Refresh>()?.expires_at <= now,
        SESSION => doc.decode::<Session>()?.expires_at <= now,
        // A used one is kept a day, so that showing it again says "used"
        // rather than "unknown" for a while.
        INVITATION => {
            let r: Invitation = doc.decode()?;
            r.expires_at <= now || r.used_at.is_some_and(|t| now - t > 86_400_000)
        }
        _ => doc.decode::<lockout::Failures>()?.stale(now),
    })
}

/// Removes what can no longer be used: expired refresh tokens and
/// sessions, used or expired invitations, lockouts past their window. At
/// most `limit` documents of each kind are looked at a run.
pub(super) fn purge(store: &dyn Store, now: Millis, limit: usize) -> Result<usize, BrokerError> {
    let mut removed = 0;
    for kind in [REFRESH, SESSION, INVITATION, lockout::KIND] {
        let mut after: Option<String> = None;
        let mut seen = 0;
        while seen < limit {
            let page = store.docs(kind, "", after.as_deref(), 500.min(limit - seen))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            seen += page.len();
            let mut writes = Vec::new();
            for (id, doc) in &page {
                // A document that no longer decodes is kept for a person
                // to look at, not removed unseen.
                if dead(kind, doc, now).unwrap_or(false) {
                    writes.push(DocWrite::delete(kind, id, doc.version));
                }
            }
            // One stale version (changed since read) fails the batch; then
            // each is tried alone, so one busy document keeps no others.
            if !writes.is_empty() && !store.write_docs(writes.clone())? {
                for w in writes {
                    if store.write_docs(vec![w])? {
                        removed += 1;
                    }
                }
            } else {
                removed += writes.len();
            }
        }
    }
    Ok(removed)
}

/// How often [`purge`] runs, and how many documents of each kind one run
/// looks at: enough to keep pace with sign-ins, small enough that a run
/// never holds the store's writer for long.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
const PURGE_LIMIT: usize = 10_000;

/// Starts the hourly [`purge`] on the scheduler.
pub(crate) fn schedule_purge(s: &std::sync::Arc<Services>) {
    let store = s.store.clone();
    s.scheduler
        .every("accounts-purge", PURGE_EVERY, PURGE_EVERY, move || {
            let store = store.clone();
            async move {
                off_thread(move || purge(&*store, now_ms(), PURGE_LIMIT))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RedbStore;

    #[test]
    fn only_what_can_no_longer_be_used_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("oneflow.redb")).unwrap();
        let now = 10 * 86_400_000;
        let refresh = |expires_at| Refresh {
            family: "ses_1".into(),
            user_id: "usr_1".into(),
            expires_at,
            spent: false,
            created_at: 0,
        };
        let invitation = |expires_at, used_at| Invitation {
            email: None,
            expires_at,
            created_by: "admin".into(),
            created_at: 0,
            used_at,
            team: None,
        };
        let failures = |at: Vec<Millis>| lockout::Failures { at };
        let writes = vec![
            DocWrite::create(REFRESH, "old", &refresh(now - 1)).unwrap(),
            DocWrite::create(REFRESH, "live", &refresh(now + 1)).unwrap(),
            DocWrite::create(INVITATION, "expired", &invitation(now, None)).unwrap(),
            DocWrite::create(INVITATION, "fresh", &invitation(now + 1, None)).unwrap(),
            DocWrite::create(INVITATION, "used", &invitation(now + 1, Some(0))).unwrap(),
            DocWrite::create(INVITATION, "just-used", &invitation(now + 1, Some(now))).unwrap(),
            DocWrite::create(lockout::KIND, "stale", &failures(vec![0])).unwrap(),
            DocWrite::create(lockout::KIND, "recent", &failures(vec![now - 1])).unwrap(),
        ];
        assert!(store.write_docs(writes).unwrap());
        assert_eq!(purge(&store, now, 100).unwrap(), 4);
        let left = |kind| -> Vec<String> {
            let docs = store.docs(kind, "", None, 100).unwrap();
            docs.into_iter().map(|(id, _)| id).collect()
        };
        assert_eq!(left(REFRESH), ["live"]);
        assert_eq!(left(INVITATION), ["fresh", "just-used"]);
        assert_eq!(left(lockout::KIND), ["recent"]);
    }
}
