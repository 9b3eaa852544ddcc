//! A wallet's idempotency keys: claimed before a hold or a top-up,
//! remembered with their first answer when it is committed (in memory up
//! to a count and a byte bound, and in the store until the retention
//! ends), so a repeat gets that answer instead of a second charge.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use oneflow::time::Millis;

use crate::store::{IdempotencyRecord, Store};

use super::cell::WalletCell;
use super::messages::{IdemKey, Reserved, WalletError};

pub(super) enum IdemState {
    Pending {
        body_hash: [u8; 32],
        waiters: Vec<oneshot::Sender<Arc<IdempotencyRecord>>>,
    },
    Done(Arc<IdempotencyRecord>),
}

/// How much of its keys' answers a wallet keeps, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct IdemLimits {
    /// Finished keys kept in memory.
    pub memory: usize,
    /// Their answers' bytes kept in memory.
    pub memory_bytes: usize,
    /// How long a first answer stands for its key.
    pub retention_ms: Millis,
}

impl WalletCell {
    /// Looks the key up in memory, then in the store. `Ok(None)`: new (or
    /// expired) key, now marked pending.
    pub(super) fn claim(
        &mut self,
        store: &dyn Store,
        k: &IdemKey,
        now: Millis,
    ) -> Result<Option<Reserved>, WalletError> {
        let retention = self.idem_limits.retention_ms;
        let expired = |r: &IdempotencyRecord| now.saturating_sub(r.answered_at()) >= retention;
        match self.idem.get_mut(&k.key) {
            Some(IdemState::Pending { body_hash, waiters }) => {
                if *body_hash != k.body_hash {
                    return Err(WalletError::IdempotencyMismatch);
                }
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                return Ok(Some(Reserved::Wait(rx)));
            }
            Some(IdemState::Done(r)) if !expired(r) => {
                if r.body_hash != k.body_hash {
                    return Err(WalletError::IdempotencyMismatch);
                }
                return Ok(Some(Reserved::Replay(r.clone())));
            }
            // Expired: the store holds this same record (or an older one),
            // so the key is new again.
            Some(IdemState::Done(_)) => {
                self.drop_done(&k.key);
                return Ok(self.pend(k));
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
        match stored {
            Some(rec) if !expired(&rec) => {
                if rec.body_hash != k.body_hash {
                    return Err(WalletError::IdempotencyMismatch);
                }
                let rec = Arc::new(rec);
                self.remember(k.key.clone(), rec.clone());
                Ok(Some(Reserved::Replay(rec)))
            }
            _ => Ok(self.pend(k)),
        }
    }

    fn pend(&mut self, k: &IdemKey) -> Option<Reserved> {
        self.idem.insert(
            k.key.clone(),
            IdemState::Pending {
                body_hash: k.body_hash,
                waiters: Vec::new(),
            },
        );
        None
    }

    /// Marks a key done, answers its waiters, and bounds the memory.
    pub(super) fn remember(&mut self, key: String, rec: Arc<IdempotencyRecord>) {
        if let Some(IdemState::Pending { waiters, .. }) = self.idem.remove(&key) {
            for w in waiters {
                let _ = w.send(rec.clone());
            }
        }
        self.idem_bytes += rec.weight();
        if let Some(IdemState::Done(old)) = self.idem.insert(key.clone(), IdemState::Done(rec)) {
            self.idem_bytes -= old.weight();
        }
        self.idem_done.push_back(key);
        let limits = self.idem_limits;
        while self.idem_done.len() > limits.memory || self.idem_bytes > limits.memory_bytes {
            let Some(old) = self.idem_done.pop_front() else {
                break;
            };
            self.drop_done(&old);
        }
    }

    /// Forgets a finished key (its record stays in the store).
    fn drop_done(&mut self, key: &str) {
        if let Some(IdemState::Done(r)) = self.idem.get(key) {
            self.idem_bytes -= r.weight();
            self.idem.remove(key);
            self.last_eviction = Some(Instant::now());
        }
    }

    /// Answers a failed key's waiters and frees the key for a retry.
    pub(super) fn forget(&mut self, key: &str, rec: Arc<IdempotencyRecord>) {
        if let Some(IdemState::Pending { waiters, .. }) = self.idem.remove(key) {
            for w in waiters {
                let _ = w.send(rec.clone());
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
