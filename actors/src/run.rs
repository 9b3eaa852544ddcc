//! Running a request: route -> hold -> tries and fallbacks -> settle or
//! release -> record, for whole answers and for streams. Everything from the
//! hold on runs in a detached task, so a client that goes away never leaves
//! money held by nobody or a settle undone.

use std::time::{Duration, Instant};

use oneflow::Credits;
use oneflow::config::ProviderConfig;
use oneflow::ledger::Refusal;
use oneflow::pricing::{Usage, count_words};
use oneflow::records::{Attempt, RequestRecord, RequestStatus};
use oneflow::request::{AiRequest, Plan, RequestError};
use oneflow::routing::{Constraints, Route, Strategy, choose_with};
use oneflow::time::Millis;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::broker::{Broker, preview};
use crate::dispatch;
use crate::error::BrokerError;
use crate::ids::{new_request_id, now_ms};
use crate::metrics;
use crate::provider::{CallError, CallRequest, ChatMessage, Chunk, Operation, Output};
use crate::views::{ErrorCode, QuoteView, RequestOutcome};
use crate::wallet::{Finish, IdemKey, Reserve, Reserved, Retarget, Settlement};

/// Fits a request to one provider: its plan (modality, bounds, quote).
pub type Planner = Box<dyn Fn(&ProviderConfig) -> PlanResult + Send + Sync>;
type PlanResult = Result<Plan, RequestError>;

/// A request ready to route: what the upstream is asked, how to fit it to
/// one provider, and the caller's routing wishes.
pub struct Job {
    pub model: String,
    pub preview: String,
    /// The operation; chat and completion `max_tokens` are set per
    /// provider from its plan.
    pub op: Operation,
    pub planner: Planner,
    pub constraints: Constraints,
    pub strategy: Option<Strategy>,
    pub idem: Option<IdemKey>,
}

impl Job {
    /// A native `/api/request`.
    pub fn native(req: AiRequest, idem: Option<IdemKey>) -> Job {
        let constraints = Constraints {
            region: req.region,
            providers: req.provider.iter().cloned().collect(),
            max_price: req.max_price,
        };
        // The provider's modality turns this into an image, speech or clip
        // request once a plan is chosen (`op_for`).
        let op = Operation::Chat {
            messages: vec![ChatMessage {
                role: "user".into(),
                content: req.prompt.clone(),
            }],
            max_tokens: 0,
            extra: Default::default(),
        };
        Job {
            model: req.model.clone(),
            preview: preview(&req.prompt),
            op,
            strategy: req.strategy,
            constraints,
            idem,
            planner: Box::new(move |p| req.plan(p)),
        }
    }
}

/// The operation as sent to one provider: the plan fixes what depends on it.
fn op_for(op: &Operation, plan: &Plan) -> Operation {
    use oneflow::pricing::Modality;
    let max = u32::try_from(plan.max_usage.output_tokens).unwrap_or(u32::MAX);
    let prompt = op.prompt_text();
    match (op, plan.modality) {
        (
            Operation::Chat {
                messages, extra, ..
            },
            Modality::Text,
        ) => Operation::Chat {
            messages: messages.clone(),
            max_tokens: max,
            extra: extra.clone(),
        },
        (Operation::Completion { prompt, extra, .. }, _) => Operation::Completion {
            prompt: prompt.clone(),
            max_tokens: max,
            extra: extra.clone(),
        },
        (Operation::Chat { .. }, Modality::Image) => Operation::Image {
            prompt,
            n: u32::try_from(plan.max_usage.images).unwrap_or(1),
            size: plan.size.clone().unwrap_or_default(),
            extra: Default::default(),
        },
        (Operation::Chat { .. }, Modality::Audio) => Operation::Speech {
            input: prompt,
            voice: "alloy".into(),
            extra: Default::default(),
        },
        (Operation::Chat { .. }, Modality::Video) => Operation::Clip {
            prompt,
            seconds: u32::try_from(plan.max_usage.seconds).unwrap_or(1),
        },
        (Operation::Image { prompt, extra, .. }, _) => Operation::Image {
            prompt: prompt.clone(),
            n: u32::try_from(plan.max_usage.images).unwrap_or(1),
            size: plan.size.clone().unwrap_or_default(),
            extra: extra.clone(),
        },
        (other, _) => other.clone(),
    }
}

/// What the web layer gets back from a whole (not streamed) request: its
/// [`RequestOutcome`] and, beside it, the full output the outcome only
/// summarises.
pub struct Answer {
    /// The stored outcome (identical on an idempotent replay).
    pub outcome: RequestOutcome,
    /// The full output, for the OpenAI-shaped answer; absent on replays.
    pub output: Option<Output>,
    pub replayed: bool,
}

/// A request in flight: routed, its money held, not yet finished (its
/// result becomes a [`RequestOutcome`]).
struct Held {
    user_id: String,
    job: Job,
    route: Route,
    /// Candidates the hold covers, in ranking order.
    plans: Vec<Plan>,
    hold: Credits,
    request_id: String,
    hold_id: u64,
    created_at: Millis,
    /// When the hold was asked for: the start of the request's latency.
    started: Instant,
}

/// What a streaming client receives.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum StreamEvent {
    /// Text, in order.
    Delta(String),
    /// The stream is over; the request is settled.
    End {
        finish_reason: String,
        /// Why the broker ended it, if it did (`hold_exhausted`,
        /// `upstream_error`).
        stopped: Option<ErrorCode>,
        message: Option<String>,
        usage: Usage,
        cost: Credits,
    },
}

/// A stream that has started: its route and quote, and its events.
pub struct StreamStart {
    pub request_id: String,
    pub provider: String,
    pub model: String,
    pub route: String,
    pub quote: Credits,
    pub events: mpsc::Receiver<StreamEvent>,
}

/// Most events a stream keeps queued for a slow client; beyond it the
/// upstream is read no faster than the client reads.
const STREAM_BUFFER: usize = 8;

impl Broker {
    /// Ranks the providers for a job (pure routing on live figures).
    pub(crate) fn route_job(&self, job: &Job) -> Result<Route, BrokerError> {
        let figures: Vec<_> = self
            .inner
            .providers
            .iter()
            .map(|h| (h.config.as_ref(), h.stats.health()))
            .collect();
        let cfg = &self.inner.config.routing;
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
    async fn default_strategy(&self, user_id: &str, job: &mut Job) -> Result<(), BrokerError> {
        if job.strategy.is_none() {
            job.strategy = self.user_strategy(user_id).await?;
        }
        Ok(())
    }

    /// The candidates a hold of `amount` covers (at most `max_providers`).
    fn covered(&self, route: &Route, amount: Option<Credits>) -> Vec<Plan> {
        let n = self.inner.config.retry.max_providers as usize;
        route
            .ranking
            .iter()
            .take(n)
            .filter(|c| amount.is_none_or(|a| c.plan.quote <= a))
            .map(|c| c.plan.clone())
            .collect()
    }

    /// Prices a native request without holding anything. The quote covers
    /// the fallbacks too: it is the most the request can cost.
    pub async fn quote(&self, user_id: &str, req: &AiRequest) -> Result<QuoteView, BrokerError> {
        req.validate(self.inner.config.server.max_prompt_chars)?;
        let mut job = Job::native(req.clone(), None);
        self.default_strategy(user_id, &mut job).await?;
        let route = self.route_job(&job)?;
        let plans = self.covered(&route, None);
        let Some(best) = plans.first() else {
            return Err(BrokerError::NotFound("provider"));
        };
        let quote = plans.iter().map(|p| p.quote).max().unwrap_or(best.quote);
        let view = self.wallet(user_id).await?;
        Ok(QuoteView {
            model: req.model.clone(),
            provider: best.provider.clone(),
            modality: best.modality,
            quote,
            max_usage: best.max_usage,
            available: view.available,
            affordable: quote <= view.available,
            route: route.explanation.clone(),
        })
    }

    /// Runs a native request end to end.
    pub async fn request(
        &self,
        user_id: &str,
        req: AiRequest,
        idem: Option<IdemKey>,
    ) -> Result<(RequestOutcome, bool), BrokerError> {
        req.validate(self.inner.config.server.max_prompt_chars)?;
        let a = self.run(user_id, Job::native(req, idem)).await?;
        Ok((a.outcome, a.replayed))
    }

    /// Runs a job to its whole answer.
    pub async fn run(&self, user_id: &str, mut job: Job) -> Result<Answer, BrokerError> {
        self.default_strategy(user_id, &mut job).await?;
        let user = self.metric_user(user_id);
        let route = self
            .route_job(&job)
            .inspect_err(|e| metrics::Tag::unrouted(user).failed(e))?;
        let tag = metrics::Tag::new(&job.model, &route, user);
        let this = self.clone();
        let user_id = user_id.to_string();
        actix_rt::spawn(async move {
            match this.hold(user_id, job, route).await? {
                Ok(h) => this.run_held(h).await,
                Err(answer) => Ok(answer),
            }
        })
        .await
        .map_err(|e| BrokerError::Unavailable(format!("request task failed: {e}")))?
        .inspect_err(|e| tag.failed(e))
    }

    /// Holds the most any covered candidate can cost; if the wallet cannot
    /// cover that, holds the first candidate's quote and keeps only the
    /// fallbacks that fit in it.
    async fn hold(
        &self,
        user_id: String,
        job: Job,
        route: Route,
    ) -> Result<Result<Held, Answer>, BrokerError> {
        let all = self.covered(&route, None);
        let Some(first) = all.first().cloned() else {
            return Err(BrokerError::NotFound("provider"));
        };
        let most = all.iter().map(|p| p.quote).max().unwrap_or(first.quote);
        let request_id = new_request_id();
        let now = now_ms();
        let started = Instant::now();
        let reserve = |amount| Reserve {
            request_id: request_id.clone(),
            provider: first.provider.clone(),
            amount,
            idem: job.idem.clone(),
            model: job.model.clone(),
            modality: first.modality,
            prompt_preview: job.preview.clone(),
            now,
        };
        let wallets = &self.inner.wallets;
        let (reserved, amount) = match wallets.reserve(&user_id, reserve(most)).await {
            Err(crate::wallet::WalletError::Refused(
                Refusal::InsufficientBalance { .. } | Refusal::BudgetExceeded { .. },
            )) if most > first.quote => (
                wallets.reserve(&user_id, reserve(first.quote)).await?,
                first.quote,
            ),
            other => (other?, most),
        };
        let hold_id = match reserved {
            Reserved::Held { hold_id } => hold_id,
            Reserved::Replay(v) => {
                return Ok(Err(Answer {
                    outcome: *v,
                    output: None,
                    replayed: true,
                }));
            }
            Reserved::Wait(rx) => {
                let v = rx.await.map_err(|_| {
                    BrokerError::Unavailable("the original request did not finish".into())
                })?;
                return Ok(Err(Answer {
                    outcome: v,
                    output: None,
                    replayed: true,
                }));
            }
        };
        let plans = self.covered(&route, Some(amount));
        Ok(Ok(Held {
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

    fn handles(&self, plans: &[Plan]) -> Result<Vec<crate::provider::ProviderHandle>, BrokerError> {
        plans
            .iter()
            .map(|p| self.provider(&p.provider).cloned())
            .collect()
    }

    /// The closure dispatch calls before moving to a fallback: the hold
    /// moves to that provider, under its own budget.
    fn switcher(
        &self,
        user_id: &str,
        hold_id: u64,
    ) -> impl FnMut(
        &crate::provider::ProviderHandle,
    ) -> futures_util::future::BoxFuture<'static, Result<(), String>>
    + use<> {
        let wallets = self.inner.wallets.clone();
        let user_id = user_id.to_string();
        move |p| {
            let (wallets, user_id) = (wallets.clone(), user_id.clone());
            let provider = p.config.name.clone();
            Box::pin(async move {
                let m = Retarget {
                    hold_id,
                    provider,
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
    async fn try_candidates<T, F, Fut>(
        &self,
        h: &Held,
        handles: &[crate::provider::ProviderHandle],
        mut call: F,
    ) -> dispatch::Tried<T>
    where
        F: FnMut(&crate::provider::ProviderHandle, CallRequest, crate::provider::Permit) -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        let calls = calls_for(h, handles);
        let tokens = token_bounds(&h.plans);
        dispatch::run(
            handles,
            &tokens,
            &self.inner.config.retry,
            self.switcher(&h.user_id, h.hold_id),
            |i, permit| call(&handles[i], calls[i].clone(), permit),
        )
        .await
    }

    async fn run_held(&self, h: Held) -> Result<Answer, BrokerError> {
        let started = Instant::now();
        let handles = self.handles(&h.plans)?;
        let tried = self
            .try_candidates(&h, &handles, |p, call, permit| {
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
        let mut outcome = self.outcome_of(&h, plan, started);
        let mut output = None;
        let action = match result {
            Ok(r) => match handles[served]
                .config
                .rates
                .cost(&r.usage, plan.size.as_deref())
            {
                Ok(cost) => {
                    outcome.usage = r.usage;
                    outcome.response = Some(r.output.summary());
                    output = Some(r.output);
                    Settlement::Charge(cost)
                }
                Err(e) => fail(&mut outcome, ErrorCode::ProviderError, e.to_string(), None),
            },
            Err(e) => {
                let code = failure_code(&e);
                let ra = e.retry_after();
                fail(&mut outcome, code, e.to_string(), ra)
            }
        };
        let outcome = self
            .finish(&h, action, outcome, tried.attempts, plan, tried.upstream)
            .await?;
        Ok(Answer {
            outcome,
            output,
            replayed: false,
        })
    }

    /// Closes the hold and stores the record (and the idempotent result)
    /// in one commit; fills in the charged cost and balances.
    async fn finish(
        &self,
        h: &Held,
        action: Settlement,
        mut outcome: RequestOutcome,
        attempts: Vec<Attempt>,
        plan: &Plan,
        upstream: Duration,
    ) -> Result<RequestOutcome, BrokerError> {
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
        };
        let idem = h
            .job
            .idem
            .as_ref()
            .map(|k| (k.key.clone(), k.body_hash, outcome.clone()));
        let finish = Finish {
            hold_id: h.hold_id,
            settlement: action,
            record: Box::new(record),
            idem,
            now: now_ms(),
        };
        let finished = self.inner.wallets.finish(&h.user_id, finish).await?;
        let user = self.metric_user(&h.user_id);
        metrics::request_done(&outcome, plan.modality, h.started.elapsed(), upstream, user);
        outcome.cost = finished.charged;
        outcome.balance = finished.balance;
        outcome.available = finished.available;
        Ok(outcome)
    }

    /// Starts a streamed chat or completion: holds, finds a provider that
    /// opens a stream (retries and fallbacks apply until one does), then
    /// passes chunks on as they arrive. The hold bounds the stream: when the
    /// next chunk would cost more than is held, the stream ends there.
    pub async fn stream(&self, user_id: &str, mut job: Job) -> Result<StreamStart, BrokerError> {
        self.default_strategy(user_id, &mut job).await?;
        let user = self.metric_user(user_id);
        let route = self
            .route_job(&job)
            .inspect_err(|e| metrics::Tag::unrouted(user).failed(e))?;
        let tag = metrics::Tag::new(&job.model, &route, user);
        let this = self.clone();
        let user_id = user_id.to_string();
        actix_rt::spawn(async move {
            let h = match this.hold(user_id, job, route).await? {
                Ok(h) => h,
                Err(_) => {
                    return Err(BrokerError::BadInput(
                        "streamed requests do not take an Idempotency-Key".into(),
                    ));
                }
            };
            this.stream_held(h).await
        })
        .await
        .map_err(|e| BrokerError::Unavailable(format!("request task failed: {e}")))?
        .inspect_err(|e| tag.failed(e))
    }

    async fn stream_held(&self, h: Held) -> Result<StreamStart, BrokerError> {
        let started = Instant::now();
        let handles = self.handles(&h.plans)?;
        let tried = self
            .try_candidates(&h, &handles, |p, call, permit| {
                let open = p.adapter.stream(call);
                async move { open.await.map(|s| (s, permit)) }
            })
            .await;
        let ((upstream, permit), served) = match tried.result {
            Ok(v) => v,
            Err(e) => {
                let plan = &h.plans[0];
                let mut outcome = self.outcome_of(&h, plan, started);
                let ra = e.retry_after();
                let code = failure_code(&e);
                let action = fail(&mut outcome, code, e.to_string(), ra);
                self.finish(&h, action, outcome, tried.attempts, plan, tried.upstream)
                    .await?;
                return Err(BrokerError::Upstream {
                    code,
                    message: e.to_string(),
                    retry_after: ra,
                });
            }
        };
        let plan = h.plans[served].clone();
        let opened = Instant::now();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let start = StreamStart {
            request_id: h.request_id.clone(),
            provider: plan.provider.clone(),
            model: h.job.model.clone(),
            route: h.route.explanation.clone(),
            quote: h.hold,
            events: rx,
        };
        let this = self.clone();
        let rates = handles[served].config.rates.clone();
        let idle = std::time::Duration::from_millis(self.inner.config.retry.attempt_timeout_ms);
        actix_rt::spawn(async move {
            use futures_util::StreamExt;
            let mut upstream = upstream;
            let input_bound = plan.max_usage.input_tokens;
            let mut reported = Usage::default();
            let mut reported_final = false;
            let mut delivered_tokens = 0u64;
            let mut text = String::new();
            let mut finish_reason = "stop".to_string();
            let mut stopped: Option<(ErrorCode, String)> = None;
            loop {
                let next = tokio::select! {
                    n = tokio::time::timeout(idle, upstream.next()) => n,
                    _ = tx.closed() => {
                        stopped = Some((ErrorCode::ClientDisconnected, "the client went away".into()));
                        break;
                    }
                };
                match next {
                    Err(_) => {
                        stopped = Some((
                            ErrorCode::UpstreamTimeout,
                            "the upstream stopped sending".into(),
                        ));
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        stopped = Some((ErrorCode::UpstreamError, e.to_string()));
                        break;
                    }
                    Ok(Some(Ok(Chunk::Usage(u)))) => {
                        reported.input_tokens = reported.input_tokens.max(u.input_tokens);
                        reported.output_tokens = reported.output_tokens.max(u.output_tokens);
                        reported_final = u.output_tokens > 0 || reported_final;
                    }
                    Ok(Some(Ok(Chunk::Finish(f)))) => finish_reason = f,
                    Ok(Some(Ok(Chunk::Delta(d)))) => {
                        let tokens = count_words(&d).max(1);
                        let would = Usage {
                            input_tokens: input_bound,
                            output_tokens: delivered_tokens + tokens,
                            ..Usage::default()
                        };
                        let over = rates.cost(&would, None).map_or(true, |c| c > h.hold);
                        if over {
                            finish_reason = "length".into();
                            stopped = Some((
                                ErrorCode::HoldExhausted,
                                "the credit held for this request is spent".into(),
                            ));
                            break;
                        }
                        if tx.send(StreamEvent::Delta(d.clone())).await.is_err() {
                            stopped = Some((
                                ErrorCode::ClientDisconnected,
                                "the client went away".into(),
                            ));
                            break;
                        }
                        delivered_tokens += tokens;
                        text.push_str(&d);
                    }
                }
            }
            // Closes the upstream connection now, not when this task ends.
            drop(upstream);
            drop(permit);
            let complete = stopped.is_none();
            let usage = if complete && reported_final {
                Usage {
                    input_tokens: reported.input_tokens,
                    output_tokens: reported.output_tokens,
                    ..Usage::default()
                }
            } else {
                // Cut short: what was delivered, and the prompt as the
                // upstream counted it if it said, else as we count it.
                let input = if reported.input_tokens > 0 {
                    reported.input_tokens
                } else {
                    count_words(&h.job.op.prompt_text()).min(input_bound)
                };
                Usage {
                    input_tokens: input,
                    output_tokens: delivered_tokens.max(if complete {
                        reported.output_tokens
                    } else {
                        0
                    }),
                    ..Usage::default()
                }
            };
            let mut outcome = this.outcome_of(&h, &plan, started);
            outcome.usage = usage;
            outcome.response = Some(text);
            let action = match rates.cost(&usage, None) {
                Ok(c) => Settlement::Charge(c),
                Err(_) => Settlement::Charge(h.hold),
            };
            if let Some((code, msg)) = &stopped {
                outcome.error_code = Some(*code);
                outcome.error = Some(msg.clone());
            }
            let mut attempts = tried.attempts;
            if let (Some(last), Some((code, msg))) = (attempts.last_mut(), &stopped) {
                if matches!(code, ErrorCode::UpstreamError | ErrorCode::UpstreamTimeout) {
                    last.ok = false;
                    last.error_code = Some(code.as_str().to_string());
                    last.error = Some(msg.clone());
                }
            }
            let upstream = tried.upstream + opened.elapsed();
            let cost = match this
                .finish(&h, action, outcome, attempts, &plan, upstream)
                .await
            {
                Ok(o) => o.cost,
                Err(e) => {
                    let _ = tx
                        .send(StreamEvent::End {
                            finish_reason: "error".into(),
                            stopped: Some(ErrorCode::SettleFailed),
                            message: Some(e.to_string()),
                            usage,
                            cost: Credits::ZERO,
                        })
                        .await;
                    return;
                }
            };
            let (stopped, message) = match stopped {
                Some((c, m)) => (Some(c), Some(m)),
                None => (None, None),
            };
            let _ = tx
                .send(StreamEvent::End {
                    finish_reason,
                    stopped,
                    message,
                    usage,
                    cost,
                })
                .await;
        });
        Ok(start)
    }

    fn outcome_of(&self, h: &Held, plan: &Plan, started: Instant) -> RequestOutcome {
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
        }
    }
}

/// The model name to send upstream: the one the client named if the
/// provider lists it, else the provider's first listed model (a client may
/// name the provider itself).
fn upstream_model(asked: &str, handles: &[crate::provider::ProviderHandle], plan: &Plan) -> String {
    let Some(h) = handles.iter().find(|h| h.config.name == plan.provider) else {
        return asked.to_string();
    };
    let c = &h.config;
    if c.models.iter().any(|m| m == asked) {
        asked.to_string()
    } else {
        c.models
            .first()
            .cloned()
            .unwrap_or_else(|| asked.to_string())
    }
}

/// The call each candidate gets, fitted to its plan.
fn calls_for(h: &Held, handles: &[crate::provider::ProviderHandle]) -> Vec<CallRequest> {
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

/// The error code a request that every provider failed is answered with.
fn failure_code(e: &CallError) -> ErrorCode {
    match e {
        CallError::Overloaded { .. } => ErrorCode::ProviderOverloaded,
        CallError::Unavailable(_) => ErrorCode::ProviderUnavailable,
        CallError::Timeout { .. } => ErrorCode::ProviderTimeout,
        _ => ErrorCode::ProviderError,
    }
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

/// Marks the outcome failed; the hold is to be released.
fn fail(
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
