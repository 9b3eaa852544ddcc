//! One provider's configuration: which adapter, what it serves, where, at
//! what price and within what limits; and the offline defaults.
//!
//! Below `config` (which lists providers), `request` (which fits a request
//! to one) and `routing` (which ranks them), so those need not name each
//! other for it.

use serde::{Deserialize, Serialize};

use crate::choice::Region;
use crate::money::Credits;
use crate::pricing::{Modality, RateCard};

/// The adapter behind a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Built in, offline, deterministic.
    Simulated,
    /// OpenAI's API and every server that speaks it (vLLM, Ollama, Groq,
    /// Together, OpenRouter...).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
    /// Stability AI's REST image generation.
    Stability,
}

impl ProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Simulated => "simulated",
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Stability => "stability",
        }
    }
}

/// One provider: what it serves, where, at what price, within what limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub modality: Modality,
    /// Model names it answers to besides its own name.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default = "default_region")]
    pub region: Region,
    /// 0 to 100; used by the `quality` and `balanced` strategies.
    #[serde(default = "default_quality")]
    pub quality: u32,
    #[serde(default)]
    pub rates: RateCard,
    /// What the provider itself charges OneFlow, in the currency of its
    /// invoices (1 credit = 1 unit), when `rates` carries a markup:
    /// reconciliation prices our records with it to compare with the
    /// provider's bill (docs/reconcile.md). Absent: `rates` are the
    /// provider's own prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_rates: Option<RateCard>,
    #[serde(default)]
    pub limits: ProviderLimits,
    #[serde(default)]
    pub request: RequestLimits,
    #[serde(default)]
    pub simulated: SimulatedSettings,
    /// Where the upstream API lives (every kind but `simulated`), without
    /// the version path, e.g. `http://127.0.0.1:11434` for a local server.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_url: String,
    /// The environment variable that holds the upstream API key. The key
    /// itself never enters config, logs, errors or the store.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_key_env: String,
    /// Lets `base_url` be on this host or a link-local address (a local
    /// model server, a test double). Off by default: an upstream address
    /// there is how a configuration or a hostile DNS answer steers the
    /// broker, with its key, at loopback services or a cloud's metadata
    /// endpoint.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private: bool,
    /// The upstream speaks OpenAI's Responses API (`/responses`) too:
    /// `/v1/responses` requests are sent on in that format, as they came,
    /// instead of as chat completions. An `openai` text provider only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub responses: bool,
    /// How often a video job's state is asked for while it renders.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
}

impl ProviderConfig {
    /// The model name sent upstream for a request that asked for `asked`:
    /// that name if this provider lists it, else its first listed model (a
    /// client may name the provider itself). Providers bill by this name.
    pub fn upstream_model(&self, asked: &str) -> String {
        if self.models.iter().any(|m| m == asked) {
            asked.to_string()
        } else {
            self.models
                .first()
                .cloned()
                .unwrap_or_else(|| asked.to_string())
        }
    }
}

fn default_poll_ms() -> u64 {
    2_000
}

fn default_region() -> Region {
    Region::Us
}
fn default_quality() -> u32 {
    50
}

/// Rate limit, concurrency cap and queue bound of one provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderLimits {
    /// Sustained requests per second; 0 means unlimited.
    pub requests_per_second: u32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// Requests per minute, on top of the per-second rate (providers often
    /// publish both); 0 means unlimited.
    pub requests_per_minute: u32,
    /// Calls in flight at once.
    pub max_concurrency: u32,
    /// Calls waiting for a slot; beyond it the answer is 429.
    pub queue: u32,
    /// Tokens (prompt bound plus `max_tokens`) admitted per minute; 0 means
    /// unlimited.
    pub tokens_per_minute: u32,
    /// Most bytes read of one whole answer, and of one streamed event; more
    /// is an upstream fault (502 `upstream_too_large`), not memory to spend.
    pub max_response_bytes: u64,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        ProviderLimits {
            requests_per_second: 0,
            burst: 1,
            requests_per_minute: 0,
            max_concurrency: 256,
            queue: 4096,
            tokens_per_minute: 0,
            max_response_bytes: 16 << 20,
        }
    }
}

/// Bounds on what one request may ask of a provider; they make the quote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimits {
    pub default_max_tokens: u32,
    pub max_tokens: u32,
    pub max_images: u32,
    pub sizes: Vec<String>,
    pub default_size: String,
    pub default_seconds: u32,
    pub max_seconds: u32,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            default_max_tokens: 16,
            max_tokens: 4096,
            max_images: 10,
            sizes: vec!["256x256".into(), "512x512".into(), "1024x1024".into()],
            default_size: "1024x1024".into(),
            default_seconds: 10,
            max_seconds: 600,
        }
    }
}

/// Behaviour of a simulated provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedSettings {
    pub latency_ms: u64,
    /// Probability in [0, 1] that a call fails.
    pub failure_rate: f64,
    /// Seed of the failure draw, so failures are reproducible.
    pub seed: u64,
}

impl Default for SimulatedSettings {
    fn default() -> Self {
        SimulatedSettings {
            latency_ms: 20,
            failure_rate: 0.0,
            seed: 1,
        }
    }
}

/// The offline defaults: one simulated provider per modality, priced as the
/// original product (text 1 credit per word, image 10 per image, audio 5 and
/// video 20 per clip).
pub fn default_providers() -> Vec<ProviderConfig> {
    let sim = |name: &str, modality, rates| ProviderConfig {
        name: name.to_string(),
        kind: ProviderKind::Simulated,
        modality,
        models: Vec::new(),
        region: Region::Us,
        quality: 50,
        rates,
        upstream_rates: None,
        limits: ProviderLimits::default(),
        request: RequestLimits::default(),
        simulated: SimulatedSettings::default(),
        base_url: String::new(),
        api_key_env: String::new(),
        allow_private: false,
        responses: false,
        poll_interval_ms: default_poll_ms(),
    };
    vec![
        sim(
            "gpt",
            Modality::Text,
            RateCard {
                per_output_token: Credits::from_credits(1),
                ..RateCard::default()
            },
        ),
        sim(
            "image",
            Modality::Image,
            RateCard {
                per_image: Credits::from_credits(10),
                ..RateCard::default()
            },
        ),
        sim(
            "audio",
            Modality::Audio,
            RateCard {
                per_request: Credits::from_credits(5),
                ..RateCard::default()
            },
        ),
        sim(
            "video",
            Modality::Video,
            RateCard {
                per_request: Credits::from_credits(20),
                ..RateCard::default()
            },
        ),
    ]
}
