//! A request answered as a stream (chat and completions with `stream`):
//! routed and held like a whole answer, then the first provider that opens
//! a stream (retries and fallbacks apply until one does) passes its chunks
//! on as they arrive. The hold bounds the stream: when the next chunk would
//! cost more than is held, the stream ends there. Everything from the hold
//! on runs in detached tasks, so a client that goes away never leaves money
//! held by nobody or a settle undone.

use std::sync::Arc;
use std::time::Instant;

use oneflow::Credits;
use oneflow::config::ProviderKind;
use oneflow::pricing::{Usage, checked_usage, count_words};
use serde::Serialize;
use tokio::sync::mpsc;

use super::Services;
use super::held::{self, Ending, Held, Hold, fail, failure_code, finish, outcome_of};
use super::job::RequestJob;
use crate::error::BrokerError;
use crate::provider::{CallError, Chunk, Thinking};
use crate::tokens;
use crate::views::ErrorCode;
use crate::wallet::Settlement;

/// What a streaming client receives.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum StreamEvent {
    /// Text, in order.
    Delta(String),
    /// A piece of a tool call, OpenAI-shaped (see `Chunk::ToolCall`).
    ToolCall(serde_json::Value),
    /// A piece of the model's thinking (Anthropic providers).
    Thinking(Thinking),
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

/// Starts a streamed chat or completion; see the module's comment.
pub(crate) async fn start(
    s: &Arc<Services>,
    user_id: &str,
    mut job: RequestJob,
) -> Result<StreamStart, BrokerError> {
    // A stream's first answer is its chunks as they came; a replay could
    // not give those bytes again, so a key is refused before anything is
    // held rather than honoured in part.
    if job.idem.is_some() {
        return Err(BrokerError::Conflict(
            "streamed requests do not take an Idempotency-Key: send the key without `stream`, or stream without the key".into(),
        ));
    }
    let (route, tag) = held::routed(s, user_id, &mut job).await?;
    let this = s.clone();
    let user_id = user_id.to_string();
    actix_rt::spawn(async move {
        let h = match held::hold(&this, user_id, job, route).await? {
            Hold::New(h) => h,
            Hold::Replay(_) => {
                return Err(BrokerError::Unavailable(
                    "a stream met an idempotent replay it never asked for".into(),
                ));
            }
        };
        run_held(&this, h).await
    })
    .await
    .map_err(|e| BrokerError::Unavailable(format!("request task failed: {e}")))?
    .inspect_err(|e| tag.failed(e))
}

/// Runs a held stream: tries until a provider opens one, then passes its
/// chunks on from a task of their own until it ends, is cut short, or the
/// hold is spent, and settles.
async fn run_held(s: &Arc<Services>, h: Held) -> Result<StreamStart, BrokerError> {
    let started = Instant::now();
    let handles = held::handles(s, &h.plans)?;
    let tried = held::try_candidates(s, &h, &handles, |p, call, permit| {
        let open = p.adapter.stream(call);
        async move { open.await.map(|st| (st, permit)) }
    })
    .await;
    let ((upstream, permit), served) = match tried.result {
        Ok(v) => v,
        Err(e) => {
            let plan = &h.plans[0];
            let mut outcome = outcome_of(&h, plan, started);
            let ra = e.retry_after();
            let code = failure_code(&e);
            let action = fail(&mut outcome, code, e.to_string(), ra);
            let end = Ending {
                outcome,
                attempts: tried.attempts,
                cached: false,
                answer: None,
            };
            finish(s, &h, action, end, plan, tried.upstream).await?;
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
    let this = s.clone();
    let rates = handles[served].config.rates.clone();
    let kind = handles[served].config.kind;
    let model = held::upstream_model(&h.job.model, &handles, &plan);
    let idle = std::time::Duration::from_millis(s.config.retry.attempt_timeout_ms);
    // A client that stops reading must not keep the provider's slot and the
    // hold: each send waits this long at most.
    let stall = std::time::Duration::from_secs(s.config.server.client_stall_secs);
    actix_rt::spawn(async move {
        use futures_util::StreamExt;
        let mut upstream = upstream;
        let input_bound = plan.max_usage.input_tokens;
        let mut reported = Usage::default();
        let mut reported_final = false;
        let mut delivered_tokens = 0u64;
        let mut deltas = 0u64;
        let mut text = String::new();
        // Thinking delivered: output to count, not the answer's text.
        let mut thought = String::new();
        let mut finish_reason = "stop".to_string();
        let mut stopped: Option<(ErrorCode, String)> = None;
        // Only text moves the deadline on: an upstream that sends nothing
        // but usage or finish events (keep-alives never surface) still ends
        // at the idle timeout.
        let mut deadline = tokio::time::Instant::now() + idle;
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout_at(deadline, upstream.next()) => n,
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
                    let code = match e {
                        CallError::TooLarge { .. } => ErrorCode::UpstreamTooLarge,
                        _ => ErrorCode::UpstreamError,
                    };
                    stopped = Some((code, e.to_string()));
                    break;
                }
                Ok(Some(Ok(Chunk::Usage(u)))) => {
                    reported.input_tokens = reported.input_tokens.max(u.input_tokens);
                    reported.output_tokens = reported.output_tokens.max(u.output_tokens);
                    reported_final = u.output_tokens > 0 || reported_final;
                }
                Ok(Some(Ok(Chunk::Finish(f)))) => finish_reason = f,
                Ok(Some(Ok(
                    chunk @ (Chunk::Delta(_) | Chunk::ToolCall(_) | Chunk::Thinking(_)),
                ))) => {
                    deadline = tokio::time::Instant::now() + idle;
                    // A tool call's arguments and thinking are output as
                    // text is; a signature or a redacted block is not text.
                    let (event, said, shown) = match chunk {
                        Chunk::ToolCall(v) => {
                            let args = v["function"]["arguments"].as_str().unwrap_or_default();
                            let said = args.to_string();
                            (StreamEvent::ToolCall(v), said, true)
                        }
                        Chunk::Delta(d) => (StreamEvent::Delta(d.clone()), d, true),
                        Chunk::Thinking(t) => {
                            let said = match &t {
                                Thinking::Text(text) => text.clone(),
                                _ => String::new(),
                            };
                            (StreamEvent::Thinking(t), said, false)
                        }
                        _ => unreachable!("matched above"),
                    };
                    // Words, as the hold's bound counts them: the check must
                    // not cut a stream short by overcounting.
                    let tokens = if said.is_empty() && !shown {
                        0
                    } else {
                        count_words(&said).max(1)
                    };
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
                    match tokio::time::timeout(stall, tx.send(event)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => {
                            stopped = Some((
                                ErrorCode::ClientDisconnected,
                                "the client went away".into(),
                            ));
                            break;
                        }
                        Err(_) => {
                            let why = format!("the client took no data for {}s", stall.as_secs());
                            stopped = Some((ErrorCode::ClientStalled, why));
                            break;
                        }
                    }
                    delivered_tokens += tokens;
                    deltas += u64::from(tokens > 0);
                    if shown {
                        text.push_str(&said);
                    } else {
                        thought.push_str(&said);
                    }
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
            // Cut short: the prompt as the upstream counted it if it said,
            // and what was delivered, each as the provider's tokenizer
            // counts it (`tokens.rs`; the simulated ones count words). A
            // delta is at least one token.
            let (prompt, said) = (h.job.op.prompt_text(), reported.input_tokens);
            let delivered = format!("{text}{thought}");
            let counted = tokio::task::spawn_blocking(move || {
                let input = if said > 0 {
                    said
                } else {
                    tokens::count(kind, &model, &prompt).min(input_bound)
                };
                (input, tokens::count(kind, &model, &delivered))
            })
            .await;
            let (input, output) = match counted {
                Ok((i, o)) if kind == ProviderKind::Simulated => (i, o.max(delivered_tokens)),
                Ok((i, o)) => (i, o.max(deltas)),
                // The count's task died (it cannot, short of a panic):
                // charge the bounds the hold covers rather than nothing.
                Err(_) => (input_bound, plan.max_usage.output_tokens),
            };
            Usage {
                input_tokens: input,
                output_tokens: output.max(if complete { reported.output_tokens } else { 0 }),
                ..Usage::default()
            }
        };
        let (usage, out_of_line) = checked_usage(usage, &plan.max_usage, !text.is_empty());
        // A stream that ended normally without readable usage (the broker
        // always asks for it) is charged by the estimate above, and flagged.
        let anomaly = out_of_line || (complete && !reported_final);
        let mut outcome = outcome_of(&h, &plan, started);
        outcome.usage = usage;
        outcome.usage_anomaly = anomaly;
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
            if matches!(
                code,
                ErrorCode::UpstreamError | ErrorCode::UpstreamTimeout | ErrorCode::UpstreamTooLarge
            ) {
                last.ok = false;
                last.error_code = Some(code.as_str().to_string());
                last.error = Some(msg.clone());
            }
        }
        let upstream = tried.upstream + opened.elapsed();
        let end = Ending {
            outcome,
            attempts,
            answer: None,
            cached: false,
        };
        let cost = match finish(&this, &h, action, end, &plan, upstream).await {
            Ok(o) => o.cost,
            Err(e) => {
                let end = StreamEvent::End {
                    finish_reason: "error".into(),
                    stopped: Some(ErrorCode::SettleFailed),
                    message: Some(e.to_string()),
                    usage,
                    cost: Credits::ZERO,
                };
                let _ = tokio::time::timeout(stall, tx.send(end)).await;
                return;
            }
        };
        let (stopped, message) = match stopped {
            Some((c, m)) => (Some(c), Some(m)),
            None => (None, None),
        };
        let end = StreamEvent::End {
            finish_reason,
            stopped,
            message,
            usage,
            cost,
        };
        // Settled already: a client that never takes the end only loses it.
        let _ = tokio::time::timeout(stall, tx.send(end)).await;
    });
    Ok(start)
}
