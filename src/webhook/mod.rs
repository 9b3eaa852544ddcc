//! Webhooks, the pure part: what a subscription may ask for and how it is
//! checked, the events and what the API shows of subscriptions and their
//! deliveries, the retry schedule, the budget thresholds, the `[webhooks]`
//! configuration, and the signature receivers verify ([`signature`]).
//! The runtime's outbox and alert checks are in the actors crate
//! (`usecase/webhooks/`); docs/webhooks.md is the receivers' guide.

use serde::{Deserialize, Serialize};

use crate::money::Credits;
use crate::time::Millis;

pub mod signature;
#[cfg(test)]
mod tests;

pub use signature::{HEADER, TOLERANCE_SECS, VerifyError, sign, verify};

/// Longest webhook URL, in bytes.
pub const MAX_URL: usize = 2048;
/// Deliveries kept in a webhook's log (older ones are dropped once sent).
pub const LOG_KEEP: usize = 100;
/// The thresholds `budget.threshold` reports, in percent of a limit.
pub const THRESHOLDS: [u8; 3] = [50, 80, 100];
/// Fewest requests in a window before `request.failures` judges its rate:
/// two failures of three requests say little.
pub const MIN_REQUESTS: u64 = 10;
/// The first retry's delay; each later one doubles, up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: Millis = 1_000;
pub const MAX_BACKOFF_MS: Millis = 3_600_000;

/// What a webhook can be told of.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum EventKind {
    /// A budget window's spend reached 50, 80 or 100 % of its limit.
    #[serde(rename = "budget.threshold")]
    BudgetThreshold,
    /// The balance fell below the webhook's `balance_below`.
    #[serde(rename = "balance.low")]
    BalanceLow,
    /// One of the user's API keys was revoked.
    #[serde(rename = "key.revoked")]
    KeyRevoked,
    /// The share of failed requests in a window passed `failure_rate`.
    #[serde(rename = "request.failures")]
    RequestFailures,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::BudgetThreshold => "budget.threshold",
            EventKind::BalanceLow => "balance.low",
            EventKind::KeyRevoked => "key.revoked",
            EventKind::RequestFailures => "request.failures",
        }
    }
}

/// What a subscription asks for, as its owner sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookSpec {
    pub url: String,
    pub events: Vec<EventKind>,
    pub balance_below: Option<Credits>,
    pub failure_rate: Option<f64>,
    pub failure_window_minutes: Option<u32>,
}

/// A subscription's settings once checked, with their defaults filled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookSettings {
    /// Where deliveries are POSTed.
    pub url: String,
    /// The events sent there, each once, in a fixed order.
    pub events: Vec<EventKind>,
    /// `balance.low` fires when the balance drops below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance_below: Option<Credits>,
    /// `request.failures` fires when more than this share of the requests
    /// in a window failed (0 < x <= 1).
    pub failure_rate: f64,
    /// The length of the windows `request.failures` counts in, in minutes
    /// (windows start at multiples of it since the Unix epoch).
    pub failure_window_minutes: u32,
}

impl WebhookSpec {
    /// Checks the spec (the URL for the public internet only, unless
    /// `allow_private`: see [`crate::reach`]) and
    /// fills in defaults. Errors name the field.
    pub fn check(self, allow_private: bool) -> Result<WebhookSettings, String> {
        if self.url.chars().count() > MAX_URL {
            return Err(format!("`url` is longer than {MAX_URL} characters"));
        }
        // RFC 3986's characters only (international names in punycode):
        // what the schema's `format: uri` promises, where the URL parser
        // would quietly re-encode other text into some other address.
        let uri_char = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c);
        if !self.url.chars().all(uri_char) {
            return Err("`url` must be a URI: ASCII letters, digits and -._~:/?#[]@!$&'()*+,;=% only (international names in punycode)".into());
        }
        crate::reach::Reach::Public
            .or_anywhere(allow_private)
            .check_url(&self.url)
            .map_err(|e| format!("`url` {e}"))?;
        let mut events = self.events;
        events.sort();
        events.dedup();
        if events.is_empty() {
            return Err("`events` must name at least one event".into());
        }
        let wants = |k| events.contains(&k);
        // A line at or below zero is allowed and never crossed: balances
        // do not go below zero.
        if wants(EventKind::BalanceLow) && self.balance_below.is_none() {
            return Err("`balance_below` is required with `balance.low`".into());
        }
        let balance_below = self.balance_below;
        let failure_rate = self.failure_rate.unwrap_or(0.5);
        if !(failure_rate.is_finite() && failure_rate > 0.0 && failure_rate <= 1.0) {
            return Err("`failure_rate` must be above 0 and at most 1".into());
        }
        let failure_window_minutes = self.failure_window_minutes.unwrap_or(5);
        if !(1..=1440).contains(&failure_window_minutes) {
            return Err("`failure_window_minutes` must be between 1 and 1440".into());
        }
        Ok(WebhookSettings {
            url: self.url,
            events,
            balance_below,
            failure_rate,
            failure_window_minutes,
        })
    }
}

/// A subscription as its owner sees it (never the secret).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// What the other webhook routes take.
    pub id: String,
    pub user_id: String,
    #[serde(flatten)]
    pub settings: WebhookSettings,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    /// Until when deliveries also carry a signature with the secret this
    /// one replaced (after `rotate-secret`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub previous_secret_until: Option<Millis>,
}

/// A new subscription, or a rotated secret, with the secret shown once.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_` and 64 hex digits: the HMAC key of `OneFlow-Signature`.
    /// Shown only in this answer; store it.
    pub secret: String,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet answered with a 2xx; retried until `retry_for_hours`.
    Pending,
    Delivered,
    /// Given up: no 2xx within `retry_for_hours`, or its webhook is gone.
    Failed,
}

/// One delivery of one event to one webhook, as its log shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// Sent as the `OneFlow-Delivery` header.
    pub id: String,
    /// The event's id (the body's `id`).
    pub event_id: String,
    pub event: EventKind,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// The HTTP status of the last attempt, if one got an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed without an answer (or was given up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[schema(value_type = i64)]
    pub created_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub last_attempt_at: Option<Millis>,
    /// When the next attempt is due, while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub next_attempt_at: Option<Millis>,
}

/// How long to wait after the `failures`-th failed attempt (1 for the
/// first): 1 s, 2 s, 4 s … capped at an hour, then scaled into its upper
/// fifth by `jitter` (0..1), so deliveries that failed together (a
/// receiver that was down) do not all come back in the same instant.
pub fn backoff_ms(failures: u32, jitter: f64) -> Millis {
    let doublings = failures.saturating_sub(1).min(32);
    let full = FIRST_BACKOFF_MS
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF_MS);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    full - (full as f64 * 0.2 * jitter) as Millis
}

/// The thresholds of [`THRESHOLDS`] that `spent` has reached of `limit`,
/// lowest first. Every crossed threshold is reported, not only the
/// highest: a receiver that acts at 50 % must hear of it even when one
/// large request went from 40 % to 100 %.
pub fn thresholds_reached(spent: Credits, limit: Credits) -> Vec<u8> {
    if limit.micros() <= 0 {
        return Vec::new();
    }
    THRESHOLDS
        .into_iter()
        .filter(|p| (spent.micros() as i128) * 100 >= (limit.micros() as i128) * (*p as i128))
        .collect()
}

/// The start of the `minutes`-long window (from the epoch) holding `now`.
pub fn failure_window_start(now: Millis, minutes: u32) -> Millis {
    let len = Millis::from(minutes.max(1)) * 60_000;
    now.div_euclid(len) * len
}

/// Whether `failed` of `total` requests is a failure rate above `rate`,
/// with enough requests to judge ([`MIN_REQUESTS`]).
pub fn failing(total: u64, failed: u64, rate: f64) -> bool {
    total >= MIN_REQUESTS && (failed as f64) > rate * total as f64
}

/// The `[webhooks]` section of the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Accept and deliver to any address: this host, private networks,
    /// metadata services (a receiver beside the broker). Off: only public
    /// addresses; others are refused when written out, and host names
    /// resolving to them are not connected to.
    pub allow_private: bool,
    /// How often due deliveries are sent, in milliseconds.
    pub deliver_every_ms: u64,
    /// How often budgets, balances and failure rates are checked for
    /// events, in milliseconds.
    pub check_every_ms: u64,
    /// How long an undelivered event is retried before it is `failed`.
    pub retry_for_hours: u64,
    /// Webhooks one user may have.
    pub max_per_user: usize,
    /// Deliveries one user may have pending; events past it are refused
    /// (and logged), so a dead receiver cannot grow the store without end.
    pub max_pending_per_user: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_private: false,
            deliver_every_ms: 1000,
            check_every_ms: 5000,
            retry_for_hours: 24,
            max_per_user: 20,
            max_pending_per_user: 10_000,
        }
    }
}

impl WebhooksConfig {
    /// The first bad key and why, if any.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if !(10..=3_600_000).contains(&self.deliver_every_ms) {
            return Err((
                "webhooks.deliver_every_ms",
                "must be between 10 and 3600000",
            ));
        }
        if !(10..=3_600_000).contains(&self.check_every_ms) {
            return Err(("webhooks.check_every_ms", "must be between 10 and 3600000"));
        }
        if !(1..=720).contains(&self.retry_for_hours) {
            return Err(("webhooks.retry_for_hours", "must be between 1 and 720"));
        }
        if !(1..=1000).contains(&self.max_per_user) {
            return Err(("webhooks.max_per_user", "must be between 1 and 1000"));
        }
        if !(1..=1_000_000).contains(&self.max_pending_per_user) {
            return Err((
                "webhooks.max_pending_per_user",
                "must be between 1 and 1000000",
            ));
        }
        Ok(())
    }

    pub fn retry_for_ms(&self) -> Millis {
        self.retry_for_hours as Millis * 3_600_000
    }
}
