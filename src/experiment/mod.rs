//! A/B experiments of providers: one model's traffic split between
//! variants (a provider, perhaps with a few parameters set) by integer
//! weights, each request assigned by a stable hash so that the same
//! caller (or the same request id) always lands on the same variant.
//! What is compared, and how, is in [`figures`].
//!
//! Pure: validation against the configured providers, the assignment and
//! the figures' arithmetic. Storage and the running set are the runtime's
//! (`oneflow-actors`, `usecase/experiments.rs`).

use serde::{Deserialize, Serialize};

use crate::provider::ProviderConfig;
use crate::records::ExperimentTag;
use crate::routing::serves;
use crate::time::Millis;

pub mod figures;

/// Most variants in one experiment: a comparison of more rarely reaches
/// significance, and each costs a line of figures per metric.
pub const MAX_VARIANTS: usize = 8;
/// Largest weight of one variant; totals stay far from overflow.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Longest variant name, in characters.
pub const MAX_NAME: usize = 32;
/// Longest note an operator may attach, in characters.
pub const MAX_NOTE: usize = 500;
/// Highest `max_tokens` override.
pub const MAX_TOKENS_OVERRIDE: u32 = 1_000_000;

/// What a request's variant is drawn from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExperimentSticky)]
pub enum Sticky {
    /// The paying wallet (a user, or a team for a team's key): one
    /// caller sees one variant for the whole experiment.
    #[default]
    User,
    /// The request id: every request is drawn afresh.
    Request,
}

/// Parameters a variant sets on the requests it serves, over the
/// client's. Kept to two that change an answer's quality and cost
/// without changing what it is; both apply to chat and completion
/// requests only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VariantOverrides)]
pub struct Overrides {
    /// Sampling temperature, 0 to 2 (chat requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// A lower bound on the answer's length than the client's, 1 to
    /// 1,000,000: the call asks for at most this many tokens. The hold
    /// is still the client's bound, so it never holds too little.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::request::whole_u32"
    )]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_tokens: Option<u32>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.temperature.is_none() && self.max_tokens.is_none()
    }
}

/// One arm of an experiment, as asked for and as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExperimentVariant)]
pub struct Variant {
    /// 1 to 32 letters, digits, `-` or `_`; unique in the experiment.
    #[schema(min_length = 1, max_length = 32, pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub name: String,
    /// A configured provider that serves the experiment's model.
    #[schema(min_length = 1, max_length = 128)]
    pub provider: String,
    /// This variant's share is its weight over the sum of all weights.
    #[serde(deserialize_with = "weight")]
    #[schema(minimum = 0, maximum = 1000000)]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Overrides::is_empty")]
    pub overrides: Overrides,
}

fn weight<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    crate::request::whole_u32(d)?.ok_or_else(|| D::Error::custom("`weight` is required"))
}

/// A new experiment. The example's two variants share a provider and
/// differ in temperature, which the built-in configuration can run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "model": "gpt",
    "sticky": "user",
    "variants": [
        {"name": "A", "provider": "gpt", "weight": 70},
        {"name": "B", "provider": "gpt", "weight": 30, "overrides": {"temperature": 0.2}}
    ]
}))]
pub struct ExperimentSpec {
    /// The model whose traffic is split.
    #[schema(min_length = 1, max_length = 256)]
    pub model: String,
    /// 2 to 8 variants; the first is the control the others are compared
    /// with.
    #[schema(min_items = 2, max_items = 8)]
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub sticky: Sticky,
    /// Free text for the people reading the figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub note: Option<String>,
}

/// Why a spec cannot run. Every case is a well-formed body that does not
/// fit this broker (422), except `Conflict`, decided elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

impl ExperimentSpec {
    /// Checks the spec against the configured providers: names, weights
    /// with a positive total, overrides in range, each provider known and
    /// serving the model.
    pub fn validate(&self, providers: &[ProviderConfig]) -> Result<(), SpecError> {
        let bad = |m: String| Err(SpecError(m));
        if self.model.is_empty() || self.model.len() > 256 {
            return bad("`model` must be 1 to 256 bytes".into());
        }
        if !providers.iter().any(|p| serves(p, &self.model)) {
            return bad(format!("no provider serves model `{}`", self.model));
        }
        let n = self.variants.len();
        if !(2..=MAX_VARIANTS).contains(&n) {
            return bad(format!("an experiment has 2 to {MAX_VARIANTS} variants"));
        }
        if self
            .note
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NOTE)
        {
            return bad(format!("`note` is at most {MAX_NOTE} characters"));
        }
        let mut total = 0u64;
        for (i, v) in self.variants.iter().enumerate() {
            let name_ok = !v.name.is_empty()
                && v.name.chars().count() <= MAX_NAME
                && v.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                return bad(format!(
                    "variant name `{}` must be 1 to {MAX_NAME} letters, digits, `-` or `_`",
                    v.name
                ));
            }
            if self.variants[..i].iter().any(|o| o.name == v.name) {
                return bad(format!("two variants are named `{}`", v.name));
            }
            if v.weight > MAX_WEIGHT {
                return bad(format!("a weight is at most {MAX_WEIGHT}"));
            }
            total += u64::from(v.weight);
            let Some(p) = providers.iter().find(|p| p.name == v.provider) else {
                return bad(format!("unknown provider `{}`", v.provider));
            };
            if !serves(p, &self.model) {
                return bad(format!(
                    "provider `{}` does not serve model `{}`",
                    v.provider, self.model
                ));
            }
            if let Some(t) = v.overrides.temperature {
                if !(0.0..=2.0).contains(&t) {
                    return bad("`temperature` must be from 0 to 2".into());
                }
            }
            if let Some(m) = v.overrides.max_tokens {
                if m == 0 || m > MAX_TOKENS_OVERRIDE {
                    return bad(format!(
                        "`max_tokens` must be from 1 to {MAX_TOKENS_OVERRIDE}"
                    ));
                }
            }
        }
        if total == 0 {
            return bad("the weights must add up to more than 0".into());
        }
        Ok(())
    }
}

/// Where an experiment is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExperimentState {
    /// Assigning requests.
    Running,
    /// Ended by an operator; its figures are kept.
    Stopped,
    /// Ended by promoting a variant, whose provider now takes all the
    /// model's traffic (a [`Pin`]).
    Promoted,
}

/// An experiment as stored and shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Experiment {
    pub id: String,
    pub model: String,
    pub variants: Vec<Variant>,
    pub sticky: Sticky,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub state: ExperimentState,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    /// When it stopped or was promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub ended_at: Option<Millis>,
    /// The variant promoted, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<String>,
    /// Who created it.
    pub created_by: String,
}

/// A model's traffic sent to one provider, with a variant's overrides:
/// what promoting a variant leaves behind, until it is removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ExperimentPin)]
pub struct Pin {
    pub model: String,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Overrides::is_empty")]
    pub overrides: Overrides,
    /// The experiment whose promotion made it.
    pub experiment: String,
    pub variant: String,
    #[schema(value_type = i64)]
    pub since: Millis,
}

/// An experiment with its figures, as `GET /api/experiments/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ExperimentReport {
    #[serde(flatten)]
    pub experiment: Experiment,
    pub figures: figures::Figures,
    /// The figures stopped at the scan's bound: the newest requests are
    /// missing from them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One rating of one request (`POST /api/feedback`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rating {
    pub request_id: String,
    /// 1 to 5; 4 and 5 are positive.
    pub score: u8,
    /// Who rated it.
    pub by: String,
    #[schema(value_type = i64)]
    pub at: Millis,
    /// The experiment and variant of the request, if it was in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentTag>,
}

/// What routing does for one request of a model under an experiment or a
/// pin.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// The provider that serves it.
    pub provider: String,
    pub overrides: Overrides,
    /// The experiment and variant, for the record (None under a pin).
    pub tag: Option<ExperimentTag>,
    /// The request id the draw was made from (per-request experiments):
    /// the request must take it as its own.
    pub request_id: Option<String>,
}

/// The variant of `e` for a draw keyed by `key` (the wallet's id, or the
/// request id): FNV-1a of the experiment id, a NUL and the key, reduced
/// modulo the total weight, then walked over the weights in order. The
/// same inputs give the same variant on every node and every build.
pub fn assign<'a>(e: &'a Experiment, key: &str) -> Option<&'a Variant> {
    let total: u64 = e.variants.iter().map(|v| u64::from(v.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = mix(fnv1a(&[e.id.as_bytes(), b"\0", key.as_bytes()])) % total;
    for v in &e.variants {
        let w = u64::from(v.weight);
        if point < w {
            return Some(v);
        }
        point -= w;
    }
    None
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// SplitMix64's finaliser: FNV's low bits follow the last bytes too
/// closely for a modulo of keys that differ only at the end.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
