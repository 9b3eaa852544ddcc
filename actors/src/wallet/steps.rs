//! The changes a shared node's requests make to a wallet, as steps the
//! writer runs on the locked row (`shared.rs`).

use oneflow::Credits;
use oneflow::ledger::Wallet;

use crate::store::WriteOp;

use super::messages::{Finish, Finished, Settlement, WalletError};

/// A change's result and the rows that record it.
pub(super) type Step<R> = Result<(R, Vec<WriteOp>), WalletError>;

/// The change a finish makes: the charge or release, the request's record,
/// and (for a success with a key) the key's answer.
pub(super) fn finish_step(
    m: Finish,
    user: String,
    keep: bool,
) -> impl FnOnce(&mut Wallet) -> Step<Finished> + Send + 'static {
    move |w| {
        let (entries, charged, shortfall) = match &m.settlement {
            Settlement::Charge(cost) => {
                let s = w.settle(m.hold_id, *cost, m.now)?;
                (s.entries, s.charged, s.shortfall)
            }
            Settlement::Release(note) => (
                vec![w.release(m.hold_id, Some(note), m.now)?],
                Credits::ZERO,
                Credits::ZERO,
            ),
        };
        let finished = Finished {
            charged,
            balance: w.balance,
            available: w.available(),
        };
        let mut record = m.record;
        record.cost = charged;
        record.shortfall = shortfall;
        let mut ops: Vec<WriteOp> = entries.into_iter().map(WriteOp::AppendEntry).collect();
        ops.push(WriteOp::DeleteHold {
            user_id: user.clone(),
            id: m.hold_id,
        });
        ops.push(WriteOp::PutRequest(record));
        if let (Some((key, mut idem)), true) = (m.idem, keep) {
            if let Some(r) = idem.result.as_mut() {
                r.cost = charged;
                r.balance = finished.balance;
                r.available = finished.available;
            }
            idem.at = m.now;
            ops.push(WriteOp::PutIdempotency {
                user_id: user,
                key,
                record: Box::new(idem),
            });
        }
        Ok((finished, ops))
    }
}
