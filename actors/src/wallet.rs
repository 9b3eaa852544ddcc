//! One `WalletActor` per user owns that user's balance, holds, budgets and
//! in-flight idempotency keys. Every money change for the user passes
//! through its mailbox one at a time, and the arithmetic runs synchronously
//! inside the handler, so no interleaving can overspend.
//!
//! Callers use [`Wallets`], which starts actors on first use (spread over
//! several arbiters), restarts them if they stopped, and keeps actix types
//! out of the web crate.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use tokio::sync::oneshot;

use oneflow::Credits;
use oneflow::budget::BudgetConfig;
use oneflow::ledger::{LedgerEntry, Refusal, Wallet};
use oneflow::pricing::Modality;
use oneflow::records::RequestRecord;
use oneflow::time::{Millis, Window};

use crate::persistence::{Job, Persistence, Slot};
use crate::store::{IdempotencyRecord, OpenHold, Store, StoreError, WriteOp};
use crate::views::{RequestOutcome, WalletView, WindowView};

// ---- messages -------------------------------------------------------------

/// An idempotency key and the hash of the body it came with.
#[derive(Clone, Debug)]
pub struct IdemKey {
    pub key: String,
    pub body_hash: [u8; 32],
    /// The stored record, read before the message was sent so the wallet's
    /// thread need not block on the store (see `WalletActor::claim`).
    pub prefetched: Option<Prefetched>,
}

impl IdemKey {
    pub fn new(key: String, body_hash: [u8; 32]) -> IdemKey {
        IdemKey {
            key,
            body_hash,
            prefetched: None,
        }
    }
}

/// A store read of an idempotency key, and when it began.
#[derive(Clone, Debug)]
pub struct Prefetched {
    pub record: Option<IdempotencyRecord>,
    pub read_at: Instant,
}

/// Reserve money for a request (and claim its idempotency key).
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Reserved, WalletError>")]
pub struct Reserve {
    pub request_id: String,
    pub provider: String,
    pub amount: Credits,
    pub idem: Option<IdemKey>,
    /// What to record if the broker dies before the request finishes.
    pub model: String,
    pub modality: Modality,
    pub prompt_preview: String,
    pub now: Millis,
}

/// What a reservation gave.
#[derive(Debug)]
pub enum Reserved {
    /// Money is held; the request may go to the provider.
    Held { hold_id: u64 },
    /// The key already finished: here is its outcome.
    Replay(Box<RequestOutcome>),
    /// The key is in flight in another request: wait for its outcome.
    Wait(oneshot::Receiver<RequestOutcome>),
}

/// What becomes of a held request's money: charged (a settle) or given
/// back (a release). Not the request's outcome, which is a
/// [`RequestOutcome`].
#[derive(Clone, Debug)]
pub enum Settlement {
    /// Charge the real cost (capped at the hold), free the rest.
    Charge(Credits),
    /// Return the whole hold.
    Release(String),
}

/// Close a hold and store the request, its ledger entries and rollups in
/// one commit; answered after the commit.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Finished, WalletError>")]
pub struct Finish {
    pub hold_id: u64,
    pub settlement: Settlement,
    pub record: Box<RequestRecord>,
    /// The key and the outcome to remember for it; the wallet sets the
    /// outcome's `cost`, `balance` and `available` before storing it.
    pub idem: Option<(String, [u8; 32], RequestOutcome)>,
    pub now: Millis,
}

/// The wallet's figures after a [`Finish`]: what was charged and what is
/// left, for the request's outcome.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    pub charged: Credits,
    pub shortfall: Credits,
    pub balance: Credits,
    pub available: Credits,
}

/// Add credits; answered after the commit.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<LedgerEntry, WalletError>")]
pub struct TopUp {
    pub amount: Credits,
    pub note: Option<String>,
    pub now: Millis,
}

/// Replace the budget; answered after the commit.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<(), WalletError>")]
pub struct SetBudget(pub BudgetConfig);

/// Move an open hold to a fallback provider, checking that provider's own
/// budget. In memory only: a crash releases every open hold anyway, and the
/// settle that follows stores the wallet with the spend where it belongs.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<(), WalletError>")]
pub struct Retarget {
    pub hold_id: u64,
    pub provider: String,
    pub now: Millis,
}

/// Read the wallet's figures.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<WalletView, WalletError>")]
pub struct View {
    pub now: Millis,
}

/// Why a wallet operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    #[error("the broker is overloaded; retry shortly")]
    Busy,
    #[error("no such user")]
    UnknownUser,
    #[error("{0}")]
    Store(Arc<StoreError>),
    #[error("wallet unavailable: {0}")]
    Unavailable(String),
}

// ---- the actor ------------------------------------------------------------

enum IdemState {
    Pending {
        body_hash: [u8; 32],
        waiters: Vec<oneshot::Sender<RequestOutcome>>,
    },
    Done {
        body_hash: [u8; 32],
        result: Box<RequestOutcome>,
    },
}

/// The owner of one user's money.
pub struct WalletActor {
    user_id: String,
    /// `None` until loaded, or if the user does not exist.
    wallet: Option<Wallet>,
    store: Arc<dyn Store>,
    persist: Persistence,
    registry: Arc<DashMap<String, Addr<WalletActor>>>,
    /// The queue slot each open hold reserved for its finish.
    slots: HashMap<u64, Slot>,
    idem: HashMap<String, IdemState>,
    /// Finished keys in completion order, to bound `idem`.
    idem_done: VecDeque<String>,
    idem_memory: usize,
    /// Writes sent and not yet committed.
    pending: usize,
    last_used: Instant,
    idle_stop: Duration,
    mailbox: usize,
    load_error: Option<String>,
    /// When this actor was made, and when it last forgot a finished key:
    /// together they say whether a prefetched store read is still current.
    created_at: Instant,
    last_eviction: Option<Instant>,
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
    fn load(&self) -> Result<Option<Wallet>, StoreError> {
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

    fn stop_if_idle(&mut self, ctx: &mut Context<Self>) {
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
    fn leave(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.registry.remove_if(&self.user_id, |_, a| *a == me);
        ctx.stop();
    }

    fn wallet(&mut self) -> Result<&mut Wallet, WalletError> {
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

    /// Sends `ops` (plus a wallet snapshot) and returns a future that
    /// resolves after their commit. A failed commit stops the process (see
    /// the persistence thread), so memory is never left ahead of the file;
    /// an error here means the broker is shutting down.
    fn commit(
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

    /// Looks the key up in memory, then in the store. `Ok(None)`: new key,
    /// now marked pending.
    fn claim(&mut self, k: &IdemKey) -> Result<Option<Reserved>, WalletError> {
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
        // A read made before this message was sent is still current if this
        // actor already existed then and has evicted nothing since: any later
        // finish of the key happened here and is in memory. Otherwise read
        // now (rare: a fresh actor or an eviction in between).
        let fresh = k.prefetched.as_ref().filter(|p| {
            self.created_at <= p.read_at && self.last_eviction.is_none_or(|e| e < p.read_at)
        });
        let stored = match fresh {
            Some(p) => p.record.clone(),
            None => self
                .store
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
    fn remember(&mut self, key: String, body_hash: [u8; 32], result: RequestOutcome) {
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
    fn forget(&mut self, key: &str, result: RequestOutcome) {
        if let Some(IdemState::Pending { waiters, .. }) = self.idem.remove(key) {
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    /// Drops a pending key whose finish failed: its waiters get an error
    /// instead of waiting forever, and the key is free again.
    fn abandon(&mut self, key: Option<&str>) {
        if let Some(k) = key {
            if matches!(self.idem.get(k), Some(IdemState::Pending { .. })) {
                self.idem.remove(k);
            }
        }
    }

    /// Forgets a pending key whose request never got a hold, so the client
    /// may retry it.
    fn unclaim(&mut self, key: &str) {
        if matches!(self.idem.get(key), Some(IdemState::Pending { waiters, .. }) if waiters.is_empty())
        {
            self.idem.remove(key);
        }
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
    fn reserve(&mut self, m: &Reserve) -> Result<Reserved, WalletError> {
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
    fn finish(
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
            shortfall,
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

// ---- the handle -----------------------------------------------------------

/// Settings of the wallet actors.
#[derive(Clone, Debug)]
pub struct WalletSettings {
    pub idle_stop: Duration,
    pub mailbox: usize,
    pub idempotency_memory: usize,
}

struct Inner {
    map: Arc<DashMap<String, Addr<WalletActor>>>,
    /// Callers waiting on each user's actor (all but finishes).
    inflight: DashMap<String, Arc<AtomicUsize>>,
    arbiters: Vec<ArbiterHandle>,
    /// The arbiter threads, joined on shutdown so every actor (and its
    /// handle on the database) is gone when `stop` returns.
    threads: std::sync::Mutex<Vec<Arbiter>>,
    store: Arc<dyn Store>,
    persist: Persistence,
    settings: WalletSettings,
}

/// One caller counted against a user's bound until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Finds or starts the wallet actor of a user and talks to it.
#[derive(Clone)]
pub struct Wallets {
    inner: Arc<Inner>,
}

impl Wallets {
    /// Must run inside an actix system. Starts `arbiters` threads that the
    /// wallet actors are spread over.
    pub fn start(
        store: Arc<dyn Store>,
        persist: Persistence,
        arbiters: usize,
        settings: WalletSettings,
    ) -> Wallets {
        let threads: Vec<Arbiter> = (0..arbiters.max(1)).map(|_| Arbiter::new()).collect();
        let arbiters = threads.iter().map(|a| a.handle()).collect();
        let threads = std::sync::Mutex::new(threads);
        Wallets {
            inner: Arc::new(Inner {
                map: Arc::new(DashMap::new()),
                inflight: DashMap::new(),
                arbiters,
                threads,
                store,
                persist,
                settings,
            }),
        }
    }

    /// Stops every wallet actor and waits for their threads.
    pub async fn stop(&self) {
        self.inner.map.clear();
        let threads = self
            .inner
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for a in &threads {
            a.stop();
        }
        let _ = tokio::task::spawn_blocking(move || {
            for a in threads {
                a.join().ok();
            }
        })
        .await;
    }

    /// Wallet actors alive now.
    pub fn alive(&self) -> usize {
        self.inner.map.len()
    }

    fn addr(&self, user_id: &str) -> Addr<WalletActor> {
        if let Some(a) = self.inner.map.get(user_id) {
            return a.clone();
        }
        let i = &self.inner;
        // The entry lock makes the start atomic: never two actors per user.
        i.map
            .entry(user_id.to_string())
            .or_insert_with(|| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                user_id.hash(&mut h);
                let arbiter = &i.arbiters[(h.finish() as usize) % i.arbiters.len()];
                let actor = WalletActor {
                    user_id: user_id.to_string(),
                    wallet: None,
                    store: i.store.clone(),
                    persist: i.persist.clone(),
                    registry: i.map.clone(),
                    slots: HashMap::new(),
                    idem: HashMap::new(),
                    idem_done: VecDeque::new(),
                    idem_memory: i.settings.idempotency_memory,
                    pending: 0,
                    last_used: Instant::now(),
                    idle_stop: i.settings.idle_stop,
                    mailbox: i.settings.mailbox,
                    load_error: None,
                    created_at: Instant::now(),
                    last_eviction: None,
                };
                WalletActor::start_in_arbiter(arbiter, move |_| actor)
            })
            .clone()
    }

    /// Sends `msg` to the user's actor, starting a fresh one if the last
    /// one stopped between lookup and delivery.
    pub async fn ask<M>(&self, user_id: &str, msg: M) -> Result<M::Result, WalletError>
    where
        M: Message + Send + Clone + 'static,
        M::Result: Send,
        WalletActor: Handler<M>,
    {
        for _ in 0..3 {
            let addr = self.addr(user_id);
            match addr.send(msg.clone()).await {
                Ok(r) => return Ok(r),
                Err(MailboxError::Closed) => {
                    self.inner.map.remove_if(user_id, |_, a| *a == addr);
                }
                Err(MailboxError::Timeout) => return Err(WalletError::Busy),
            }
        }
        Err(WalletError::Unavailable(
            "wallet actor keeps stopping".into(),
        ))
    }

    /// Counts a caller against the user's bound (`wallets.mailbox`), or
    /// answers `Busy` past it. actix mailboxes only make senders wait, so
    /// the bound with an overload answer is kept here.
    fn admit(&self, user_id: &str) -> Result<InFlight, WalletError> {
        let counter = self
            .inner
            .inflight
            .entry(user_id.to_string())
            .or_default()
            .clone();
        let n = counter.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = InFlight(counter);
        if n > self.inner.settings.mailbox {
            return Err(WalletError::Busy);
        }
        Ok(guard)
    }

    /// Reserves money for a request. A new idempotency key is first read
    /// from the store on the blocking pool (after the overload check), so
    /// the wallet's thread need not block on it.
    pub async fn reserve(&self, user_id: &str, mut m: Reserve) -> Result<Reserved, WalletError> {
        let _in_flight = self.admit(user_id)?;
        if let Some(k) = m.idem.as_mut().filter(|k| k.prefetched.is_none()) {
            let (store, user, key) = (self.inner.store.clone(), user_id.to_string(), k.key.clone());
            let read_at = Instant::now();
            let record = tokio::task::spawn_blocking(move || store.idempotency(&user, &key))
                .await
                .map_err(|e| WalletError::Unavailable(format!("storage task failed: {e}")))?
                .map_err(|e| WalletError::Store(Arc::new(e)))?;
            k.prefetched = Some(Prefetched { record, read_at });
        }
        self.ask(user_id, m).await?
    }

    /// Never refused for load: its queue slot was reserved with its hold.
    pub async fn finish(&self, user_id: &str, m: Finish) -> Result<Finished, WalletError> {
        self.ask(user_id, m).await?
    }

    pub async fn top_up(&self, user_id: &str, m: TopUp) -> Result<LedgerEntry, WalletError> {
        let _in_flight = self.admit(user_id)?;
        self.ask(user_id, m).await?
    }

    pub async fn set_budget(&self, user_id: &str, b: BudgetConfig) -> Result<(), WalletError> {
        let _in_flight = self.admit(user_id)?;
        self.ask(user_id, SetBudget(b)).await?
    }

    pub async fn retarget(&self, user_id: &str, m: Retarget) -> Result<(), WalletError> {
        self.ask(user_id, m).await?
    }

    pub async fn view(&self, user_id: &str, now: Millis) -> Result<WalletView, WalletError> {
        let _in_flight = self.admit(user_id)?;
        self.ask(user_id, View { now }).await?
    }
}
