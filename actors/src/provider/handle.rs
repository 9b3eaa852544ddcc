//! [`ProviderHandle`]: a started provider, and admission to it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use oneflow::config::{CircuitConfig, ProviderConfig};

use super::admission::{Admission, Waiting, WakeIn, lock};
use super::stats::ProviderStats;
use super::worker::{Permit, ProviderWorker, Queued};
use super::{Adapter, CallError};
use crate::coordination::{Admit, Coordinator, Lease, Limit};

/// The longest nap between two asks of the shared limits: a wait Redis
/// gave is slept in pieces so that a node that lost Redis meanwhile finds
/// out and falls back to its share.
const MAX_NAP: Duration = Duration::from_millis(500);

/// A started provider: its config, adapter, worker and figures.
#[derive(Clone)]
pub struct ProviderHandle {
    pub config: Arc<ProviderConfig>,
    pub adapter: Arc<dyn Adapter>,
    admission: Arc<Mutex<Admission>>,
    worker: Addr<ProviderWorker>,
    pub stats: Arc<ProviderStats>,
    /// Shares the limits with the other nodes, when there are others.
    coord: Option<Coordinator>,
}

impl ProviderHandle {
    /// Starts the worker for `cfg` on the current arbiter. With a
    /// coordinator, the provider's limits are shared with the other nodes
    /// that use it; without, they are this node's alone.
    pub fn start(
        cfg: ProviderConfig,
        adapter: Arc<dyn Adapter>,
        circuit: CircuitConfig,
        coord: Option<Coordinator>,
    ) -> ProviderHandle {
        let stats = Arc::new(ProviderStats::new(circuit));
        let admission = Arc::new(Mutex::new(Admission::new(
            cfg.clone(),
            stats.clone(),
            coord.clone(),
        )));
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
            coord,
        }
    }

    /// Waits for a slot under the provider's limits, or answers at once
    /// that its queue is full. A call with room to run is admitted here,
    /// on the caller's thread; with a coordinator, it then waits for the
    /// limits shared with the other nodes too.
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
        let mut permit = Permit {
            admission: self.admission.clone(),
            worker: self.worker.clone(),
            lease: None,
        };
        if let Some(c) = &self.coord {
            permit.lease = self.shared(c, tokens).await;
        }
        Ok(permit)
    }

    /// Passes the limits shared with the other nodes: the rates, then a
    /// concurrency slot. The local ones were passed first, so a queue of
    /// this node's waits here at most `max_concurrency` deep. `None` (no
    /// slot to hold) when Redis is unreachable: then the local limits,
    /// now at this node's share, are the ones that count.
    async fn shared(&self, c: &Coordinator, tokens: u32) -> Option<Lease> {
        let name = &self.config.name;
        let l = &self.config.limits;
        let minute = Duration::from_secs(60);
        let limits = [
            (
                limit(
                    "rps",
                    l.requests_per_second,
                    Duration::from_secs(1),
                    l.burst,
                ),
                1,
            ),
            (
                limit("rpm", l.requests_per_minute, minute, l.requests_per_minute),
                1,
            ),
            (
                limit("tpm", l.tokens_per_minute, minute, l.tokens_per_minute),
                tokens,
            ),
        ];
        loop {
            match c.admit(name, &limits).await {
                Ok(Admit::Go) => break,
                Ok(Admit::RetryIn(wait)) => tokio::time::sleep(wait.min(MAX_NAP)).await,
                Err(_) => {
                    crate::metrics::coordination_fallback(name);
                    return None;
                }
            }
        }
        // Slots free up when a call ends, which nothing announces: ask
        // again soon, then less often.
        let mut nap = Duration::from_millis(5);
        loop {
            match c.acquire(name, l.max_concurrency).await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) => {
                    tokio::time::sleep(nap).await;
                    nap = (nap * 2).min(Duration::from_millis(100));
                }
                Err(_) => {
                    crate::metrics::coordination_fallback(name);
                    return None;
                }
            }
        }
    }
}

fn limit(name: &'static str, rate: u32, period: Duration, burst: u32) -> Limit {
    Limit {
        name,
        rate,
        period,
        burst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::simulated::simulate;
    use crate::provider::{CallRequest, Operation};
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
        ProviderHandle::start(cfg, adapter, CircuitConfig::default(), None)
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
                Operation::ask(prompt, 16)
            } else {
                Operation::Clip {
                    prompt,
                    seconds: 1,
                    progress: None,
                }
            };
            let out = simulate(&CallRequest { request_id: "r".into(), model: p.name.clone(), op, plan: plan.clone() });
            let (u, m) = (out.usage, plan.max_usage);
            prop_assert!(u.input_tokens <= m.input_tokens && u.output_tokens <= m.output_tokens);
            prop_assert!(u.images <= m.images && u.seconds <= m.seconds);
            prop_assert!(p.rates.cost(&u, plan.size.as_deref()).unwrap() <= plan.quote);
        }
    }
}
