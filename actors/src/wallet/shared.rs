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
//! Holds carry this node's id; tasks on the connections' thread renew the
//! node's lease and release the holds of nodes whose lease ran out
//! (`lease.rs`), exactly once: a release is itself a change under the row
//! lock, and a hold already released is no longer there.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use oneflow::budget::BudgetConfig;
use oneflow::ledger::{Refusal, Wallet};
use oneflow::records::RequestRecord;
use oneflow::time::Millis;

use crate::store::postgres::{Answer, Change, Claim, PgStore};
use crate::store::{IdempotencyRecord, StoreError, WriteOp};
use crate::views::WalletView;

use super::cell::view_of;
use super::handle::WalletSettings;
use super::lease::{self, Beat};
use super::messages::*;
use super::steps::{self, Step, finish_step};

/// How often a key another request holds is looked at again, at first;
/// the wait doubles up to `KEY_POLL_MAX`.
const KEY_POLL: Duration = Duration::from_millis(20);
const KEY_POLL_MAX: Duration = Duration::from_millis(500);
/// Repeats one node lets wait for another request's answer at once; past
/// it a repeat is answered 503 (retry shortly).
const MAX_WAITERS: usize = 1024;
/// How long a finish keeps trying through store errors before it gives its
/// hold up to the sweep (which records the request as interrupted).
const FINISH_PATIENCE: Duration = Duration::from_secs(30);
/// The longest a repeat waits for the first request with its key.
const KEY_WAIT: Duration = Duration::from_secs(600);

pub(super) struct Inner {
    store: Arc<PgStore>,
    settings: WalletSettings,
    /// Changes waiting for the writer; bounded (a full queue is 503).
    queue: mpsc::Sender<(String, Change)>,
    /// (user, hold id) of every hold a request of this node waits on: the
    /// sweep leaves those alone however old they are.
    open: Mutex<HashSet<(String, u64)>>,
    lease: Duration,
    beat: Beat,
    /// Idempotency keys this node claimed and has not answered or freed:
    /// the sweep frees any other claim of this node (a lost answer).
    claims: Mutex<HashSet<(String, String)>>,
    /// Repeats waiting for another request's answer, bounded.
    waiters: Arc<Semaphore>,
    /// Tells the lease tasks to end; they are awaited at stop.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
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
/// a batch is whatever queued while the last commit ran). One, not more:
/// two writers measured slower (docs/performance.md), their batches
/// queueing on the same rollup rows.
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
        let (tx, rx) = mpsc::channel(queue.max(2));
        store
            .pg()
            .spawn(write_loop(store.clone(), rx, max_batch.max(1)));
        let (stop, stopped) = watch::channel(false);
        let w = SharedWallets {
            inner: Arc::new(Inner {
                store: store.clone(),
                settings,
                queue: tx,
                open: Mutex::new(HashSet::new()),
                lease,
                beat: Beat::new(),
                claims: Mutex::new(HashSet::new()),
                waiters: Arc::new(Semaphore::new(MAX_WAITERS)),
                stop,
                tasks: Mutex::new(Vec::new()),
            }),
        };
        let tasks = lease::start(&w, stopped);
        if let Ok(mut t) = w.inner.tasks.lock() {
            *t = tasks;
        }
        Ok(w)
    }

    /// Ends the lease tasks, then gives the lease up, so whatever this node
    /// still had open is released by the next node that looks (a renewal
    /// already under way cannot take it back after).
    pub async fn stop(&self) {
        let _ = self.inner.stop.send(true);
        let tasks = self
            .inner
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        if let Err(e) = self.inner.store.leave().await {
            eprintln!("oneflow: could not give up this node's lease: {e}");
        }
    }

    pub(super) fn store(&self) -> &Arc<PgStore> {
        &self.inner.store
    }

    pub(super) fn lease(&self) -> Duration {
        self.inner.lease
    }

    pub(super) fn beat(&self) -> &Beat {
        &self.inner.beat
    }

    pub(super) fn reporter(&self) -> Option<&crate::scheduler::Reporter> {
        self.inner.settings.reporter.as_ref()
    }

    pub(super) fn retention_ms(&self) -> Millis {
        self.inner.settings.idempotency.retention_ms
    }

    pub(super) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(super) fn upgrade(w: &Weak<Inner>) -> Option<SharedWallets> {
        w.upgrade().map(|inner| SharedWallets { inner })
    }

    /// The writer task ended (it only does if it panicked).
    pub(super) fn writer_gone(&self) -> bool {
        self.inner.queue.is_closed()
    }

    pub(super) fn has_claim(&self, user_id: &str, key: &str) -> bool {
        self.inner
            .claims
            .lock()
            .is_ok_and(|c| c.contains(&(user_id.to_string(), key.to_string())))
    }

    fn set_claim(&self, user_id: &str, key: &str, held: bool) {
        if let Ok(mut c) = self.inner.claims.lock() {
            let k = (user_id.to_string(), key.to_string());
            if held {
                c.insert(k);
            } else {
                c.remove(&k);
            }
        }
    }

    /// Holds open through this node (a shared node keeps no wallet in
    /// memory).
    pub fn alive(&self) -> usize {
        self.inner.open.lock().map_or(0, |o| o.len())
    }

    pub(super) fn is_open(&self, user_id: &str, hold_id: u64) -> bool {
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
    pub(super) async fn change<R: Send + 'static>(
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
            Claim::Won => {
                self.set_claim(user_id, &k.key, true);
                Ok(None)
            }
            Claim::Answered(r) if r.body_hash != k.body_hash => {
                Err(WalletError::IdempotencyMismatch)
            }
            Claim::Answered(r) => Ok(Some(Reserved::Replay(Arc::new(*r)))),
            Claim::Running => Ok(Some(Reserved::Wait(self.wait_for(user_id, k)?))),
        }
    }

    /// Looks at a key another request holds until it has an answer. If
    /// that request fails (its claim is freed), the wait ends in an error
    /// and the client may retry.
    fn wait_for(
        &self,
        user_id: &str,
        k: &IdemKey,
    ) -> Result<oneshot::Receiver<Arc<IdempotencyRecord>>, WalletError> {
        let permit = self
            .inner
            .waiters
            .clone()
            .try_acquire_owned()
            .map_err(|_| WalletError::Busy)?;
        let (tx, rx) = oneshot::channel();
        let (store, user, key, hash) = (
            self.inner.store.clone(),
            user_id.to_string(),
            k.key.clone(),
            k.body_hash,
        );
        tokio::spawn(async move {
            let _permit = permit;
            let deadline = Instant::now() + KEY_WAIT;
            let mut pause = KEY_POLL;
            // A client that left closes the receiver: stop looking.
            while Instant::now() < deadline && !tx.is_closed() {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(KEY_POLL_MAX);
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
        Ok(rx)
    }

    async fn unclaim(&self, user_id: &str, key: Option<&str>) {
        if let Some(key) = key {
            self.set_claim(user_id, key, false);
            if let Err(e) = self.inner.store.drop_claim(user_id, key).await {
                eprintln!("oneflow: freeing an idempotency key failed: {e}");
            }
        }
    }

    pub async fn reserve(&self, user_id: &str, m: Reserve) -> Result<Reserved, WalletError> {
        // Past three quarters of a lease without a renewal, the other nodes
        // may soon take this one for dead and release its holds.
        if !self.inner.beat.fresh(self.inner.lease * 3 / 4) {
            return Err(WalletError::Unavailable(
                "this node cannot renew its lease on the shared store; it takes no new requests until it can".into(),
            ));
        }
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
                let (id, ops) = steps::hold(w, &m)?;
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

    /// Settles or releases a hold. A store error is tried again (the
    /// hold stays this node's meanwhile), for up to `FINISH_PATIENCE`: a
    /// request that was served must be charged, not left to the sweep. A
    /// try whose commit happened though its answer was lost shows as the
    /// request's record on the next.
    pub async fn finish(&self, user_id: &str, m: Finish) -> Result<Finished, WalletError> {
        let provider = m.record.provider.clone();
        let keep = matches!(m.settlement, Settlement::Charge(_));
        let key = m.idem.as_ref().map(|(k, _)| k.clone());
        let (hold_id, request_id) = (m.hold_id, m.record.id.clone());
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut failed_before = false;
        let result = loop {
            let step = finish_step(m.clone(), user_id.to_string(), keep);
            match self.change(user_id, true, step).await {
                Err(WalletError::Store(e)) if started.elapsed() < FINISH_PATIENCE => {
                    if !failed_before {
                        eprintln!("oneflow: settling {request_id} failed ({e}); trying again");
                    }
                    failed_before = true;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(WalletError::Refused(Refusal::UnknownHold(_))) if failed_before => {
                    break self.committed_before(user_id, &request_id).await;
                }
                other => break other,
            }
        };
        // However it went, this request waits on the hold no more.
        self.set_open(user_id, hold_id, false);
        if keep && result.is_ok() {
            // Answered: the key's row holds the answer now.
            if let Some(k) = &key {
                self.set_claim(user_id, k, false);
            }
        } else {
            self.unclaim(user_id, key.as_deref()).await;
        }
        let finished = result?;
        crate::metrics::hold_closed();
        crate::metrics::charged(&provider, finished.charged);
        Ok(finished)
    }

    /// The figures of a finish whose commit happened though its answer was
    /// lost: its record, and the wallet as it is now.
    async fn committed_before(&self, user_id: &str, id: &str) -> Result<Finished, WalletError> {
        let store = &self.inner.store;
        let record: Option<RequestRecord> = store.request_record(id).await.map_err(store_err)?;
        let Some(record) = record else {
            return Err(WalletError::Unavailable(format!(
                "the hold of {id} was released before it could be settled"
            )));
        };
        let w = store
            .load_wallet(user_id)
            .await
            .map_err(store_err)?
            .ok_or(WalletError::UnknownUser)?;
        Ok(Finished {
            charged: record.cost,
            balance: w.balance,
            available: w.available(),
        })
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
            w.retarget_with(m.hold_id, &m.provider, m.key.as_deref(), m.now)?;
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
