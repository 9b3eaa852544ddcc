//! Wrong passwords, counted per account in the document store (kind
//! `lockout`, id the account's address), so every node sees the same
//! count: [`MAX_FAILURES`] within [`WINDOW_MS`] and the account's sign-ins
//! are answered 429 until the oldest of them leaves the window, even with
//! the right password. Addresses with no account are counted too, so a
//! lockout says nothing about whether an account exists.
//!
//! A document keeps at most the last [`MAX_FAILURES`] times: its size is
//! bounded whatever is sent.

use serde::{Deserialize, Serialize};

use oneflow::time::Millis;

use crate::error::BrokerError;
use crate::store::{DocWrite, Store};

pub(crate) const KIND: &str = "lockout";
/// Wrong passwords that lock an account.
pub(crate) const MAX_FAILURES: usize = 10;
/// The window they are counted in: 15 minutes.
pub(crate) const WINDOW_MS: Millis = 15 * 60_000;
/// Compare-and-set tries before a count is given up (two nodes counting
/// the same account at the same instant).
const TRIES: usize = 8;

/// An account's recent wrong passwords.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Failures {
    /// When each happened, oldest first; at most [`MAX_FAILURES`].
    pub(crate) at: Vec<Millis>,
}

impl Failures {
    /// Seconds until the account may sign in again, if it is locked now.
    pub(crate) fn locked_for(&self, now: Millis) -> Option<u64> {
        let first = self.at.len().checked_sub(MAX_FAILURES)?;
        let until = self.at.get(first)? + WINDOW_MS;
        (until > now).then(|| {
            u64::try_from((until - now + 999) / 1000)
                .unwrap_or(1)
                .max(1)
        })
    }

    /// Adds a failure at `now`, forgetting those out of the window and
    /// all but the last [`MAX_FAILURES`].
    fn add(&mut self, now: Millis) {
        self.at.retain(|t| now - t < WINDOW_MS);
        self.at.push(now);
        let extra = self.at.len().saturating_sub(MAX_FAILURES);
        self.at.drain(..extra);
    }

    /// Whether nothing in it counts any more.
    pub(crate) fn stale(&self, now: Millis) -> bool {
        self.at.iter().all(|t| now - t >= WINDOW_MS)
    }
}

/// The account's failures as stored (none: empty).
pub(crate) fn read(store: &dyn Store, account: &str) -> Result<Failures, BrokerError> {
    Ok(match store.doc(KIND, account)? {
        Some(d) => d.decode()?,
        None => Failures::default(),
    })
}

/// Counts one wrong password for `account` at `now`.
pub(crate) fn fail(store: &dyn Store, account: &str, now: Millis) -> Result<(), BrokerError> {
    for _ in 0..TRIES {
        let (version, mut f) = match store.doc(KIND, account)? {
            Some(d) => (d.version, d.decode::<Failures>()?),
            None => (0, Failures::default()),
        };
        f.add(now);
        if store.write_docs(vec![DocWrite::replace(KIND, account, version, &f)?])? {
            return Ok(());
        }
    }
    Err(BrokerError::Busy)
}

/// Forgets the account's failures after a good sign-in. Losing the race to
/// a failure counted meanwhile leaves that failure standing, as it should.
pub(crate) fn clear(store: &dyn Store, account: &str) -> Result<(), BrokerError> {
    if let Some(d) = store.doc(KIND, account)? {
        store.write_docs(vec![DocWrite::delete(KIND, account, d.version)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_in_the_window_lock_until_the_first_leaves_it() {
        let mut f = Failures::default();
        for i in 0..9 {
            f.add(1_000_000 + i * 1000);
        }
        assert_eq!(f.locked_for(1_010_000), None);
        f.add(1_010_000);
        let left = f.locked_for(1_010_000).unwrap();
        assert_eq!(left, (WINDOW_MS as u64 - 10_000) / 1000);
        // Once the first of the ten is out of the window, free again.
        assert_eq!(f.locked_for(1_000_000 + WINDOW_MS), None);
        assert_eq!(f.locked_for(1_000_000 + WINDOW_MS - 1), Some(1));
    }

    #[test]
    fn old_failures_do_not_count_and_the_list_stays_short() {
        let mut f = Failures::default();
        for i in 0..50 {
            f.add(i * 1000);
        }
        assert_eq!(f.at.len(), MAX_FAILURES);
        let mut g = Failures::default();
        for i in 0..9 {
            g.add(i);
        }
        g.add(WINDOW_MS + 100);
        assert_eq!(g.at.len(), 1);
        assert_eq!(g.locked_for(WINDOW_MS + 100), None);
        assert!(g.stale(2 * WINDOW_MS + 100));
    }
}
