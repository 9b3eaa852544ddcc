//! One `ProviderWorker` per configured provider: a `governor` rate limit, a
//! concurrency cap, a bounded queue that answers "overloaded" with a
//! retry-after when full, and rolling health figures that routing reads.
//!
//! Adapters (how to talk to a provider) sit behind [`Adapter`]; the built-in
//! [`Simulated`] adapter is the offline default.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::oneshot;

use oneflow::config::{ProviderConfig, SimulatedSettings};
use oneflow::pricing::{Modality, Usage, count_words};
use oneflow::request::Plan;
use oneflow::routing::Health;

/// What a provider is asked to do.
#[derive(Clone, Debug)]
pub struct CallRequest {
    pub request_id: String,
    pub model: String,
    pub prompt: String,
    pub plan: Plan,
}

/// What it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallResult {
    pub output: String,
    pub usage: Usage,
}

/// Why a call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CallError {
    #[error("provider {provider} is overloaded; retry after {retry_after_secs}s")]
    Overloaded {
        provider: String,
        retry_after_secs: u64,
    },
    #[error("provider {provider} failed: {message}")]
    Upstream { provider: String, message: String },
    #[error("provider {0} is unavailable")]
    Unavailable(String),
}

/// How to talk to one provider.
pub trait Adapter: Send + Sync + 'static {
    fn call(&self, req: CallRequest) -> BoxFuture<'static, Result<CallResult, CallError>>;
}

// ---- simulated provider ---------------------------------------------------

/// Deterministic output derived from the prompt, real usage figures, a
/// configurable latency and a reproducible failure rate.
pub struct Simulated {
    name: String,
    settings: SimulatedSettings,
    draws: AtomicU64,
}

impl Simulated {
    pub fn new(name: &str, settings: SimulatedSettings) -> Simulated {
        Simulated {
            name: name.to_string(),
            settings,
            draws: AtomicU64::new(0),
        }
    }

    /// SplitMix64 over (seed, call number): uniform in [0, 1).
    fn draw(&self) -> f64 {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .settings
            .seed
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn fingerprint(s: &str) -> u64 {
    // FNV-1a: stable across builds, unlike the std hasher.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The simulated answer to `req`, without latency or failures.
pub fn simulate(req: &CallRequest) -> CallResult {
    let plan = &req.plan;
    let id = fingerprint(&req.prompt);
    match plan.modality {
        Modality::Text => {
            let words: Vec<&str> = req.prompt.split_whitespace().collect();
            let limit = usize::try_from(plan.max_usage.output_tokens).unwrap_or(usize::MAX);
            let n = (words.len() + 2).min(limit);
            let mut out: Vec<String> = vec!["Simulated".into(), "answer:".into()];
            out.extend(words.iter().rev().map(|w| w.to_string()));
            out.truncate(n);
            let output = out.join(" ");
            let usage = Usage {
                input_tokens: count_words(&req.prompt),
                output_tokens: count_words(&output),
                ..Usage::default()
            };
            CallResult { output, usage }
        }
        Modality::Image => {
            let size = plan.size.clone().unwrap_or_default();
            let n = plan.max_usage.images;
            let output = (0..n)
                .map(|i| format!("sim://image/{id:016x}/{i}?size={size}"))
                .collect::<Vec<_>>()
                .join("\n");
            CallResult {
                output,
                usage: Usage {
                    images: n,
                    ..Usage::default()
                },
            }
        }
        Modality::Audio | Modality::Video => {
            let s = plan.max_usage.seconds;
            let kind = plan.modality.name();
            CallResult {
                output: format!("sim://{kind}/{id:016x}?seconds={s}"),
                usage: Usage {
                    seconds: s,
                    ..Usage::default()
                },
            }
        }
    }
}

impl Adapter for Simulated {
    fn call(&self, req: CallRequest) -> BoxFuture<'static, Result<CallResult, CallError>> {
        let latency = Duration::from_millis(self.settings.latency_ms);
        let fail = self.settings.failure_rate > 0.0 && self.draw() < self.settings.failure_rate;
        let name = self.name.clone();
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if fail {
                return Err(CallError::Upstream {
                    provider: name,
                    message: "simulated failure".into(),
                });
            }
            Ok(simulate(&req))
        })
    }
}

// ---- the worker -----------------------------------------------------------

/// Figures a worker publishes for routing and the API; read without
/// messaging the actor.
#[derive(Debug)]
pub struct ProviderStats {
    /// `std` mutex: held for a few arithmetic operations, never across await.
    health: Mutex<Health>,
    pub queued: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub rejected: AtomicU64,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
}

impl ProviderStats {
    pub fn health(&self) -> Health {
        self.health.lock().map(|h| *h).unwrap_or_default()
    }

    fn record(&self, ok: bool, latency: Duration) {
        const ALPHA: f64 = 0.2;
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut h) = self.health.lock() {
            let ms = latency.as_secs_f64() * 1000.0;
            h.latency_ms = if h.latency_ms == 0.0 {
                ms
            } else {
                h.latency_ms + ALPHA * (ms - h.latency_ms)
            };
            h.success_rate += ALPHA * (if ok { 1.0 } else { 0.0 } - h.success_rate);
        }
    }
}

/// Ask the worker to run a call; answered at once with a receiver for the
/// result, or with `Overloaded`.
#[derive(Message)]
#[rtype(result = "Result<oneshot::Receiver<Result<CallResult, CallError>>, CallError>")]
pub struct Call(pub CallRequest);

struct Waiting {
    req: CallRequest,
    reply: oneshot::Sender<Result<CallResult, CallError>>,
}

/// The actor in front of one provider.
pub struct ProviderWorker {
    cfg: ProviderConfig,
    adapter: Arc<dyn Adapter>,
    limiter: Option<DefaultDirectRateLimiter>,
    queue: VecDeque<Waiting>,
    in_flight: u32,
    wake_pending: bool,
    stats: Arc<ProviderStats>,
}

impl Actor for ProviderWorker {
    type Context = Context<Self>;
}

impl ProviderWorker {
    pub fn new(
        cfg: ProviderConfig,
        adapter: Arc<dyn Adapter>,
        stats: Arc<ProviderStats>,
    ) -> ProviderWorker {
        let limiter = NonZeroU32::new(cfg.limits.requests_per_second).map(|rps| {
            let burst = NonZeroU32::new(cfg.limits.burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(rps).allow_burst(burst))
        });
        ProviderWorker {
            cfg,
            adapter,
            limiter,
            queue: VecDeque::new(),
            in_flight: 0,
            wake_pending: false,
            stats,
        }
    }

    /// Starts queued calls while the concurrency cap and the rate limit
    /// allow; schedules itself for when the limiter next has room.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < self.cfg.limits.max_concurrency && !self.queue.is_empty() {
            if let Some(l) = &self.limiter {
                if let Err(not_until) = l.check() {
                    if !self.wake_pending {
                        self.wake_pending = true;
                        let wait = not_until.wait_time_from(DefaultClock::default().now());
                        ctx.run_later(wait, |act, ctx| {
                            act.wake_pending = false;
                            act.pump(ctx);
                        });
                    }
                    break;
                }
            }
            let Some(w) = self.queue.pop_front() else {
                break;
            };
            self.stats.queued.store(self.queue.len(), Ordering::Relaxed);
            if w.reply.is_closed() {
                continue;
            }
            self.in_flight += 1;
            self.stats
                .in_flight
                .store(self.in_flight as usize, Ordering::Relaxed);
            let started = Instant::now();
            let call = self.adapter.call(w.req);
            ctx.spawn(call.into_actor(self).map(move |res, act, ctx| {
                act.in_flight -= 1;
                act.stats
                    .in_flight
                    .store(act.in_flight as usize, Ordering::Relaxed);
                act.stats.record(res.is_ok(), started.elapsed());
                let _ = w.reply.send(res);
                act.pump(ctx);
            }));
        }
    }

    /// Seconds until a newcomer would likely get a slot.
    fn retry_after(&self) -> u64 {
        let rps = u64::from(self.cfg.limits.requests_per_second.max(1));
        (self.queue.len() as u64 / rps).clamp(1, 60)
    }
}

impl Handler<Call> for ProviderWorker {
    type Result = Result<oneshot::Receiver<Result<CallResult, CallError>>, CallError>;

    fn handle(&mut self, m: Call, ctx: &mut Context<Self>) -> Self::Result {
        if self.queue.len() >= self.cfg.limits.queue as usize {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(CallError::Overloaded {
                provider: self.cfg.name.clone(),
                retry_after_secs: self.retry_after(),
            });
        }
        let (reply, rx) = oneshot::channel();
        self.queue.push_back(Waiting { req: m.0, reply });
        self.stats.queued.store(self.queue.len(), Ordering::Relaxed);
        self.pump(ctx);
        Ok(rx)
    }
}

/// A started provider: its config, its worker and its figures.
#[derive(Clone)]
pub struct ProviderHandle {
    pub config: Arc<ProviderConfig>,
    addr: Addr<ProviderWorker>,
    pub stats: Arc<ProviderStats>,
}

impl ProviderHandle {
    /// Starts the worker for `cfg` on the current arbiter.
    pub fn start(cfg: ProviderConfig, adapter: Arc<dyn Adapter>) -> ProviderHandle {
        let stats = Arc::new(ProviderStats {
            health: Mutex::new(Health::default()),
            queued: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let worker = ProviderWorker::new(cfg.clone(), adapter, stats.clone());
        let queue = cfg.limits.queue as usize;
        let addr = ProviderWorker::create(move |ctx| {
            ctx.set_mailbox_capacity(queue.max(16));
            worker
        });
        ProviderHandle {
            config: Arc::new(cfg),
            addr,
            stats,
        }
    }

    /// Starts the right adapter for `cfg`.
    pub fn start_configured(cfg: ProviderConfig) -> ProviderHandle {
        let adapter: Arc<dyn Adapter> = match cfg.kind {
            oneflow::config::ProviderKind::Simulated => {
                Arc::new(Simulated::new(&cfg.name, cfg.simulated.clone()))
            }
        };
        ProviderHandle::start(cfg, adapter)
    }

    /// Runs one call through the queue and limits.
    pub async fn call(&self, req: CallRequest) -> Result<CallResult, CallError> {
        let rx = self
            .addr
            .send(Call(req))
            .await
            .map_err(|_| CallError::Unavailable(self.config.name.clone()))??;
        rx.await
            .map_err(|_| CallError::Unavailable(self.config.name.clone()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneflow::config::default_providers;
    use oneflow::request::AiRequest;
    use proptest::prelude::*;

    proptest! {
        /// The simulated providers never use more than the plan allows, so
        /// their cost never exceeds the quote.
        #[test]
        fn simulated_usage_stays_within_the_quote(
            prompt in "[a-z ]{1,200}",
            which in 0usize..4,
            max_tokens in proptest::option::of(1u32..300),
            n in proptest::option::of(1u32..10),
            seconds in proptest::option::of(1u32..600),
        ) {
            prop_assume!(!prompt.trim().is_empty());
            let p = &default_providers()[which];
            let modality = p.modality;
            let req = AiRequest {
                model: p.name.clone(),
                prompt: prompt.clone(),
                max_tokens: max_tokens.filter(|_| modality == Modality::Text),
                size: None,
                n: n.filter(|_| modality == Modality::Image),
                seconds: seconds.filter(|_| matches!(modality, Modality::Audio | Modality::Video)),
                provider: None,
                region: None,
                max_price: None,
                strategy: None,
            };
            let plan = req.plan(p).unwrap();
            let out = simulate(&CallRequest { request_id: "r".into(), model: p.name.clone(), prompt, plan: plan.clone() });
            let (u, m) = (out.usage, plan.max_usage);
            prop_assert!(u.input_tokens <= m.input_tokens && u.output_tokens <= m.output_tokens);
            prop_assert!(u.images <= m.images && u.seconds <= m.seconds);
            prop_assert!(p.rates.cost(&u, plan.size.as_deref()).unwrap() <= plan.quote);
        }
    }
}
