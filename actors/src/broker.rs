//! The request use case and the other operations the HTTP layer calls:
//! quote -> hold -> call -> settle or release -> record, plus users, keys,
//! credits, budgets, history and analytics.
//!
//! Everything here creates ids and timestamps; storage writes what it is
//! given. Handlers call one method and map the result.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use oneflow::Credits;
use oneflow::budget::BudgetConfig;
use oneflow::config::Config;
use oneflow::ledger::LedgerEntry;
use oneflow::records::RequestRecord;
use oneflow::time::Millis;

use crate::error::BrokerError;
use crate::ids::{api_key, key_hash, new_id, now_ms};
use crate::metrics;
use crate::persistence::Persistence;
use crate::provider::ProviderHandle;
use crate::store::{ApiKeyRecord, RedbStore, RequestCursor, Store, StoreError, User, WriteOp};
use crate::views::{CreatedUser, Page, ProviderView, Role, WalletView};
use crate::wallet::{TopUp, WalletSettings, Wallets};

/// Who is calling, from their API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) persist: Persistence,
    pub(crate) wallets: Wallets,
    pub(crate) providers: Vec<ProviderHandle>,
    /// Authenticated keys: hash -> principal. A revocation removes its entry
    /// after the delete commits (see `keys.rs`).
    pub(crate) keys: DashMap<[u8; 32], Principal>,
    /// Bumped by every revocation, so a lookup that raced one can tell.
    pub(crate) key_epoch: std::sync::atomic::AtomicU64,
    /// Serialises key creation and revocation (an async lock: held across
    /// the commit), so two revocations cannot both remove the last admin key.
    pub(crate) key_writes: tokio::sync::Mutex<()>,
    /// Each user's default routing strategy, as stored (None: the global
    /// one); filled on first use.
    pub(crate) strategies: DashMap<String, Option<oneflow::routing::Strategy>>,
}

/// The broker: cheap to clone, shared by every HTTP worker.
#[derive(Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Unavailable(format!("storage task failed: {e}")))?
        .map_err(BrokerError::from)
}

pub(crate) const ADMIN_ID: &str = "admin";

impl Broker {
    /// Opens the store, releases what a crash left held, starts the
    /// persistence thread, wallets and provider workers. Must run inside an
    /// actix system. Returns the admin key if one was made now (to print
    /// once).
    pub fn start(
        config: Config,
        admin_key: Option<&str>,
    ) -> Result<(Broker, Option<String>), BrokerError> {
        let dir = Path::new(&config.server.data_dir);
        std::fs::create_dir_all(dir).map_err(|e| {
            BrokerError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        metrics::install();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open_with_cache(
            &dir.join("oneflow.redb"),
            config.persistence.cache_bytes,
        )?);
        let now = now_ms();
        // Provider configs first, so recovery knows each provider's modality.
        let provider_ops = config
            .providers
            .iter()
            .filter_map(|p| {
                Some(WriteOp::PutProvider {
                    name: p.name.clone(),
                    config: serde_json::to_value(p).ok()?,
                })
            })
            .collect::<Vec<_>>();
        store.commit(provider_ops)?;
        let recovery = store.recover(now)?;
        if recovery.holds_released > 0 {
            eprintln!(
                "oneflow: released {} holds left open by an earlier stop; {} requests marked interrupted",
                recovery.holds_released, recovery.requests_interrupted
            );
        }
        let new_admin_key = ensure_admin(&*store, admin_key, now)?;
        let persist = Persistence::start(
            store.clone(),
            config.persistence.queue,
            config.persistence.max_batch,
        )
        .map_err(|e| {
            BrokerError::Unavailable(format!("cannot start the persistence thread: {e}"))
        })?;
        let settings = WalletSettings {
            idle_stop: Duration::from_secs(config.wallets.idle_stop_secs),
            mailbox: config.wallets.mailbox,
            idempotency_memory: config.wallets.idempotency_memory,
        };
        let wallets = Wallets::start(
            store.clone(),
            persist.clone(),
            config.wallets.arbiters,
            settings,
        );
        let client = crate::adapters::http_client().map_err(BrokerError::Unavailable)?;
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let adapter = crate::adapters::build(p, &client);
                ProviderHandle::start(p.clone(), adapter, config.circuit.clone())
            })
            .collect();
        let inner = Inner {
            config,
            store,
            persist,
            wallets,
            providers,
            keys: DashMap::new(),
            key_epoch: Default::default(),
            key_writes: Default::default(),
            strategies: DashMap::new(),
        };
        Ok((
            Broker {
                inner: Arc::new(inner),
            },
            new_admin_key,
        ))
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Commits what is queued and stops the persistence thread.
    pub async fn shutdown(&self) {
        self.inner.persist.shutdown().await;
        self.inner.wallets.stop().await;
    }

    /// Creates a user with a key and, if given, an opening balance. The
    /// user and key are committed before the balance, and both before the
    /// answer.
    pub async fn create_user(
        &self,
        name: String,
        email: String,
        initial_balance: Credits,
    ) -> Result<CreatedUser, BrokerError> {
        let name = name.trim().to_string();
        let email = email.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(BrokerError::BadInput(
                "`name` must be 1 to 200 characters".into(),
            ));
        }
        if email.chars().count() > 320
            || !email.contains('@')
            || email.starts_with('@')
            || email.ends_with('@')
        {
            return Err(BrokerError::BadInput(
                "`email` must be an email address".into(),
            ));
        }
        if initial_balance.is_negative() {
            return Err(BrokerError::BadInput(
                "`initial_balance` must not be negative".into(),
            ));
        }
        let now = now_ms();
        let user = User {
            id: new_id("usr"),
            name,
            email,
            role: Role::User,
            created_at: now,
            strategy: None,
        };
        let key = api_key()
            .ok_or_else(|| BrokerError::Unavailable("no randomness available for a key".into()))?;
        let record = ApiKeyRecord {
            user_id: user.id.clone(),
            role: Role::User,
            prefix: key[..10].to_string(),
            created_at: now,
        };
        self.inner
            .persist
            .write(vec![
                WriteOp::PutUser(user.clone()),
                WriteOp::PutKey {
                    hash: key_hash(&key),
                    record,
                },
            ])
            .await
            .map_err(BrokerError::Store)?;
        let balance = if initial_balance > Credits::ZERO {
            let top = TopUp {
                amount: initial_balance,
                note: Some("initial balance".into()),
                now,
            };
            self.inner
                .wallets
                .top_up(&user.id, top)
                .await?
                .balance_after
        } else {
            Credits::ZERO
        };
        Ok(CreatedUser {
            id: user.id,
            name: user.name,
            email: user.email,
            role: user.role,
            api_key: key,
            balance,
            created_at: now,
        })
    }

    pub async fn users(&self) -> Result<Vec<User>, BrokerError> {
        let store = self.inner.store.clone();
        blocking(move || store.users()).await
    }

    async fn require_user(&self, user_id: &str) -> Result<User, BrokerError> {
        let store = self.inner.store.clone();
        let id = user_id.to_string();
        blocking(move || store.user(&id))
            .await?
            .ok_or(BrokerError::NotFound("user"))
    }

    /// Adds credits to a user's wallet (committed before the answer).
    pub async fn add_credits(
        &self,
        user_id: &str,
        amount: Credits,
        note: Option<String>,
    ) -> Result<LedgerEntry, BrokerError> {
        if amount <= Credits::ZERO {
            return Err(BrokerError::BadInput(
                "`amount` must be greater than zero".into(),
            ));
        }
        self.require_user(user_id).await?;
        Ok(self
            .inner
            .wallets
            .top_up(
                user_id,
                TopUp {
                    amount,
                    note,
                    now: now_ms(),
                },
            )
            .await?)
    }

    pub async fn wallet(&self, user_id: &str) -> Result<WalletView, BrokerError> {
        Ok(self.inner.wallets.view(user_id, now_ms()).await?)
    }

    pub async fn set_budget(
        &self,
        user_id: &str,
        budget: BudgetConfig,
    ) -> Result<WalletView, BrokerError> {
        budget.validate()?;
        for p in budget.per_provider.keys() {
            if !self.inner.providers.iter().any(|h| &h.config.name == p) {
                return Err(BrokerError::BadInput(format!(
                    "unknown provider `{p}` in per_provider"
                )));
            }
        }
        self.inner.wallets.set_budget(user_id, budget).await?;
        self.wallet(user_id).await
    }

    pub(crate) fn provider(&self, name: &str) -> Result<&ProviderHandle, BrokerError> {
        self.inner
            .providers
            .iter()
            .find(|h| h.config.name == name)
            .ok_or(BrokerError::NotFound("provider"))
    }

    /// A user's requests, newest first.
    pub async fn requests(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RequestRecord>, BrokerError> {
        let before = match cursor {
            Some(c) => Some(parse_request_cursor(c)?),
            None => None,
        };
        let (store, id) = (self.inner.store.clone(), user_id.to_string());
        let items = blocking(move || store.requests_page(&id, before.as_ref(), limit)).await?;
        let next_cursor = (items.len() == limit)
            .then(|| items.last().map(|r| format!("{}.{}", r.created_at, r.id)))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// One request, only if it belongs to `user_id` (or the caller is admin).
    pub async fn request_record(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<RequestRecord, BrokerError> {
        let (store, rid) = (self.inner.store.clone(), id.to_string());
        let rec = blocking(move || store.request(&rid)).await?;
        match rec {
            Some(r) if who.is_admin() || r.user_id == who.user_id => Ok(r),
            _ => Err(BrokerError::NotFound("request")),
        }
    }

    /// A user's ledger entries, newest first.
    pub async fn transactions(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<LedgerEntry>, BrokerError> {
        let before = match cursor {
            Some(c) => Some(c.parse::<u64>().map_err(|_| {
                BrokerError::BadInput("`cursor` is not a cursor this API gave".into())
            })?),
            None => None,
        };
        let (store, id) = (self.inner.store.clone(), user_id.to_string());
        let items = blocking(move || store.transactions_page(&id, before, limit)).await?;
        let next_cursor = (items.len() == limit)
            .then(|| items.last().map(|e| e.seq.to_string()))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    pub fn providers(&self) -> Vec<ProviderView> {
        use std::sync::atomic::Ordering::Relaxed;
        self.inner
            .providers
            .iter()
            .map(|h| {
                let c = &h.config;
                let health = h.stats.health();
                ProviderView {
                    name: c.name.clone(),
                    modality: c.modality,
                    models: c.models.clone(),
                    region: c.region,
                    quality: c.quality,
                    rates: c.rates.clone(),
                    up: health.available,
                    health,
                    circuit: h.stats.circuit_state(),
                    limits: c.limits.clone(),
                    queued: h.stats.queued.load(Relaxed),
                    in_flight: h.stats.in_flight.load(Relaxed),
                    calls: h.stats.calls.load(Relaxed),
                    failures: h.stats.failures.load(Relaxed),
                    rejected: h.stats.rejected.load(Relaxed),
                }
            })
            .collect()
    }

    /// Wallet actors alive and writes queued, for status and metrics.
    pub fn runtime_figures(&self) -> (usize, usize) {
        (self.inner.wallets.alive(), self.inner.persist.depth())
    }

    /// Group-commit figures since start: commits, writes, mean commit time.
    pub fn persistence_figures(&self) -> crate::persistence::CommitFigures {
        self.inner.persist.figures()
    }

    /// Refreshes the gauges that mirror live state and renders the
    /// Prometheus text for `/metrics`; `None` if the recorder is not ours.
    pub fn render_metrics(&self) -> Option<String> {
        use std::sync::atomic::Ordering::Relaxed;
        let providers = self
            .inner
            .providers
            .iter()
            .map(|p| metrics::ProviderGauges {
                name: p.config.name.clone(),
                queued: p.stats.queued.load(Relaxed),
                circuit: p.stats.circuit_state().gauge_value(),
            });
        metrics::render(self.inner.wallets.alive(), providers)
    }

    /// The `user` label value, if the configuration asks for one.
    pub(crate) fn metric_user<'a>(&self, user_id: &'a str) -> Option<&'a str> {
        self.inner.config.metrics.per_user_labels.then_some(user_id)
    }
}

/// The start of a prompt, as history shows it.
pub(crate) fn preview(prompt: &str) -> String {
    prompt.chars().take(200).collect()
}

fn parse_request_cursor(c: &str) -> Result<RequestCursor, BrokerError> {
    let bad = || BrokerError::BadInput("`cursor` is not a cursor this API gave".into());
    let (at, id) = c.split_once('.').ok_or_else(bad)?;
    Ok(RequestCursor {
        created_at: at.parse().map_err(|_| bad())?,
        id: id.to_string(),
    })
}

/// Makes sure an admin key exists. With `given`, that key is (re)registered;
/// otherwise, on first start, a new key is made and returned.
fn ensure_admin(
    store: &dyn Store,
    given: Option<&str>,
    now: Millis,
) -> Result<Option<String>, BrokerError> {
    let admin = User {
        id: ADMIN_ID.into(),
        name: "admin".into(),
        email: "admin@localhost".into(),
        role: Role::Admin,
        created_at: now,
        strategy: None,
    };
    let mut ops = Vec::new();
    if store.user(ADMIN_ID)?.is_none() {
        ops.push(WriteOp::PutUser(admin));
    }
    let mut made = None;
    let key = match given {
        Some(k) if k.len() < 16 => {
            return Err(BrokerError::BadInput(
                "ONEFLOW_ADMIN_KEY must be at least 16 characters".into(),
            ));
        }
        Some(k) => Some(k.to_string()),
        None if store.has_admin_key()? => None,
        None => {
            let k = api_key().ok_or_else(|| {
                BrokerError::Unavailable("no randomness available for a key".into())
            })?;
            made = Some(k.clone());
            Some(k)
        }
    };
    if let Some(k) = key {
        let hash = key_hash(&k);
        if store.api_key(&hash)?.is_none() {
            let prefix = k.chars().take(10).collect();
            ops.push(WriteOp::PutKey {
                hash,
                record: ApiKeyRecord {
                    user_id: ADMIN_ID.into(),
                    role: Role::Admin,
                    prefix,
                    created_at: now,
                },
            });
        }
    }
    if !ops.is_empty() {
        store.commit(ops)?;
    }
    Ok(made)
}
