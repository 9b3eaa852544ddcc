//! The broker's methods for the response cache (`usecase/cached.rs`,
//! docs/cache.md): the same requests as `run`, `stream` and `request`,
//! through the cache, each saying what the cache did.

use std::time::Duration;

use serde_json::Value;

use oneflow::cache::CacheMode;
use oneflow::request::AiRequest;

use super::Broker;
use crate::error::BrokerError;
use crate::usecase::cached::{self, CacheResult, Slot};
use crate::usecase::job::{Payer, RequestJob};
use crate::usecase::request::Answer;
use crate::usecase::stream::StreamStart;
use crate::views::RequestOutcome;
use crate::wallet::IdemKey;

impl Broker {
    /// Whether a request of `payer` with the `x-oneflow-cache` value
    /// `header` uses the cache (`use`) or is kept from it (`bypass`);
    /// `None` when the cache is off, so callers skip it at no cost.
    pub fn cache_mode(&self, payer: &Payer, header: Option<CacheMode>) -> Option<CacheMode> {
        let key = payer.key.as_ref().and_then(|k| k.scope.cache);
        cached::mode(&self.services, key, header)
    }

    /// [`Broker::run`] through the cache; `kind` names the endpoint and
    /// `body` is the request as sent (its fields that change the answer
    /// are its fingerprint).
    pub async fn run_cached(
        &self,
        payer: &Payer,
        mut job: RequestJob,
        mode: CacheMode,
        ttl: Option<Duration>,
        kind: &str,
        body: &Value,
    ) -> Result<(Answer, CacheResult), BrokerError> {
        payer.apply(&mut job);
        let key = cached::fingerprint(kind, &payer.wallet, &job.constraints, body);
        cached::run(&self.services, &payer.wallet, job, mode, Slot { key, ttl }).await
    }

    /// [`Broker::stream`] through the cache (see [`Broker::run_cached`]).
    pub async fn stream_cached(
        &self,
        payer: &Payer,
        mut job: RequestJob,
        mode: CacheMode,
        ttl: Option<Duration>,
        kind: &str,
        body: &Value,
    ) -> Result<(StreamStart, CacheResult), BrokerError> {
        payer.apply(&mut job);
        let key = cached::fingerprint(kind, &payer.wallet, &job.constraints, body);
        cached::stream(&self.services, &payer.wallet, job, mode, Slot { key, ttl }).await
    }

    /// [`Broker::request`] through the cache: the outcome, whether it was
    /// an idempotent replay, and what the cache did.
    pub async fn request_cached(
        &self,
        payer: &Payer,
        req: AiRequest,
        idem: Option<IdemKey>,
        mode: CacheMode,
        ttl: Option<Duration>,
    ) -> Result<(RequestOutcome, bool, CacheResult), BrokerError> {
        req.validate(self.services.config.server.max_prompt_chars)?;
        let body = serde_json::to_value(&req).unwrap_or(Value::Null);
        let job = RequestJob::native(req, idem);
        let (a, result) = self
            .run_cached(payer, job, mode, ttl, "request", &body)
            .await?;
        Ok((a.outcome, a.replayed, result))
    }
}
