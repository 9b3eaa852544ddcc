//! Concurrency shared by every node: a provider's calls in flight are the
//! members of one sorted set, each scored with the time its lease runs
//! out. A holder renews its lease while the call runs, so a node that dies
//! mid-call gives its slots back when their leases end.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use redis::Script;
use tokio::sync::oneshot;

use super::{CoordError, Coordinator, Inner, Shared};

/// Takes a slot if fewer than the cap are live. KEYS: the provider's set.
/// ARGV: the cap, the lease in ms, the slot's id. Answers 1 or 0.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
",
    )
});

/// Extends a slot's lease. A slot that is gone (Redis restarted without
/// its data, or the lease ran out while Redis was unreachable) is put back
/// even past the cap: the call is running, and counting it is what keeps
/// the others honest. KEYS: the set. ARGV: the lease in ms, the slot's id.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
",
    )
});

/// One slot of a provider's shared concurrency. Dropping it gives the
/// slot back (in the background); [`Lease::release`] does so and waits.
pub struct Lease {
    /// Dropped: the renewal task gives the slot back. Sent to: it stops
    /// without doing so, [`Lease::release`] does.
    stop: Option<oneshot::Sender<()>>,
    key: String,
    slot: String,
    owner: Weak<Inner>,
}

impl Lease {
    /// Gives the slot back now.
    pub async fn release(mut self) -> Result<(), CoordError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.owner.upgrade() {
            Some(inner) => inner.shared.release(&self.key, &self.slot).await,
            None => Ok(()),
        }
    }
}

impl Coordinator {
    /// A slot among `max` for `provider` across every node, or `None` if
    /// all are taken.
    pub async fn acquire(&self, provider: &str, max: u32) -> Result<Option<Lease>, CoordError> {
        let s = &self.inner.shared;
        let key = s.key(&format!("cc:{provider}"));
        let n = s.next_slot.fetch_add(1, Ordering::Relaxed);
        let slot = format!("{}:{}:{n}", s.node_id, s.incarnation);
        let lease_ms = lease_ms(s);
        let took: u32 = self
            .eval(ACQUIRE.key(&key).arg(max).arg(lease_ms).arg(&slot))
            .await?;
        if took == 0 {
            return Ok(None);
        }
        let (stop, stopped) = oneshot::channel();
        let owner = Arc::downgrade(&self.inner);
        tokio::spawn(keep(owner.clone(), key.clone(), slot.clone(), stopped));
        Ok(Some(Lease {
            stop: Some(stop),
            key,
            slot,
            owner,
        }))
    }
}

fn lease_ms(s: &Shared) -> u64 {
    u64::try_from(s.tuning.lease.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Renews a lease every third of its length until told to stop or given
/// back (its [`Lease`] dropped), and stops renewing when the coordinator
/// is gone: that node is as good as dead.
async fn keep(owner: Weak<Inner>, key: String, slot: String, mut stopped: oneshot::Receiver<()>) {
    let every = match owner.upgrade() {
        Some(inner) => (inner.shared.tuning.lease / 3).max(Duration::from_millis(1)),
        None => return,
    };
    loop {
        tokio::select! {
            sent = &mut stopped => {
                if sent.is_err() {
                    if let Some(inner) = owner.upgrade() {
                        let _ = inner.shared.release(&key, &slot).await;
                    }
                }
                return;
            }
            () = tokio::time::sleep(every) => {
                let Some(inner) = owner.upgrade() else {
                    return;
                };
                let ms = lease_ms(&inner.shared);
                let _: Result<u32, _> = inner.shared.eval(RENEW.key(&key).arg(ms).arg(&slot)).await;
            }
        }
    }
}

impl Shared {
    async fn release(&self, key: &str, slot: &str) -> Result<(), CoordError> {
        self.query::<u32>(redis::cmd("ZREM").arg(key).arg(slot))
            .await
            .map(drop)
    }
}
