//! Per-user settings that shape routing: a user's default strategy sits
//! between a request's own choice and the global default.

use oneflow::routing::Strategy;

use super::{Services, blocking};
use crate::error::BrokerError;
use crate::store::WriteOp;

/// The user's default strategy (`None`: the global one). Read from the
/// store once, then from memory (briefly, when nodes share the store).
pub(crate) async fn user_strategy(
    s: &Services,
    user_id: &str,
) -> Result<Option<Strategy>, BrokerError> {
    if let Some(cached) = s.strategies.get(user_id) {
        let (strategy, at) = *cached;
        if s.fresh(at) {
            return Ok(strategy);
        }
    }
    let store = s.store.clone();
    let id = user_id.to_string();
    let user = blocking(move || store.user(&id))
        .await?
        .ok_or(BrokerError::NotFound("user"))?;
    let now = std::time::Instant::now();
    s.strategies
        .insert(user_id.to_string(), (user.strategy, now));
    Ok(user.strategy)
}

/// Sets (or with `None` clears) the user's default strategy; committed
/// before it is answered and used.
pub(crate) async fn set_user_strategy(
    s: &Services,
    user_id: &str,
    strategy: Option<Strategy>,
) -> Result<Option<Strategy>, BrokerError> {
    let store = s.store.clone();
    let id = user_id.to_string();
    let mut user = blocking(move || store.user(&id))
        .await?
        .ok_or(BrokerError::NotFound("user"))?;
    user.strategy = strategy;
    s.persist
        .write(vec![WriteOp::PutUser(user)])
        .await
        .map_err(BrokerError::Store)?;
    let now = std::time::Instant::now();
    s.strategies.insert(user_id.to_string(), (strategy, now));
    Ok(strategy)
}

/// The strategy a request of this user is routed by when it names none.
pub(crate) fn global_strategy(s: &Services) -> Strategy {
    s.config.routing.strategy
}
