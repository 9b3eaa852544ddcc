//! One provider's limits and queue, under a short lock: callers admit
//! themselves on their own thread; only waiting for a rate limiter needs
//! the worker's timer.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::oneshot;

use oneflow::config::ProviderConfig;

use super::stats::ProviderStats;
use crate::coordination::Coordinator;

/// Pump the queue after this long: a rate limiter said "not yet" to the call at
/// the head of the queue.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WakeIn(pub(super) Duration);

pub(super) struct Waiting {
    pub(super) tokens: u32,
    pub(super) reply: oneshot::Sender<()>,
    /// Limiters (in [`Admission::pump`] order) this call has already
    /// passed: each is charged once per call, however often the pump comes
    /// back to it.
    pub(super) passed: usize,
}

/// One provider's limits and queue. Callers admit themselves under its lock
/// (a few arithmetic steps, never held across an await), so a call with
/// room to run starts without a message to another thread; only waiting
/// for a rate limiter needs the worker's timer.
pub(super) struct Admission {
    pub(super) cfg: ProviderConfig,
    pub(super) limiter: Option<DefaultDirectRateLimiter>,
    pub(super) per_minute: Option<DefaultDirectRateLimiter>,
    pub(super) tokens: Option<DefaultDirectRateLimiter>,
    pub(super) queue: VecDeque<Waiting>,
    pub(super) in_flight: u32,
    /// A `WakeIn` is on its way or scheduled.
    pub(super) wake_pending: bool,
    pub(super) stats: Arc<ProviderStats>,
    /// Shares the limits with the other nodes; `None`: they are this
    /// node's alone.
    pub(super) coord: Option<Coordinator>,
    /// The node count the local limits are divided by: 1 unless Redis is
    /// unreachable, when this node keeps to its share of each limit.
    share: u32,
}

impl Admission {
    pub(super) fn new(
        cfg: ProviderConfig,
        stats: Arc<ProviderStats>,
        coord: Option<Coordinator>,
    ) -> Admission {
        let mut a = Admission {
            cfg,
            limiter: None,
            per_minute: None,
            tokens: None,
            queue: VecDeque::new(),
            in_flight: 0,
            wake_pending: false,
            stats,
            coord,
            share: 1,
        };
        a.build_limiters();
        a
    }

    /// (Re)builds the local limiters for the current share. A rebuilt
    /// limiter starts full: a switch lets at most one extra burst through.
    fn build_limiters(&mut self) {
        let l = &self.cfg.limits;
        let share = self.share;
        self.limiter = NonZeroU32::new(share_of(l.requests_per_second, share)).map(|rps| {
            let burst = NonZeroU32::new(share_of(l.burst, share)).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(rps).allow_burst(burst))
        });
        self.per_minute = NonZeroU32::new(share_of(l.requests_per_minute, share))
            .map(|rpm| RateLimiter::direct(Quota::per_minute(rpm)));
        self.tokens = NonZeroU32::new(self.tokens_per_minute())
            .map(|tpm| RateLimiter::direct(Quota::per_minute(tpm)));
    }

    /// Whole limits while Redis shares them (or there is no Redis: this
    /// node is all there is); the node's share while Redis is unreachable.
    fn reshare(&mut self) {
        let share = match &self.coord {
            Some(c) if !c.healthy() => c.node_count(),
            _ => 1,
        };
        if share != self.share {
            self.share = share;
            self.build_limiters();
        }
    }

    fn max_concurrency(&self) -> u32 {
        share_of(self.cfg.limits.max_concurrency, self.share)
    }

    fn tokens_per_minute(&self) -> u32 {
        share_of(self.cfg.limits.tokens_per_minute, self.share)
    }

    /// Admits queued calls, in order, while the concurrency cap and the
    /// rate limits allow. Returns how long to wait before pumping again if
    /// a limiter said "not yet" and no wake is scheduled yet.
    pub(super) fn pump(&mut self) -> Option<Duration> {
        let mut wake = None;
        self.reshare();
        let tokens_per_minute = self.tokens_per_minute();
        while self.in_flight < self.max_concurrency() && !self.queue.is_empty() {
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
                    match NonZeroU32::new(front.tokens.min(tokens_per_minute)) {
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
    pub(super) fn retry_after(&self) -> u64 {
        let rps = u64::from(self.cfg.limits.requests_per_second.max(1));
        (self.queue.len() as u64 / rps).clamp(1, 60)
    }
}

/// A limit divided among `nodes`: 0 (no limit) stays 0, anything else
/// leaves each node at least 1.
pub(super) fn share_of(limit: u32, nodes: u32) -> u32 {
    if limit == 0 {
        0
    } else {
        (limit / nodes.max(1)).max(1)
    }
}

/// Locks the admission state; a panic while it was held (there is no
/// panicking code under it) would leave it usable, so poisoning is ignored.
pub(super) fn lock(a: &Mutex<Admission>) -> std::sync::MutexGuard<'_, Admission> {
    a.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
