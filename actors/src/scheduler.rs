//! The one scheduler of the runtime's background work: reports, webhook
//! deliveries, alerts and the purges. A task is a name, a period and an
//! async function; the scheduler runs it on the broker's arbiter, one run
//! at a time, records each run (when, how long, whether it failed) for
//! `/api/status` and `/metrics`, and stops every task when the broker
//! stops.
//!
//! Two loops are older than this and stay where they must run: the wallet
//! sweeper's idempotency purge (a thread of the single node's wallets) and
//! the shared store's sweep (the PostgreSQL connections' thread, next to
//! the lease it must never delay). They report each run here through a
//! [`Reporter`], so every background task shows in one list.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use oneflow::time::Millis;

use crate::ids::now_ms;
use crate::metrics;
use crate::views::TaskView;

/// Longest error text kept for a task's last failure.
const MAX_ERROR_CHARS: usize = 500;

#[derive(Clone, Debug, Default)]
struct State {
    every_ms: u64,
    last_run_at: Option<Millis>,
    last_duration_ms: Option<u64>,
    last_error: Option<String>,
    next_run_at: Option<Millis>,
    runs: u64,
    failures: u64,
}

/// The tasks and their last runs. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    tasks: Arc<Mutex<BTreeMap<&'static str, State>>>,
    stop: watch::Sender<bool>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler {
            tasks: Arc::default(),
            stop: watch::channel(false).0,
        }
    }
}

/// Where a loop the scheduler does not run records its runs.
#[derive(Clone, Debug)]
pub struct Reporter {
    name: &'static str,
    tasks: Arc<Mutex<BTreeMap<&'static str, State>>>,
}

impl Reporter {
    /// One run that began at `started` ended with `outcome`; the next is
    /// due after `every`.
    pub fn ran(&self, started: Instant, outcome: Result<(), String>, every: Duration) {
        record(&self.tasks, self.name, started, outcome, every);
    }
}

fn record(
    tasks: &Mutex<BTreeMap<&'static str, State>>,
    name: &'static str,
    started: Instant,
    outcome: Result<(), String>,
    every: Duration,
) {
    let took = started.elapsed();
    let now = now_ms();
    metrics::task_ran(name, outcome.is_ok(), now);
    let Ok(mut t) = tasks.lock() else { return };
    let s = t.entry(name).or_default();
    s.every_ms = every.as_millis() as u64;
    s.last_run_at = Some(now.saturating_sub(took.as_millis() as Millis));
    s.last_duration_ms = Some(took.as_millis() as u64);
    s.runs += 1;
    s.next_run_at = Some(now + every.as_millis() as Millis);
    match outcome {
        Ok(()) => s.last_error = None,
        Err(e) => {
            s.failures += 1;
            eprintln!("oneflow: background task {name} failed: {e}");
            s.last_error = Some(e.chars().take(MAX_ERROR_CHARS).collect());
        }
    }
}

impl Scheduler {
    /// Runs `run` every `every`, the first time after `first`, on the
    /// current tokio runtime, until [`Scheduler::stop`]. A run that takes
    /// longer than `every` delays the next; runs never overlap.
    pub fn every<F, Fut>(&self, name: &'static str, first: Duration, every: Duration, mut run: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.announce(name, first, every);
        let tasks = self.tasks.clone();
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            let mut wait = first;
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                let started = Instant::now();
                let outcome = run().await;
                record(&tasks, name, started, outcome, every);
                wait = every;
            }
        });
    }

    /// A loop that runs elsewhere reports to this name.
    pub fn reporter(&self, name: &'static str, first: Duration, every: Duration) -> Reporter {
        self.announce(name, first, every);
        Reporter {
            name,
            tasks: self.tasks.clone(),
        }
    }

    fn announce(&self, name: &'static str, first: Duration, every: Duration) {
        metrics::task_announced(name);
        if let Ok(mut t) = self.tasks.lock() {
            let s = t.entry(name).or_default();
            s.every_ms = every.as_millis() as u64;
            s.next_run_at = Some(now_ms() + first.as_millis() as Millis);
        }
    }

    /// Every task, by name.
    pub fn tasks(&self) -> Vec<TaskView> {
        let Ok(t) = self.tasks.lock() else {
            return Vec::new();
        };
        t.iter()
            .map(|(name, s)| TaskView {
                name: name.to_string(),
                every_ms: s.every_ms,
                last_run_at: s.last_run_at,
                last_duration_ms: s.last_duration_ms,
                last_error: s.last_error.clone(),
                next_run_at: s.next_run_at,
                runs: s.runs,
                failures: s.failures,
            })
            .collect()
    }

    /// Stops every task the scheduler runs (a run under way finishes).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_task_runs_on_its_period_and_its_failures_show() {
        let s = Scheduler::default();
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = n.clone();
        s.every(
            "t",
            Duration::from_secs(1),
            Duration::from_secs(10),
            move || {
                let k = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if k == 1 {
                        Err("second run fails".into())
                    } else {
                        Ok(())
                    }
                }
            },
        );
        let before = s.tasks();
        assert_eq!(before.len(), 1);
        assert_eq!((before[0].runs, before[0].last_run_at), (0, None));
        assert!(before[0].next_run_at.is_some());
        tokio::time::sleep(Duration::from_millis(21_500)).await;
        let t = &s.tasks()[0];
        assert_eq!((t.runs, t.failures), (3, 1));
        assert_eq!(t.every_ms, 10_000);
        assert_eq!(t.last_error, None, "the third run succeeded");
        s.stop();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            n.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "no run after stop"
        );
    }

    #[test]
    fn a_reporter_shows_runs_made_elsewhere() {
        let s = Scheduler::default();
        let r = s.reporter("elsewhere", Duration::ZERO, Duration::from_secs(5));
        r.ran(
            Instant::now(),
            Err("x".repeat(2000)),
            Duration::from_secs(5),
        );
        let t = &s.tasks()[0];
        assert_eq!((t.name.as_str(), t.runs, t.failures), ("elsewhere", 1, 1));
        assert_eq!(
            t.last_error.as_ref().map(|e| e.len()),
            Some(MAX_ERROR_CHARS)
        );
    }
}
