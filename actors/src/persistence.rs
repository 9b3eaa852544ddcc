//! The persistence actor: one thread that owns the redb writer and group
//! commits whatever is queued.
//!
//! No timer: the thread blocks for the first job, takes everything else
//! already queued (up to `max_batch` writes), commits it with
//! `Durability::Immediate`, answers every sender, and takes again. A lone
//! write waits for one commit; under load one commit carries many.
//!
//! The queue is bounded. Callers that must not be refused later (a settle
//! after a hold) reserve their slot up front with [`Persistence::reserve`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError, WriteOp};

/// A batch of writes and, if the sender waits, where to answer after commit.
pub struct Job {
    pub ops: Vec<WriteOp>,
    pub done: Option<oneshot::Sender<Result<(), Arc<StoreError>>>>,
}

enum Msg {
    Write(Job),
    /// Commit what is queued, then stop the thread.
    Shutdown,
}

/// A slot reserved in the queue: sending through it never waits or fails
/// for want of room.
pub struct Slot(mpsc::OwnedPermit<Msg>);

impl Slot {
    pub fn send(self, job: Job) {
        self.0.send(Msg::Write(job));
    }
}

/// Counters the metrics and the load bench read.
#[derive(Debug, Default)]
pub struct PersistenceStats {
    pub commits: AtomicU64,
    pub writes: AtomicU64,
    pub commit_micros: AtomicU64,
}

/// The queue is full: the client should come back shortly.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the store is busy; retry shortly")]
pub struct Busy;

/// Handle to the persistence thread. Cheap to clone.
#[derive(Clone)]
pub struct Persistence {
    tx: mpsc::Sender<Msg>,
    pub stats: Arc<PersistenceStats>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Persistence {
    /// Starts the thread. `queue` bounds waiting jobs; `max_batch` bounds
    /// the writes of one commit.
    pub fn start(store: Store, queue: usize, max_batch: usize) -> Persistence {
        let (tx, rx) = mpsc::channel(queue.max(2));
        let stats = Arc::new(PersistenceStats::default());
        let s = stats.clone();
        let handle = std::thread::Builder::new()
            .name("oneflow-persistence".into())
            .spawn(move || run(store, rx, max_batch.max(1), s))
            .ok();
        Persistence {
            tx,
            stats,
            thread: Arc::new(std::sync::Mutex::new(handle)),
        }
    }

    /// Reserves a slot now, for a write to be sent later.
    pub fn reserve(&self) -> Result<Slot, Busy> {
        self.tx
            .clone()
            .try_reserve_owned()
            .map(Slot)
            .map_err(|_| Busy)
    }

    /// Writes `ops` and waits until they are committed.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<(), Arc<StoreError>> {
        let (done, rx) = oneshot::channel();
        // Rare operations (users, keys) wait for room rather than fail: the
        // queue drains at commit speed.
        let permit = self
            .tx
            .clone()
            .reserve_owned()
            .await
            .map_err(|_| Arc::new(StoreError::Closed))?;
        Slot(permit).send(Job {
            ops,
            done: Some(done),
        });
        rx.await.map_err(|_| Arc::new(StoreError::Closed))?
    }

    /// Writes queued now.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Commits everything queued and stops the thread; waits for it.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown).await;
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn run(store: Store, mut rx: mpsc::Receiver<Msg>, max_batch: usize, stats: Arc<PersistenceStats>) {
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut jobs = Vec::new();
        let mut n = 0;
        let take = |m: Msg, jobs: &mut Vec<Job>, n: &mut usize| match m {
            Msg::Write(j) => {
                *n += j.ops.len();
                jobs.push(j);
                false
            }
            Msg::Shutdown => true,
        };
        stopping = take(first, &mut jobs, &mut n);
        while n < max_batch || stopping {
            match rx.try_recv() {
                Ok(m) => stopping |= take(m, &mut jobs, &mut n),
                Err(_) => break,
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let started = Instant::now();
        let mut ops = Vec::with_capacity(n);
        let mut replies = Vec::with_capacity(jobs.len());
        for j in jobs {
            ops.extend(j.ops);
            replies.extend(j.done);
        }
        let result = store.commit(ops).map_err(Arc::new);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.writes.fetch_add(n as u64, Ordering::Relaxed);
        stats
            .commit_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            eprintln!("oneflow: commit of {n} writes failed: {e}");
        }
        for r in replies {
            let _ = r.send(result.clone());
        }
    }
    rx.close();
}
