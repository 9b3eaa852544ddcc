//! A wallet's idempotency keys: claimed before a hold, remembered with
//! their answer when the request finishes (in memory up to a bound, and in
//! the store), so a repeat gets the first answer instead of a second charge.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::views::RequestOutcome;

use crate::store::Store;

use super::cell::WalletCell;
use super::messages::{IdemKey, Reserved, WalletError};

pub(super) enum IdemState {
    Pending {
        body_hash: [u8; 32],
        waiters: Vec<oneshot::Sender<RequestOutcome>>,
    },
    Done {
        body_hash: [u8; 32],
        result: Box<RequestOutcome>,
    },
}

impl WalletCell {
    /// Looks the key up in memory, then in the store. `Ok(None)`: new key,
    /// now marked pending.
    pub(super) fn claim(
        &mut self,
        store: &dyn Store,
        k: &IdemKey,
    ) -> Result<Option<Reserved>, WalletError> {
        match self.idem.get_mut(&k.key) {
            Some(IdemState::Pending { body_hash, waiters }) => {
                if *body_hash != k.body_hash {
                    return Err(WalletError::IdempotencyMismatch);
                }
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                return Ok(Some(Reserved::Wait(rx)));
            }
            Some(IdemState::Done { body_hash, result }) => {
                if *body_hash != k.body_hash {
                    return Err(WalletError::IdempotencyMismatch);
                }
                return Ok(Some(Reserved::Replay(result.clone())));
            }
            None => {}
        }
        // A read made before this call took the lock is still current if this
        // cell already existed then and has evicted nothing since: any later
        // finish of the key happened here and is in memory. Otherwise read
        // now (rare: a fresh cell or an eviction in between).
        let fresh = k.prefetched.as_ref().filter(|p| {
            self.created_at <= p.read_at && self.last_eviction.is_none_or(|e| e < p.read_at)
        });
        let stored = match fresh {
            Some(p) => p.record.clone(),
            None => store
                .idempotency(&self.user_id, &k.key)
                .map_err(|e| WalletError::Store(Arc::new(e)))?,
        };
        if let Some(rec) = stored {
            if rec.body_hash != k.body_hash {
                return Err(WalletError::IdempotencyMismatch);
            }
            self.remember(k.key.clone(), rec.body_hash, rec.result.clone());
            return Ok(Some(Reserved::Replay(Box::new(rec.result))));
        }
        self.idem.insert(
            k.key.clone(),
            IdemState::Pending {
                body_hash: k.body_hash,
                waiters: Vec::new(),
            },
        );
        Ok(None)
    }

    /// Marks a key done, answers its waiters, and bounds the memory.
    pub(super) fn remember(&mut self, key: String, body_hash: [u8; 32], result: RequestOutcome) {
        if let Some(IdemState::Pending { waiters, .. }) = self.idem.remove(&key) {
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
        self.idem.insert(
            key.clone(),
            IdemState::Done {
                body_hash,
                result: Box::new(result),
            },
        );
        self.idem_done.push_back(key);
        while self.idem_done.len() > self.idem_memory {
            if let Some(old) = self.idem_done.pop_front() {
                if matches!(self.idem.get(&old), Some(IdemState::Done { .. })) {
                    self.idem.remove(&old);
                    self.last_eviction = Some(Instant::now());
                }
            }
        }
    }

    /// Answers a failed key's waiters and frees the key for a retry.
    pub(super) fn forget(&mut self, key: &str, result: RequestOutcome) {
        if let Some(IdemState::Pending { waiters, .. }) = self.idem.remove(key) {
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    /// Drops a pending key whose finish failed: its waiters get an error
    /// instead of waiting forever, and the key is free again.
    pub(super) fn abandon(&mut self, key: Option<&str>) {
        if let Some(k) = key {
            if matches!(self.idem.get(k), Some(IdemState::Pending { .. })) {
                self.idem.remove(k);
            }
        }
    }

    /// Forgets a pending key whose request never got a hold, so the client
    /// may retry it.
    pub(super) fn unclaim(&mut self, key: &str) {
        if matches!(self.idem.get(key), Some(IdemState::Pending { waiters, .. }) if waiters.is_empty())
        {
            self.idem.remove(key);
        }
    }
}
