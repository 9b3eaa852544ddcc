//! The steps a request takes between the HTTP layer's call and its answer,
//! shared by whole answers (`request.rs`) and streams (`stream.rs`), in
//! the order they run:
//!
//! 1. [`routed`]: the user's default strategy, then pure ranking
//!    (`oneflow::routing`) over live provider figures;
//! 2. [`hold`]: the wallet holds the most any covered candidate can cost
//!    (or, if it cannot, the first candidate's quote), giving a [`Held`];
//! 3. [`try_candidates`]: retries and fallbacks (`dispatch.rs`), the hold
//!    moving to each fallback under its budget;
//! 4. [`finish`]: the wallet charges or releases the hold and hands the
//!    record to persistence, answering after its commit.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use oneflow::Credits;
use oneflow::config::RetryConfig;
use oneflow::ledger::Refusal;
use oneflow::pricing::{Modality, Usage};
use oneflow::records::{Attempt, RequestRecord, RequestStatus};
use oneflow::request::Plan;
use oneflow::routing::{Route, choose_with};
use oneflow::time::Millis;

use super::dispatch::{self, Tried};
use super::job::{RequestJob, op_for};
use super::{Services, experiments, preferences, scopes};
use crate::error::BrokerError;
use crate::ids::{new_request_id, now_ms};
use crate::metrics;
use crate::provider::{CallError, CallRequest, Output, Permit, ProviderHandle};
use crate::store::IdempotencyRecord;
use crate::views::{ErrorCode, RequestOutcome};
use crate::wallet::{Finish, Reserve, Reserved, Retarget, Settlement, WalletError};

/// A request in flight: routed, its money held, not yet finished (its
/// result becomes a [`RequestOutcome`]).
pub(crate) struct Held {
    pub(crate) user_id: String,
    pub(crate) job: RequestJob,
    pub(crate) route: Route,
    /// Candidates the hold covers, in ranking order.
    pub(crate) plans: Vec<Plan>,
    pub(crate) hold: Credits,
    pub(crate) request_id: String,
    pub(crate) hold_id: u64,
    pub(crate) created_at: Millis,
    /// When the hold was asked for: the start of the request's latency.
    pub(crate) started: Instant,
}

/// What asking for a hold gave. Made once per request and moved once, so
/// the larger variant stays unboxed (a box would be an allocation per
/// request).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Hold {
    /// Money is held; the request is to be run.
    New(Held),
    /// The Idempotency-Key was seen before: that request's stored answer
    /// (after waiting for it if it was still running). Nothing was held.
    Replay(Arc<IdempotencyRecord>),
}

/// Ranks the providers for a job (pure routing on live figures).
pub(crate) fn route(s: &Services, job: &RequestJob) -> Result<Route, BrokerError> {
    scopes::check(s, job)?;
    let key = job.key.as_deref();
    let figures: Vec<_> = s
        .providers
        .iter()
        .filter(|h| scopes::allowed(key, &h.config.name))
        .map(|h| (h.config.as_ref(), h.stats.health()))
        .collect();
    let cfg = &s.config.routing;
    let strategy = job.strategy.unwrap_or(cfg.strategy);
    Ok(choose_with(
        &job.model,
        &figures,
        strategy,
        &cfg.weights,
        &job.constraints,
        &job.planner,
    )?)
}

/// A job that names no strategy takes the user's default, if set.
pub(crate) async fn default_strategy(
    s: &Services,
    user_id: &str,
    job: &mut RequestJob,
) -> Result<(), BrokerError> {
    if job.strategy.is_none() {
        job.strategy = preferences::user_strategy(s, user_id).await?;
    }
    Ok(())
}

/// Ranks a job's providers after its model's A/B experiment (or the pin
/// a promoted one left) has had its say (`experiments.rs`).
pub(crate) fn route_experiments(
    s: &Services,
    user_id: &str,
    job: &mut RequestJob,
) -> Result<Route, BrokerError> {
    let assigned = experiments::apply(s, user_id, job);
    let mut route = route(s, job)?;
    experiments::mark(&mut route, assigned);
    Ok(route)
}

/// Routes a job under the user's default strategy and gives the metrics tag
/// its failures are counted under (a job that cannot be routed is counted
/// here, as unrouted).
pub(crate) async fn routed(
    s: &Services,
    user_id: &str,
    job: &mut RequestJob,
) -> Result<(Route, metrics::Tag), BrokerError> {
    default_strategy(s, user_id, job).await?;
    let user = s.metric_user(user_id);
    let route = route_experiments(s, user_id, job)
        .inspect_err(|e| metrics::Tag::unrouted(user).failed(e))?;
    let tag = metrics::Tag::new(&job.model, &route, user);
    Ok((route, tag))
}

/// The candidates a hold of `amount` covers (at most `max_providers`).
pub(crate) fn covered(s: &Services, route: &Route, amount: Option<Credits>) -> Vec<Plan> {
    let n = s.config.retry.max_providers as usize;
    route
        .ranking
        .iter()
        .take(n)
        .filter(|c| amount.is_none_or(|a| c.plan.quote <= a))
        .map(|c| c.plan.clone())
        .collect()
}

/// Holds the most any covered candidate can cost; if the wallet cannot
/// cover that, holds the first candidate's quote and keeps only the
/// fallbacks that fit in it.
pub(crate) async fn hold(
    s: &Services,
    user_id: String,
    job: RequestJob,
    route: Route,
) -> Result<Hold, BrokerError> {
    let all = covered(s, &route, None);
    let Some(first) = all.first().cloned() else {
        return Err(BrokerError::NotFound("provider"));
    };
    let most = all.iter().map(|p| p.quote).max().unwrap_or(first.quote);
    // A per-request experiment drew its variant from the id routing made.
    let request_id = route.request_id.clone().unwrap_or_else(new_request_id);
    let now = now_ms();
    let started = Instant::now();
    let reserve = |amount| Reserve {
        request_id: request_id.clone(),
        provider: first.provider.clone(),
        amount,
        spenders: job.spenders.clone(),
        key: job.key.clone(),
        idem: job.idem.clone(),
        model: job.model.clone(),
        modality: first.modality,
        prompt_preview: job.preview.clone(),
        now,
    };
    let wallets = &s.wallets;
    let (reserved, amount) = match wallets.reserve(&user_id, reserve(most)).await {
        Err(WalletError::Refused(
            Refusal::InsufficientBalance { .. } | Refusal::BudgetExceeded { .. },
        )) if most > first.quote => (
            wallets.reserve(&user_id, reserve(first.quote)).await?,
            first.quote,
        ),
        other => (other?, most),
    };
    let hold_id = match reserved {
        Reserved::Held { hold_id } => hold_id,
        Reserved::Replay(v) => return Ok(Hold::Replay(v)),
        Reserved::Wait(rx) => {
            let v = rx.await.map_err(|_| {
                BrokerError::Unavailable("the original request did not finish".into())
            })?;
            return Ok(Hold::Replay(v));
        }
    };
    let plans = covered(s, &route, Some(amount));
    Ok(Hold::New(Held {
        user_id,
        job,
        route,
        plans,
        hold: amount,
        request_id,
        hold_id,
        created_at: now,
        started,
    }))
}

/// The provider handles of the held request's candidates, in order.
pub(crate) fn handles(s: &Services, plans: &[Plan]) -> Result<Vec<ProviderHandle>, BrokerError> {
    plans
        .iter()
        .map(|p| s.provider(&p.provider).cloned())
        .collect()
}

/// The closure dispatch calls before moving to a fallback: the hold moves
/// to that provider, under its own budget.
fn switcher(
    s: &Services,
    h: &Held,
) -> impl FnMut(&ProviderHandle) -> BoxFuture<'static, Result<(), String>> + use<> {
    let wallets = s.wallets.clone();
    let (user_id, hold_id, key) = (h.user_id.clone(), h.hold_id, h.job.key.clone());
    move |p| {
        let (wallets, user_id, key) = (wallets.clone(), user_id.clone(), key.clone());
        let provider = p.config.name.clone();
        Box::pin(async move {
            let m = Retarget {
                hold_id,
                provider,
                key,
                now: now_ms(),
            };
            wallets
                .retarget(&user_id, m)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Tries the held request's candidates in ranking order (retries,
/// fallbacks, the hold moving with them); `call` gets the provider, its
/// fitted request and the permit it must keep while the call runs.
pub(crate) async fn try_candidates<T, F, Fut>(
    s: &Services,
    h: &Held,
    handles: &[ProviderHandle],
    mut call: F,
) -> Tried<T>
where
    F: FnMut(&ProviderHandle, CallRequest, Permit) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let calls = calls_for(h, handles);
    let tokens = token_bounds(&h.plans);
    // A video job renders for minutes: its one call (create to finish) is
    // bounded by `jobs.timeout_ms`, not by one HTTP exchange's timeouts.
    let job;
    let retry = if h.plans.iter().any(|p| p.modality == Modality::Video) {
        job = RetryConfig {
            attempt_timeout_ms: s.config.jobs.timeout_ms,
            total_timeout_ms: s.config.jobs.timeout_ms,
            ..s.config.retry.clone()
        };
        &job
    } else {
        &s.config.retry
    };
    dispatch::run(handles, &tokens, retry, switcher(s, h), |i, permit| {
        call(&handles[i], calls[i].clone(), permit)
    })
    .await
}

/// What a finished request leaves: its outcome, the calls it made, and
/// its full output encoded for replays (see [`replay_answer`]).
pub(crate) struct Ending {
    pub outcome: RequestOutcome,
    pub attempts: Vec<Attempt>,
    pub answer: Option<String>,
    /// Served from the response cache (`cached.rs`): recorded as such.
    pub cached: bool,
}

/// The full output kept for the key's replays, if the request has a key
/// and the output fits in `idempotency.max_answer_bytes`.
pub(crate) fn replay_answer(s: &Services, h: &Held, output: Option<&Output>) -> Option<String> {
    h.job.idem.as_ref()?;
    let text = serde_json::to_string(output?).ok()?;
    (text.len() <= s.config.idempotency.max_answer_bytes).then_some(text)
}

/// Closes the hold and stores the record (and the idempotent answer) in
/// one commit; fills in the charged cost and balances.
pub(crate) async fn finish(
    s: &Services,
    h: &Held,
    action: Settlement,
    end: Ending,
    plan: &Plan,
    upstream: Duration,
) -> Result<RequestOutcome, BrokerError> {
    let Ending {
        mut outcome,
        attempts,
        answer,
        cached,
    } = end;
    let record = RequestRecord {
        id: h.request_id.clone(),
        user_id: h.user_id.clone(),
        model: h.job.model.clone(),
        modality: plan.modality,
        provider: plan.provider.clone(),
        status: outcome.status,
        prompt_preview: h.job.preview.clone(),
        response: outcome
            .response
            .as_ref()
            .map(|r| r.chars().take(2000).collect()),
        usage: outcome.usage,
        quote: h.hold,
        cost: Credits::ZERO,
        shortfall: Credits::ZERO,
        error: outcome.error.clone(),
        route: h.route.explanation.clone(),
        created_at: h.created_at,
        latency_ms: outcome.latency_ms,
        attempts,
        usage_anomaly: outcome.usage_anomaly,
        member: h.job.member.clone(),
        cached,
        experiment: h.route.experiment.clone(),
        key_id: h.job.key_id.clone(),
    };
    let idem = h.job.idem.as_ref().map(|k| {
        let record = IdempotencyRecord {
            body_hash: k.body_hash,
            result: Some(outcome.clone()),
            answer,
            at: 0,
        };
        (k.key.clone(), record)
    });
    let finish = Finish {
        hold_id: h.hold_id,
        settlement: action,
        record: Box::new(record),
        idem,
        now: now_ms(),
    };
    if outcome.usage_anomaly {
        metrics::usage_anomaly(&plan.provider);
    }
    let finished = s.wallets.finish(&h.user_id, finish).await?;
    let user = s.metric_user(&h.user_id);
    metrics::request_done(&outcome, plan.modality, h.started.elapsed(), upstream, user);
    outcome.cost = finished.charged;
    outcome.balance = finished.balance;
    outcome.available = finished.available;
    Ok(outcome)
}

/// The outcome of a held request served (or failed) by `plan`'s provider,
/// succeeded until marked otherwise; [`finish`] fills in the money.
pub(crate) fn outcome_of(h: &Held, plan: &Plan, started: Instant) -> RequestOutcome {
    RequestOutcome {
        request_id: h.request_id.clone(),
        status: RequestStatus::Succeeded,
        response: None,
        model: h.job.model.clone(),
        provider: plan.provider.clone(),
        usage: Usage::default(),
        quote: h.hold,
        cost: Credits::ZERO,
        balance: Credits::ZERO,
        available: Credits::ZERO,
        route: h.route.explanation.clone(),
        error_code: None,
        error: None,
        retry_after_secs: None,
        latency_ms: started.elapsed().as_millis() as u64,
        created_at: h.created_at,
        usage_anomaly: false,
    }
}

/// Marks the outcome failed; the hold is to be released.
pub(crate) fn fail(
    o: &mut RequestOutcome,
    code: ErrorCode,
    message: String,
    retry_after: Option<u64>,
) -> Settlement {
    o.status = RequestStatus::Failed;
    o.error_code = Some(code);
    o.error = Some(message.clone());
    o.retry_after_secs = retry_after;
    Settlement::Release(message)
}

/// The error code a request that every provider failed is answered with.
pub(crate) fn failure_code(e: &CallError) -> ErrorCode {
    match e {
        CallError::Overloaded { .. } => ErrorCode::ProviderOverloaded,
        CallError::Unavailable(_) => ErrorCode::ProviderUnavailable,
        CallError::Timeout { .. } => ErrorCode::ProviderTimeout,
        CallError::TooLarge { .. } => ErrorCode::UpstreamTooLarge,
        _ => ErrorCode::ProviderError,
    }
}

/// The model name to send upstream: the one the client named if the
/// provider lists it, else the provider's first listed model (a client may
/// name the provider itself).
pub(crate) fn upstream_model(asked: &str, handles: &[ProviderHandle], plan: &Plan) -> String {
    handles
        .iter()
        .find(|h| h.config.name == plan.provider)
        .map_or_else(|| asked.to_string(), |h| h.config.upstream_model(asked))
}

/// The call each candidate gets, fitted to its plan.
fn calls_for(h: &Held, handles: &[ProviderHandle]) -> Vec<CallRequest> {
    h.plans
        .iter()
        .map(|plan| CallRequest {
            request_id: h.request_id.clone(),
            model: upstream_model(&h.job.model, handles, plan),
            op: op_for(&h.job.op, plan),
            plan: plan.clone(),
        })
        .collect()
}

/// The most tokens each candidate's call can use (prompt bound plus
/// output bound), for the providers' tokens-per-minute limits.
fn token_bounds(plans: &[Plan]) -> Vec<u32> {
    plans
        .iter()
        .map(|p| {
            let t = p
                .max_usage
                .input_tokens
                .saturating_add(p.max_usage.output_tokens);
            u32::try_from(t).unwrap_or(u32::MAX)
        })
        .collect()
}
