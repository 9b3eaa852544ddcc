//! The configuration schema, its defaults and its validation. Loading
//! (file, environment, flags) lives in the binary; this module is pure.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::choice::{Strategy, Weights};
pub use crate::cluster::{CoordinationConfig, StorageBackend, StorageConfig};
use crate::pricing::Modality;

// Defined in `provider`, below `request` and `routing`, so those read a
// provider's configuration without depending on `config`; re-exported here,
// where callers have always found them.
pub use crate::provider::{
    ProviderConfig, ProviderKind, ProviderLimits, RequestLimits, SimulatedSettings,
    default_providers,
};

/// Everything the broker can be told. Unknown keys anywhere are errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub wallets: WalletConfig,
    pub idempotency: IdempotencyConfig,
    pub persistence: PersistenceConfig,
    pub routing: RoutingConfig,
    pub retry: RetryConfig,
    pub circuit: CircuitConfig,
    pub jobs: JobsConfig,
    pub metrics: MetricsConfig,
    pub storage: StorageConfig,
    pub coordination: CoordinationConfig,
    /// Sign-in with e-mail and password (`docs/auth.md`).
    pub auth: crate::auth::AuthConfig,
    pub webhooks: crate::webhook::WebhooksConfig,
    /// E-mailed usage reports (docs/email.md).
    pub email: crate::email::EmailConfig,
    /// The response cache (docs/cache.md).
    pub cache: crate::cache::CacheConfig,
    /// The providers requests can go to. Setting this list replaces the
    /// built-in simulated providers.
    pub providers: Vec<ProviderConfig>,
}

/// HTTP listener and request limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub bind: String,
    /// Directory of the redb file `oneflow.redb`.
    pub data_dir: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest accepted request body, in bytes (bigger gets 413).
    pub max_body_bytes: usize,
    /// Largest image part of a chat, in bytes as decoded (bigger gets
    /// 413 `image_too_large`): 5 MiB by default, the smaller of OpenAI's
    /// and Anthropic's bounds, since a chat may go to either. Only bites
    /// when `max_body_bytes` is raised past it.
    pub max_image_bytes: usize,
    /// Largest transcription upload (`multipart/form-data`), in bytes:
    /// 25 MiB by default, OpenAI's own bound. Bigger gets 413.
    pub max_audio_bytes: usize,
    /// Longest accepted prompt, in characters.
    pub max_prompt_chars: usize,
    /// Seconds a client has to send its request head.
    pub client_request_timeout_secs: u64,
    /// Seconds in-flight requests get to finish on a graceful stop.
    pub shutdown_timeout_secs: u64,
    /// Wrong keys one client address may send in a minute; past it, 429
    /// with Retry-After and no key lookup.
    pub auth_failures_per_minute: u32,
    /// Seconds a stream waits for its client to take the next chunk; then
    /// it ends (`client_stalled`), its upstream call and provider slot are
    /// let go, and what was delivered is settled.
    pub client_stall_secs: u64,
    /// Exports running at once, over all users; past it, 429.
    pub max_exports: usize,
    /// Exports one caller may run at once; past it, 429.
    pub max_exports_per_user: usize,
}

/// Wallets in memory: when idle ones leave and how much one user may have
/// in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalletConfig {
    /// No longer used (wallets were actors spread over this many threads;
    /// they now run on the caller's thread). Accepted, and ignored with a
    /// warning, so that older files still load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arbiters: Option<usize>,
    pub idle_stop_secs: u64,
    /// Requests one user may have holding money at once; past it, 503 with
    /// Retry-After. Read from `mailbox` too, its name in older files.
    #[serde(alias = "mailbox")]
    pub max_in_flight: usize,
    /// Completed idempotency keys a live wallet remembers in memory (older
    /// ones are read from the store).
    pub idempotency_memory: usize,
}

/// How long and how much is kept for `Idempotency-Key` replays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// Hours a key's first answer is kept; after that the record is
    /// purged and the key runs as new. Fractions are allowed.
    pub retention_hours: f64,
    /// Largest full answer (a request's output, encoded) kept for
    /// replays. A larger one keeps only its outcome: its `/v1` replays
    /// answer 409 `idempotency_answer_not_kept`, its native ones the
    /// outcome as always.
    pub max_answer_bytes: usize,
    /// Answer bytes one wallet keeps in memory for fast replays; past it
    /// the oldest are read from the store instead.
    pub memory_bytes: usize,
}

impl IdempotencyConfig {
    /// The retention in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        (self.retention_hours * 3_600_000.0) as i64
    }
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            retention_hours: 24.0,
            max_answer_bytes: 1 << 20,
            memory_bytes: 1 << 20,
        }
    }
}

/// The persistence queue and its group commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceConfig {
    /// Writes waiting for a commit; when full, new requests get 503.
    pub queue: usize,
    /// Most writes in one commit.
    pub max_batch: usize,
    /// The store's page cache in bytes (redb's own default is 1 GiB). The
    /// OS page cache holds the file anyway; this bounds what the process
    /// keeps itself, which is most of its memory (docs/performance.md).
    pub cache_bytes: usize,
}

/// How providers are ranked by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub strategy: Strategy,
    /// How the `balanced` strategy weighs its four figures.
    pub weights: Weights,
}

/// Retries on one provider, then fallbacks to the next ones in the ranking,
/// all inside the request's one hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Tries on one provider before falling back (1 = no retry).
    pub attempts_per_provider: u32,
    /// Providers tried in ranking order before giving up.
    pub max_providers: u32,
    /// First backoff; doubles each retry, with full jitter.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// A `Retry-After` longer than this moves on to the next provider
    /// instead of waiting.
    pub max_retry_after_secs: u64,
    /// One upstream call, headers to last byte (streams: to first byte).
    pub attempt_timeout_ms: u64,
    /// Every attempt of one request together.
    pub total_timeout_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts_per_provider: 2,
            max_providers: 3,
            backoff_base_ms: 100,
            backoff_max_ms: 2_000,
            max_retry_after_secs: 5,
            attempt_timeout_ms: 60_000,
            total_timeout_ms: 120_000,
        }
    }
}

/// Per-provider circuit breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitConfig {
    /// Consecutive failed calls that open the circuit.
    pub failures: u32,
    /// How long it stays open before one probe call is let through.
    pub open_ms: u64,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            failures: 5,
            open_ms: 30_000,
        }
    }
}

/// Video jobs: requests an upstream answers later (create, poll, fetch),
/// run in the background from `POST /api/jobs` or waited for by
/// `/api/request`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// The longest one job may run, created to finished with its polls;
    /// it replaces `retry.attempt_timeout_ms` and `total_timeout_ms`,
    /// which bound one HTTP exchange, not minutes of rendering. Past it
    /// the job is cancelled upstream and its hold released.
    pub timeout_ms: u64,
    /// Jobs running in the background at once, all users together; past
    /// it `POST /api/jobs` is answered 429 `too_many_jobs`.
    pub max_running: usize,
    /// Most bytes passed on of one job's content.
    pub max_content_bytes: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            timeout_ms: 30 * 60_000,
            max_running: 1024,
            max_content_bytes: 512 << 20,
        }
    }
}

/// What `/metrics` exports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Adds a `user` label to the request counter. Off by default: every
    /// user becomes a set of series, which a large deployment's Prometheus
    /// pays for in memory.
    pub per_user_labels: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8080".into(),
            data_dir: "./data".into(),
            workers: 0,
            max_body_bytes: 1 << 20,
            max_image_bytes: 5 << 20,
            max_audio_bytes: 25 << 20,
            max_prompt_chars: 200_000,
            client_request_timeout_secs: 5,
            shutdown_timeout_secs: 30,
            auth_failures_per_minute: 20,
            client_stall_secs: 30,
            max_exports: 16,
            max_exports_per_user: 2,
        }
    }
}

impl Default for WalletConfig {
    fn default() -> Self {
        WalletConfig {
            arbiters: None,
            idle_stop_secs: 300,
            max_in_flight: 64,
            idempotency_memory: 10_000,
        }
    }
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            queue: 65_536,
            max_batch: 4096,
            cache_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            strategy: Strategy::Cost,
            weights: Weights::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            wallets: WalletConfig::default(),
            idempotency: IdempotencyConfig::default(),
            persistence: PersistenceConfig::default(),
            routing: RoutingConfig::default(),
            retry: RetryConfig::default(),
            circuit: CircuitConfig::default(),
            jobs: JobsConfig::default(),
            metrics: MetricsConfig::default(),
            storage: StorageConfig::default(),
            coordination: CoordinationConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            webhooks: Default::default(),
            email: crate::email::EmailConfig::default(),
            cache: Default::default(),
            providers: default_providers(),
        }
    }
}

/// A configuration value that parses but makes no sense; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration `{key}`: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn bad(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl Config {
    /// Checks what serde cannot: ranges, uniqueness, cross-references.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad("server.bind", "must be host:port with an IP address"));
        }
        if self.server.data_dir.is_empty() {
            return Err(bad("server.data_dir", "must not be empty"));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(bad("server.max_body_bytes", "must be at least 1024"));
        }
        if self.server.max_audio_bytes < 1024 {
            return Err(bad("server.max_audio_bytes", "must be at least 1024"));
        }
        if self.server.max_image_bytes < 1024 {
            return Err(bad("server.max_image_bytes", "must be at least 1024"));
        }
        if self.server.max_exports == 0 || self.server.max_exports_per_user == 0 {
            return Err(bad(
                "server.max_exports",
                "exports need at least 1 slot, overall and per user",
            ));
        }
        if self.server.client_stall_secs == 0 {
            return Err(bad("server.client_stall_secs", "must be at least 1"));
        }
        if self.server.auth_failures_per_minute == 0 {
            return Err(bad("server.auth_failures_per_minute", "must be at least 1"));
        }
        self.webhooks.check().map_err(|(k, why)| bad(k, why))?;
        self.cache.check().map_err(|(k, why)| bad(k, why))?;
        if self.wallets.max_in_flight == 0 {
            return Err(bad("wallets.max_in_flight", "must be at least 1"));
        }
        let i = &self.idempotency;
        // At least a second, at most ten years: a retention the clock
        // arithmetic can hold.
        if !(i.retention_hours.is_finite()
            && (1.0 / 3600.0..=87_600.0).contains(&i.retention_hours))
        {
            return Err(bad(
                "idempotency.retention_hours",
                "must be between 1/3600 (one second) and 87600",
            ));
        }
        if self.persistence.queue < 2 || self.persistence.max_batch == 0 {
            return Err(bad(
                "persistence",
                "queue must be at least 2 and max_batch at least 1",
            ));
        }
        let w = &self.routing.weights;
        let ws = [w.cost, w.latency, w.quality, w.reliability];
        if ws.iter().any(|x| !x.is_finite() || *x < 0.0) || ws.iter().sum::<f64>() <= 0.0 {
            return Err(bad(
                "routing.weights",
                "must be finite, not negative, and not all zero",
            ));
        }
        let r = &self.retry;
        if r.attempts_per_provider == 0 || r.attempts_per_provider > 10 {
            return Err(bad(
                "retry.attempts_per_provider",
                "must be between 1 and 10",
            ));
        }
        if r.max_providers == 0 {
            return Err(bad("retry.max_providers", "must be at least 1"));
        }
        if r.attempt_timeout_ms == 0 || r.total_timeout_ms < r.attempt_timeout_ms {
            return Err(bad(
                "retry.total_timeout_ms",
                "must be at least retry.attempt_timeout_ms, which must be above 0",
            ));
        }
        if r.backoff_max_ms < r.backoff_base_ms {
            return Err(bad(
                "retry.backoff_max_ms",
                "must be at least backoff_base_ms",
            ));
        }
        if self.jobs.timeout_ms == 0 || self.jobs.max_running == 0 {
            return Err(bad("jobs", "timeout_ms and max_running must be above 0"));
        }
        self.storage.validate().map_err(|(k, r)| bad(k, r))?;
        self.coordination.validate().map_err(|(k, r)| bad(k, r))?;
        self.auth.validate().map_err(|(k, r)| bad(k, r))?;
        self.email.validate().map_err(|(k, r)| bad(k, r))?;
        if self.circuit.failures == 0 {
            return Err(bad("circuit.failures", "must be at least 1"));
        }
        if self.providers.is_empty() {
            return Err(bad("providers", "at least one provider is needed"));
        }
        let mut names = BTreeSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let key = |k: &str| format!("providers[{i}].{k}");
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(bad(
                    key("name"),
                    "must be non-empty ASCII letters, digits, '-', '_' or '.'",
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(bad(key("name"), format!("duplicate provider `{}`", p.name)));
            }
            if p.quality > 100 {
                return Err(bad(key("quality"), "must be between 0 and 100"));
            }
            if p.limits.max_concurrency == 0 {
                return Err(bad(key("limits.max_concurrency"), "must be at least 1"));
            }
            if p.limits.queue == 0 {
                return Err(bad(key("limits.queue"), "must be at least 1"));
            }
            if p.limits.burst == 0 {
                return Err(bad(key("limits.burst"), "must be at least 1"));
            }
            let r = &p.rates;
            let prices = [
                r.per_request,
                r.per_input_token,
                r.per_output_token,
                r.per_image,
                r.per_second,
            ];
            if prices
                .iter()
                .chain(r.per_image_size.values())
                .any(|c| c.is_negative())
            {
                return Err(bad(key("rates"), "prices must not be negative"));
            }
            let q = &p.request;
            if q.default_max_tokens == 0 || q.default_max_tokens > q.max_tokens {
                return Err(bad(
                    key("request.default_max_tokens"),
                    "must be between 1 and request.max_tokens",
                ));
            }
            if q.default_seconds == 0 || q.default_seconds > q.max_seconds {
                return Err(bad(
                    key("request.default_seconds"),
                    "must be between 1 and request.max_seconds",
                ));
            }
            if p.limits.max_response_bytes < 1024 {
                return Err(bad(
                    key("limits.max_response_bytes"),
                    "must be at least 1024",
                ));
            }
            if q.max_images == 0 {
                return Err(bad(key("request.max_images"), "must be at least 1"));
            }
            if p.modality == Modality::Image && !q.sizes.contains(&q.default_size) {
                return Err(bad(
                    key("request.default_size"),
                    "must be one of request.sizes",
                ));
            }
            if !(10..=600_000).contains(&p.poll_interval_ms) {
                return Err(bad(
                    key("poll_interval_ms"),
                    "must be between 10 and 600000",
                ));
            }
            if p.responses && (p.kind != ProviderKind::Openai || p.modality != Modality::Text) {
                return Err(bad(
                    key("responses"),
                    "only an openai provider of the text modality speaks the Responses API",
                ));
            }
            if p.kind != ProviderKind::Simulated {
                if p.base_url.is_empty() {
                    return Err(bad(
                        key("base_url"),
                        format!("a {} provider needs an http(s) base_url", p.kind.name()),
                    ));
                }
                crate::reach::Reach::OffHost
                    .or_anywhere(p.allow_private)
                    .check_url(&p.base_url)
                    .map_err(|why| bad(key("base_url"), why))?;
                if p.api_key_env.is_empty() && p.kind != ProviderKind::Openai {
                    return Err(bad(
                        key("api_key_env"),
                        "name the environment variable that holds the key",
                    ));
                }
                let serves = match p.kind {
                    ProviderKind::Anthropic => p.modality == Modality::Text,
                    ProviderKind::Stability => p.modality == Modality::Image,
                    // Video through OpenAI's job API (`/videos`).
                    _ => true,
                };
                if !serves {
                    return Err(bad(
                        key("modality"),
                        format!(
                            "a {} provider cannot serve {}",
                            p.kind.name(),
                            p.modality.name()
                        ),
                    ));
                }
            }
            let s = &p.simulated;
            if !(0.0..=1.0).contains(&s.failure_rate) {
                return Err(bad(
                    key("simulated.failure_rate"),
                    "must be between 0 and 1",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = Config::default();
        c.providers[1].name = "gpt".into();
        assert_eq!(c.validate().unwrap_err().key, "providers[1].name");
        let mut c = Config::default();
        c.providers[0].simulated.failure_rate = 1.5;
        assert_eq!(
            c.validate().unwrap_err().key,
            "providers[0].simulated.failure_rate"
        );
        let mut c = Config::default();
        c.server.bind = "nowhere".into();
        assert_eq!(c.validate().unwrap_err().key, "server.bind");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<Config>(r#"{"server":{"bnd":"x"}}"#).unwrap_err();
        assert!(err.to_string().contains("bnd"), "{err}");
    }
}
