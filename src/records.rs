//! What is stored about each request. Rollups of them are in `analytics`.

use serde::{Deserialize, Serialize};

use crate::money::Credits;
use crate::pricing::{Modality, Usage};
use crate::time::Millis;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Succeeded,
    Failed,
    /// The broker stopped while the request was in flight; its hold was
    /// released on the next start.
    Interrupted,
}

/// One request as history shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestRecord {
    pub id: String,
    pub user_id: String,
    pub model: String,
    pub modality: Modality,
    pub provider: String,
    pub status: RequestStatus,
    /// The first 200 characters of the prompt, for people reading history.
    pub prompt_preview: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    pub usage: Usage,
    pub quote: Credits,
    pub cost: Credits,
    /// Cost beyond the hold that was not charged.
    pub shortfall: Credits,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why this provider: the routing explanation.
    pub route: String,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    pub created_at: Millis,
    pub latency_ms: u64,
    /// Every upstream try, in order: retries and fallbacks included;
    /// absent when there was none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// The upstream's usage was missing or above the quote's bound and was
    /// held to that bound (`pricing::checked_usage`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_anomaly: bool,
    /// The team member who sent it, when a team's wallet paid (`user_id`
    /// is then the team's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Answered from the response cache (docs/cache.md): `provider` is
    /// the one that made the answer first, no provider was called, and
    /// `cost` is `[cache] price`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// The A/B experiment and variant that chose its provider, if one did
    /// (`experiment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentTag>,
    /// The public id of the API key it came through (`key_...`), so that
    /// figures can be split by key; absent for a sign-in session's and for
    /// records written before keys were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

/// Which experiment's variant a request was: its figures are computed
/// from the records that carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExperimentTag {
    /// The experiment's id.
    pub id: String,
    /// The variant's name.
    pub variant: String,
}

/// One try of one provider for a request. A failed try is never charged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub provider: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}
