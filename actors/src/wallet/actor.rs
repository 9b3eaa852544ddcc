//! The wallet actor: its state, its start and idle stop, and its handlers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use tokio::sync::oneshot;

use oneflow::Credits;
use oneflow::ledger::{LedgerEntry, Refusal, Wallet};
use oneflow::time::Window;

use crate::persistence::{Job, Persistence, Slot};
use crate::store::{IdempotencyRecord, OpenHold, Store, StoreError, WriteOp};
use crate::views::{RequestOutcome, WalletView, WindowView};

use super::idempotency::IdemState;
use super::messages::*;

/// The owner of one user's money.
pub struct WalletActor {
    pub(super) user_id: String,
    /// `None` until loaded, or if the user does not exist.
    pub(super) wallet: Option<Wallet>,
    pub(super) store: Arc<dyn Store>,
    pub(super) persist: Persistence,
    pub(super) registry: Arc<DashMap<String, Addr<WalletActor>>>,
    /// The queue slot each open hold reserved for its finish.
    pub(super) slots: HashMap<u64, Slot>,
    pub(super) idem: HashMap<String, IdemState>,
    /// Finished keys in completion order, to bound `idem`.
    pub(super) idem_done: VecDeque<String>,
    pub(super) idem_memory: usize,
    /// Writes sent and not yet committed.
    pub(super) pending: usize,
    pub(super) last_used: Instant,
    pub(super) idle_stop: Duration,
    pub(super) mailbox: usize,
    pub(super) load_error: Option<String>,
    /// When this actor was made, and when it last forgot a finished key:
    /// together they say whether a prefetched store read is still current.
    pub(super) created_at: Instant,
    pub(super) last_eviction: Option<Instant>,
}

impl Actor for WalletActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
        // A point read on this arbiter's thread: fast, and it keeps the
        // actor's first message from running before its state is known.
        match self.load() {
            Ok(w) => self.wallet = w,
            Err(e) => self.load_error = Some(e.to_string()),
        }
        let every = (self.idle_stop / 4).max(Duration::from_millis(250));
        ctx.run_interval(every, |act, ctx| act.stop_if_idle(ctx));
    }
}

impl WalletActor {
    pub(super) fn load(&self) -> Result<Option<Wallet>, StoreError> {
        if self.store.user(&self.user_id)?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.store.wallet(&self.user_id)?.unwrap_or_else(
            || {
                let mut w = Wallet::new(self.user_id.clone());
                if let Ok(b) = self.store.budget(&self.user_id) {
                    w.budget = b;
                }
                w
            },
        )))
    }

    pub(super) fn stop_if_idle(&mut self, ctx: &mut Context<Self>) {
        let busy = self.pending > 0
            || !self.slots.is_empty()
            || self.wallet.as_ref().is_some_and(|w| !w.holds.is_empty())
            || self
                .idem
                .values()
                .any(|s| matches!(s, IdemState::Pending { .. }));
        if !busy && self.last_used.elapsed() >= self.idle_stop {
            self.leave(ctx);
        }
    }

    /// Leaves the registry and stops; the next use starts a fresh actor from
    /// the store.
    pub(super) fn leave(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.registry.remove_if(&self.user_id, |_, a| *a == me);
        ctx.stop();
    }

    pub(super) fn wallet(&mut self) -> Result<&mut Wallet, WalletError> {
        self.last_used = Instant::now();
        if let Some(e) = &self.load_error {
            return Err(WalletError::Unavailable(e.clone()));
        }
        self.wallet.as_mut().ok_or(WalletError::UnknownUser)
    }

    pub(super) fn snapshot_op(&self) -> Option<WriteOp> {
        let w = self.wallet.as_ref()?;
        serde_json::to_vec(w).ok().map(|bytes| WriteOp::PutWallet {
            user_id: self.user_id.clone(),
            bytes,
        })
    }

    /// Sends `ops` (plus a wallet snapshot) and returns a future that
    /// resolves after their commit. A failed commit stops the process (see
    /// the persistence thread), so memory is never left ahead of the file;
    /// an error here means the broker is shutting down.
    pub(super) fn commit(
        &mut self,
        slot: Slot,
        mut ops: Vec<WriteOp>,
    ) -> impl ActorFuture<Self, Output = Result<(), WalletError>> + use<> {
        ops.extend(self.snapshot_op());
        let (done, rx) = oneshot::channel();
        slot.send(Job {
            ops,
            done: Some(done),
        });
        self.pending += 1;
        async move {
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(WalletError::Store(e)),
                Err(_) => Err(WalletError::Store(Arc::new(StoreError::Closed))),
            }
        }
        .into_actor(self)
        .map(|res, act, _| {
            act.pending -= 1;
            res
        })
    }
}

impl Handler<Reserve> for WalletActor {
    type Result = Result<Reserved, WalletError>;

    fn handle(&mut self, m: Reserve, _: &mut Context<Self>) -> Self::Result {
        self.wallet()?;
        if let Some(k) = &m.idem {
            if let Some(r) = self.claim(k)? {
                return Ok(r);
            }
        }
        let result = self.reserve(&m);
        if let (Err(_), Some(k)) = (&result, &m.idem) {
            self.unclaim(&k.key);
        }
        result
    }
}

impl WalletActor {
    pub(super) fn reserve(&mut self, m: &Reserve) -> Result<Reserved, WalletError> {
        // Two queue slots: one for the hold now, one kept for the finish, so
        // a request that got its hold can always be settled.
        let now_slot = self.persist.reserve().map_err(|_| WalletError::Busy)?;
        let later_slot = self.persist.reserve().map_err(|_| WalletError::Busy)?;
        let w = self.wallet()?;
        let (hold, entry) = w.hold(&m.request_id, &m.provider, m.amount, m.now)?;
        let hold_id = hold.id;
        let open = OpenHold {
            hold,
            model: m.model.clone(),
            modality: m.modality,
            prompt_preview: m.prompt_preview.clone(),
        };
        let mut ops = vec![
            WriteOp::AppendEntry(entry),
            WriteOp::PutHold(Box::new(open)),
        ];
        ops.extend(self.snapshot_op());
        // The hold needs no commit of its own: a crash before the finish
        // charges nothing and its client was never answered.
        now_slot.send(Job { ops, done: None });
        self.slots.insert(hold_id, later_slot);
        crate::metrics::hold_opened();
        Ok(Reserved::Held { hold_id })
    }
}

impl Handler<Finish> for WalletActor {
    type Result = ResponseActFuture<Self, Result<Finished, WalletError>>;

    fn handle(&mut self, m: Finish, _: &mut Context<Self>) -> Self::Result {
        let key = m.idem.as_ref().map(|(k, _, _)| k.clone());
        let provider = m.record.provider.clone();
        match self.finish(m) {
            Ok((finished, slot, ops, idem)) => {
                crate::metrics::hold_closed();
                Box::pin(self.commit(slot, ops).map(move |res, act, _| {
                    if let Err(e) = res {
                        act.abandon(key.as_deref());
                        return Err(e);
                    }
                    crate::metrics::charged(&provider, finished.charged);
                    if let Some((key, body_hash, result, keep)) = idem {
                        if keep {
                            act.remember(key, body_hash, result);
                        } else {
                            act.forget(&key, result);
                        }
                    }
                    Ok(finished)
                }))
            }
            Err(e) => {
                self.abandon(key.as_deref());
                Box::pin(actix::fut::ready(Err(e)))
            }
        }
    }
}

/// An idempotency key, its body hash, the answer, and whether to keep it.
type IdemResult = (String, [u8; 32], RequestOutcome, bool);

impl WalletActor {
    /// The synchronous part of a finish: every fallible step before the
    /// wallet changes, then the change and the writes that record it.
    pub(super) fn finish(
        &mut self,
        m: Finish,
    ) -> Result<(Finished, Slot, Vec<WriteOp>, Option<IdemResult>), WalletError> {
        let w = self.wallet.as_ref().ok_or(WalletError::UnknownUser)?;
        if !w.holds.contains_key(&m.hold_id) {
            return Err(Refusal::UnknownHold(m.hold_id).into());
        }
        let slot = match self.slots.remove(&m.hold_id) {
            Some(s) => s,
            None => self.persist.reserve().map_err(|_| WalletError::Busy)?,
        };
        let w = self.wallet()?;
        let (entries, charged, shortfall) = match &m.settlement {
            Settlement::Charge(cost) => {
                let s = w.settle(m.hold_id, *cost, m.now)?;
                (s.entries, s.charged, s.shortfall)
            }
            Settlement::Release(note) => (
                vec![w.release(m.hold_id, Some(note), m.now)?],
                Credits::ZERO,
                Credits::ZERO,
            ),
        };
        let finished = Finished {
            charged,
            balance: w.balance,
            available: w.available(),
        };
        let mut record = m.record;
        record.cost = charged;
        record.shortfall = shortfall;
        let mut ops: Vec<WriteOp> = entries.into_iter().map(WriteOp::AppendEntry).collect();
        ops.push(WriteOp::DeleteHold {
            user_id: self.user_id.clone(),
            id: m.hold_id,
        });
        ops.push(WriteOp::PutRequest(record));
        // A success is remembered for the key, with the figures only the
        // wallet knows. A failure charged nothing and may be worth retrying,
        // so its key is freed once those waiting on it have the answer.
        let keep = matches!(m.settlement, Settlement::Charge(_));
        let idem = m.idem.map(|(key, body_hash, mut result)| {
            result.cost = charged;
            result.balance = finished.balance;
            result.available = finished.available;
            (key, body_hash, result, keep)
        });
        if let Some((key, body_hash, result, true)) = &idem {
            let record = IdempotencyRecord {
                body_hash: *body_hash,
                result: result.clone(),
            };
            ops.push(WriteOp::PutIdempotency {
                user_id: self.user_id.clone(),
                key: key.clone(),
                record,
            });
        }
        Ok((finished, slot, ops, idem))
    }
}

impl Handler<TopUp> for WalletActor {
    type Result = ResponseActFuture<Self, Result<LedgerEntry, WalletError>>;

    fn handle(&mut self, m: TopUp, _: &mut Context<Self>) -> Self::Result {
        let step = (|| {
            let slot = self.persist.reserve().map_err(|_| WalletError::Busy)?;
            let entry = self.wallet()?.top_up(m.amount, m.note.as_deref(), m.now)?;
            Ok((slot, entry))
        })();
        match step {
            Ok((slot, entry)) => {
                let ops = vec![WriteOp::AppendEntry(entry.clone())];
                Box::pin(
                    self.commit(slot, ops)
                        .map(move |res, _, _| res.map(|()| entry)),
                )
            }
            Err(e) => Box::pin(actix::fut::ready(Err(e))),
        }
    }
}

impl Handler<SetBudget> for WalletActor {
    type Result = ResponseActFuture<Self, Result<(), WalletError>>;

    fn handle(&mut self, m: SetBudget, _: &mut Context<Self>) -> Self::Result {
        let step = (|| {
            let slot = self.persist.reserve().map_err(|_| WalletError::Busy)?;
            self.wallet()?.budget = m.0.clone();
            Ok(slot)
        })();
        match step {
            Ok(slot) => {
                let ops = vec![WriteOp::PutBudget {
                    user_id: self.user_id.clone(),
                    budget: m.0,
                }];
                Box::pin(self.commit(slot, ops))
            }
            Err(e) => Box::pin(actix::fut::ready(Err(e))),
        }
    }
}

impl Handler<Retarget> for WalletActor {
    type Result = Result<(), WalletError>;

    fn handle(&mut self, m: Retarget, _: &mut Context<Self>) -> Self::Result {
        self.wallet()?
            .retarget(m.hold_id, &m.provider, m.now)
            .map_err(WalletError::Refused)
    }
}

impl Handler<View> for WalletActor {
    type Result = Result<WalletView, WalletError>;

    fn handle(&mut self, m: View, _: &mut Context<Self>) -> Self::Result {
        let w = self.wallet()?;
        // The wallet's clock, as holds use it, so the view agrees with them.
        let m = View {
            now: m.now.max(w.clock),
        };
        let held = w.held();
        let windows = Window::ALL
            .iter()
            .map(|&window| {
                let limit = w.budget.overall().get(window);
                let spent = w.spend.spent(window, m.now, None);
                WindowView {
                    window,
                    limit,
                    spent,
                    held,
                    remaining: limit.map(|l| (l - spent - held).max(Credits::ZERO)),
                    resets_at: window.end(m.now),
                }
            })
            .collect();
        Ok(WalletView {
            balance: w.balance,
            available: w.available(),
            held,
            open_holds: w.holds.len(),
            budget: w.budget.clone(),
            windows,
        })
    }
}
