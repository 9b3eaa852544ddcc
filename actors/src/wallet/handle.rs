//! [`Wallets`]: finds or starts a user's wallet actor and talks to it.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;

use oneflow::budget::BudgetConfig;
use oneflow::ledger::LedgerEntry;
use oneflow::time::Millis;

use crate::persistence::Persistence;
use crate::store::Store;
use crate::views::WalletView;

use super::actor::WalletActor;
use super::messages::*;

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
