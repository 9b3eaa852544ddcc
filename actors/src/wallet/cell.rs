//! One user's wallet in memory: its state, its load from the store, and the
//! synchronous step of each operation. A cell is only touched under its
//! lock (see `handle.rs`), so the steps below run one at a time per user.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use oneflow::Credits;
use oneflow::ledger::{LedgerEntry, Refusal, Wallet};
use oneflow::time::Window;

use crate::persistence::{Job, Persistence, Slot};
use crate::store::{IdempotencyRecord, Store, StoreError, WriteOp};
use crate::views::{WalletView, WindowView};

use super::idempotency::{IdemLimits, IdemState};
use super::messages::*;
use super::steps;

/// The commit a caller waits for after the lock is let go.
pub(super) type Commit = oneshot::Receiver<Result<(), Arc<StoreError>>>;

/// The owner of one user's money.
pub(super) struct WalletCell {
    pub(super) user_id: String,
    /// Read from the store on first use, under the lock.
    pub(super) loaded: bool,
    /// `None` if the user does not exist.
    pub(super) wallet: Option<Wallet>,
    /// Set when the cell leaves the registry: a caller that finds its cell
    /// retired looks it up again and gets a fresh one loaded from the store.
    pub(super) retired: bool,
    /// The queue slot each open hold reserved for its finish.
    pub(super) slots: HashMap<u64, Slot>,
    pub(super) idem: HashMap<String, IdemState>,
    /// Finished keys in completion order, to bound `idem`.
    pub(super) idem_done: VecDeque<String>,
    /// The answers' bytes `idem` keeps (see `IdempotencyRecord::weight`).
    pub(super) idem_bytes: usize,
    pub(super) idem_limits: IdemLimits,
    /// Writes sent and not yet committed.
    pub(super) pending: usize,
    pub(super) last_used: Instant,
    pub(super) load_error: Option<String>,
    /// When this cell was made, and when it last forgot a finished key:
    /// together they say whether a prefetched store read is still current.
    pub(super) created_at: Instant,
    pub(super) last_eviction: Option<Instant>,
}

impl WalletCell {
    pub(super) fn new(user_id: &str, idem_limits: IdemLimits) -> WalletCell {
        let now = Instant::now();
        WalletCell {
            user_id: user_id.to_string(),
            loaded: false,
            wallet: None,
            retired: false,
            slots: HashMap::new(),
            idem: HashMap::new(),
            idem_done: VecDeque::new(),
            idem_bytes: 0,
            idem_limits,
            pending: 0,
            last_used: now,
            load_error: None,
            created_at: now,
            last_eviction: None,
        }
    }

    /// Reads the wallet on first use: a point read or three, once per cell.
    pub(super) fn ensure_loaded(&mut self, store: &dyn Store) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        match self.load(store) {
            Ok(w) => self.wallet = w,
            Err(e) => self.load_error = Some(e.to_string()),
        }
    }

    fn load(&self, store: &dyn Store) -> Result<Option<Wallet>, StoreError> {
        if store.user(&self.user_id)?.is_none() {
            return Ok(None);
        }
        Ok(Some(store.wallet(&self.user_id)?.unwrap_or_else(|| {
            let mut w = Wallet::new(self.user_id.clone());
            if let Ok(b) = store.budget(&self.user_id) {
                w.budget = b;
            }
            w
        })))
    }

    /// Nothing in flight and unused for `idle`: safe to drop, because
    /// everything it changed is committed.
    pub(super) fn idle(&self, idle: Duration) -> bool {
        let busy = self.pending > 0
            || !self.slots.is_empty()
            || self.wallet.as_ref().is_some_and(|w| !w.holds.is_empty())
            || self
                .idem
                .values()
                .any(|s| matches!(s, IdemState::Pending { .. }));
        !busy && self.last_used.elapsed() >= idle
    }

    pub(super) fn wallet(&mut self) -> Result<&mut Wallet, WalletError> {
        self.last_used = Instant::now();
        if let Some(e) = &self.load_error {
            return Err(WalletError::Unavailable(e.clone()));
        }
        self.wallet.as_mut().ok_or(WalletError::UnknownUser)
    }

    fn snapshot_op(&self) -> Option<WriteOp> {
        let w = self.wallet.as_ref()?;
        serde_json::to_vec(w).ok().map(|bytes| WriteOp::PutWallet {
            user_id: self.user_id.clone(),
            bytes,
        })
    }

    /// Sends `ops` (plus a wallet snapshot) through `slot` and counts them
    /// pending. Sent under the lock, so one user's writes reach the queue in
    /// the order they were made. The caller awaits the receiver after
    /// letting the lock go, then calls [`WalletCell::committed`].
    pub(super) fn send(&mut self, slot: Slot, mut ops: Vec<WriteOp>) -> Commit {
        ops.extend(self.snapshot_op());
        let (done, rx) = oneshot::channel();
        slot.send(Job {
            ops,
            done: Some(done),
        });
        self.pending += 1;
        rx
    }

    /// A commit sent by [`WalletCell::send`] ended (or the writer is gone).
    pub(super) fn committed(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// Holds `m.amount`, claiming the idempotency key first. `max_open`
    /// bounds the holds one user may have open at once.
    pub(super) fn reserve(
        &mut self,
        store: &dyn Store,
        persist: &Persistence,
        m: &Reserve,
        max_open: usize,
    ) -> Result<Reserved, WalletError> {
        self.wallet()?;
        if let Some(k) = &m.idem {
            if let Some(r) = self.claim(store, k, m.now)? {
                return Ok(r);
            }
        }
        let result = self.hold(persist, m, max_open);
        if let (Err(_), Some(k)) = (&result, &m.idem) {
            self.unclaim(&k.key);
        }
        result
    }

    fn hold(
        &mut self,
        persist: &Persistence,
        m: &Reserve,
        max_open: usize,
    ) -> Result<Reserved, WalletError> {
        if self.slots.len() >= max_open {
            return Err(WalletError::TooManyInFlight);
        }
        // Two queue slots: one for the hold now, one kept for the finish, so
        // a request that got its hold can always be settled.
        let now_slot = persist.reserve().map_err(|_| WalletError::Busy)?;
        let later_slot = persist.reserve().map_err(|_| WalletError::Busy)?;
        let w = self.wallet()?;
        let (hold_id, mut ops) = steps::hold(w, m)?;
        ops.extend(self.snapshot_op());
        // The hold needs no commit of its own: a crash before the finish
        // charges nothing and its client was never answered.
        now_slot.send(Job { ops, done: None });
        self.slots.insert(hold_id, later_slot);
        crate::metrics::hold_opened();
        Ok(Reserved::Held { hold_id })
    }
}

/// An idempotency key, its answer, and whether to keep it.
pub(super) type IdemResult = (String, Arc<IdempotencyRecord>, bool);

/// What the synchronous step of a top-up gave.
pub(super) enum TopUpStep {
    /// Credited: the entry, its commit, and the key to remember after it.
    Credited(LedgerEntry, Commit, Option<IdemResult>),
    Replay(Arc<IdempotencyRecord>),
    Wait(oneshot::Receiver<Arc<IdempotencyRecord>>),
}

impl WalletCell {
    /// The synchronous part of a finish: every fallible step before the
    /// wallet changes, then the change and the writes that record it.
    pub(super) fn finish(
        &mut self,
        persist: &Persistence,
        m: Finish,
    ) -> Result<(Finished, Slot, Vec<WriteOp>, Option<IdemResult>), WalletError> {
        let w = self.wallet.as_ref().ok_or(WalletError::UnknownUser)?;
        if !w.holds.contains_key(&m.hold_id) {
            return Err(Refusal::UnknownHold(m.hold_id).into());
        }
        let slot = match self.slots.remove(&m.hold_id) {
            Some(s) => s,
            None => persist.reserve().map_err(|_| WalletError::Busy)?,
        };
        let keep = matches!(m.settlement, Settlement::Charge(_));
        self.wallet()?;
        // The wallet and the user's id are two fields: borrowed apart.
        let w = self.wallet.as_mut().ok_or(WalletError::UnknownUser)?;
        let (finished, mut ops, idem) = steps::finish(w, &self.user_id, m)?;
        // A success is remembered for the key. A failure charged nothing
        // and may be worth retrying, so its key is freed once those
        // waiting on it have the answer.
        let idem = idem.map(|(key, record)| (key, Arc::new(record), keep));
        if let Some((key, record, true)) = &idem {
            ops.push(WriteOp::PutIdempotency {
                user_id: self.user_id.clone(),
                key: key.clone(),
                record: Box::new(IdempotencyRecord::clone(record)),
            });
        }
        Ok((finished, slot, ops, idem))
    }

    /// After a finish's commit: the key's waiters get the answer, and a
    /// success is remembered for the key.
    pub(super) fn finished(&mut self, idem: Option<IdemResult>) {
        if let Some((key, record, keep)) = idem {
            if keep {
                self.remember(key, record);
            } else {
                self.forget(&key, record);
            }
        }
    }

    /// Credits the wallet, or, for a key already used, gives its first
    /// answer (or a wait for it). A new key's record is written in the
    /// same commit as the credit.
    pub(super) fn top_up(
        &mut self,
        store: &dyn Store,
        persist: &Persistence,
        m: &TopUp,
    ) -> Result<TopUpStep, WalletError> {
        self.wallet()?;
        if let Some(k) = &m.idem {
            match self.claim(store, k, m.now)? {
                Some(Reserved::Replay(r)) => return Ok(TopUpStep::Replay(r)),
                Some(Reserved::Wait(rx)) => return Ok(TopUpStep::Wait(rx)),
                Some(Reserved::Held { .. }) | None => {}
            }
        }
        let result = self.credit(persist, m);
        if let (Err(_), Some(k)) = (&result, &m.idem) {
            self.unclaim(&k.key);
        }
        result
    }

    fn credit(&mut self, persist: &Persistence, m: &TopUp) -> Result<TopUpStep, WalletError> {
        let slot = persist.reserve().map_err(|_| WalletError::Busy)?;
        let answer = |e: &LedgerEntry| {
            serde_json::to_string(e).map_err(|e| WalletError::Unavailable(e.to_string()))
        };
        let entry = self.wallet()?.top_up(m.amount, m.note.as_deref(), m.now)?;
        let mut ops = vec![WriteOp::AppendEntry(entry.clone())];
        let idem = match &m.idem {
            Some(k) => {
                let record = Arc::new(IdempotencyRecord {
                    body_hash: k.body_hash,
                    result: None,
                    answer: Some(answer(&entry)?),
                    at: m.now,
                });
                ops.push(WriteOp::PutIdempotency {
                    user_id: self.user_id.clone(),
                    key: k.key.clone(),
                    record: Box::new(IdempotencyRecord::clone(&record)),
                });
                Some((k.key.clone(), record, true))
            }
            None => None,
        };
        let rx = self.send(slot, ops);
        Ok(TopUpStep::Credited(entry, rx, idem))
    }

    pub(super) fn set_budget(
        &mut self,
        persist: &Persistence,
        b: oneflow::budget::BudgetConfig,
    ) -> Result<Commit, WalletError> {
        let slot = persist.reserve().map_err(|_| WalletError::Busy)?;
        self.wallet()?.budget = b.clone();
        let ops = vec![WriteOp::PutBudget {
            user_id: self.user_id.clone(),
            budget: b,
        }];
        Ok(self.send(slot, ops))
    }

    pub(super) fn retarget(&mut self, m: &Retarget) -> Result<(), WalletError> {
        self.wallet()?
            .retarget_with(m.hold_id, &m.provider, m.key.as_deref(), m.now)
            .map_err(WalletError::Refused)
    }

    pub(super) fn view(&mut self, now: oneflow::time::Millis) -> Result<WalletView, WalletError> {
        Ok(view_of(self.wallet()?, now))
    }
}

/// What a wallet shows its owner: balance, holds and each budget window.
pub(super) fn view_of(w: &Wallet, now: oneflow::time::Millis) -> WalletView {
    // The wallet's clock, as holds use it, so the view agrees with them.
    let now = now.max(w.clock);
    let held = w.held();
    let windows = Window::ALL
        .iter()
        .map(|&window| {
            let limit = w.budget.overall().get(window);
            let spent = w.spend.spent(window, now, None);
            WindowView {
                window,
                limit,
                spent,
                held,
                remaining: limit.map(|l| (l - spent - held).max(Credits::ZERO)),
                resets_at: window.end(now),
            }
        })
        .collect();
    WalletView {
        balance: w.balance,
        available: w.available(),
        held,
        open_holds: w.holds.len(),
        budget: w.budget.clone(),
        windows,
    }
}
