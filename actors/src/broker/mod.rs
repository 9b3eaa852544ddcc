//! The broker: the one handle the HTTP layer holds. It starts the runtime
//! (store, recovery, persistence thread, wallets, provider workers) into a
//! [`Services`], stops it, and passes every operation to its use case in
//! `usecase/`, one file each; this file holds no use case itself. Its
//! methods are the crate's API, listed here in one place.
//!
//! Everything below creates ids and timestamps; storage writes what it is
//! given. Handlers call one method and map the result.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oneflow::Credits;
use oneflow::budget::BudgetConfig;
use oneflow::config::{Config, StorageBackend};
use oneflow::ledger::LedgerEntry;
use oneflow::records::RequestRecord;
use oneflow::request::AiRequest;
use oneflow::routing::Strategy;

use crate::coordination::Coordinator;
use crate::error::BrokerError;
use crate::ids::now_ms;
use crate::metrics;
use crate::persistence::{CommitFigures, Persistence};
use crate::provider::{Content, ProviderHandle};
use crate::store::postgres::{PgSettings, PgStore};
use crate::store::{RedbStore, Store, User, WriteOp};
use crate::usecase::accounts;
use crate::usecase::analytics::{self, Analytics, BurnDown, Range, Series};
use crate::usecase::export::{self, ExportQuery};
use crate::usecase::keys::{self, Principal};
pub use crate::usecase::reports::SentReport;

mod cached;
mod dashboards;
mod experiments;
mod people;
mod reconcile;
use crate::usecase::request::{self, Answer};
use crate::usecase::stream::{self, StreamStart};
use crate::usecase::{
    Services, budgets, history,
    job::{Payer, RequestJob},
    jobs, kept, preferences, status, users, webhooks,
};
use crate::views::{ClusterView, JobView, RequestOutcome, WalletView};
use crate::views::{CreatedKey, CreatedUser, KeyView, Page, ProviderView, QuoteView};
use crate::wallet::{
    IdemKey, IdemLimits, LocalWallets, SharedWallets, ToppedUp, WalletSettings, Wallets,
};

/// Opens the configured store: the redb file under `server.data_dir`, or
/// the PostgreSQL database (then also returned as such, for the shared
/// wallets and the node registry).
/// The store, and the same store as PostgreSQL when it is that.
type Opened = (Arc<dyn Store>, Option<Arc<PgStore>>);

fn open_store(config: &Config, node: &str) -> Result<Opened, BrokerError> {
    match config.storage.backend {
        StorageBackend::Redb => {
            let dir = Path::new(&config.server.data_dir);
            std::fs::create_dir_all(dir).map_err(|e| {
                BrokerError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
            let store = RedbStore::open_with_cache(
                &dir.join("oneflow.redb"),
                config.persistence.cache_bytes,
            )?;
            Ok((Arc::new(store), None))
        }
        StorageBackend::Postgres => {
            let settings = pg_settings(config)?;
            let pg = PgStore::open(&settings, node)?;
            eprintln!("oneflow: node {node} on a shared PostgreSQL store");
            Ok((pg.clone(), Some(pg)))
        }
    }
}

/// The Redis coordinator, when `coordination.redis_url` is set. A Redis
/// that is down at start is waited for in the background (limits are the
/// node's share meanwhile), unless `coordination.required` says this node
/// must not run without it: then one bounded ping decides.
fn coordinator(config: &Config, node: &str) -> Result<Option<Coordinator>, BrokerError> {
    let c = &config.coordination;
    let Some(url) = &c.redis_url else {
        return Ok(None);
    };
    if c.required {
        let ping = redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
        if let Err(e) = ping {
            return Err(BrokerError::Unavailable(format!(
                "coordination.required is set and Redis does not answer: {e}"
            )));
        }
    }
    let coord =
        Coordinator::connect(c, node).map_err(|e| BrokerError::Unavailable(e.to_string()))?;
    Ok(Some(coord))
}

/// The PostgreSQL connection settings of a configuration.
pub fn pg_settings(config: &Config) -> Result<PgSettings, BrokerError> {
    let s = &config.storage;
    let url = s.url.clone().ok_or_else(|| {
        BrokerError::Unavailable("storage.url is needed for the postgres backend".into())
    })?;
    Ok(PgSettings {
        url,
        schema: s.schema.clone(),
        pool_size: s.pool_size,
        statement_timeout_ms: s.statement_timeout_ms,
    })
}

/// This process's id among the nodes: its name (`storage.node_id`, or the
/// host and process id) and a random part, so that a node restarted under
/// the same name is a new owner of holds and idempotency claims, and the
/// old process's are released when its lease runs out, never taken for
/// the new one's.
fn node_id(name: Option<&str>) -> String {
    let name = name.map(str::to_string).unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into());
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        format!("{host}-{}", std::process::id())
    });
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    let tag: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}@{tag}")
}

/// The broker: cheap to clone, shared by every HTTP worker.
#[derive(Clone)]
pub struct Broker {
    services: Arc<Services>,
}

impl Broker {
    /// Opens the store, releases what a crash left held, starts the
    /// persistence thread, wallets and provider workers. Must run inside an
    /// actix system (the provider workers are actors on its arbiters). Returns the admin key if one was made now (to print once).
    pub fn start(
        config: Config,
        admin_key: Option<&str>,
    ) -> Result<(Broker, Option<String>), BrokerError> {
        metrics::install();
        let c = &config.coordination;
        if config.storage.backend == StorageBackend::Postgres && c.required && c.redis_url.is_none()
        {
            return Err(BrokerError::Unavailable(
                "coordination.required is set but coordination.redis_url is not: this node would run with per-node limits".into(),
            ));
        }
        let node = node_id(config.storage.node_id.as_deref());
        let coord = coordinator(&config, &node)?;
        let (store, shared) = open_store(&config, &node)?;
        if shared.is_some() && config.coordination.redis_url.is_none() {
            eprintln!(
                "oneflow: no coordination.redis_url: provider limits are this node's own, not shared with other nodes"
            );
        }
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
        let new_admin_key = users::ensure_admin(&*store, admin_key, now)?;
        let persist = Persistence::start(
            store.clone(),
            config.persistence.queue,
            config.persistence.max_batch,
        )
        .map_err(|e| {
            BrokerError::Unavailable(format!("cannot start the persistence thread: {e}"))
        })?;
        let mut settings = WalletSettings {
            idle_stop: Duration::from_secs(config.wallets.idle_stop_secs),
            max_in_flight: config.wallets.max_in_flight,
            idempotency: IdemLimits {
                memory: config.wallets.idempotency_memory,
                memory_bytes: config.idempotency.memory_bytes,
                retention_ms: config.idempotency.retention_ms(),
            },
            reporter: None,
        };
        let scheduler = crate::scheduler::Scheduler::default();
        let wallets = match &shared {
            None => Wallets::Local({
                let every = LocalWallets::purge_every(&settings);
                settings.reporter = Some(scheduler.reporter("idempotency-purge", every, every));
                LocalWallets::start(store.clone(), persist.clone(), settings).map_err(|e| {
                    BrokerError::Unavailable(format!("cannot start the wallet sweeper: {e}"))
                })?
            }),
            Some(pg) => {
                let lease = Duration::from_secs(config.storage.hold_lease_secs);
                settings.reporter = Some(scheduler.reporter("shared-sweep", lease / 4, lease / 4));
                let p = &config.persistence;
                let start = SharedWallets::start(pg.clone(), settings, lease, p.queue, p.max_batch);
                Wallets::Shared(pg.pg().block(start)??)
            }
        };
        use oneflow::reach::Reach;
        let off_host =
            crate::adapters::http_client(Reach::OffHost).map_err(BrokerError::Unavailable)?;
        let anywhere =
            crate::adapters::http_client(Reach::Anywhere).map_err(BrokerError::Unavailable)?;
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let client = if p.allow_private {
                    &anywhere
                } else {
                    &off_host
                };
                let adapter = crate::adapters::build(p, client);
                ProviderHandle::start(p.clone(), adapter, config.circuit.clone(), coord.clone())
            })
            .collect();
        let services = Services::new(config, store, persist, wallets, providers, shared, coord);
        let services = Services {
            scheduler,
            ..services
        };
        let services = Arc::new(services);
        keys::forget_revoked(&services);
        accounts::schedule_purge(&services);
        webhooks::start(&services)?;
        crate::usecase::experiments::start(&services)?;
        crate::usecase::reports::schedule(&services);
        crate::usecase::budget_mail::schedule(&services);
        let broker = Broker { services };
        Ok((broker, new_admin_key))
    }

    pub fn config(&self) -> &Config {
        &self.services.config
    }

    /// Deletes the video jobs still rendering upstream, commits what is
    /// queued and stops the persistence thread.
    pub async fn shutdown(&self) {
        self.services.scheduler.stop();
        crate::usecase::reports::drain(&self.services).await;
        jobs::cancel_running(&self.services).await;
        self.services.persist.shutdown().await;
        self.services.wallets.stop().await;
    }

    // Requests (`usecase/request.rs`, `usecase/stream.rs`).

    /// Prices a native request without holding anything.
    pub async fn quote(&self, user_id: &str, req: &AiRequest) -> Result<QuoteView, BrokerError> {
        request::quote(&self.services, user_id, req).await
    }

    /// Prices a job (as built by the `/v1` routes) without holding
    /// anything.
    pub async fn quote_job(
        &self,
        user_id: &str,
        job: RequestJob,
    ) -> Result<QuoteView, BrokerError> {
        request::quote_job(&self.services, user_id, job).await
    }

    /// Runs a native request end to end; `true` if it is a replay.
    pub async fn request(
        &self,
        payer: &Payer,
        req: AiRequest,
        idem: Option<IdemKey>,
    ) -> Result<(RequestOutcome, bool), BrokerError> {
        req.validate(self.services.config.server.max_prompt_chars)?;
        let (outcome, replayed) = {
            let a = self.run(payer, RequestJob::native(req, idem)).await?;
            (a.outcome, a.replayed)
        };
        Ok((outcome, replayed))
    }

    /// Runs a job to its whole answer, paid by `payer`.
    pub async fn run(&self, payer: &Payer, mut job: RequestJob) -> Result<Answer, BrokerError> {
        payer.apply(&mut job);
        request::run(&self.services, &payer.wallet, job).await
    }

    /// Starts a streamed chat or completion, paid by `payer`.
    pub async fn stream(
        &self,
        payer: &Payer,
        mut job: RequestJob,
    ) -> Result<StreamStart, BrokerError> {
        payer.apply(&mut job);
        stream::start(&self.services, &payer.wallet, job).await
    }

    /// Starts a video job in the background: its view once its hold is
    /// committed.
    pub async fn start_job(&self, who: &Principal, req: AiRequest) -> Result<JobView, BrokerError> {
        jobs::start(&self.services, who, req).await
    }

    /// A video job of the caller's, running or ended.
    pub async fn job(&self, who: &Principal, id: &str) -> Result<JobView, BrokerError> {
        jobs::view(&self.services, who, id).await
    }

    /// The file a succeeded video job made, as its provider serves it.
    pub async fn job_content(&self, who: &Principal, id: &str) -> Result<Content, BrokerError> {
        jobs::content(&self.services, who, id).await
    }

    /// Keeps a response (OpenAI's Responses API) for retrieval while the
    /// idempotency retention lasts; returns once it is committed.
    pub async fn keep_response(
        &self,
        user_id: &str,
        id: &str,
        outcome: Option<&RequestOutcome>,
        body: String,
    ) -> Result<(), BrokerError> {
        kept::keep(&self.services, user_id, id, outcome, body).await
    }

    /// A kept response's body, if it is still kept.
    pub async fn kept_response(
        &self,
        user_id: &str,
        id: &str,
    ) -> Result<Option<String>, BrokerError> {
        kept::kept(&self.services, user_id, id).await
    }

    // Users, credits, budgets, preferences.

    /// Creates a user with a key and, if given, an opening balance.
    pub async fn create_user(
        &self,
        name: String,
        email: String,
        initial_balance: Credits,
    ) -> Result<CreatedUser, BrokerError> {
        users::create(&self.services, name, email, initial_balance).await
    }

    pub async fn users(&self) -> Result<Vec<User>, BrokerError> {
        users::list(&self.services).await
    }

    /// Adds credits to a user's wallet (committed before the answer), once
    /// per Idempotency-Key.
    pub async fn add_credits(
        &self,
        user_id: &str,
        amount: Credits,
        note: Option<String>,
        idem: Option<IdemKey>,
    ) -> Result<ToppedUp, BrokerError> {
        users::add_credits(&self.services, user_id, amount, note, idem).await
    }

    pub async fn wallet(&self, user_id: &str) -> Result<WalletView, BrokerError> {
        budgets::wallet(&self.services, user_id).await
    }

    /// Replaces a user's budget; `by_admin` marks it as an admin's caps,
    /// which the user may then only tighten.
    pub async fn set_budget(
        &self,
        user_id: &str,
        budget: BudgetConfig,
        by_admin: bool,
    ) -> Result<WalletView, BrokerError> {
        budgets::set(&self.services, user_id, budget, by_admin).await
    }

    /// The user's default strategy (`None`: the global one).
    pub async fn user_strategy(&self, user_id: &str) -> Result<Option<Strategy>, BrokerError> {
        preferences::user_strategy(&self.services, user_id).await
    }

    /// Sets (or with `None` clears) the user's default strategy.
    pub async fn set_user_strategy(
        &self,
        user_id: &str,
        strategy: Option<Strategy>,
    ) -> Result<Option<Strategy>, BrokerError> {
        preferences::set_user_strategy(&self.services, user_id, strategy).await
    }

    /// The strategy a request is routed by when neither it nor its user
    /// names one.
    pub fn global_strategy(&self) -> Strategy {
        preferences::global_strategy(&self.services)
    }

    // Keys (`usecase/keys.rs`).

    /// The principal behind a bearer token, if it is a known key.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, BrokerError> {
        keys::authenticate(&self.services, token).await
    }

    /// Counts a failed authentication from `client` with the other nodes
    /// (through Redis): whether, counting theirs, it is over `per_minute`
    /// in this minute. `false` when there is no Redis or it does not answer:
    /// the caller's own count stands then.
    pub async fn shared_auth_failure(&self, client: &str, per_minute: u32) -> bool {
        match &self.services.coord {
            Some(c) => c.count_failure(client, per_minute).await.unwrap_or(false),
            None => false,
        }
    }

    /// Makes a new key for `user_id` with that user's role.
    /// A new key for `user_id`, of `role` (default: the user's own), made
    /// by a credential of role `by`.
    pub async fn create_key(
        &self,
        user_id: &str,
        role: Option<crate::views::Role>,
        by: crate::views::Role,
        scope: oneflow::key_scope::KeyScope,
    ) -> Result<CreatedKey, BrokerError> {
        keys::create(&self.services, user_id, role, by, scope).await
    }

    /// Keys of one user, or of everyone with `None`, oldest first.
    pub async fn list_keys(&self, user_id: Option<&str>) -> Result<Vec<KeyView>, BrokerError> {
        keys::list(&self.services, user_id).await
    }

    /// Revokes a key: it stops working before the answer.
    pub async fn revoke_key(&self, caller: &Principal, id: &str) -> Result<KeyView, BrokerError> {
        keys::revoke(&self.services, caller, id).await
    }

    // History, analytics, exports.

    /// A user's requests, newest first.
    pub async fn requests(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RequestRecord>, BrokerError> {
        history::requests(&self.services, user_id, cursor, limit).await
    }

    /// One request, only if it belongs to the caller (or the caller is admin).
    pub async fn request_record(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<RequestRecord, BrokerError> {
        history::request(&self.services, who, id).await
    }

    /// A user's ledger entries, newest first.
    pub async fn transactions(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<LedgerEntry>, BrokerError> {
        history::transactions(&self.services, user_id, cursor, limit).await
    }

    /// Totals from the rollups, with the latest requests and transactions.
    pub async fn analytics(
        &self,
        user_id: Option<&str>,
        range: Option<Range>,
        recent: usize,
    ) -> Result<Analytics, BrokerError> {
        analytics::totals(&self.services, user_id, range, recent).await
    }

    /// A dense series over `range`, of one provider or all.
    pub async fn analytics_series(
        &self,
        user_id: Option<&str>,
        provider: Option<&str>,
        range: Range,
    ) -> Result<Series, BrokerError> {
        analytics::series(&self.services, user_id, provider, range).await
    }

    /// Spend over the last `window_ms` and when money and budgets run out.
    pub async fn burn_down(
        &self,
        user_id: &str,
        window_ms: oneflow::time::Millis,
    ) -> Result<BurnDown, BrokerError> {
        analytics::burn_down(&self.services, user_id, window_ms).await
    }

    /// Starts an export for `caller`; chunks arrive on the returned
    /// channel, an `Err` item if it broke off. Refused past the running
    /// exports' bounds.
    pub fn export(
        &self,
        caller: &str,
        q: ExportQuery,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>, BrokerError> {
        export::start(&self.services, caller, q)
    }

    /// A consistent copy of the store, made while requests go on
    /// (`usecase/backup.rs`); one at a time.
    pub async fn backup(&self) -> Result<crate::usecase::backup::Backup, BrokerError> {
        crate::usecase::backup::make(&self.services).await
    }

    // Status (`usecase/status.rs`).

    pub fn providers(&self) -> Vec<ProviderView> {
        status::providers(&self.services)
    }

    /// Wallets in memory and writes queued, for status and metrics.
    pub fn runtime_figures(&self) -> (usize, usize) {
        status::runtime_figures(&self.services)
    }

    /// Where the ledger is kept and, on a shared store, this node and
    /// every node seen.
    pub async fn cluster(&self) -> Result<ClusterView, BrokerError> {
        status::cluster(&self.services).await
    }

    /// Group-commit figures since start: commits, writes, mean commit time.
    /// The background tasks and their last runs.
    pub fn tasks(&self) -> Vec<crate::views::TaskView> {
        self.services.scheduler.tasks()
    }

    pub fn persistence_figures(&self) -> CommitFigures {
        status::persistence_figures(&self.services)
    }

    /// Refreshes the live gauges and renders the Prometheus text for
    /// `/metrics`; `None` if the recorder is not ours.
    pub fn render_metrics(&self) -> Option<String> {
        status::render_metrics(&self.services)
    }
}
