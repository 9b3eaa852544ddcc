//! Prometheus metrics: every series name, its help text and its histogram
//! buckets live here, and the rest of the runtime records through the small
//! functions below, so each call site is one line and the names cannot
//! drift from the Grafana dashboard (`grafana/oneflow.json`) or the docs
//! (`docs/metrics.md`).
//!
//! The recorder is process-global (the `metrics` facade has one slot), so
//! [`install`] sets it up once per process however many brokers start; a
//! background thread runs its upkeep. Counters and histograms are recorded
//! as things happen. Gauges that mirror live state (wallets in memory, queue
//! depth, circuit state) are set from the figures the broker passes to
//! [`render`] when `/metrics` is scraped, so they are exact at the moment of
//! the scrape.
//!
//! This module is the bottom layer: it names nothing else in the crate but
//! `views`, the plain data every layer shares (a finished request is
//! counted from its [`RequestOutcome`]). Callers hand it plain figures or
//! its own small types ([`Tag`], [`Failure`], [`ProviderGauges`]), which
//! the broker's errors convert into, so the modules that record metrics
//! never import each other through it.
//!
//! Labels stay low-cardinality: provider and model names come from the
//! configuration (a request is labelled with its model only once routing
//! has matched it to a configured provider), modality, status and error
//! code from fixed sets. Users appear only with `[metrics] per_user_labels`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use oneflow::Credits;
use oneflow::pricing::{Modality, Usage};
use oneflow::records::RequestStatus;
use oneflow::routing::Route;

use crate::views::RequestOutcome;

mod cache;
pub use cache::{
    CACHE_ERRORS, CACHE_FILLS, CACHE_REQUESTS, cache_error, cache_fill, cache_request,
};

// ---- names -------------------------------------------------------------

/// Requests that reached the broker's request path, by `provider`, `model`,
/// `modality`, `status` (`ok`, `error`, `refused`) and error `code`
/// (`none` on success); with `user` when configured.
pub const REQUESTS: &str = "oneflow_requests_total";
/// From the hold to the settle of a request, by `provider`.
pub const REQUEST_DURATION: &str = "oneflow_request_duration_seconds";
/// Time inside provider calls (each attempt; a stream's body included), by
/// `provider`.
pub const UPSTREAM_DURATION: &str = "oneflow_upstream_duration_seconds";
/// What the broker itself added to a request: its duration minus the time
/// spent in provider calls (routing, hold, queueing, backoff, settle).
pub const ADDED_LATENCY: &str = "oneflow_added_latency_seconds";
/// Tokens reported by providers, by `provider` and `direction` (`in`, `out`).
pub const TOKENS: &str = "oneflow_tokens_total";
/// Micro-credits charged, by `provider`. Counted when a charge is committed
/// to the ledger, so it equals the sum of `charge` transactions.
pub const CREDITS_CHARGED: &str = "oneflow_credits_charged_micro_total";
/// Holds reserved and not yet settled or released.
pub const HOLDS_OPEN: &str = "oneflow_holds_open";
/// Wallets in memory (one per recently active user).
pub const WALLETS_ALIVE: &str = "oneflow_wallets_alive";
/// Calls waiting for a provider's rate limit or concurrency cap, by
/// `provider`.
pub const QUEUE_DEPTH: &str = "oneflow_provider_queue_depth";
/// Calls a provider's full queue turned away (answered 429), by `provider`.
pub const RATE_LIMITED: &str = "oneflow_provider_rate_limited_total";
/// Answers whose reported usage was out of line with their quote (missing,
/// or above its bound) and was held to it; by `provider`.
pub const USAGE_ANOMALIES: &str = "oneflow_usage_anomalies_total";
pub const IDEMPOTENCY_PURGED: &str = "oneflow_idempotency_purged_total";
/// A provider's circuit: 0 closed, 1 half-open, 2 open; by `provider`.
pub const CIRCUIT_STATE: &str = "oneflow_provider_circuit_state";
/// Writes carried by one commit of the persistence thread.
pub const BATCH_SIZE: &str = "oneflow_persistence_batch_writes";
/// How long one commit of the persistence thread took.
pub const COMMIT_DURATION: &str = "oneflow_persistence_commit_duration_seconds";
/// Wallet changes carried by one commit of a node on a shared store.
pub const SHARED_BATCH: &str = "oneflow_shared_batch_changes";
/// How long one such commit took.
pub const SHARED_COMMIT: &str = "oneflow_shared_commit_duration_seconds";
/// Such commits that failed (every change in them was answered an error).
pub const SHARED_FAILED: &str = "oneflow_shared_commit_failures_total";
/// 1 while this node shares its provider limits through Redis, or has no
/// Redis configured; 0 while Redis is unreachable and the node runs on its
/// share of each limit.
pub const COORDINATION_UP: &str = "oneflow_coordination_up";
/// Provider calls admitted on this node's share of the limits because
/// Redis was unreachable, by `provider`.
pub const COORDINATION_FALLBACKS: &str = "oneflow_coordination_fallbacks_total";
/// Runs of background tasks (`scheduler.rs`), by `task` and `outcome`
/// (`ok`, `error`).
pub const TASK_RUNS: &str = "oneflow_task_runs_total";
/// When each background task last finished a run, in seconds since the
/// Unix epoch, by `task`.
pub const TASK_LAST_RUN: &str = "oneflow_task_last_run_timestamp_seconds";

/// Relative cost drift of the latest reconciliation, by provider and model
/// (`usecase/reconcile.rs`, docs/reconcile.md).
pub const RECONCILE_DRIFT: &str = "oneflow_reconcile_drift";

/// The `model` label of a reconciliation's cells whose model the
/// provider's configuration does not name: an export's names are uploaded
/// text, and must not become series of their own.
pub const OTHER_MODEL: &str = "other";

/// Every series name above, for checks that the dashboard and the docs
/// use no other.
pub const ALL: &[&str] = &[
    REQUESTS,
    REQUEST_DURATION,
    UPSTREAM_DURATION,
    ADDED_LATENCY,
    TOKENS,
    CREDITS_CHARGED,
    HOLDS_OPEN,
    WALLETS_ALIVE,
    QUEUE_DEPTH,
    RATE_LIMITED,
    USAGE_ANOMALIES,
    IDEMPOTENCY_PURGED,
    CIRCUIT_STATE,
    BATCH_SIZE,
    COMMIT_DURATION,
    SHARED_BATCH,
    SHARED_COMMIT,
    SHARED_FAILED,
    COORDINATION_UP,
    COORDINATION_FALLBACKS,
    TASK_RUNS,
    TASK_LAST_RUN,
    RECONCILE_DRIFT,
    CACHE_REQUESTS,
    CACHE_FILLS,
    CACHE_ERRORS,
];

/// Label names.
pub const PROVIDER: &str = "provider";
pub const MODEL: &str = "model";
pub const MODALITY: &str = "modality";
pub const STATUS: &str = "status";
pub const CODE: &str = "code";
pub const USER: &str = "user";
pub const DIRECTION: &str = "direction";
pub const TASK: &str = "task";
pub const OUTCOME: &str = "outcome";

/// Request and upstream latency: a millisecond to two minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// The broker's own share and commits: finer, from 50 µs.
const FINE_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Writes per commit, up to the default `persistence.max_batch` (4096).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// How often the recorder's upkeep runs (it drains histogram samples and
/// bounds memory between scrapes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

// ---- install and render -------------------------------------------------

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder for this process, once; later calls
/// return the same handle. `None` if another recorder was installed first
/// (then `/metrics` answers 503 and recording is a no-op).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = match builder().and_then(PrometheusBuilder::install_recorder) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("oneflow: metrics are off: {e}");
                    return None;
                }
            };
            describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("oneflow-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                // Rendering drains samples too; upkeep only bounds memory
                // when nobody scrapes.
                eprintln!("oneflow: metrics upkeep thread did not start: {e}");
            }
            Some(handle)
        })
        .as_ref()
}

fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    let full = |n: &str| Matcher::Full(n.to_string());
    PrometheusBuilder::new()
        .set_buckets_for_metric(full(REQUEST_DURATION), LATENCY_BUCKETS)?
        .set_buckets_for_metric(full(UPSTREAM_DURATION), LATENCY_BUCKETS)?
        .set_buckets_for_metric(full(ADDED_LATENCY), FINE_BUCKETS)?
        .set_buckets_for_metric(full(COMMIT_DURATION), FINE_BUCKETS)?
        .set_buckets_for_metric(full(SHARED_COMMIT), FINE_BUCKETS)?
        .set_buckets_for_metric(full(SHARED_BATCH), BATCH_BUCKETS)?
        .set_buckets_for_metric(full(BATCH_SIZE), BATCH_BUCKETS)
}

fn describe() {
    cache::describe();
    describe_counter!(
        REQUESTS,
        "Requests by provider, model, modality, status and error code."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Request duration from hold to settle."
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Time spent in provider calls."
    );
    describe_histogram!(
        ADDED_LATENCY,
        Unit::Seconds,
        "Request duration minus time in provider calls: the broker's own overhead."
    );
    describe_counter!(
        TOKENS,
        "Tokens reported by providers, by direction (in, out)."
    );
    describe_counter!(
        CREDITS_CHARGED,
        "Micro-credits charged (1 credit = 1000000), equal to the sum of ledger charges."
    );
    describe_gauge!(
        HOLDS_OPEN,
        "Credit holds reserved and not yet settled or released."
    );
    describe_gauge!(
        WALLETS_ALIVE,
        "Wallets in memory (one per recently active user)."
    );
    describe_gauge!(QUEUE_DEPTH, "Calls waiting for a provider slot.");
    describe_counter!(
        RATE_LIMITED,
        "Calls refused because a provider's queue was full."
    );
    describe_counter!(
        USAGE_ANOMALIES,
        "Answers whose reported usage was missing or above its quote's bound, and was held to it."
    );
    describe_counter!(
        IDEMPOTENCY_PURGED,
        "Idempotency records deleted because their retention ended."
    );
    describe_gauge!(
        CIRCUIT_STATE,
        "Circuit breaker state: 0 closed, 1 half-open, 2 open."
    );
    describe_histogram!(BATCH_SIZE, "Writes per persistence commit.");
    describe_gauge!(
        COORDINATION_UP,
        "1 while limits are shared through Redis (or no Redis is configured), 0 while this node runs on its share."
    );
    describe_counter!(
        COORDINATION_FALLBACKS,
        "Provider calls admitted on this node's share of the limits because Redis was unreachable."
    );
    describe_histogram!(
        SHARED_BATCH,
        "Wallet changes per commit to the shared store."
    );
    describe_histogram!(
        SHARED_COMMIT,
        Unit::Seconds,
        "Duration of one commit to the shared store."
    );
    describe_counter!(
        SHARED_FAILED,
        "Commits to the shared store that failed; their changes were answered an error."
    );
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "Duration of one persistence commit."
    );
    describe_counter!(TASK_RUNS, "Runs of background tasks, by outcome.");
    describe_gauge!(
        RECONCILE_DRIFT,
        "Relative cost drift (provider's bill minus ours, over ours) of the day furthest off in the latest reconciliation."
    );
    describe_gauge!(
        TASK_LAST_RUN,
        "When each background task last finished a run (Unix seconds)."
    );
}

/// One provider's live state, as its gauges show it.
pub struct ProviderGauges {
    pub name: String,
    /// Calls waiting for a slot ([`QUEUE_DEPTH`]).
    pub queued: usize,
    /// The circuit as [`CIRCUIT_STATE`] counts it: 0 closed, 1 half-open,
    /// 2 open.
    pub circuit: f64,
}

/// Sets the gauges that mirror live state (`wallets_alive`, each
/// provider's queue and circuit) and renders the Prometheus text; `None`
/// if the recorder is not ours.
pub fn render(
    wallets_alive: usize,
    providers: impl IntoIterator<Item = ProviderGauges>,
) -> Option<String> {
    let handle = install()?;
    gauge!(WALLETS_ALIVE).set(wallets_alive as f64);
    for p in providers {
        let name = p.name;
        gauge!(QUEUE_DEPTH, PROVIDER => name.clone()).set(p.queued as f64);
        gauge!(CIRCUIT_STATE, PROVIDER => name.clone()).set(p.circuit);
        // Counters that may not have moved yet still show, at zero, so
        // `rate()` and the dashboard see every provider from the start.
        counter!(RATE_LIMITED, PROVIDER => name.clone()).increment(0);
        counter!(USAGE_ANOMALIES, PROVIDER => name.clone()).increment(0);
        counter!(CREDITS_CHARGED, PROVIDER => name.clone()).increment(0);
        counter!(COORDINATION_FALLBACKS, PROVIDER => name).increment(0);
    }
    gauge!(HOLDS_OPEN).increment(0.0);
    // A node on redb never commits to a shared store: these show empty,
    // so one dashboard serves both kinds of node.
    let _ = (histogram!(SHARED_BATCH), histogram!(SHARED_COMMIT));
    counter!(SHARED_FAILED).increment(0);
    gauge!(COORDINATION_UP).set(if COORDINATED.load(Ordering::Relaxed) {
        1.0
    } else {
        0.0
    });
    counter!(IDEMPOTENCY_PURGED).increment(0);
    cache::show_empty();
    Some(handle.render())
}

// ---- the request path -----------------------------------------------------

/// Labels of a request once routing has matched it: its first choice.
/// Requests that fail before routing are labelled `none`.
pub struct Tag {
    provider: String,
    model: String,
    modality: &'static str,
    user: Option<String>,
}

impl Tag {
    pub fn new(model: &str, route: &Route, user: Option<&str>) -> Tag {
        let first = route.ranking.first();
        Tag {
            provider: first.map_or_else(|| "none".into(), |c| c.plan.provider.clone()),
            model: model.to_string(),
            modality: first.map_or("none", |c| c.plan.modality.name()),
            user: user.map(str::to_string),
        }
    }

    /// A request that never got a route (unknown model, nothing in region).
    pub fn unrouted(user: Option<&str>) -> Tag {
        Tag {
            provider: "none".into(),
            model: "none".into(),
            modality: "none",
            user: user.map(str::to_string),
        }
    }

    /// Counts a request that ended in an error before or instead of its
    /// settle (the broker's errors convert into a [`Failure`]).
    pub fn failed(&self, failure: impl Into<Failure>) {
        let Failure::Count { status, code } = failure.into() else {
            return;
        };
        count_request(
            &self.provider,
            &self.model,
            self.modality,
            status,
            code,
            self.user.as_deref(),
        );
    }
}

/// How a request that failed before or instead of its settle is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Counted now, with these `status` (`refused`, `error`) and `code`
    /// labels, in the codes the HTTP API uses.
    Count {
        status: &'static str,
        code: &'static str,
    },
    /// Not counted here: a provider failure, whose request was released and
    /// so counted by [`request_done`].
    AtSettle,
}

/// Counts a request that was settled or released, with its latency split
/// into provider time and the broker's own, and the tokens it used.
pub fn request_done(
    o: &RequestOutcome,
    modality: Modality,
    total: Duration,
    upstream: Duration,
    user: Option<&str>,
) {
    let status = match o.status {
        RequestStatus::Succeeded => "ok",
        RequestStatus::Failed | RequestStatus::Interrupted => "error",
    };
    let code = o.error_code.map_or("none", |c| c.as_str());
    let p = &o.provider;
    count_request(p, &o.model, modality.name(), status, code, user);
    histogram!(REQUEST_DURATION, PROVIDER => p.to_string()).record(total.as_secs_f64());
    histogram!(ADDED_LATENCY).record(total.saturating_sub(upstream).as_secs_f64());
    tokens(p, &o.usage);
}

fn count_request(
    provider: &str,
    model: &str,
    modality: &'static str,
    status: &'static str,
    code: &'static str,
    user: Option<&str>,
) {
    let mut labels = vec![
        (PROVIDER, provider.to_string()),
        (MODEL, model.to_string()),
        (MODALITY, modality.to_string()),
        (STATUS, status.to_string()),
        (CODE, code.to_string()),
    ];
    if let Some(u) = user {
        labels.push((USER, u.to_string()));
    }
    counter!(REQUESTS, &labels).increment(1);
}

fn tokens(provider: &str, u: &Usage) {
    for (direction, n) in [("in", u.input_tokens), ("out", u.output_tokens)] {
        if n > 0 {
            counter!(TOKENS, PROVIDER => provider.to_string(), DIRECTION => direction).increment(n);
        }
    }
}

/// One provider call (an attempt, or a stream's body) took `d`.
pub fn upstream(provider: &str, d: Duration) {
    histogram!(UPSTREAM_DURATION, PROVIDER => provider.to_string()).record(d.as_secs_f64());
}

// ---- wallets, providers, persistence -----------------------------------------

/// A hold was reserved.
pub fn hold_opened() {
    gauge!(HOLDS_OPEN).increment(1.0);
}

/// A hold was settled or released.
pub fn hold_closed() {
    gauge!(HOLDS_OPEN).decrement(1.0);
}

/// A charge of `amount` to `provider` is committed to the ledger.
pub fn charged(provider: &str, amount: Credits) {
    if let Ok(micro) = u64::try_from(amount.0) {
        counter!(CREDITS_CHARGED, PROVIDER => provider.to_string()).increment(micro);
    }
}

/// The latest reconciliation's cost drift of one provider and model.
pub fn reconcile_drift(provider: &str, model: &str, drift: f64) {
    gauge!(RECONCILE_DRIFT, PROVIDER => provider.to_string(), MODEL => model.to_string())
        .set(drift);
}

/// Makes one provider and model's drift series exist without changing it.
pub fn reconcile_drift_touch(provider: &str, model: &str) {
    gauge!(RECONCILE_DRIFT, PROVIDER => provider.to_string(), MODEL => model.to_string())
        .increment(0.0);
}

/// `provider` reported usage out of line with the quote.
pub fn usage_anomaly(provider: &str) {
    counter!(USAGE_ANOMALIES, PROVIDER => provider.to_string()).increment(1);
}

/// `n` expired idempotency records were deleted.
pub fn idempotency_purged(n: usize) {
    counter!(IDEMPOTENCY_PURGED).increment(n as u64);
}

/// A provider's full queue turned a call away.
pub fn rate_limited(provider: &str) {
    counter!(RATE_LIMITED, PROVIDER => provider.to_string()).increment(1);
}

/// Whether Redis answered last, as [`COORDINATION_UP`] shows it. Kept here
/// as well as in the gauge so that a scrape shows it even when it changed
/// before the recorder was installed. A node without Redis is "up": nothing
/// about it is degraded.
static COORDINATED: AtomicBool = AtomicBool::new(true);

/// Redis became reachable (`true`) or unreachable (`false`).
pub fn coordination_up(up: bool) {
    COORDINATED.store(up, Ordering::Relaxed);
    gauge!(COORDINATION_UP).set(if up { 1.0 } else { 0.0 });
}

/// A call to `provider` was admitted on this node's share of its limits.
pub fn coordination_fallback(provider: &str) {
    counter!(COORDINATION_FALLBACKS, PROVIDER => provider.to_string()).increment(1);
}

/// The persistence thread committed `writes` writes in `took`.
pub fn commit(writes: usize, took: Duration) {
    histogram!(BATCH_SIZE).record(writes as f64);
    histogram!(COMMIT_DURATION).record(took.as_secs_f64());
}

/// A node on a shared store committed `changes` wallet changes in `took`.
pub fn shared_commit(changes: usize, took: Duration, ok: bool) {
    histogram!(SHARED_BATCH).record(changes as f64);
    histogram!(SHARED_COMMIT).record(took.as_secs_f64());
    if !ok {
        counter!(SHARED_FAILED).increment(1);
    }
}

/// Background task `task` exists: its series show from the first scrape,
/// its last run at 0 until it has run.
pub fn task_announced(task: &'static str) {
    for outcome in ["ok", "error"] {
        counter!(TASK_RUNS, TASK => task, OUTCOME => outcome).increment(0);
    }
    gauge!(TASK_LAST_RUN, TASK => task).increment(0.0);
}

/// Background task `task` finished a run at `now` (ms since the epoch).
pub fn task_ran(task: &'static str, ok: bool, now: i64) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(TASK_RUNS, TASK => task, OUTCOME => outcome).increment(1);
    gauge!(TASK_LAST_RUN, TASK => task).set(now as f64 / 1000.0);
}
