//! The response cache's entries in Redis (docs/cache.md): one string per
//! entry under the deployment's prefix, expiring by Redis's own clock, so
//! every node sees the same entries for the same time.

use std::time::Duration;

use super::{CoordError, Coordinator};

impl Coordinator {
    /// The bytes stored under `key` in the cache's namespace, if any.
    pub async fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>, CoordError> {
        if !self.healthy() {
            return Err(CoordError::Degraded);
        }
        let s = &self.inner.shared;
        s.query(redis::cmd("GET").arg(s.key(&format!("cache:{key}"))))
            .await
    }

    /// Stores `value` under `key` for `ttl` (at least a millisecond).
    pub async fn cache_put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), CoordError> {
        if !self.healthy() {
            return Err(CoordError::Degraded);
        }
        let s = &self.inner.shared;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        s.query(
            redis::cmd("SET")
                .arg(s.key(&format!("cache:{key}")))
                .arg(value)
                .arg("PX")
                .arg(ms),
        )
        .await
    }
}
