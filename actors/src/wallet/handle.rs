//! [`LocalWallets`]: finds or loads a user's wallet cell and runs each
//! operation's synchronous step under its lock, on the caller's thread.
//!
//! A step is a few microseconds of arithmetic and a send to the persistence
//! queue; the lock is never held across an await. A caller that must wait
//! for a commit lets the lock go, awaits it, and takes the lock again for
//! what follows the commit (idempotency waiters, the pending count).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use oneflow::budget::BudgetConfig;
use oneflow::time::Millis;

use crate::persistence::{Job, Persistence};
use crate::store::{Store, StoreError, WriteOp};
use crate::views::WalletView;

use super::cell::{Commit, TopUpStep, WalletCell};
use super::idempotency::IdemLimits;
use super::messages::*;

/// Settings of the wallets.
#[derive(Clone, Debug)]
pub struct WalletSettings {
    /// A wallet unused this long, with nothing in flight, leaves memory.
    pub idle_stop: Duration,
    /// Requests one user may have holding money at once.
    pub max_in_flight: usize,
    pub idempotency: IdemLimits,
    /// Where the idempotency purge reports its runs (`scheduler.rs`).
    pub reporter: Option<crate::scheduler::Reporter>,
}

type Shared = Arc<Mutex<WalletCell>>;

struct Inner {
    map: DashMap<String, Shared>,
    store: Arc<dyn Store>,
    persist: Persistence,
    settings: WalletSettings,
    /// Stops the idle sweeper; taken by `stop`.
    sweeper: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
    /// Wallets dropped for idleness since the start.
    dropped: AtomicU64,
}

/// Most expired idempotency records one purge deletes (one commit's worth;
/// the next sweep takes the rest).
const PURGE_BATCH: usize = 10_000;

impl Inner {
    /// Drops idle cells. A cell someone holds locked is skipped, and a
    /// dropped cell is marked retired under its lock, so a caller that
    /// found it just before cannot change it unseen.
    fn sweep(&self) {
        let idle = self.settings.idle_stop;
        self.map.retain(|_, cell| match cell.try_lock() {
            Ok(mut c) if c.idle(idle) => {
                c.retired = true;
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => true,
        });
    }

    /// Deletes idempotency records whose retention has ended. Skipped when
    /// the persistence queue is full: requests come first.
    fn purge(&self, now: Millis) -> Result<(), String> {
        let before = now.saturating_sub(self.settings.idempotency.retention_ms);
        let Ok(slot) = self.persist.reserve() else {
            return Err("skipped: the persistence queue is full".into());
        };
        {
            // A waiter (whom nobody asks) makes it commit now, not with the
            // next request's commit.
            let (done, _) = tokio::sync::oneshot::channel();
            slot.send(Job {
                ops: vec![WriteOp::PurgeIdempotency {
                    before,
                    limit: PURGE_BATCH,
                }],
                done: Some(done),
            });
        }
        Ok(())
    }
}

/// Finds or loads the wallet of a user and changes it. Cheap to clone.
#[derive(Clone)]
pub struct LocalWallets {
    inner: Arc<Inner>,
}

fn lock(cell: &Shared) -> Result<MutexGuard<'_, WalletCell>, WalletError> {
    cell.lock()
        .map_err(|_| WalletError::Unavailable("the wallet's state was lost to a panic".into()))
}

/// A commit being waited for. If the waiting future is dropped, the
/// commit still happens; this puts the cell's books straight (the pending
/// count, an idempotency key nobody will finish).
struct Waiting {
    cell: Shared,
    key: Option<String>,
    armed: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(mut c) = self.cell.lock() {
                c.committed();
                c.abandon(self.key.as_deref());
            }
        }
    }
}

/// Waits for `rx`'s commit, then runs `then` under the cell's lock.
async fn after_commit<R>(
    cell: Shared,
    rx: Commit,
    key: Option<String>,
    then: impl FnOnce(&mut WalletCell) -> R,
) -> Result<R, WalletError> {
    let mut waiting = Waiting {
        cell,
        key,
        armed: true,
    };
    let res = match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(WalletError::Store(e)),
        Err(_) => Err(WalletError::Store(Arc::new(StoreError::Closed))),
    };
    waiting.armed = false;
    let mut c = lock(&waiting.cell)?;
    c.committed();
    if let Err(e) = res {
        c.abandon(waiting.key.as_deref());
        return Err(e);
    }
    Ok(then(&mut c))
}

impl LocalWallets {
    /// The purge runs a few times per retention, at least every ten
    /// minutes.
    pub fn purge_every(settings: &WalletSettings) -> Duration {
        let retention = Duration::from_millis(settings.idempotency.retention_ms.max(0) as u64);
        (retention / 4).min(Duration::from_secs(600))
    }

    /// Starts the thread that drops idle wallets.
    pub fn start(
        store: Arc<dyn Store>,
        persist: Persistence,
        settings: WalletSettings,
    ) -> std::io::Result<LocalWallets> {
        let purge_every = Self::purge_every(&settings);
        let every = (settings.idle_stop / 4)
            .min(purge_every)
            .max(Duration::from_millis(250));
        let inner = Arc::new(Inner {
            map: DashMap::new(),
            store,
            persist,
            settings,
            sweeper: Mutex::new(None),
            dropped: AtomicU64::new(0),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("oneflow-wallet-sweep".into())
            .spawn(move || {
                let mut purged = Instant::now();
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    let Some(inner) = weak.upgrade() else { break };
                    inner.sweep();
                    if purged.elapsed() >= purge_every {
                        purged = Instant::now();
                        let outcome = inner.purge(crate::ids::now_ms());
                        if let Some(r) = &inner.settings.reporter {
                            r.ran(purged, outcome, purge_every);
                        }
                    }
                }
            })?;
        if let Ok(mut s) = inner.sweeper.lock() {
            *s = Some((tx, thread));
        }
        Ok(LocalWallets { inner })
    }

    /// Stops the sweeper and lets go of every wallet in memory (their
    /// changes are committed or still in the persistence queue, which the
    /// broker drains after this).
    pub async fn stop(&self) {
        let sweeper = self.inner.sweeper.lock().ok().and_then(|mut s| s.take());
        if let Some((tx, thread)) = sweeper {
            drop(tx);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.inner.map.clear();
    }

    /// Wallets in memory now.
    pub fn alive(&self) -> usize {
        self.inner.map.len()
    }

    /// Wallets dropped for idleness since the start.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    fn cell(&self, user_id: &str) -> Shared {
        if let Some(c) = self.inner.map.get(user_id) {
            return c.clone();
        }
        // The entry lock makes the insert atomic: never two cells per user.
        // The store is read later, under the cell's own lock.
        let limits = self.inner.settings.idempotency;
        self.inner
            .map
            .entry(user_id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(WalletCell::new(user_id, limits))))
            .clone()
    }

    /// Runs `f` on the user's live cell, under its lock.
    fn with<R>(
        &self,
        user_id: &str,
        f: impl FnOnce(&mut WalletCell, &Inner) -> R,
    ) -> Result<(Shared, R), WalletError> {
        self.with_found(|| self.cell(user_id), f)
    }

    /// [`LocalWallets::with`], the cell found by `find` (tests hand it a stale
    /// one first).
    fn with_found<R>(
        &self,
        mut find: impl FnMut() -> Shared,
        f: impl FnOnce(&mut WalletCell, &Inner) -> R,
    ) -> Result<(Shared, R), WalletError> {
        let mut f = Some(f);
        // A retired cell has left the map, so the next lookup makes a new
        // one; a second retirement in a row would need the sweeper to find
        // a cell idle that was made a moment ago.
        for _ in 0..3 {
            let cell = find();
            let mut c = lock(&cell)?;
            if c.retired {
                continue;
            }
            c.ensure_loaded(&*self.inner.store);
            let r = match f.take() {
                Some(f) => f(&mut c, &self.inner),
                None => break,
            };
            drop(c);
            return Ok((cell, r));
        }
        Err(WalletError::Unavailable(
            "the wallet keeps leaving memory".into(),
        ))
    }

    /// Reserves money for a request. A new idempotency key is first read
    /// from the store on the blocking pool, so no lock is held across the
    /// read.
    pub async fn reserve(&self, user_id: &str, mut m: Reserve) -> Result<Reserved, WalletError> {
        self.prefetch(user_id, m.idem.as_mut()).await?;
        let max = self.inner.settings.max_in_flight;
        let (_, r) = self.with(user_id, |c, i| c.reserve(&*i.store, &i.persist, &m, max))?;
        r
    }

    /// Reads a key's stored record on the blocking pool, before the lock.
    async fn prefetch(&self, user_id: &str, k: Option<&mut IdemKey>) -> Result<(), WalletError> {
        let Some(k) = k.filter(|k| k.prefetched.is_none()) else {
            return Ok(());
        };
        let (store, user, key) = (self.inner.store.clone(), user_id.to_string(), k.key.clone());
        let read_at = Instant::now();
        let record = tokio::task::spawn_blocking(move || store.idempotency(&user, &key))
            .await
            .map_err(|e| WalletError::Unavailable(format!("storage task failed: {e}")))?
            .map_err(|e| WalletError::Store(Arc::new(e)))?;
        k.prefetched = Some(Prefetched { record, read_at });
        Ok(())
    }

    /// Never refused for load: its queue slot was reserved with its hold.
    pub async fn finish(&self, user_id: &str, m: Finish) -> Result<Finished, WalletError> {
        let key = m.idem.as_ref().map(|(k, _)| k.clone());
        let provider = m.record.provider.clone();
        let (cell, step) = self.with(user_id, |c, i| match c.finish(&i.persist, m) {
            Ok((finished, slot, ops, idem)) => Ok((finished, c.send(slot, ops), idem)),
            Err(e) => {
                c.abandon(key.as_deref());
                Err(e)
            }
        })?;
        let (finished, rx, idem) = step?;
        crate::metrics::hold_closed();
        after_commit(cell, rx, key, |c| c.finished(idem)).await?;
        crate::metrics::charged(&provider, finished.charged);
        Ok(finished)
    }

    /// Credits a wallet once per Idempotency-Key: a repeat (also one made
    /// while the first is committing) gets the first entry back.
    pub async fn top_up(&self, user_id: &str, mut m: TopUp) -> Result<ToppedUp, WalletError> {
        self.prefetch(user_id, m.idem.as_mut()).await?;
        let (cell, step) = self.with(user_id, |c, i| c.top_up(&*i.store, &i.persist, &m))?;
        let record = match step? {
            TopUpStep::Credited(entry, rx, idem) => {
                let key = idem.as_ref().map(|(k, _, _)| k.clone());
                after_commit(cell, rx, key, |c| c.finished(idem)).await?;
                return Ok(ToppedUp {
                    entry,
                    replayed: false,
                });
            }
            TopUpStep::Replay(r) => r,
            TopUpStep::Wait(rx) => rx.await.map_err(|_| {
                WalletError::Unavailable("the first top-up with this key did not finish".into())
            })?,
        };
        let entry = record
            .answer
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok())
            .ok_or(WalletError::IdempotencyMismatch)?;
        Ok(ToppedUp {
            entry,
            replayed: true,
        })
    }

    pub async fn set_budget(&self, user_id: &str, b: BudgetConfig) -> Result<(), WalletError> {
        let (cell, step) = self.with(user_id, |c, i| c.set_budget(&i.persist, b))?;
        after_commit(cell, step?, None, |_| ()).await
    }

    pub async fn retarget(&self, user_id: &str, m: Retarget) -> Result<(), WalletError> {
        self.with(user_id, |c, _| c.retarget(&m))?.1
    }

    pub async fn view(&self, user_id: &str, now: Millis) -> Result<WalletView, WalletError> {
        self.with(user_id, |c, _| c.view(now))?.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RedbStore, Role, User, WriteOp};
    use oneflow::Credits;

    fn setup(dir: &std::path::Path) -> (Arc<dyn Store>, Persistence, LocalWallets) {
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.join("t.redb")).unwrap());
        let persist = Persistence::start(store.clone(), 1024, 4096).unwrap();
        let user = User {
            id: "u".into(),
            name: "u".into(),
            email: "u@example.com".into(),
            role: Role::Member,
            created_at: 0,
            strategy: None,
        };
        block_on(persist.write(vec![WriteOp::PutUser(user)])).unwrap();
        let settings = WalletSettings {
            reporter: None,
            idle_stop: Duration::ZERO,
            max_in_flight: 16,
            idempotency: IdemLimits {
                memory: 16,
                memory_bytes: 1 << 20,
                retention_ms: Millis::MAX / 2,
            },
        };
        let wallets = LocalWallets::start(store.clone(), persist.clone(), settings).unwrap();
        (store, persist, wallets)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn one(now: Millis) -> TopUp {
        TopUp {
            amount: Credits::from_credits(1),
            note: None,
            now,
            idem: None,
        }
    }

    /// A caller that found a cell just before the sweeper dropped it must
    /// not change it: its change would be lost to the fresh cell the next
    /// caller loads from the store. It moves to the fresh cell instead.
    #[test]
    fn a_caller_holding_a_dropped_wallet_moves_to_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let (store, persist, wallets) = setup(dir.path());
        block_on(wallets.top_up("u", one(1_000))).unwrap();
        let stale = wallets.cell("u");
        wallets.inner.sweep();
        assert!(stale.lock().unwrap().retired, "an idle wallet is dropped");
        let mut first = Some(stale.clone());
        let (used, step) = wallets
            .with_found(
                || first.take().unwrap_or_else(|| wallets.cell("u")),
                |c, i| c.top_up(&*i.store, &i.persist, &one(1_001)),
            )
            .unwrap();
        assert!(!Arc::ptr_eq(&used, &stale), "the dropped cell was used");
        let Ok(TopUpStep::Credited(_, rx, _)) = step else {
            panic!("a top-up without a key credits");
        };
        block_on(after_commit(used, rx, None, |_| ())).unwrap();
        let balance = |c: &Shared| c.lock().unwrap().wallet.as_ref().unwrap().balance;
        assert_eq!(balance(&stale), Credits::from_credits(1));
        let stored = store.wallet("u").unwrap().unwrap();
        assert_eq!(stored.balance, Credits::from_credits(2));
        block_on(async {
            persist.shutdown().await;
            wallets.stop().await;
        });
    }

    /// Top-ups from several threads while the sweeper drops every idle
    /// wallet as fast as it can: a caller that finds its cell retired gets
    /// a fresh one loaded from the store, so no change is lost or applied
    /// to a cell nobody will read again.
    #[test]
    fn wallets_dropped_while_in_use_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, persist, wallets) = setup(dir.path());
        // Each thread tops up at least `least` times and goes on, up to
        // `most`, until the sweeper (every 250 ms) has dropped the wallet
        // at least once: on a loaded machine a commit can keep the wallet
        // busy through many sweeps, and the point is the drop, not a time.
        let (threads, least, most): (i64, i64, i64) = (4, 60, 3_000);
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let w = wallets.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let mut n = 0;
                        while n < least || (n < most && w.dropped() == 0) {
                            w.top_up("u", one(1_000 + n)).await.unwrap();
                            n += 1;
                            // Gaps in which the wallet is idle and may go.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        n
                    })
                })
            })
            .collect();
        let mut topped = 0;
        for t in workers {
            topped += t.join().unwrap();
        }
        assert!(
            wallets.dropped() > 0,
            "the sweeper never dropped the wallet in {topped} top-ups"
        );
        let total = Credits::from_credits(topped);
        let stored = store.wallet("u").unwrap().unwrap();
        assert_eq!(stored.balance, total);
        let view = block_on(wallets.view("u", 2_000)).unwrap();
        assert_eq!(view.balance, total);
        block_on(async {
            persist.shutdown().await;
            wallets.stop().await;
        });
    }
}
