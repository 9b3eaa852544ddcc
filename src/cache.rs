//! The response cache's rules (`[cache]`, docs/cache.md): whether a request
//! may be answered from, and stored in, the cache, and the configuration
//! that bounds it. The cache itself (in-process or Redis) is the runtime's.

use serde::{Deserialize, Serialize};

use crate::money::Credits;

/// What a request, a key or the configuration says about the cache:
/// `use` answers from it (and stores a fresh answer in it), `bypass` goes
/// upstream and stores nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    Use,
    Bypass,
}

impl CacheMode {
    /// Reads the `x-oneflow-cache` header's value (exactly `use` or
    /// `bypass`, as its documented pattern says).
    pub fn parse(text: &str) -> Option<CacheMode> {
        match text {
            "use" => Some(CacheMode::Use),
            "bypass" => Some(CacheMode::Bypass),
            _ => None,
        }
    }
}

/// Whether one request uses the cache. A key that says `bypass` wins over
/// everything: its owner forbade caching for it, and a header sent with it
/// cannot undo that. Otherwise the request's header, then the key's own
/// setting, then the configured default. `None` when the cache is off or
/// nobody asked for it (and the default is `bypass`): such a request does
/// not deal with the cache at all, and is not told about it.
pub fn decide(
    cfg: &CacheConfig,
    key: Option<CacheMode>,
    header: Option<CacheMode>,
) -> Option<CacheMode> {
    if !cfg.enabled {
        return None;
    }
    if key == Some(CacheMode::Bypass) {
        return Some(CacheMode::Bypass);
    }
    match header.or(key) {
        Some(m) => Some(m),
        None => (cfg.default == CacheMode::Use).then_some(CacheMode::Use),
    }
}

/// `[cache]`: the response cache. Off unless `enabled`; when on, a request
/// uses it only if its key, its `x-oneflow-cache` header or `default`
/// says `use`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub enabled: bool,
    /// How long an answer is served from the cache, in seconds (> 0).
    /// Signed so that a negative value is read and refused with a clear
    /// message rather than as a type error.
    pub ttl_seconds: i64,
    /// Bound on the in-process cache's total size (answers as stored).
    /// The Redis cache is bounded by Redis's own `maxmemory` policy and
    /// each entry's expiry.
    pub max_bytes: u64,
    /// The largest answer stored; a larger one is served but not cached.
    pub max_entry_bytes: u64,
    /// Credits charged for an answer served from the cache (default 0: a
    /// zero-cost record, still held and settled through the ledger).
    pub price: Credits,
    /// What a request whose key and header say nothing does: `bypass`
    /// (opt-in per key or request) or `use` (opt-out).
    pub default: CacheMode,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            ttl_seconds: 300,
            max_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 256 * 1024,
            price: Credits::ZERO,
            default: CacheMode::Bypass,
        }
    }
}

impl CacheConfig {
    /// The key and the reason of the first bad setting.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.ttl_seconds <= 0 {
            return Err((
                "cache.ttl_seconds",
                format!(
                    "must be a positive number of seconds, not {}",
                    self.ttl_seconds
                ),
            ));
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes > u64::from(u32::MAX) {
            return Err(("cache.max_entry_bytes", "must be 1 to 4294967295".into()));
        }
        if self.max_bytes < self.max_entry_bytes {
            return Err((
                "cache.max_bytes",
                "must be at least cache.max_entry_bytes".into(),
            ));
        }
        if self.price.is_negative() {
            return Err(("cache.price", "must not be negative".into()));
        }
        Ok(())
    }

    /// The TTL as a duration (once `check` passed).
    pub fn ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ttl_seconds.max(1).unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forbidding_key_wins_over_the_header() {
        let on = CacheConfig {
            enabled: true,
            ..CacheConfig::default()
        };
        use CacheMode::*;
        assert_eq!(decide(&on, Some(Bypass), Some(Use)), Some(Bypass));
        assert_eq!(decide(&on, Some(Use), Some(Bypass)), Some(Bypass));
        assert_eq!(decide(&on, None, None), None);
        let opt_out = CacheConfig {
            default: Use,
            ..on.clone()
        };
        assert_eq!(decide(&opt_out, None, None), Some(Use));
        assert_eq!(decide(&on, Some(Use), None), Some(Use));
        assert_eq!(decide(&CacheConfig::default(), Some(Use), Some(Use)), None);
    }

    #[test]
    fn ttl_must_be_positive() {
        for ttl in [0, -5] {
            let c = CacheConfig {
                ttl_seconds: ttl,
                ..CacheConfig::default()
            };
            assert_eq!(c.check().unwrap_err().0, "cache.ttl_seconds");
        }
        assert!(CacheConfig::default().check().is_ok());
    }
}
