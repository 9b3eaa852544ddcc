//! The use cases: what the HTTP layer can ask of the broker, one file each,
//! as functions over one [`Services`] (the store, the persistence thread,
//! the wallets, the provider handles, the configuration and the caches
//! the use cases share). `broker.rs` owns the `Services`, starts and stops
//! them, and passes each call of its public methods to a function here.
//!
//! | file | use case |
//! |---|---|
//! | `request.rs` | a request answered whole (native `/api/request` and `/v1`), and its quote |
//! | `jobs.rs` | video jobs run in the background, their state and their files |
//! | `stream.rs` | a request answered as a stream of events |
//! | `users.rs` | users, their credits, the admin made at start |
//! | `keys.rs` | authentication and API keys |
//! | `accounts.rs` | registration, invitations, sign-in tokens |
//! | `budgets.rs` | a wallet's balance and budgets |
//! | `preferences.rs` | a user's default routing strategy |
//! | `history.rs` | pages of requests and ledger entries |
//! | `analytics.rs` | totals, series, burn-down |
//! | `export.rs` | CSV / JSON / NDJSON exports |
//! | `status.rs` | providers, runtime figures, `/metrics` |
//! | `webhooks/` | webhooks, their outbox and the alerts they are sent |
//! | `reports.rs` | usage reports by e-mail, now or on a schedule |
//! | `reconcile.rs` | provider usage exports against our records (docs/reconcile.md) |
//! | `cached.rs` | the response cache on the request path |
//! | `experiments.rs`, `feedback.rs` | A/B experiments of providers, their figures, ratings |
//! | `grouped.rs` | series split by provider, model, key or member |
//! | `dashboards.rs` | saved dashboards and their panels' data |
//!
//! The request path's shared steps sit beside them: `job.rs` (a request
//! ready to route), `held.rs` (route, hold, tries, finish), `dispatch.rs`
//! (retries and fallbacks across providers). A request reads downward from
//! `request.rs` or `stream.rs` through `held.rs` and `dispatch.rs` into
//! the wallet, the provider workers, persistence and the store; nothing
//! below imports this module.

use std::sync::Arc;

use dashmap::DashMap;

use oneflow::config::Config;
use oneflow::routing::Strategy;

use crate::error::BrokerError;
use crate::persistence::Persistence;
use crate::provider::ProviderHandle;
use crate::store::{Store, StoreError};
use crate::wallet::Wallets;

pub mod accounts;
pub mod analytics;
pub mod backup;
pub(crate) mod budget_mail;
pub mod budgets;
pub mod cached;
pub mod dashboards;
pub mod dispatch;
pub(crate) mod experiments;
pub mod export;
pub(crate) mod feedback;
pub mod grouped;
pub mod held;
pub mod history;
pub mod job;
pub mod jobs;
pub mod kept;
pub mod keys;
pub(crate) mod mail;
pub(crate) mod membership;
pub mod preferences;
pub mod reconcile;
pub mod reports;
pub mod request;
pub(crate) mod scopes;
pub mod status;
pub mod stream;
pub mod teams;
pub mod users;
pub mod webhooks;

/// How long a node sharing its store trusts what it read of keys and
/// strategies: a change made through another node is seen within this.
pub(crate) const SHARED_CACHE_TTL: std::time::Duration = std::time::Duration::from_millis(500);

/// What every use case works with: started once by `Broker::start`,
/// shared by every HTTP worker behind an `Arc`.
pub(crate) struct Services {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) persist: Persistence,
    pub(crate) wallets: Wallets,
    pub(crate) providers: Vec<ProviderHandle>,
    /// Authenticated keys: hash -> principal. A revocation removes its entry
    /// after the delete commits (see `keys.rs`).
    pub(crate) keys: DashMap<[u8; 32], (keys::Principal, std::time::Instant)>,
    /// How long what this node cached of the store (keys, strategies)
    /// stands: for ever on a node of its own (every change passes through
    /// it), briefly when nodes share a store (a key revoked or a strategy
    /// set through another node must take effect here too).
    pub(crate) cache_ttl: Option<std::time::Duration>,
    /// The shared store, when nodes share one: nodes and leases.
    pub(crate) shared: Option<Arc<crate::store::postgres::PgStore>>,
    /// Redis, when the nodes share limits and notices through it.
    pub(crate) coord: Option<crate::coordination::Coordinator>,
    /// Held shared by a key's store read and cache insert, and exclusively
    /// by a revocation's commit and cache removal: a read that began before
    /// the revocation cannot put the key back in the cache after it.
    pub(crate) key_lookups: tokio::sync::RwLock<()>,
    /// Serialises key creation and revocation (an async lock: held across
    /// the commit), so two revocations cannot both remove the last admin key.
    pub(crate) key_writes: tokio::sync::Mutex<()>,
    /// Each user's default routing strategy, as stored (None: the global
    /// one); filled on first use.
    pub(crate) strategies: DashMap<String, (Option<Strategy>, std::time::Instant)>,
    /// Exports running now, by caller (`export.rs`).
    pub(crate) exports: export::Running,
    /// Video jobs running in the background (`jobs.rs`).
    pub(crate) jobs: jobs::Running,
    /// The background tasks (`scheduler.rs`).
    pub(crate) scheduler: crate::scheduler::Scheduler,
    /// Sign-in's signing key and password-hashing slots (`accounts.rs`).
    pub(crate) accounts: accounts::State,
    /// Reports being sent by e-mail now (`reports.rs`).
    pub(crate) reports: reports::Sending,
    /// Whether a backup is being made (`backup.rs`).
    pub(crate) backups: backup::Running,
    /// The response cache, when `[cache] enabled` (`cached.rs`).
    pub(crate) cache: Option<crate::cache::ResponseCache>,
    /// The models under an A/B experiment or a pin (`experiments.rs`).
    pub(crate) experiments: experiments::Running,
}

impl Services {
    /// The services over a started store, persistence thread, wallets and
    /// provider handles, with empty caches.
    pub(crate) fn new(
        config: Config,
        store: Arc<dyn Store>,
        persist: Persistence,
        wallets: Wallets,
        providers: Vec<ProviderHandle>,
        shared: Option<Arc<crate::store::postgres::PgStore>>,
        coord: Option<crate::coordination::Coordinator>,
    ) -> Services {
        let cache_ttl = shared.as_ref().map(|_| SHARED_CACHE_TTL);
        let cache = config
            .cache
            .enabled
            .then(|| crate::cache::ResponseCache::new(&config.cache, coord.clone()));
        Services {
            config,
            store,
            persist,
            wallets,
            providers,
            keys: DashMap::new(),
            cache_ttl,
            shared,
            coord,
            key_lookups: tokio::sync::RwLock::new(()),
            key_writes: tokio::sync::Mutex::new(()),
            strategies: DashMap::new(),
            exports: Default::default(),
            jobs: jobs::Running::here(),
            scheduler: crate::scheduler::Scheduler::default(),
            accounts: accounts::State::default(),
            reports: Default::default(),
            backups: Default::default(),
            cache,
            experiments: Default::default(),
        }
    }

    /// Whether a cache entry made at `at` still stands.
    pub(crate) fn fresh(&self, at: std::time::Instant) -> bool {
        self.cache_ttl.is_none_or(|ttl| at.elapsed() < ttl)
    }

    /// The handle of the provider with this name.
    pub(crate) fn provider(&self, name: &str) -> Result<&ProviderHandle, BrokerError> {
        self.providers
            .iter()
            .find(|h| h.config.name == name)
            .ok_or(BrokerError::NotFound("provider"))
    }

    /// The `user` label value, if the configuration asks for one.
    pub(crate) fn metric_user<'a>(&self, user_id: &'a str) -> Option<&'a str> {
        self.config.metrics.per_user_labels.then_some(user_id)
    }
}

/// Runs a store call on the blocking pool (redb reads block).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Unavailable(format!("storage task failed: {e}")))?
        .map_err(BrokerError::from)
}

/// The admin user's id.
pub(crate) const ADMIN_ID: &str = "admin";

/// Runs `task` on the scheduler every `every` (the first run one period
/// after start). The task holds the services weakly: they own the
/// scheduler, which stops its tasks when the broker stops, and a run that
/// finds them gone does nothing.
pub(crate) fn every<F, Fut>(
    s: &Arc<Services>,
    name: &'static str,
    every: std::time::Duration,
    task: F,
) where
    F: Fn(Arc<Services>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let weak = Arc::downgrade(s);
    s.scheduler.every(name, every, every, move || {
        let run = weak.upgrade().map(&task);
        async move {
            match run {
                Some(f) => f.await,
                None => Ok(()),
            }
        }
    });
}
