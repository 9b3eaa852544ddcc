//! Responses kept for retrieval and for `previous_response_id` (OpenAI's
//! Responses API): each is stored as an idempotency record under a key no
//! client can send (it starts with a NUL, and keys are printable ASCII), so
//! it lives as long as idempotency records do and is purged with them.

use super::{Services, blocking};
use crate::error::BrokerError;
use crate::ids::now_ms;
use crate::store::{IdempotencyRecord, WriteOp};
use crate::views::RequestOutcome;

const PREFIX: &str = "\u{0}response\u{0}";

/// Stores `body` (the rendering layer's own) as response `id` of the user,
/// with its request's outcome where there is one (a stream's is in its
/// history); returns once it is committed.
pub(crate) async fn keep(
    s: &Services,
    user_id: &str,
    id: &str,
    outcome: Option<&RequestOutcome>,
    body: String,
) -> Result<(), BrokerError> {
    let record = IdempotencyRecord {
        body_hash: [0; 32],
        result: outcome.cloned(),
        answer: Some(body),
        at: now_ms(),
    };
    s.persist
        .write(vec![WriteOp::PutIdempotency {
            user_id: user_id.to_string(),
            key: format!("{PREFIX}{id}"),
            record: Box::new(record),
        }])
        .await
        .map_err(BrokerError::Store)
}

/// The body kept as response `id` of the user, while the retention lasts.
pub(crate) async fn kept(
    s: &Services,
    user_id: &str,
    id: &str,
) -> Result<Option<String>, BrokerError> {
    let (store, user, key) = (
        s.store.clone(),
        user_id.to_string(),
        format!("{PREFIX}{id}"),
    );
    let record = blocking(move || store.idempotency(&user, &key)).await?;
    let until = |r: &IdempotencyRecord| r.at + s.config.idempotency.retention_ms();
    Ok(record
        .filter(|r| until(r) > now_ms())
        .and_then(|r| r.answer))
}
