//! A provider's published figures: rolling health for routing, call
//! counters for the API, and the circuit breaker. Read without messaging
//! anyone.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oneflow::config::CircuitConfig;
use oneflow::routing::Health;

use crate::views::CircuitState;

#[derive(Debug)]
pub(super) struct Circuit {
    pub(super) state: CircuitState,
    pub(super) consecutive_failures: u32,
    pub(super) opened_at: Option<Instant>,
    pub(super) probe_in_flight: bool,
}

// ---- the worker -----------------------------------------------------------

/// Figures a worker publishes for routing and the API; read without
/// messaging the actor.
#[derive(Debug)]
pub struct ProviderStats {
    /// `std` mutexes: held for a few arithmetic operations, never across
    /// await.
    pub(super) health: Mutex<Health>,
    pub(super) circuit: Mutex<Circuit>,
    pub(super) circuit_cfg: CircuitConfig,
    pub queued: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub rejected: AtomicU64,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
}

impl ProviderStats {
    pub(super) fn new(circuit_cfg: CircuitConfig) -> ProviderStats {
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
}
