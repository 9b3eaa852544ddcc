//! Retries and fallbacks for one held request: each candidate provider in
//! ranking order gets up to `attempts_per_provider` tries, with exponential
//! backoff and full jitter between them (or the upstream's `Retry-After`
//! when it is short), inside per-attempt and total timeouts. Providers whose
//! circuit is open are passed over. Every attempt is recorded.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use oneflow::config::RetryConfig;
use oneflow::records::Attempt;

use crate::provider::{CallError, Permit, ProviderHandle};

/// How the tries of one held request ended: the provider's answer and the
/// index of the candidate that gave it, or the last error; and every
/// attempt made. Raw provider results, before the request is settled and
/// becomes a `RequestOutcome`.
pub struct Tried<T> {
    pub result: Result<(T, usize), CallError>,
    pub attempts: Vec<Attempt>,
    /// Time spent inside `call` (provider time), for the broker's own
    /// share of a request's latency.
    pub upstream: Duration,
}

/// Full jitter: a uniform delay in [0, min(max, base * 2^retry)].
pub(crate) fn backoff(cfg: &RetryConfig, retry: u32) -> Duration {
    let cap = cfg
        .backoff_base_ms
        .saturating_mul(1u64 << retry.min(20))
        .min(cfg.backoff_max_ms);
    let mut b = [0u8; 8];
    let r = match getrandom::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => u64::from(Instant::now().elapsed().subsec_nanos()),
    };
    Duration::from_millis(if cap == 0 { 0 } else { r % (cap + 1) })
}

fn attempt(provider: &str, started: Instant, err: Option<&CallError>) -> Attempt {
    Attempt {
        provider: provider.to_string(),
        ok: err.is_none(),
        error_code: err.map(|e| e.code().to_string()),
        error: err.map(|e| e.to_string()),
        latency_ms: started.elapsed().as_millis() as u64,
    }
}

/// Tries `call` on each candidate in turn; `tokens[i]` is what a call to
/// candidate `i` may use, for its tokens-per-minute limit. `switch` is asked before the
/// first try on any candidate but the first (the hold moves to it); an
/// error there passes the candidate over. `call` gets the provider's
/// permit and must keep it for as long as the call runs (streams too).
pub(crate) async fn run<T, C, F>(
    candidates: &[ProviderHandle],
    tokens: &[u32],
    cfg: &RetryConfig,
    mut switch: impl FnMut(&ProviderHandle) -> BoxFuture<'static, Result<(), String>>,
    mut call: C,
) -> Tried<T>
where
    C: FnMut(usize, Permit) -> F,
    F: Future<Output = Result<T, CallError>>,
{
    let deadline = Instant::now() + Duration::from_millis(cfg.total_timeout_ms);
    let per_attempt = Duration::from_millis(cfg.attempt_timeout_ms);
    let mut attempts = Vec::new();
    let mut upstream = Duration::ZERO;
    let mut last: Option<CallError> = None;
    let limit = (cfg.max_providers as usize).min(candidates.len());
    for (i, p) in candidates.iter().take(limit).enumerate() {
        let name = p.config.name.as_str();
        if i > 0 {
            let started = Instant::now();
            if let Err(why) = switch(p).await {
                let e = CallError::Unsupported {
                    provider: name.to_string(),
                    what: format!("take this request: {why}"),
                };
                attempts.push(Attempt {
                    error_code: Some("budget".into()),
                    ..attempt(name, started, Some(&e))
                });
                last.get_or_insert(e);
                continue;
            }
        }
        for retry in 0..cfg.attempts_per_provider {
            let now = Instant::now();
            if now >= deadline {
                let e = CallError::Timeout {
                    provider: name.to_string(),
                    ms: cfg.total_timeout_ms,
                };
                attempts.push(attempt(name, now, Some(&e)));
                return Tried {
                    result: Err(e),
                    attempts,
                    upstream,
                };
            }
            let started = Instant::now();
            let budget = per_attempt.min(deadline - now);
            let permit =
                match tokio::time::timeout(budget, p.acquire(tokens.get(i).copied().unwrap_or(0)))
                    .await
                {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(e)) => {
                        // Our own queue for it is full: no point retrying here.
                        attempts.push(attempt(name, started, Some(&e)));
                        last = Some(e);
                        break;
                    }
                    Err(_) => {
                        let e = CallError::Timeout {
                            provider: name.to_string(),
                            ms: budget.as_millis() as u64,
                        };
                        attempts.push(attempt(name, started, Some(&e)));
                        last = Some(e);
                        break;
                    }
                };
            if !p.stats.try_begin() {
                drop(permit);
                let e = CallError::Unavailable(name.to_string());
                attempts.push(Attempt {
                    error_code: Some("circuit_open".into()),
                    ..attempt(name, started, Some(&e))
                });
                last = Some(e);
                break;
            }
            let left = budget.saturating_sub(started.elapsed());
            let calling = Instant::now();
            let outcome = match tokio::time::timeout(left, call(i, permit)).await {
                Ok(r) => r,
                Err(_) => Err(CallError::Timeout {
                    provider: name.to_string(),
                    ms: budget.as_millis() as u64,
                }),
            };
            let took = calling.elapsed();
            upstream += took;
            crate::metrics::upstream(name, took);
            match outcome {
                Ok(v) => {
                    p.stats.record(true, false, started.elapsed());
                    attempts.push(attempt(name, started, None));
                    return Tried {
                        result: Ok((v, i)),
                        attempts,
                        upstream,
                    };
                }
                Err(e) => {
                    p.stats
                        .record(false, e.is_provider_fault(), started.elapsed());
                    attempts.push(attempt(name, started, Some(&e)));
                    let transient = e.is_transient();
                    let wait = match e.retry_after() {
                        Some(s) if s > cfg.max_retry_after_secs => None,
                        Some(s) => Some(Duration::from_secs(s)),
                        None => Some(backoff(cfg, retry)),
                    };
                    last = Some(e);
                    let more = retry + 1 < cfg.attempts_per_provider;
                    match (transient && more, wait) {
                        (true, Some(w)) if Instant::now() + w < deadline => {
                            tokio::time::sleep(w).await;
                        }
                        _ => break,
                    }
                }
            }
        }
    }
    Tried {
        result: Err(last.unwrap_or_else(|| CallError::Unavailable("no provider".into()))),
        attempts,
        upstream,
    }
}
