//! The persistence actor: one thread that owns the redb writer and group
//! commits whatever is queued.
//!
//! No timer: the thread blocks for the first job, takes everything else
//! already queued (up to `max_batch` writes), commits it with
//! `Durability::Immediate`, answers every sender, and takes again. A lone
//! write waits for one commit; under load one commit carries many.
//!
//! Writes nobody waits for (a new hold: it moves no money) never get a
//! commit of their own: they wait in memory and ride with the next commit
//! somebody waits for, which is usually their own request's settle, so a
//! hold opened and closed meanwhile is never written at all. A crash before
//! that commit loses them whole, as if the request had never started (its
//! client was never answered); a hold that was written is released at the
//! next start.
//!
//! The queue is bounded (`queue.rs`), and a write nobody waits for does
//! not wake the thread. Callers that must not be refused later (a settle
//! after a hold) reserve their slot up front with [`Persistence::reserve`].
//!
//! The thread ending for any reason other than a shutdown (a failed commit,
//! a panic) ends the process with a non-zero code: nothing may be
//! acknowledged without a writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::store::{Store, StoreError, WriteOp};

mod queue;

use queue::Queue;
pub use queue::Slot;

/// A batch of writes and, if the sender waits, where to answer after commit.
/// `done: None` is only for writes that change no money (a new hold): they
/// wait for the next commit somebody waits for.
pub struct Job {
    pub ops: Vec<WriteOp>,
    pub done: Option<oneshot::Sender<Result<(), Arc<StoreError>>>>,
}

/// Counters the metrics and the load bench read.
#[derive(Debug, Default)]
pub struct PersistenceStats {
    pub commits: AtomicU64,
    pub writes: AtomicU64,
    pub commit_micros: AtomicU64,
    /// Times the thread woke from waiting for work.
    pub wakes: AtomicUsize,
}

/// Commit figures as the API reports them.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CommitFigures {
    pub commits: u64,
    pub writes: u64,
    pub mean_writes_per_commit: f64,
    pub mean_commit_us: f64,
}

/// The queue is full: the client should come back shortly.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the store is busy; retry shortly")]
pub struct Busy;

/// Handle to the persistence thread. Cheap to clone.
#[derive(Clone)]
pub struct Persistence {
    queue: Arc<Queue>,
    /// Stops the thread when the last handle goes, as a channel ends
    /// when its last sender does.
    _last: Arc<StopOnDrop>,
    pub stats: Arc<PersistenceStats>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Persistence {
    /// Starts the thread. `queue` bounds waiting jobs; `max_batch` bounds
    /// the writes of one commit.
    /// Fails only if the thread cannot be started.
    pub fn start(
        store: Arc<dyn Store>,
        queue: usize,
        max_batch: usize,
    ) -> std::io::Result<Persistence> {
        let q = Queue::new(queue.max(2));
        let stats = Arc::new(PersistenceStats::default());
        let (s, rx) = (stats.clone(), q.clone());
        let handle = std::thread::Builder::new()
            .name("oneflow-persistence".into())
            .spawn(move || {
                batch_scheduling();
                let run = std::panic::AssertUnwindSafe(|| run(store, rx, max_batch.max(1), s));
                if std::panic::catch_unwind(run).is_err() {
                    // The panic message is already on stderr. Wallets have
                    // changed memory the file may not show: stop before
                    // anything else is acknowledged.
                    fatal("the persistence thread panicked");
                }
            })?;
        Ok(Persistence {
            _last: Arc::new(StopOnDrop(q.clone())),
            queue: q,
            stats,
            thread: Arc::new(std::sync::Mutex::new(Some(handle))),
        })
    }

    /// Reserves a slot now, for a write to be sent later.
    pub fn reserve(&self) -> Result<Slot, Busy> {
        self.queue.try_slot().ok_or(Busy)
    }

    /// Writes `ops` and waits until they are committed.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<(), Arc<StoreError>> {
        let (done, rx) = oneshot::channel();
        // Rare operations (users, keys) wait for room rather than fail: the
        // queue drains at commit speed.
        let slot = self
            .queue
            .wait_slot()
            .await
            .ok_or_else(|| Arc::new(StoreError::Closed))?;
        slot.send(Job {
            ops,
            done: Some(done),
        });
        rx.await.map_err(|_| Arc::new(StoreError::Closed))?
    }

    /// Waits until every write queued before it (holds riding for a
    /// commit too) is committed.
    pub async fn flush(&self) -> Result<(), Arc<StoreError>> {
        self.write(Vec::new()).await
    }

    pub fn figures(&self) -> CommitFigures {
        let commits = self.stats.commits.load(Ordering::Relaxed);
        let writes = self.stats.writes.load(Ordering::Relaxed);
        let micros = self.stats.commit_micros.load(Ordering::Relaxed);
        let per = |n: u64| {
            if commits == 0 {
                0.0
            } else {
                n as f64 / commits as f64
            }
        };
        CommitFigures {
            commits,
            writes,
            mean_writes_per_commit: per(writes),
            mean_commit_us: per(micros),
        }
    }

    /// Writes queued now.
    pub fn depth(&self) -> usize {
        self.queue.depth()
    }

    /// Commits everything queued and stops the thread; waits for it.
    pub async fn shutdown(&self) {
        self.queue.stop();
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// Puts the calling thread under Linux's `SCHED_BATCH`: the same share
/// of the CPU, but waking it does not preempt the thread that woke it.
/// A settle wakes this thread. Preempting the HTTP worker then (they may
/// share a core) commits that one settle alone and switches back; letting
/// the worker go on until it waits gathers every settle it makes meanwhile
/// into the next commit. Under the bench's load this took the thread's
/// sleeps from 0.6 to 0.17 per request and the worker's preemptions from
/// 1.0 to 0.2 (docs/performance.md). An idle worker waits at once, so a
/// lone settle is committed as soon as before. Where the policy cannot be
/// set, nothing changes but that.
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityOsValue,
            ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
        };
        let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
        // For a normal policy the crate also sets the niceness: 0, the
        // default, so the thread's share of the CPU stays what it was.
        let nice = ThreadPriority::Os(ThreadPriorityOsValue::default());
        if let Err(e) = set_thread_priority_and_policy(thread_native_id(), nice, batch) {
            eprintln!("oneflow: the persistence thread's SCHED_BATCH at nice 0 was refused: {e:?}");
        }
    }
}

struct StopOnDrop(Arc<Queue>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Ends the process: the exit code says the writer failed (EX_SOFTWARE).
fn fatal(why: &str) -> ! {
    eprintln!("oneflow: FATAL: {why}; stopping so the next start recovers from the last commit");
    std::process::exit(70);
}

fn run(store: Arc<dyn Store>, queue: Arc<Queue>, max_batch: usize, stats: Arc<PersistenceStats>) {
    // Writes nobody waits for, kept until a commit somebody waits for.
    let mut riding: Vec<WriteOp> = Vec::new();
    loop {
        let taken = queue.take(max_batch, &stats.wakes);
        let stopping = taken.last;
        let mut ops = std::mem::take(&mut riding);
        let mut replies = Vec::new();
        for j in taken.jobs {
            ops.extend(j.ops);
            replies.extend(j.done);
        }
        if replies.is_empty() && !stopping {
            // Only possible when the waited-for write lies past this
            // batch's bound: the next take reaches it without sleeping.
            riding = ops;
            continue;
        }
        if ops.is_empty() {
            // Nothing was waiting to be written: a flush is answered at once.
            for r in replies {
                let _ = r.send(Ok(()));
            }
            if stopping {
                break;
            }
            continue;
        }
        let n = ops.len();
        let started = Instant::now();
        #[cfg(feature = "failpoints")]
        failpoint(stats.commits.load(Ordering::Relaxed));
        let result = store.commit(ops).map_err(Arc::new);
        let took = started.elapsed();
        crate::metrics::commit(n, took);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.writes.fetch_add(n as u64, Ordering::Relaxed);
        stats
            .commit_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            // Fail-stop. The wallets have already applied these changes in
            // memory and later batches carry snapshots that include them, so
            // carrying on would write money the ledger does not show, and a
            // retried fsync may report success for pages the kernel dropped.
            // Nothing of this batch was acknowledged; the next start recovers
            // from the last commit (and releases the holds open in it).
            fatal(&format!("commit of {n} writes failed: {e}"));
        }
        for r in replies {
            let _ = r.send(result.clone());
        }
        if stopping {
            break;
        }
    }
    queue.close();
}

/// Test builds only (feature `failpoints`): panics before commit number
/// `ONEFLOW_FAILPOINT_PANIC_AT_COMMIT` (counted from 0), so a test can watch
/// the process stop.
#[cfg(feature = "failpoints")]
fn failpoint(commits: u64) {
    let at = std::env::var("ONEFLOW_FAILPOINT_PANIC_AT_COMMIT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if at == Some(commits) {
        panic!("failpoint: the persistence thread panics before commit {commits}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RedbStore;
    use oneflow::Credits;
    use oneflow::ledger::{EntryKind, LedgerEntry};

    fn entry(user: &str, seq: u64) -> WriteOp {
        WriteOp::AppendEntry(LedgerEntry {
            user_id: user.into(),
            seq,
            kind: EntryKind::TopUp,
            amount: Credits(1),
            balance_after: Credits(seq as i64),
            available_after: Credits(seq as i64),
            hold_id: None,
            request_id: None,
            note: None,
            at: 0,
        })
    }

    /// Many writers at once share commits, every write is answered only
    /// once committed, and all of them are in the file afterwards.
    #[actix_rt::test]
    async fn concurrent_writes_are_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("t.redb")).unwrap());
        let p = Persistence::start(store.clone(), 1024, 4096).unwrap();
        let n = 400u64;
        // One user's entries reach the queue in their order, as a wallet
        // sends them (under its lock); all are in flight at once.
        let waits: Vec<_> = (1..=n)
            .map(|seq| {
                let (done, rx) = oneshot::channel();
                p.reserve().unwrap().send(Job {
                    ops: vec![entry("u", seq)],
                    done: Some(done),
                });
                rx
            })
            .collect();
        for rx in waits {
            rx.await.unwrap().unwrap();
        }
        let commits = p.stats.commits.load(Ordering::Relaxed);
        assert_eq!(p.stats.writes.load(Ordering::Relaxed), n);
        assert!(commits < n, "{commits} commits for {n} writes: no grouping");
        let page = store.transactions_page("u", None, 1000).unwrap();
        assert_eq!(page.len() as u64, n);
        assert_eq!(page[0].seq, n, "newest first");
        // Paging by cursor walks the rest without overlap.
        let first = store.transactions_page("u", None, 150).unwrap();
        let second = store
            .transactions_page("u", Some(first[149].seq), 150)
            .unwrap();
        assert_eq!(second[0].seq, first[149].seq - 1);
        p.shutdown().await;
    }

    /// A write nobody waits for (a hold) neither wakes the thread nor gets
    /// a commit of its own: it waits in the queue, in its place, and is
    /// committed with the next write somebody waits for, in one commit.
    #[actix_rt::test]
    async fn a_write_nobody_waits_for_rides_with_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("t.redb")).unwrap());
        let p = Persistence::start(store.clone(), 16, 100).unwrap();
        let pause = || tokio::time::sleep(std::time::Duration::from_millis(30));
        // Time for the thread to reach its first wait, then for it to
        // wake had a hold woken it.
        pause().await;
        for seq in 1..=5 {
            p.reserve().unwrap().send(Job {
                ops: vec![entry("h", seq)],
                done: None,
            });
        }
        pause().await;
        assert_eq!(
            p.stats.wakes.load(Ordering::Relaxed),
            0,
            "a hold woke the thread"
        );
        assert_eq!(p.depth(), 5, "the holds wait in the queue");
        assert_eq!(p.stats.commits.load(Ordering::Relaxed), 0);
        assert!(store.transactions_page("h", None, 10).unwrap().is_empty());
        p.write(vec![entry("w", 1)]).await.unwrap();
        assert_eq!(
            p.stats.commits.load(Ordering::Relaxed),
            1,
            "one commit for all"
        );
        assert_eq!(p.depth(), 0);
        assert_eq!(store.transactions_page("h", None, 10).unwrap().len(), 5);
        assert_eq!(store.transactions_page("w", None, 10).unwrap().len(), 1);
        p.shutdown().await;
    }

    /// A queue full of writes nobody waits for is taken into the thread's
    /// memory when a writer finds no room, so a write that waits for room
    /// gets it without any settle coming.
    #[actix_rt::test]
    async fn a_queue_full_of_holds_makes_room() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("t.redb")).unwrap());
        let p = Persistence::start(store.clone(), 4, 100).unwrap();
        for seq in 1..=4 {
            p.reserve().unwrap().send(Job {
                ops: vec![entry("h", seq)],
                done: None,
            });
        }
        p.write(vec![entry("w", 1)]).await.unwrap();
        assert_eq!(store.transactions_page("h", None, 10).unwrap().len(), 4);
        assert_eq!(store.transactions_page("w", None, 10).unwrap().len(), 1);
        p.shutdown().await;
    }

    /// Shutting down commits what is queued, holds included, and a write
    /// after it reads "closed" instead of waiting forever.
    #[actix_rt::test]
    async fn shutdown_commits_what_is_queued_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("t.redb")).unwrap());
        let p = Persistence::start(store.clone(), 16, 100).unwrap();
        p.reserve().unwrap().send(Job {
            ops: vec![entry("h", 1)],
            done: None,
        });
        p.shutdown().await;
        assert_eq!(store.transactions_page("h", None, 10).unwrap().len(), 1);
        let after = p.write(vec![entry("w", 1)]).await;
        assert!(
            matches!(after.as_ref().map_err(|e| &**e), Err(StoreError::Closed)),
            "{after:?}"
        );
    }

    /// The writer runs under SCHED_BATCH (policy 3 in the kernel's
    /// numbering), so a settle waking it does not preempt the worker.
    #[cfg(target_os = "linux")]
    #[actix_rt::test]
    async fn the_writer_runs_under_sched_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("t.redb")).unwrap());
        let p = Persistence::start(store, 16, 100).unwrap();
        // The thread sets its policy first thing; a flush answered means
        // it has run.
        p.flush().await.unwrap();
        let policies: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
            .filter(|stat| stat.contains("(oneflow-persist)"))
            // Fields after the name, which ends at the last ')': the
            // policy is the 41st field of the whole line, the 39th after.
            .filter_map(|stat| {
                let rest = &stat[stat.rfind(')')? + 2..];
                rest.split(' ').nth(38).map(str::to_string)
            })
            .collect();
        assert_eq!(policies, vec!["3".to_string()], "SCHED_BATCH is 3");
        p.shutdown().await;
    }

    /// A flush commits what rides (a hold nobody waits for yet), and a
    /// flush with nothing to write is answered at once, not dropped.
    #[actix_rt::test]
    async fn a_flush_commits_what_rides_and_answers_when_nothing_does() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("t.redb")).unwrap());
        let p = Persistence::start(store.clone(), 16, 100).unwrap();
        p.flush().await.unwrap();
        assert_eq!(p.stats.commits.load(Ordering::Relaxed), 0);
        p.reserve().unwrap().send(Job {
            ops: vec![entry("h", 1)],
            done: None,
        });
        p.flush().await.unwrap();
        assert_eq!(p.stats.commits.load(Ordering::Relaxed), 1);
        assert_eq!(store.transactions_page("h", None, 10).unwrap().len(), 1);
        p.flush().await.unwrap();
        p.shutdown().await;
    }

    /// A reserved slot can always be used, even when the queue is
    /// otherwise full; a full queue refuses new reservations.
    #[actix_rt::test]
    async fn reserved_slots_survive_a_full_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("t.redb")).unwrap());
        let p = Persistence::start(store.clone(), 2, 10).unwrap();
        let a = p.reserve().unwrap();
        let b = p.reserve().unwrap();
        assert!(p.reserve().is_err(), "a third slot in a queue of two");
        let (done, rx) = oneshot::channel();
        b.send(Job {
            ops: vec![entry("v", 2)],
            done: Some(done),
        });
        a.send(Job {
            ops: vec![entry("v", 1)],
            done: None,
        });
        rx.await.unwrap().unwrap();
        p.shutdown().await;
        assert_eq!(store.transactions_page("v", None, 10).unwrap().len(), 2);
    }
}
