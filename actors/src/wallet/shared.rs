//! Wallets kept in PostgreSQL for many nodes ([`SharedWallets`]): the row
//! is the wallet; a node keeps no copy of it, only a queue in front of it.
//!
//! Every change runs the same ledger arithmetic as a single node's wallet
//! (`oneflow::ledger::Wallet`), on the row itself under its lock: a
//! writer task takes every change queued meanwhile and commits them in one
//! transaction (`PgStore::commit_changes`), answering each after the
//! commit. A hold on one node waits for a settle on another to commit, and
//! reads what it left, so no two nodes can spend the same money, and the
//! node's commits carry many requests each, as a single node's do.
//!
//! Holds carry this node's id; a task on the connections' thread renews
//! the node's lease and releases the holds of nodes whose lease ran out
//! (`nodes.rs` in the store), exactly once: a release is itself a change
//! under the row lock, and a hold already released is no longer there.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use oneflow::Credits;
use oneflow::budget::BudgetConfig;
use oneflow::ledger::{Refusal, Wallet};
use oneflow::time::Millis;

use crate::store::postgres::{Answer, Change, Claim, PgStore};
use crate::store::{IdempotencyRecord, OpenHold, StoreError, WriteOp};
use crate::views::WalletView;

use super::cell::view_of;
use super::handle::WalletSettings;
use super::messages::*;

/// How often a key another request holds is looked at again.
const KEY_POLL: Duration = Duration::from_millis(20);
/// The longest a repeat waits for the first request with its key.
const KEY_WAIT: Duration = Duration::from_secs(600);

struct Inner {
    store: Arc<PgStore>,
    settings: WalletSettings,
    /// Changes waiting for the writer; bounded (a full queue is 503).
    queue: mpsc::Sender<(String, Change)>,
    /// (user, hold id) of every hold a request of this node waits on: the
    /// sweep leaves those alone however old they are.
    open: Mutex<HashSet<(String, u64)>>,
    lease: Duration,
    /// Dropped to end the lease task.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

/// The wallets of a node that shares its ledger. Cheap to clone.
#[derive(Clone)]
pub struct SharedWallets {
    inner: Arc<Inner>,
}

fn store_err(e: StoreError) -> WalletError {
    WalletError::Store(Arc::new(e))
}

fn closed() -> WalletError {
    store_err(StoreError::Closed)
}

/// The node's one writer: takes the first change queued and every other
/// one ready, commits them together, and starts again at once (no timer:
/// a batch is whatever queued while the last commit ran).
async fn write_loop(store: Arc<PgStore>, mut rx: mpsc::Receiver<(String, Change)>, max: usize) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let n = batch.len();
        // Each change was answered with the outcome, error or not.
        let ok = store.commit_changes(batch).await.is_ok();
        crate::metrics::shared_commit(n, started.elapsed(), ok);
    }
}

/// A change's result and the rows that record it.
type Step<R> = Result<(R, Vec<WriteOp>), WalletError>;

impl SharedWallets {
    /// Registers the node and starts its lease task.
    pub async fn start(
        store: Arc<PgStore>,
        settings: WalletSettings,
        lease: Duration,
        queue: usize,
        max_batch: usize,
    ) -> Result<SharedWallets, StoreError> {
        store.register_node(env!("CARGO_PKG_VERSION")).await?;
        let (stop, stopped) = oneshot::channel();
        let (tx, rx) = mpsc::channel(queue.max(2));
        store
            .pg()
            .spawn(write_loop(store.clone(), rx, max_batch.max(1)));
        let w = SharedWallets {
            inner: Arc::new(Inner {
                store: store.clone(),
                settings,
                queue: tx,
                open: Mutex::new(HashSet::new()),
                lease,
                stop: Mutex::new(Some(stop)),
            }),
        };
        let weak = Arc::downgrade(&w.inner);
        store.pg().spawn(async move {
            let every = lease / 4;
            let mut stopped = stopped;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(every) => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                SharedWallets { inner }.tick().await;
            }
        });
        Ok(w)
    }

    /// Ends the lease task and gives the lease up, so whatever this node
    /// still had open is released by the next node that looks.
    pub async fn stop(&self) {
        let stop = self.inner.stop.lock().ok().and_then(|mut s| s.take());
        drop(stop);
        if let Err(e) = self.inner.store.leave().await {
            eprintln!("oneflow: could not give up this node's lease: {e}");
        }
    }

    /// Holds open through this node (a shared node keeps no wallet in
    /// memory).
    pub fn alive(&self) -> usize {
        self.inner.open.lock().map_or(0, |o| o.len())
    }

    fn lease_ms(&self) -> i64 {
        self.inner.lease.as_millis() as i64
    }

    /// One turn of the lease task: renew, release what dead nodes left.
    async fn tick(&self) {
        let s = &self.inner.store;
        if let Err(e) = s.heartbeat().await {
            eprintln!("oneflow: renewing this node's lease failed: {e}");
            return;
        }
        if let Err(e) = self.release_orphans().await {
            eprintln!("oneflow: releasing holds of stopped nodes failed: {e}");
        }
        if let Err(e) = s.drop_dead_claims(self.lease_ms()).await {
            eprintln!("oneflow: freeing idempotency keys of stopped nodes failed: {e}");
        }
    }

    /// Releases the holds of nodes whose lease ran out, and this node's own
    /// holds that no request of it waits on (a commit whose answer was
    /// lost). Returns how many this node released.
    pub async fn release_orphans(&self) -> Result<usize, StoreError> {
        let now = crate::ids::now_ms();
        let orphans = self
            .inner
            .store
            .orphan_holds(self.lease_ms(), now - self.lease_ms(), 1000)
            .await?;
        let mut released = 0;
        for o in orphans {
            let h = &o.hold.hold;
            let mine = o.node_id == self.inner.store.node_id();
            if mine && self.is_open(&h.user_id, h.id) {
                continue;
            }
            match self.release_orphan(&o.hold, now).await {
                Ok(true) => released += 1,
                Ok(false) => {}
                Err(e) => eprintln!("oneflow: releasing hold {} failed: {e}", h.id),
            }
        }
        if released > 0 {
            eprintln!("oneflow: released {released} holds left by stopped nodes");
        }
        Ok(released)
    }

    /// `false`: another node released it first (the row that still named
    /// it is deleted).
    async fn release_orphan(&self, open: &OpenHold, now: Millis) -> Result<bool, WalletError> {
        let h = open.hold.clone();
        let record = match self.inner.store.has_request(&h.request_id).await {
            Ok(true) => None,
            Ok(false) => Some(open.interrupted()),
            Err(e) => return Err(store_err(e)),
        };
        let user = h.user_id.clone();
        let uid = user.clone();
        let result = self
            .change(&user, true, move |w| {
                let note = "released: the node running the request stopped";
                let entry = w.release(h.id, Some(note), now)?;
                let mut ops = vec![
                    WriteOp::AppendEntry(entry),
                    WriteOp::DeleteHold {
                        user_id: uid,
                        id: h.id,
                    },
                ];
                if let Some(r) = record {
                    ops.push(WriteOp::PutRequest(Box::new(r)));
                }
                Ok(((), ops))
            })
            .await;
        match result {
            Ok(()) => {
                crate::metrics::hold_closed();
                Ok(true)
            }
            Err(WalletError::Refused(Refusal::UnknownHold(_))) => {
                self.inner
                    .store
                    .forget_hold(&user, h.id)
                    .await
                    .map_err(store_err)?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn is_open(&self, user_id: &str, hold_id: u64) -> bool {
        self.inner
            .open
            .lock()
            .is_ok_and(|o| o.contains(&(user_id.to_string(), hold_id)))
    }

    fn set_open(&self, user_id: &str, hold_id: u64, open: bool) {
        if let Ok(mut o) = self.inner.open.lock() {
            let k = (user_id.to_string(), hold_id);
            if open {
                o.insert(k);
            } else {
                o.remove(&k);
            }
        }
    }

    /// Queues `step` for the writer and waits for its commit. `wait`:
    /// a full queue is waited out (a finish, which must not be lost)
    /// rather than refused (anything new).
    async fn change<R: Send + 'static>(
        &self,
        user_id: &str,
        wait: bool,
        step: impl FnOnce(&mut Wallet) -> Step<R> + Send + 'static,
    ) -> Result<R, WalletError> {
        let (tx, rx) = oneshot::channel();
        let change: Change = Box::new(move |w| {
            let outcome = match w {
                Some(w) => step(w),
                None => Err(WalletError::UnknownUser),
            };
            let (result, ops) = match outcome {
                Ok((r, ops)) => (Ok(r), Some(ops)),
                Err(e) => (Err(e), None),
            };
            let answer: Answer = Box::new(move |committed| {
                let _ = tx.send(committed.map_err(WalletError::Store).and(result));
            });
            (ops, answer)
        });
        let item = (user_id.to_string(), change);
        if wait {
            self.inner.queue.send(item).await.map_err(|_| closed())?;
        } else {
            self.inner.queue.try_send(item).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => WalletError::Busy,
                mpsc::error::TrySendError::Closed(_) => closed(),
            })?;
        }
        rx.await.map_err(|_| closed())?
    }

    /// Claims an idempotency key: `Ok(None)` if it is this request's to
    /// run, otherwise the answer (or a wait for it).
    async fn claim(
        &self,
        user_id: &str,
        k: &IdemKey,
        now: Millis,
    ) -> Result<Option<Reserved>, WalletError> {
        let retention = self.inner.settings.idempotency.retention_ms;
        let claim = self
            .inner
            .store
            .claim_key(user_id, &k.key, now, now.saturating_sub(retention))
            .await
            .map_err(store_err)?;
        match claim {
            Claim::Won => Ok(None),
            Claim::Answered(r) if r.body_hash != k.body_hash => {
                Err(WalletError::IdempotencyMismatch)
            }
            Claim::Answered(r) => Ok(Some(Reserved::Replay(Arc::new(*r)))),
            Claim::Running => Ok(Some(Reserved::Wait(self.wait_for(user_id, k)))),
        }
    }

    /// Looks at a key another request holds until it has an answer. If
    /// that request fails (its claim is freed), the wait ends in an error
    /// and the client may retry.
    fn wait_for(&self, user_id: &str, k: &IdemKey) -> oneshot::Receiver<Arc<IdempotencyRecord>> {
        let (tx, rx) = oneshot::channel();
        let (store, user, key, hash) = (
            self.inner.store.clone(),
            user_id.to_string(),
            k.key.clone(),
            k.body_hash,
        );
        tokio::spawn(async move {
            let deadline = Instant::now() + KEY_WAIT;
            while Instant::now() < deadline && !tx.is_closed() {
                tokio::time::sleep(KEY_POLL).await;
                match store.key_state(&user, &key).await {
                    Ok(Some(Claim::Answered(r))) if r.body_hash == hash => {
                        let _ = tx.send(Arc::new(*r));
                        return;
                    }
                    Ok(Some(Claim::Running)) => {}
                    _ => return,
                }
            }
        });
        rx
    }

    async fn unclaim(&self, user_id: &str, key: Option<&str>) {
        if let Some(key) = key {
            if let Err(e) = self.inner.store.drop_claim(user_id, key).await {
                eprintln!("oneflow: freeing an idempotency key failed: {e}");
            }
        }
    }

    pub async fn reserve(&self, user_id: &str, m: Reserve) -> Result<Reserved, WalletError> {
        if let Some(k) = &m.idem {
            if let Some(r) = self.claim(user_id, k, m.now).await? {
                return Ok(r);
            }
        }
        let key = m.idem.as_ref().map(|k| k.key.clone());
        let max = self.inner.settings.max_in_flight;
        let result = self
            .change(user_id, false, move |w| {
                // Every node's holds are in the row: the bound is the
                // user's, whichever nodes their requests went to.
                if w.holds.len() >= max {
                    return Err(WalletError::TooManyInFlight);
                }
                let (hold, entry) = w.hold(&m.request_id, &m.provider, m.amount, m.now)?;
                let id = hold.id;
                let open = OpenHold {
                    hold,
                    model: m.model,
                    modality: m.modality,
                    prompt_preview: m.prompt_preview,
                };
                let ops = vec![
                    WriteOp::AppendEntry(entry),
                    WriteOp::PutHold(Box::new(open)),
                ];
                Ok((id, ops))
            })
            .await;
        match result {
            Ok(hold_id) => {
                self.set_open(user_id, hold_id, true);
                crate::metrics::hold_opened();
                Ok(Reserved::Held { hold_id })
            }
            Err(e) => {
                self.unclaim(user_id, key.as_deref()).await;
                Err(e)
            }
        }
    }

    pub async fn finish(&self, user_id: &str, m: Finish) -> Result<Finished, WalletError> {
        let provider = m.record.provider.clone();
        let keep = matches!(m.settlement, Settlement::Charge(_));
        let key = m.idem.as_ref().map(|(k, _)| k.clone());
        let hold_id = m.hold_id;
        let user = user_id.to_string();
        let result = self
            .change(user_id, true, move |w| {
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
                    user_id: user.clone(),
                    id: m.hold_id,
                });
                ops.push(WriteOp::PutRequest(record));
                if let (Some((key, mut idem)), true) = (m.idem, keep) {
                    if let Some(r) = idem.result.as_mut() {
                        r.cost = charged;
                        r.balance = finished.balance;
                        r.available = finished.available;
                    }
                    idem.at = m.now;
                    ops.push(WriteOp::PutIdempotency {
                        user_id: user,
                        key,
                        record: Box::new(idem),
                    });
                }
                Ok((finished, ops))
            })
            .await;
        // However it went, this request waits on the hold no more.
        self.set_open(user_id, hold_id, false);
        if !keep || result.is_err() {
            self.unclaim(user_id, key.as_deref()).await;
        }
        let finished = result?;
        crate::metrics::hold_closed();
        crate::metrics::charged(&provider, finished.charged);
        Ok(finished)
    }

    pub async fn top_up(&self, user_id: &str, m: TopUp) -> Result<ToppedUp, WalletError> {
        if let Some(k) = &m.idem {
            let record = match self.claim(user_id, k, m.now).await? {
                None => None,
                Some(Reserved::Replay(r)) => Some(r),
                Some(Reserved::Wait(rx)) => Some(rx.await.map_err(|_| {
                    WalletError::Unavailable("the first top-up with this key did not finish".into())
                })?),
                Some(Reserved::Held { .. }) => None,
            };
            if let Some(record) = record {
                let entry = record
                    .answer
                    .as_deref()
                    .and_then(|a| serde_json::from_str(a).ok())
                    .ok_or(WalletError::IdempotencyMismatch)?;
                return Ok(ToppedUp {
                    entry,
                    replayed: true,
                });
            }
        }
        let key = m.idem.as_ref().map(|k| k.key.clone());
        let user = user_id.to_string();
        let result = self
            .change(user_id, false, move |w| {
                let entry = w.top_up(m.amount, m.note.as_deref(), m.now)?;
                let mut ops = vec![WriteOp::AppendEntry(entry.clone())];
                if let Some(k) = &m.idem {
                    let answer = serde_json::to_string(&entry)
                        .map_err(|e| WalletError::Unavailable(e.to_string()))?;
                    ops.push(WriteOp::PutIdempotency {
                        user_id: user,
                        key: k.key.clone(),
                        record: Box::new(IdempotencyRecord {
                            body_hash: k.body_hash,
                            result: None,
                            answer: Some(answer),
                            at: m.now,
                        }),
                    });
                }
                Ok((entry, ops))
            })
            .await;
        match result {
            Ok(entry) => Ok(ToppedUp {
                entry,
                replayed: false,
            }),
            Err(e) => {
                self.unclaim(user_id, key.as_deref()).await;
                Err(e)
            }
        }
    }

    pub async fn set_budget(&self, user_id: &str, b: BudgetConfig) -> Result<(), WalletError> {
        let user = user_id.to_string();
        self.change(user_id, false, move |w| {
            w.budget = b.clone();
            let op = WriteOp::PutBudget {
                user_id: user,
                budget: b,
            };
            Ok(((), vec![op]))
        })
        .await
    }

    pub async fn retarget(&self, user_id: &str, m: Retarget) -> Result<(), WalletError> {
        self.change(user_id, true, move |w| {
            w.retarget(m.hold_id, &m.provider, m.now)?;
            Ok(((), Vec::new()))
        })
        .await
    }

    /// Read from the row, not the copy: another node may have changed it.
    pub async fn view(&self, user_id: &str, now: Millis) -> Result<WalletView, WalletError> {
        match self.inner.store.load_wallet(user_id).await {
            Ok(Some(w)) => Ok(view_of(&w, now)),
            Ok(None) => Err(WalletError::UnknownUser),
            Err(e) => Err(store_err(e)),
        }
    }
}
