//! What an API key may do beyond its role: the models it may ask for, the
//! providers it may be routed to, when it stops working, and its own
//! budget. Stored with the key; checked on every request through it.

use serde::{Deserialize, Serialize};

use crate::budget::SpenderBudget;
use crate::time::Millis;

/// Most models or providers one key may name.
pub const MAX_SCOPE_NAMES: usize = 64;
/// Longest model or provider name a key may name.
pub const MAX_SCOPE_NAME_LEN: usize = 128;

/// A key's limits; every part is optional and absent means "no limit".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyScope {
    /// Model names the key may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Provider names its requests may be routed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
    /// From this instant on (milliseconds since the Unix epoch) the key no
    /// longer authenticates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
    /// The key's own caps, checked on the same hold as its wallet's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<SpenderBudget>,
    /// Whether its requests use the response cache (`[cache]`): `bypass`
    /// forbids it whatever a request's header says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::cache::CacheMode>,
}

impl KeyScope {
    pub fn is_empty(&self) -> bool {
        *self == KeyScope::default()
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }

    pub fn allows_provider(&self, provider: &str) -> bool {
        self.providers
            .as_ref()
            .is_none_or(|p| p.iter().any(|x| x == provider))
    }

    pub fn expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

/// A key's scope with the key's id, as its requests carry it (behind an
/// `Arc`, so a request pays a reference count for it). The id is the
/// spender id its budget is counted under in the wallet it spends from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedKey {
    pub id: String,
    pub scope: KeyScope,
}
