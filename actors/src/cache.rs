//! Where the response cache keeps its answers (docs/cache.md): in this
//! process (`moka`, bounded by bytes, entries living `[cache]
//! ttl_seconds`) or, when `[coordination] redis_url` is set, in Redis
//! under the deployment's prefix, so every node serves what any node
//! stored. Entries are opaque bytes here; the use case (`usecase/cached.rs`)
//! gives them their shape.
//!
//! Redis is a help, never a dependency: a call that fails or times out
//! is a miss (or an answer not stored), counted in
//! `oneflow_cache_errors_total`, and never an error to the client.

use std::sync::Arc;
use std::time::Duration;

use oneflow::cache::CacheConfig;

use crate::coordination::Coordinator;
use crate::metrics;

/// The cache's store of answers, by the hex of the request's fingerprint.
#[derive(Clone)]
pub enum ResponseCache {
    /// In this process: lookups never wait.
    Local(moka::sync::Cache<String, Arc<[u8]>>),
    /// In Redis, shared by every node of the deployment.
    Shared { coord: Coordinator, ttl: Duration },
}

impl ResponseCache {
    /// The cache `[cache]` asks for, in Redis when `coord` is there.
    pub fn new(cfg: &CacheConfig, coord: Option<Coordinator>) -> ResponseCache {
        match coord {
            Some(coord) => ResponseCache::Shared {
                coord,
                ttl: cfg.ttl(),
            },
            None => ResponseCache::Local(
                moka::sync::Cache::builder()
                    .max_capacity(cfg.max_bytes)
                    // Entries are at most `max_entry_bytes` (checked under
                    // u32::MAX by the configuration), plus their key.
                    .weigher(|k: &String, v: &Arc<[u8]>| {
                        u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX)
                    })
                    .time_to_live(cfg.ttl())
                    .build(),
            ),
        }
    }

    /// The stored answer under `key`, if any; a failed Redis call is a
    /// miss.
    pub async fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        match self {
            ResponseCache::Local(c) => c.get(key),
            ResponseCache::Shared { coord, .. } => match coord.cache_get(key).await {
                Ok(v) => v.map(Arc::from),
                Err(_) => {
                    metrics::cache_error("get");
                    None
                }
            },
        }
    }

    /// Stores `value` under `key` for the configured time, or `life` if
    /// given (the caller keeps it no longer than the configured time); a
    /// failed Redis call stores nothing. The in-process cache has one
    /// lifetime for all: a shorter one is the entry's own to enforce.
    pub async fn put(&self, key: String, value: Vec<u8>, life: Option<Duration>) {
        match self {
            ResponseCache::Local(c) => c.insert(key, Arc::from(value)),
            ResponseCache::Shared { coord, ttl } => {
                let ttl = life.unwrap_or(*ttl);
                if coord.cache_put(&key, &value, ttl).await.is_err() {
                    metrics::cache_error("put");
                }
            }
        }
    }
}
