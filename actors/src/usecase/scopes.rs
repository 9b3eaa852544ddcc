//! API key scopes (`oneflow::key_scope`): checking a new key's scope
//! against the configured models and providers, and holding a request
//! through a scoped key to it before it is routed.
//!
//! A model the key may not use is refused (403, `outside_key_scope`);
//! so is a request whose key may be routed to none of the providers
//! that serve its model: routing among the key's providers only would
//! otherwise answer "unknown model", which is untrue of the broker.

use oneflow::key_scope::{KeyScope, MAX_SCOPE_NAME_LEN, MAX_SCOPE_NAMES, ScopedKey};
use oneflow::routing::serves;

use super::Services;
use super::job::RequestJob;
use crate::error::BrokerError;
use crate::ids::now_ms;

/// Whether a new key's scope names only what exists, each once, within
/// the bounds, with an expiry still ahead; 422 (`invalid_key_scope`)
/// otherwise, since each part alone is well formed.
pub(crate) fn validate(s: &Services, scope: &KeyScope) -> Result<(), BrokerError> {
    let bad = |m: String| Err(BrokerError::BadScope(m));
    for (field, names) in [("models", &scope.models), ("providers", &scope.providers)] {
        let Some(names) = names else { continue };
        if names.is_empty() || names.len() > MAX_SCOPE_NAMES {
            return bad(format!(
                "`{field}` must name 1 to {MAX_SCOPE_NAMES}; leave it out for no limit"
            ));
        }
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() || n.chars().count() > MAX_SCOPE_NAME_LEN {
                return bad(format!(
                    "each of `{field}` must be 1 to {MAX_SCOPE_NAME_LEN} characters"
                ));
            }
            if names[..i].contains(n) {
                return bad(format!("`{field}` names `{n}` twice"));
            }
        }
    }
    for p in scope.providers.iter().flatten() {
        if s.provider(p).is_err() {
            return bad(format!("unknown provider `{p}` in `providers`"));
        }
    }
    for m in scope.models.iter().flatten() {
        let mut serving = s.providers.iter().filter(|h| serves(&h.config, m));
        if !serving.any(|h| scope.allows_provider(&h.config.name)) {
            return bad(match scope.providers {
                None => format!("unknown model `{m}` in `models`"),
                Some(_) => format!("none of `providers` serves model `{m}`"),
            });
        }
    }
    if let Some(b) = &scope.budget {
        b.validate()?;
        for p in b.per_provider.keys() {
            if s.provider(p).is_err() {
                return bad(format!("unknown provider `{p}` in `budget.per_provider`"));
            }
        }
    }
    if scope.expired(now_ms()) {
        return bad("`expires_at` must be in the future".into());
    }
    Ok(())
}

/// Refuses a job its key may not send, before anything is routed or held.
/// Routing itself then leaves out the providers the key may not use
/// ([`allowed`]).
pub(crate) fn check(s: &Services, job: &RequestJob) -> Result<(), BrokerError> {
    let Some(key) = &job.key else { return Ok(()) };
    let scope = &key.scope;
    if !scope.allows_model(&job.model) {
        return Err(BrokerError::OutOfScope(format!(
            "this API key may not use model `{}`",
            job.model
        )));
    }
    if let Some(p) = job
        .constraints
        .providers
        .iter()
        .find(|p| !scope.allows_provider(p))
    {
        return Err(BrokerError::OutOfScope(format!(
            "this API key may not be routed to provider `{p}`"
        )));
    }
    if scope.providers.is_some() {
        let mut serving = s.providers.iter().filter(|h| serves(&h.config, &job.model));
        // A model no provider serves is routing's to answer (unknown model).
        let known = s.providers.iter().any(|h| serves(&h.config, &job.model));
        if known && !serving.any(|h| scope.allows_provider(&h.config.name)) {
            return Err(BrokerError::OutOfScope(format!(
                "this API key may not be routed to any provider of model `{}`",
                job.model
            )));
        }
    }
    Ok(())
}

/// Whether routing may consider `provider` for a job through `key`.
pub(crate) fn allowed(key: Option<&ScopedKey>, provider: &str) -> bool {
    key.is_none_or(|k| k.scope.allows_provider(provider))
}
