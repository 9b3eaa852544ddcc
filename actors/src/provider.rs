//! One `ProviderWorker` per configured provider: a `governor` rate limit, a
//! concurrency cap, a bounded queue that answers "overloaded" with a
//! retry-after when full, and rolling health figures that routing reads.
//!
//! The worker only admits calls (a [`Permit`] per call, held until the call
//! or stream ends); calls run in the caller's task through the provider's
//! [`Adapter`]. Each provider also has a circuit breaker that routing reads.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::oneshot;

use oneflow::config::{CircuitConfig, ProviderConfig};
use oneflow::routing::Health;

pub use crate::adapters::{
    Adapter, CallError, CallRequest, CallResult, ChatMessage, Chunk, ChunkStream, Operation, Output,
};

// ---- circuit breaker -----------------------------------------------------

pub use crate::views::CircuitState;

#[derive(Debug)]
struct Circuit {
    state: CircuitState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

// ---- the worker -----------------------------------------------------------

/// Figures a worker publishes for routing and the API; read without
/// messaging the actor.
#[derive(Debug)]
pub struct ProviderStats {
    /// `std` mutexes: held for a few arithmetic operations, never across
    /// await.
    health: Mutex<Health>,
    circuit: Mutex<Circuit>,
    circuit_cfg: CircuitConfig,
    pub queued: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub rejected: AtomicU64,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
}

impl ProviderStats {
    fn new(circuit_cfg: CircuitConfig) -> ProviderStats {
        ProviderStats {
            health: Mutex::new(Health::default()),
            circuit: Mutex::new(Circuit {
                state: CircuitState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                probe_in_flight: false,
            }),
            circuit_cfg,
            queued: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Latency and success figures, and whether routing may pick this
    /// provider now (its circuit is closed, or a probe is due).
    pub fn health(&self) -> Health {
        let mut h = self.health.lock().map(|h| *h).unwrap_or_default();
        h.available = self.circuit_admits();
        h
    }

    /// The circuit as the API shows it: an open circuit whose wait is over
    /// shows as half-open (the next call is its probe).
    pub fn circuit_state(&self) -> CircuitState {
        let Ok(c) = self.circuit.lock() else {
            return CircuitState::Closed;
        };
        match c.state {
            CircuitState::Open if self.wait_over(&c) => CircuitState::HalfOpen,
            s => s,
        }
    }

    fn wait_over(&self, c: &Circuit) -> bool {
        c.opened_at
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(self.circuit_cfg.open_ms))
    }

    fn circuit_admits(&self) -> bool {
        let Ok(c) = self.circuit.lock() else {
            return true;
        };
        match c.state {
            CircuitState::Closed => true,
            CircuitState::Open => self.wait_over(&c),
            CircuitState::HalfOpen => !c.probe_in_flight,
        }
    }

    /// Asks to start a call: true if the circuit lets it through. An open
    /// circuit whose wait is over lets exactly one probe through.
    pub fn try_begin(&self) -> bool {
        let Ok(mut c) = self.circuit.lock() else {
            return true;
        };
        match c.state {
            CircuitState::Closed => true,
            CircuitState::Open if self.wait_over(&c) => {
                c.state = CircuitState::HalfOpen;
                c.probe_in_flight = true;
                true
            }
            CircuitState::Open => false,
            CircuitState::HalfOpen if c.probe_in_flight => false,
            CircuitState::HalfOpen => {
                c.probe_in_flight = true;
                true
            }
        }
    }

    /// Records a finished call. `fault` says whether a failure was the
    /// provider's (it counts against the circuit) rather than the request's.
    pub fn record(&self, ok: bool, fault: bool, latency: Duration) {
        const ALPHA: f64 = 0.2;
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut h) = self.health.lock() {
            if ok {
                let ms = latency.as_secs_f64() * 1000.0;
                h.latency_ms = if h.latency_ms == 0.0 {
                    ms
                } else {
                    h.latency_ms + ALPHA * (ms - h.latency_ms)
                };
            }
            h.success_rate += ALPHA * (if ok { 1.0 } else { 0.0 } - h.success_rate);
        }
        if let Ok(mut c) = self.circuit.lock() {
            c.probe_in_flight = false;
            if ok {
                c.state = CircuitState::Closed;
                c.consecutive_failures = 0;
                c.opened_at = None;
            } else if fault {
                c.consecutive_failures = c.consecutive_failures.saturating_add(1);
                if c.state == CircuitState::HalfOpen
                    || c.consecutive_failures >= self.circuit_cfg.failures
                {
                    c.state = CircuitState::Open;
                    c.opened_at = Some(Instant::now());
                }
            } else if c.state == CircuitState::HalfOpen {
                // The probe failed through no fault of the provider: let the
                // next call probe again.
                c.state = CircuitState::Open;
            }
        }
    }

    /// A probe that never ran (the caller gave up first) frees its turn.
    pub fn abandon(&self) {
        if let Ok(mut c) = self.circuit.lock() {
            if c.state == CircuitState::HalfOpen {
                c.probe_in_flight = false;
            }
        }
    }
}

/// Pump the queue after this long: a rate limiter said "not yet" to the call at
/// the head of the queue.
#[derive(Message)]
#[rtype(result = "()")]
struct WakeIn(Duration);

struct Waiting {
    tokens: u32,
    reply: oneshot::Sender<()>,
    /// Limiters (in [`Admission::pump`] order) this call has already
    /// passed: each is charged once per call, however often the pump comes
    /// back to it.
    passed: usize,
}

/// One provider's limits and queue. Callers admit themselves under its lock
/// (a few arithmetic steps, never held across an await), so a call with
/// room to run starts without a message to another thread; only waiting
/// for a rate limiter needs the worker's timer.
struct Admission {
    cfg: ProviderConfig,
    limiter: Option<DefaultDirectRateLimiter>,
    per_minute: Option<DefaultDirectRateLimiter>,
    tokens: Option<DefaultDirectRateLimiter>,
    queue: VecDeque<Waiting>,
    in_flight: u32,
    /// A `WakeIn` is on its way or scheduled.
    wake_pending: bool,
    stats: Arc<ProviderStats>,
}

impl Admission {
    fn new(cfg: ProviderConfig, stats: Arc<ProviderStats>) -> Admission {
        let limiter = NonZeroU32::new(cfg.limits.requests_per_second).map(|rps| {
            let burst = NonZeroU32::new(cfg.limits.burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(rps).allow_burst(burst))
        });
        let per_minute = NonZeroU32::new(cfg.limits.requests_per_minute)
            .map(|rpm| RateLimiter::direct(Quota::per_minute(rpm)));
        let tokens = NonZeroU32::new(cfg.limits.tokens_per_minute)
            .map(|tpm| RateLimiter::direct(Quota::per_minute(tpm)));
        Admission {
            cfg,
            limiter,
            per_minute,
            tokens,
            queue: VecDeque::new(),
            in_flight: 0,
            wake_pending: false,
            stats,
        }
    }

    /// Admits queued calls, in order, while the concurrency cap and the
    /// rate limits allow. Returns how long to wait before pumping again if
    /// a limiter said "not yet" and no wake is scheduled yet.
    fn pump(&mut self) -> Option<Duration> {
        let mut wake = None;
        while self.in_flight < self.cfg.limits.max_concurrency && !self.queue.is_empty() {
            // A caller that gave up while queued does not spend the limits.
            while self.queue.front().is_some_and(|w| w.reply.is_closed()) {
                self.queue.pop_front();
            }
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            // Tokens, then requests per second, then per minute. A limiter
            // that says "not yet" is asked again when it has room; the ones
            // already passed are not charged again.
            let limiters = [&self.tokens, &self.limiter, &self.per_minute];
            let mut wait = None;
            while front.passed < limiters.len() {
                let Some(l) = limiters[front.passed] else {
                    front.passed += 1;
                    continue;
                };
                let verdict = if front.passed == 0 {
                    // Tokens above a whole minute's quota are admitted alone.
                    match NonZeroU32::new(front.tokens.min(self.cfg.limits.tokens_per_minute)) {
                        Some(n) => l.check_n(n).unwrap_or(Ok(())),
                        None => Ok(()),
                    }
                } else {
                    l.check()
                };
                match verdict {
                    Ok(()) => front.passed += 1,
                    Err(not_until) => {
                        wait = Some(not_until.wait_time_from(DefaultClock::default().now()));
                        break;
                    }
                }
            }
            if let Some(wait) = wait {
                if !self.wake_pending {
                    self.wake_pending = true;
                    wake = Some(wait);
                }
                break;
            }
            let Some(w) = self.queue.pop_front() else {
                break;
            };
            if w.reply.send(()).is_ok() {
                self.in_flight += 1;
            }
        }
        self.stats.queued.store(self.queue.len(), Ordering::Relaxed);
        self.stats
            .in_flight
            .store(self.in_flight as usize, Ordering::Relaxed);
        wake
    }

    /// Seconds until a newcomer would likely get a slot.
    fn retry_after(&self) -> u64 {
        let rps = u64::from(self.cfg.limits.requests_per_second.max(1));
        (self.queue.len() as u64 / rps).clamp(1, 60)
    }
}

/// Locks the admission state; a panic while it was held (there is no
/// panicking code under it) would leave it usable, so poisoning is ignored.
fn lock(a: &Mutex<Admission>) -> std::sync::MutexGuard<'_, Admission> {
    a.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The actor in front of one provider: the timer that pumps its queue when
/// a rate limiter has room again. Calls run in the caller's task, so one
/// slow upstream never blocks it.
pub struct ProviderWorker {
    admission: Arc<Mutex<Admission>>,
}

impl Actor for ProviderWorker {
    type Context = Context<Self>;
}

impl Handler<WakeIn> for ProviderWorker {
    type Result = ();

    fn handle(&mut self, m: WakeIn, ctx: &mut Context<Self>) {
        ctx.run_later(m.0, |act, ctx| {
            let wake = {
                let mut a = lock(&act.admission);
                a.wake_pending = false;
                a.pump()
            };
            if let Some(wait) = wake {
                ctx.notify(WakeIn(wait));
            }
        });
    }
}

/// A granted slot; dropping it frees the slot and admits the next caller.
/// Held for a whole call, streams included.
pub struct Permit {
    admission: Arc<Mutex<Admission>>,
    worker: Addr<ProviderWorker>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let wake = {
            let mut a = lock(&self.admission);
            a.in_flight = a.in_flight.saturating_sub(1);
            a.pump()
        };
        if let Some(wait) = wake {
            // At most one wake is pending per worker, so these sends are
            // bounded even though `do_send` ignores the mailbox capacity.
            self.worker.do_send(WakeIn(wait));
        }
    }
}

/// A caller waiting in the queue. If it goes away (its future dropped) after
/// the grant but before taking the permit, the slot is given back here.
struct Queued<'a> {
    rx: Option<oneshot::Receiver<()>>,
    admission: &'a Arc<Mutex<Admission>>,
    worker: &'a Addr<ProviderWorker>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        // After `close` no grant can arrive; one that came before is ours.
        rx.close();
        if rx.try_recv().is_ok() {
            drop(Permit {
                admission: self.admission.clone(),
                worker: self.worker.clone(),
            });
        }
    }
}

/// A started provider: its config, adapter, worker and figures.
#[derive(Clone)]
pub struct ProviderHandle {
    pub config: Arc<ProviderConfig>,
    pub adapter: Arc<dyn Adapter>,
    admission: Arc<Mutex<Admission>>,
    worker: Addr<ProviderWorker>,
    pub stats: Arc<ProviderStats>,
}

impl ProviderHandle {
    /// Starts the worker for `cfg` on the current arbiter.
    pub fn start(
        cfg: ProviderConfig,
        adapter: Arc<dyn Adapter>,
        circuit: CircuitConfig,
    ) -> ProviderHandle {
        let stats = Arc::new(ProviderStats::new(circuit));
        let admission = Arc::new(Mutex::new(Admission::new(cfg.clone(), stats.clone())));
        let worker = ProviderWorker {
            admission: admission.clone(),
        }
        .start();
        ProviderHandle {
            config: Arc::new(cfg),
            adapter,
            admission,
            worker,
            stats,
        }
    }

    /// Waits for a slot under the provider's limits, or answers at once
    /// that its queue is full. A call with room to run is admitted here,
    /// on the caller's thread.
    pub async fn acquire(&self, tokens: u32) -> Result<Permit, CallError> {
        let (rx, wake) = {
            let mut a = lock(&self.admission);
            if a.queue.len() >= a.cfg.limits.queue as usize {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                crate::metrics::rate_limited(&self.config.name);
                return Err(CallError::Overloaded {
                    provider: self.config.name.clone(),
                    retry_after_secs: a.retry_after(),
                });
            }
            let (reply, rx) = oneshot::channel();
            a.queue.push_back(Waiting {
                tokens,
                reply,
                passed: 0,
            });
            (rx, a.pump())
        };
        if let Some(wait) = wake {
            self.worker.do_send(WakeIn(wait));
        }
        let mut waiting = Queued {
            rx: Some(rx),
            admission: &self.admission,
            worker: &self.worker,
        };
        let granted = match waiting.rx.as_mut() {
            Some(rx) => rx.await.is_ok(),
            None => false,
        };
        waiting.rx = None;
        if !granted {
            // The worker dropped the queue entry without a grant.
            return Err(CallError::Unavailable(self.config.name.clone()));
        }
        Ok(Permit {
            admission: self.admission.clone(),
            worker: self.worker.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::simulated::simulate;
    use oneflow::config::default_providers;
    use oneflow::pricing::Modality;
    use oneflow::request::AiRequest;
    use proptest::prelude::*;

    fn one_slot() -> ProviderHandle {
        let mut cfg = default_providers()[0].clone();
        cfg.limits.max_concurrency = 1;
        cfg.limits.queue = 4;
        let adapter = Arc::new(crate::adapters::simulated::Simulated::new(
            &cfg.name,
            cfg.simulated.clone(),
        ));
        ProviderHandle::start(cfg, adapter, CircuitConfig::default())
    }

    /// A caller granted a slot while queued, who goes away before taking
    /// it, gives the slot back; one who goes away before the grant takes
    /// nothing.
    #[actix_rt::test]
    async fn a_caller_that_leaves_the_queue_never_keeps_a_slot() {
        use std::future::Future;
        use std::task::{Context, Poll};
        let p = one_slot();
        let first = p.acquire(0).await.unwrap();
        let mut second = Box::pin(p.acquire(0));
        let mut third = Box::pin(p.acquire(0));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert!(third.as_mut().poll(&mut cx).is_pending());
        assert_eq!(p.stats.queued.load(Ordering::Relaxed), 2);
        // The slot goes to `second`, which leaves without looking.
        drop(first);
        assert_eq!(p.stats.in_flight.load(Ordering::Relaxed), 1);
        drop(second);
        // Given back, and passed on to `third`.
        match third.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(permit)) => drop(permit),
            other => panic!("third not admitted: {:?}", other.is_ready()),
        }
        assert_eq!(p.stats.in_flight.load(Ordering::Relaxed), 0);
        // `fourth` waits for nobody.
        let fourth = p.acquire(0).await.unwrap();
        assert_eq!(p.stats.in_flight.load(Ordering::Relaxed), 1);
        drop(fourth);
        assert_eq!(p.stats.in_flight.load(Ordering::Relaxed), 0);
    }

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
            let op = if modality == Modality::Text {
                Operation::Chat { messages: vec![ChatMessage { role: "user".into(), content: prompt }], max_tokens: 16, extra: Default::default() }
            } else {
                Operation::Clip { prompt, seconds: 1 }
            };
            let out = simulate(&CallRequest { request_id: "r".into(), model: p.name.clone(), op, plan: plan.clone() });
            let (u, m) = (out.usage, plan.max_usage);
            prop_assert!(u.input_tokens <= m.input_tokens && u.output_tokens <= m.output_tokens);
            prop_assert!(u.images <= m.images && u.seconds <= m.seconds);
            prop_assert!(p.rates.cost(&u, plan.size.as_deref()).unwrap() <= plan.quote);
        }
    }
}
