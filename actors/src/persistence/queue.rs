//! The persistence thread's queue: bounded, ordered, and waking the thread
//! only for a write somebody waits for.
//!
//! A hold is sent here on every request and needs no commit of its own.
//! Through a channel that wakes its receiver on every message, each hold
//! woke the sleeping thread only for it to find nothing to commit and
//! sleep again: about one wake-up per request, each a switch to the
//! thread and back on a busy core (docs/performance.md). Here a write
//! nobody waits for is queued without waking anyone; it is taken, in its
//! place in the order, with the next write somebody waits for.
//!
//! Room is counted in slots: a slot is taken when reserved and freed when
//! the thread takes its message off the queue, so a reserved slot can
//! always be sent through.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::Job;

struct State {
    jobs: VecDeque<Job>,
    /// Queued jobs somebody waits for: the thread sleeps while none is.
    wanted: usize,
    /// Set by [`Queue::stop`]: take what is queued, commit it, end.
    stopping: bool,
    /// Set when a writer found no room: the thread takes what is queued
    /// (holds ride in its memory, as they would have with a waiter), so
    /// a queue full of holds frees its slots without waiting for a
    /// settle.
    drain: bool,
    /// The thread has ended: what is sent now is dropped, and its
    /// sender told the queue is closed (its answer channel drops).
    closed: bool,
}

pub(super) struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    /// Slots reserved or queued; never above `cap`.
    used: AtomicUsize,
    cap: usize,
    /// Wakes writers waiting for room ([`Queue::wait_slot`]).
    room: tokio::sync::Notify,
}

/// What the thread takes in one go.
pub(super) struct Taken {
    pub jobs: Vec<Job>,
    /// The queue is stopping and nothing is left after these.
    pub last: bool,
}

impl Queue {
    pub(super) fn new(cap: usize) -> Arc<Queue> {
        Arc::new(Queue {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                wanted: 0,
                stopping: false,
                drain: false,
                closed: false,
            }),
            ready: Condvar::new(),
            used: AtomicUsize::new(0),
            cap,
            room: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock can panic half-way through a change.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot if there is room; if there is none, asks the thread
    /// to take what is queued.
    pub(super) fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < self.cap).then_some(u + 1)
            });
        if taken.is_err() {
            let mut s = self.lock();
            if !s.drain && !s.jobs.is_empty() {
                s.drain = true;
                drop(s);
                self.ready.notify_one();
            }
            return None;
        }
        Some(Slot {
            queue: Some(self.clone()),
        })
    }

    /// Takes a slot, waiting for room; `None` once the thread has ended.
    pub(super) async fn wait_slot(self: &Arc<Self>) -> Option<Slot> {
        loop {
            // Created before the check, so a slot freed after the check
            // wakes it (`notify_waiters` reaches every `Notified` made
            // before the call, polled or not).
            let room = self.room.notified();
            if self.lock().closed {
                return None;
            }
            if let Some(slot) = self.try_slot() {
                return Some(slot);
            }
            room.await;
        }
    }

    /// Frees `n` slots, waking writers waiting for room if it was full.
    fn free(&self, n: usize) {
        if n > 0 && self.used.fetch_sub(n, Ordering::AcqRel) >= self.cap {
            self.room.notify_waiters();
        }
    }

    /// Reserved or queued slots.
    pub(super) fn depth(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn push(&self, job: Job) {
        let mut s = self.lock();
        if s.closed {
            drop(s);
            // Its answer channel drops with it: the sender reads "closed".
            self.free(1);
            return;
        }
        let wake = job.done.is_some();
        s.jobs.push_back(job);
        if wake {
            s.wanted += 1;
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Asks the thread to commit what is queued and end.
    pub(super) fn stop(&self) {
        self.lock().stopping = true;
        self.ready.notify_one();
    }

    /// For the thread: sleeps until a queued job is waited for (or the
    /// queue stops, or a writer found it full), then takes jobs in order
    /// until they carry `max_ops` writes (all of them when stopping).
    /// `woke` counts the sleeps ended.
    pub(super) fn take(&self, max_ops: usize, woke: &AtomicUsize) -> Taken {
        let mut s = self.lock();
        while s.wanted == 0 && !s.stopping && !s.drain {
            s = self.ready.wait(s).unwrap_or_else(PoisonError::into_inner);
            woke.fetch_add(1, Ordering::Relaxed);
        }
        s.drain = false;
        let mut jobs = Vec::new();
        let mut ops = 0;
        while let Some(job) = s.jobs.pop_front() {
            ops += job.ops.len();
            if job.done.is_some() {
                s.wanted -= 1;
            }
            jobs.push(job);
            if ops >= max_ops && !s.stopping {
                break;
            }
        }
        let last = s.stopping && s.jobs.is_empty();
        drop(s);
        self.free(jobs.len());
        Taken { jobs, last }
    }

    /// For the thread, as it ends: nothing more is taken, and jobs still
    /// queued are dropped (their senders read "closed").
    pub(super) fn close(&self) {
        let left = {
            let mut s = self.lock();
            s.closed = true;
            s.wanted = 0;
            std::mem::take(&mut s.jobs)
        };
        self.free(left.len());
        drop(left);
        self.room.notify_waiters();
    }
}

/// A slot reserved in the queue: sending through it never waits or fails
/// for want of room. Dropped unsent, it frees its slot.
pub struct Slot {
    queue: Option<Arc<Queue>>,
}

impl Slot {
    pub fn send(mut self, job: Job) {
        if let Some(q) = self.queue.take() {
            q.push(job);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(q) = self.queue.take() {
            q.free(1);
        }
    }
}
