//! The actor in front of one provider and the permits it hands out.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::admission::{Admission, WakeIn, lock};
use crate::coordination::Lease;

/// The actor in front of one provider: the timer that pumps its queue when
/// a rate limiter has room again. Calls run in the caller's task, so one
/// slow upstream never blocks it.
pub struct ProviderWorker {
    pub(super) admission: Arc<Mutex<Admission>>,
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
    pub(super) admission: Arc<Mutex<Admission>>,
    pub(super) worker: Addr<ProviderWorker>,
    /// The slot in the provider's concurrency shared with the other nodes;
    /// given back with the permit.
    pub(super) lease: Option<Lease>,
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
pub(super) struct Queued<'a> {
    pub(super) rx: Option<oneshot::Receiver<()>>,
    pub(super) admission: &'a Arc<Mutex<Admission>>,
    pub(super) worker: &'a Addr<ProviderWorker>,
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
                lease: None,
            });
        }
    }
}
