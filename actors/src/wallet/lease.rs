//! A shared node's lease and its sweep, two tasks on the connections'
//! thread (`store/postgres/pool.rs`), apart so that a long sweep never
//! delays a renewal:
//!
//! - the **lease** is renewed every quarter of `storage.hold_lease_secs`
//!   on a connection of its own, outside the pool, so busy requests or slow
//!   exports holding every pooled connection cannot let it lapse. A node
//!   that has not renewed it for three quarters of a lease takes no new
//!   holds ([`Beat::fresh`]): by the time the others may take it for dead,
//!   it has stopped adding to what they would release. If the node's writer
//!   has died, the lease is not renewed: the process stops, as a single
//!   node does when its persistence thread ends;
//! - the **sweep** releases the holds of nodes whose lease ran out, and
//!   this node's own holds and idempotency claims that no request of it
//!   waits on any more (a commit whose answer was lost), and deletes
//!   expired idempotency answers (one node at a time). Each turn is bounded
//!   in time; what is left waits for the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use oneflow::ledger::Refusal;
use oneflow::time::Millis;

use crate::store::{OpenHold, StoreError, WriteOp};

use super::messages::WalletError;
use super::shared::SharedWallets;

/// Most holds or claims one sweep query returns.
const SWEEP_BATCH: i64 = 1000;
/// Most expired idempotency answers one purge deletes.
const PURGE_BATCH: usize = 10_000;

/// When this node last renewed its lease.
pub(super) struct Beat {
    base: Instant,
    /// Milliseconds after `base` of the last renewal.
    last: AtomicU64,
}

impl Beat {
    /// Renewed now (the node registered itself just before).
    pub(super) fn new() -> Beat {
        Beat {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn renewed(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Renewed within `within`.
    pub(super) fn fresh(&self, within: Duration) -> bool {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last) < within
    }
}

/// Starts both tasks; they end when `stop` says so.
pub(super) fn start(w: &SharedWallets, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let every = w.lease() / 4;
    let pg = w.store().pg().clone();
    let renew = {
        let (w, mut stop) = (w.downgrade(), stop.clone());
        pg.spawn(async move {
            let mut conn = None;
            while pause(&mut stop, every).await {
                let Some(w) = SharedWallets::upgrade(&w) else { break };
                if w.writer_gone() {
                    eprintln!(
                        "oneflow: FATAL: the shared store's writer stopped; stopping so that other nodes release this node's holds"
                    );
                    std::process::exit(70);
                }
                renew_once(&w, &mut conn).await;
            }
        })
    };
    let sweep = {
        let (w, mut stop) = (w.downgrade(), stop);
        pg.spawn(async move {
            while pause(&mut stop, every).await {
                let Some(w) = SharedWallets::upgrade(&w) else {
                    break;
                };
                let started = Instant::now();
                let outcome = sweep_once(&w, started + every).await;
                if let Some(r) = w.reporter() {
                    r.ran(started, outcome, every);
                }
            }
        })
    };
    vec![renew, sweep]
}

/// Sleeps `d`; `false` once the node stops.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let slept = tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        _ = tokio::time::sleep(d) => true,
    };
    slept && !*stop.borrow()
}

async fn renew_once(w: &SharedWallets, conn: &mut Option<tokio_postgres::Client>) {
    let store = w.store();
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        match store.pg().dedicated().await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                eprintln!("oneflow: cannot reach the shared store to renew this node's lease: {e}");
                return;
            }
        }
    }
    let Some(c) = conn.as_ref() else { return };
    match store.heartbeat(c).await {
        Ok(()) => w.beat().renewed(),
        Err(e) => {
            eprintln!("oneflow: renewing this node's lease failed: {e}");
            *conn = None;
        }
    }
}

/// One turn of the sweep; every step runs even when one before failed,
/// and the failures are returned together.
async fn sweep_once(w: &SharedWallets, until: Instant) -> Result<(), String> {
    let mut failed = Vec::new();
    if let Err(e) = release_orphans(w, until).await {
        failed.push(format!("releasing holds of stopped nodes failed: {e}"));
    }
    let store = w.store();
    let lease_ms = w.lease().as_millis() as i64;
    if let Err(e) = store.drop_dead_claims(lease_ms).await {
        failed.push(format!(
            "freeing idempotency keys of stopped nodes failed: {e}"
        ));
    }
    let now = crate::ids::now_ms();
    match store.own_old_claims(now - lease_ms).await {
        Ok(claims) => {
            for (user, key) in claims {
                if !w.has_claim(&user, &key) {
                    let _ = store.drop_claim(&user, &key).await;
                }
            }
        }
        Err(e) => failed.push(format!(
            "reading this node's idempotency claims failed: {e}"
        )),
    }
    let retention = w.retention_ms();
    if let Err(e) = store
        .purge_answers(now.saturating_sub(retention), PURGE_BATCH)
        .await
    {
        failed.push(format!("purging expired idempotency answers failed: {e}"));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Releases the holds of nodes whose lease ran out, and this node's own
/// holds older than a lease that no request of it waits on, until `until`.
/// Returns how many this node released.
pub(super) async fn release_orphans(
    w: &SharedWallets,
    until: Instant,
) -> Result<usize, StoreError> {
    let store = w.store();
    let lease_ms = w.lease().as_millis() as i64;
    let now = crate::ids::now_ms();
    let mut orphans = store.orphan_holds(lease_ms, SWEEP_BATCH).await?;
    let others = orphans.len();
    orphans.extend(
        store
            .own_old_holds(now - lease_ms, SWEEP_BATCH)
            .await?
            .into_iter()
            .filter(|o| !w.is_open(&o.hold.hold.user_id, o.hold.hold.id)),
    );
    let (mut released, mut of_others) = (0, 0);
    for (i, o) in orphans.iter().enumerate() {
        if Instant::now() >= until {
            break;
        }
        match release(w, &o.hold, now).await {
            Ok(true) => {
                released += 1;
                if i < others {
                    of_others += 1;
                }
            }
            Ok(false) => {}
            Err(e) => eprintln!("oneflow: releasing hold {} failed: {e}", o.hold.hold.id),
        }
    }
    if of_others > 0 {
        eprintln!("oneflow: released {of_others} holds left by stopped nodes");
    }
    if released > of_others {
        let own = released - of_others;
        eprintln!("oneflow: released {own} holds of this node that no request waited on");
    }
    Ok(released)
}

/// `false`: another node released it first (the row that still named it
/// is deleted).
async fn release(w: &SharedWallets, open: &OpenHold, now: Millis) -> Result<bool, WalletError> {
    let store = w.store();
    let h = open.hold.clone();
    let record = match store.has_request(&h.request_id).await {
        Ok(true) => None,
        Ok(false) => Some(open.interrupted()),
        Err(e) => return Err(WalletError::Store(Arc::new(e))),
    };
    let user = h.user_id.clone();
    let uid = user.clone();
    let result = w
        .change(&user, true, move |wallet| {
            let note = "released: the node running the request stopped";
            let entry = wallet.release(h.id, Some(note), now)?;
            let mut ops = vec![
                WriteOp::AppendEntry(entry),
                WriteOp::DeleteHold {
                    user_id: uid,
                    id: h.id,
                },
            ];
            if let Some(r) = record {
                ops.push(WriteOp::PutRequest(Box::new(r)));
            }
            Ok(((), ops))
        })
        .await;
    match result {
        Ok(()) => {
            crate::metrics::hold_closed();
            Ok(true)
        }
        Err(WalletError::Refused(Refusal::UnknownHold(id))) => {
            store
                .forget_hold(&user, id)
                .await
                .map_err(|e| WalletError::Store(Arc::new(e)))?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
