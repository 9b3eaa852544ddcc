//! A request answered whole: route -> hold -> tries and fallbacks ->
//! settle or release -> record, for the native `/api/request` and the
//! `/v1` routes alike, and the quote that prices one without holding.
//! Everything from the hold on runs in a detached task, so a client that
//! goes away never leaves money held by nobody or a settle undone.

use std::sync::Arc;
use std::time::Instant;

use oneflow::pricing::checked_usage;
use oneflow::request::AiRequest;

use super::held::{self, Ending, Held, Hold, fail, failure_code, finish, outcome_of};
use super::job::RequestJob;
use super::{Services, budgets};
use crate::error::BrokerError;
use crate::provider::Output;
use crate::store::IdempotencyRecord;
use crate::views::{ErrorCode, QuoteView, RequestOutcome};
use crate::wallet::Settlement;

/// What the web layer gets back from a whole (not streamed) request: its
/// [`RequestOutcome`] and, beside it, the full output the outcome only
/// summarises.
pub struct Answer {
    /// The stored outcome (identical on an idempotent replay).
    pub outcome: RequestOutcome,
    /// The full output, for the OpenAI-shaped answer; on a replay, absent
    /// if it was larger than `idempotency.max_answer_bytes`.
    pub output: Option<Output>,
    pub replayed: bool,
}

/// Prices a native request without holding anything. The quote covers the
/// fallbacks too: it is the most the request can cost.
pub(crate) async fn quote(
    s: &Services,
    user_id: &str,
    req: &AiRequest,
) -> Result<QuoteView, BrokerError> {
    req.validate(s.config.server.max_prompt_chars)?;
    quote_job(s, user_id, RequestJob::native(req.clone(), None)).await
}

/// Prices a job without holding anything: the route it would take, the
/// largest quote of the providers that could serve it, and the usage the
/// best one is quoted at.
pub(crate) async fn quote_job(
    s: &Services,
    user_id: &str,
    mut job: RequestJob,
) -> Result<QuoteView, BrokerError> {
    held::default_strategy(s, user_id, &mut job).await?;
    let route = held::route_experiments(s, user_id, &mut job)?;
    let plans = held::covered(s, &route, None);
    let Some(best) = plans.first() else {
        return Err(BrokerError::NotFound("provider"));
    };
    let quote = plans.iter().map(|p| p.quote).max().unwrap_or(best.quote);
    let view = budgets::wallet(s, user_id).await?;
    Ok(QuoteView {
        model: job.model.clone(),
        provider: best.provider.clone(),
        modality: best.modality,
        quote,
        max_usage: best.max_usage,
        available: view.available,
        affordable: quote <= view.available,
        route: route.explanation.clone(),
    })
}

/// Runs a job to its whole answer.
pub(crate) async fn run(
    s: &Arc<Services>,
    user_id: &str,
    mut job: RequestJob,
) -> Result<Answer, BrokerError> {
    let (route, tag) = held::routed(s, user_id, &mut job).await?;
    let this = s.clone();
    let user_id = user_id.to_string();
    actix_rt::spawn(async move {
        match held::hold(&this, user_id, job, route).await? {
            Hold::New(h) => run_held(&this, h).await,
            Hold::Replay(record) => replayed(&record),
        }
    })
    .await
    .map_err(|e| BrokerError::Unavailable(format!("request task failed: {e}")))?
    .inspect_err(|e| tag.failed(e))
}

/// The answer kept for a key: its outcome, and its full output if it was
/// small enough to keep.
pub(crate) fn replayed(record: &IdempotencyRecord) -> Result<Answer, BrokerError> {
    let outcome = record.result.clone().ok_or_else(|| {
        BrokerError::Conflict("this Idempotency-Key was used for a top-up, not a request".into())
    })?;
    let output = record
        .answer
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok());
    Ok(Answer {
        outcome,
        output,
        replayed: true,
    })
}

/// Runs a held request: tries its candidates, then settles (a charge of
/// the reported usage) or releases (every candidate failed).
pub(crate) async fn run_held(s: &Services, h: Held) -> Result<Answer, BrokerError> {
    let started = Instant::now();
    let handles = held::handles(s, &h.plans)?;
    let tried = held::try_candidates(s, &h, &handles, |p, call, permit| {
        let call = p.adapter.call(call);
        async move {
            let r = call.await;
            drop(permit);
            r
        }
    })
    .await;
    let (result, served) = match tried.result {
        Ok((r, i)) => (Ok(r), i),
        Err(e) => (Err(e), 0),
    };
    let plan = &h.plans[served.min(h.plans.len().saturating_sub(1))];
    let mut outcome = outcome_of(&h, plan, started);
    let mut output = None;
    let action = match result {
        Ok(r) => {
            let text = matches!(&r.output, Output::Text { text, .. } if !text.is_empty());
            let (usage, anomaly) = checked_usage(r.usage, &plan.max_usage, text);
            outcome.usage_anomaly = anomaly;
            match handles[served]
                .config
                .rates
                .cost(&usage, plan.size.as_deref())
            {
                Ok(cost) => {
                    outcome.usage = usage;
                    outcome.response = Some(r.output.summary());
                    output = Some(r.output);
                    Settlement::Charge(cost)
                }
                Err(e) => fail(&mut outcome, ErrorCode::ProviderError, e.to_string(), None),
            }
        }
        Err(e) => {
            let code = failure_code(&e);
            let ra = e.retry_after();
            fail(&mut outcome, code, e.to_string(), ra)
        }
    };
    let end = Ending {
        answer: held::replay_answer(s, &h, output.as_ref()),
        outcome,
        attempts: tried.attempts,
        cached: false,
    };
    let outcome = finish(s, &h, action, end, plan, tried.upstream).await?;
    Ok(Answer {
        outcome,
        output,
        replayed: false,
    })
}
