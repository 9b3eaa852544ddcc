//! What the nodes of one deployment share through Redis: provider rate
//! limits (`limits.rs`), provider concurrency (`lease.rs`), notices
//! (`notice.rs`), the auth-failure count, and who is alive.
//!
//! Redis is a help, never a dependency of a request: every call to it is
//! bounded by a short timeout, and while it does not answer the
//! [`Coordinator`] says so ([`Coordinator::healthy`] is false, its calls
//! fail at once with [`CoordError::Degraded`]) and callers fall back to
//! their own share of each limit, the limit divided by the nodes last seen
//! alive ([`Coordinator::node_count`]). A background task keeps probing and
//! the coordinator recovers by itself when Redis answers again.
//!
//! Time is Redis's (`TIME` inside the scripts), so the nodes' clocks do not
//! matter. This module is below the provider layer and names nothing above
//! it but `metrics`.

mod cache;
mod lease;
mod limits;
mod notice;
#[cfg(test)]
pub(crate) mod tests;

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};
use tokio::sync::{broadcast, watch};

use oneflow::cluster::CoordinationConfig;

pub use lease::Lease;
pub use limits::{Admit, Limit};
pub use notice::Notice;

/// Why a coordination call did not give an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordError {
    #[error("coordination: no redis_url is set")]
    Unset,
    #[error("coordination: bad Redis URL: {0}")]
    BadUrl(String),
    #[error("coordination: needs a running tokio runtime")]
    NoRuntime,
    #[error("coordination: Redis is unreachable; limits are per node")]
    Degraded,
    #[error("coordination: Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("coordination: Redis: {0}")]
    Redis(String),
}

/// Timings. The defaults suit production; tests shorten them.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// The longest any one Redis call may take before it counts as a
    /// failure; short, since a request waits for it.
    pub timeout: Duration,
    /// How long a concurrency slot stays taken without renewal: a dead
    /// node's slots come back after this.
    pub lease: Duration,
    /// How often this node says it is alive (and, while degraded, half as
    /// often at most as it probes for Redis).
    pub heartbeat: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            timeout: Duration::from_millis(200),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(2),
        }
    }
}

/// This node's handle on the shared state. Cheap to clone; dropping the
/// last clone stops its background tasks (its heartbeat and its lease
/// renewals stop with them, so to the other nodes it looks dead).
#[derive(Clone)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What the background tasks need; they hold it, not the [`Coordinator`],
/// so they do not keep it alive.
struct Shared {
    client: redis::Client,
    conn: OnceLock<ConnectionManager>,
    prefix: String,
    node_id: String,
    /// Set at each start, so that slots a previous run of the same node
    /// left behind are never taken for this run's.
    incarnation: String,
    tuning: Tuning,
    health: watch::Sender<bool>,
    subscribed: watch::Sender<bool>,
    nodes: AtomicU32,
    next_slot: AtomicU64,
    notices: broadcast::Sender<Notice>,
}

/// Says this node is alive for three heartbeats and counts the nodes that
/// still are. KEYS: the set of nodes, this node's own key. ARGV: node id,
/// time to live in ms.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[2], now, 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
",
    )
});

impl Coordinator {
    /// A coordinator for `cfg.redis_url` with the default timings. Fails
    /// only if the URL is unset or malformed; if Redis is down, the
    /// coordinator starts degraded and connects when it can.
    pub fn connect(cfg: &CoordinationConfig, node_id: &str) -> Result<Coordinator, CoordError> {
        Coordinator::connect_with(cfg, node_id, Tuning::default())
    }

    /// [`Coordinator::connect`] with other timings. Must be called inside a
    /// tokio runtime (an actix one is), on which the background tasks run.
    pub fn connect_with(
        cfg: &CoordinationConfig,
        node_id: &str,
        tuning: Tuning,
    ) -> Result<Coordinator, CoordError> {
        let url = cfg.redis_url.as_deref().ok_or(CoordError::Unset)?;
        let client = redis::Client::open(url).map_err(|e| CoordError::BadUrl(e.to_string()))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| CoordError::NoRuntime)?;
        let mut random = [0u8; 6];
        // Only a tag against a restarted node's leftovers; a clock-based
        // one does as well if the system has no randomness to give.
        let incarnation = match getrandom::fill(&mut random) {
            Ok(()) => random.iter().map(|b| format!("{b:02x}")).collect(),
            Err(_) => format!("{:x}", std::process::id()),
        };
        // Starts degraded: nothing has answered yet.
        crate::metrics::coordination_up(false);
        let shared = Arc::new(Shared {
            client,
            conn: OnceLock::new(),
            prefix: cfg.prefix.clone(),
            node_id: node_id.to_string(),
            incarnation,
            tuning,
            health: watch::Sender::new(false),
            subscribed: watch::Sender::new(false),
            nodes: AtomicU32::new(1),
            next_slot: AtomicU64::new(0),
            notices: broadcast::Sender::new(64),
        });
        let tasks = vec![
            runtime.spawn(upkeep(shared.clone())).abort_handle(),
            runtime.spawn(notice::listen(shared.clone())).abort_handle(),
        ];
        Ok(Coordinator {
            inner: Arc::new(Inner { shared, tasks }),
        })
    }

    /// Whether Redis answered the last call made to it. While false the
    /// coordinator's calls fail at once and callers use their share.
    pub fn healthy(&self) -> bool {
        *self.inner.shared.health.borrow()
    }

    /// The nodes alive at the last heartbeat that Redis answered, this one
    /// included: at least 1.
    pub fn node_count(&self) -> u32 {
        self.inner.shared.nodes.load(Ordering::Relaxed).max(1)
    }

    pub fn node_id(&self) -> &str {
        &self.inner.shared.node_id
    }

    /// Waits up to `within` for Redis to answer and for the notice
    /// subscription to be in place; whether both happened.
    pub async fn ready(&self, within: Duration) -> bool {
        let s = &self.inner.shared;
        let (mut health, mut subscribed) = (s.health.subscribe(), s.subscribed.subscribe());
        let both = async {
            health.wait_for(|up| *up).await.is_ok() && subscribed.wait_for(|up| *up).await.is_ok()
        };
        tokio::time::timeout(within, both).await.unwrap_or(false)
    }

    /// Counts one failed authentication under `key` (a client address, say)
    /// in a fixed one-minute window shared by every node; whether the
    /// window's count has reached `per_minute`, after which the caller
    /// refuses that client until [`Coordinator::failure_wait`] says it may
    /// try again.
    pub async fn count_failure(&self, key: &str, per_minute: u32) -> Result<bool, CoordError> {
        let n: u64 = self
            .eval(
                COUNT_FAILURE
                    .key(self.inner.shared.key(&format!("auth:{key}")))
                    .arg(60_000),
            )
            .await?;
        Ok(n >= u64::from(per_minute))
    }

    /// How long `key` is still refused: `None` if its failures in the
    /// current window are below `per_minute`.
    pub async fn failure_wait(
        &self,
        key: &str,
        per_minute: u32,
    ) -> Result<Option<Duration>, CoordError> {
        let ms: i64 = self
            .eval(
                FAILURE_WAIT
                    .key(self.inner.shared.key(&format!("auth:{key}")))
                    .arg(per_minute),
            )
            .await?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    /// Runs a script unless Redis is known to be down: a caller on the
    /// request path never waits for a timeout that the last call already
    /// found.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, CoordError> {
        if !self.healthy() {
            return Err(CoordError::Degraded);
        }
        self.inner.shared.eval(inv).await
    }
}

/// A fixed one-minute window: simpler than a sliding one and within a
/// factor of two of it, which is all a brake on key guessing needs.
/// KEYS: the counter. ARGV: the window in ms.
static COUNT_FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
",
    )
});

/// The ms left in the window if its count has reached the limit, else -1.
/// KEYS: the counter. ARGV: the limit.
static FAILURE_WAIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(redis.call('GET', KEYS[1]) or 0)
if n < tonumber(ARGV[1]) then return -1 end
return math.max(redis.call('PTTL', KEYS[1]), 1)
",
    )
});

impl Shared {
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn set_health(&self, up: bool) {
        let changed = self.health.send_if_modified(|h| {
            let changed = *h != up;
            *h = up;
            changed
        });
        if changed {
            crate::metrics::coordination_up(up);
        }
    }

    /// Runs a script within the timeout; the outcome is the health.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, CoordError> {
        let Some(conn) = self.conn.get() else {
            return Err(CoordError::Degraded);
        };
        let mut conn = conn.clone();
        self.bounded(inv.invoke_async(&mut conn)).await
    }

    /// Runs one plain command within the timeout.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, CoordError> {
        let Some(conn) = self.conn.get() else {
            return Err(CoordError::Degraded);
        };
        let mut conn = conn.clone();
        self.bounded(cmd.query_async(&mut conn)).await
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CoordError> {
        // A reconnection the connection manager started goes on in its own
        // task when this gives up waiting for it.
        match tokio::time::timeout(self.tuning.timeout, call).await {
            Ok(Ok(v)) => {
                self.set_health(true);
                Ok(v)
            }
            Ok(Err(e)) => {
                self.set_health(false);
                Err(CoordError::Redis(e.to_string()))
            }
            Err(_) => {
                self.set_health(false);
                Err(CoordError::Timeout(self.tuning.timeout))
            }
        }
    }

    async fn heartbeat(&self) -> Result<u32, CoordError> {
        let ttl = u64::try_from(self.tuning.heartbeat.as_millis().saturating_mul(3))
            .unwrap_or(u64::MAX)
            .max(1);
        let n: u32 = self
            .eval(
                HEARTBEAT
                    .key(self.key("nodes"))
                    .key(self.key(&format!("nodes:{}", self.node_id)))
                    .arg(&self.node_id)
                    .arg(ttl),
            )
            .await?;
        self.nodes.store(n.max(1), Ordering::Relaxed);
        Ok(n)
    }
}

/// Connects (until it has a connection manager, which then reconnects by
/// itself) and beats the heart; while Redis is down, the heartbeat is the
/// probe that finds it back.
async fn upkeep(shared: Arc<Shared>) {
    let probe = shared.tuning.heartbeat.min(Duration::from_millis(500));
    loop {
        if shared.conn.get().is_none() {
            let t = shared.tuning.timeout;
            // Retries are quick and capped: while they go on, calls wait
            // for them only up to the timeout, and a Redis that comes back
            // is found within about a second.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(t.max(Duration::from_millis(500)))
                .set_response_timeout(t)
                .set_number_of_retries(3)
                .set_factor(50)
                .set_max_delay(500);
            let connecting = ConnectionManager::new_with_config(shared.client.clone(), config);
            match tokio::time::timeout(Duration::from_secs(5), connecting).await {
                Ok(Ok(c)) => {
                    let _ = shared.conn.set(c);
                }
                _ => shared.set_health(false),
            }
        }
        if shared.conn.get().is_some() {
            let _ = shared.heartbeat().await;
        }
        let up = *shared.health.borrow();
        tokio::time::sleep(if up { shared.tuning.heartbeat } else { probe }).await;
    }
}
