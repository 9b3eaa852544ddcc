//! What a hold and a finish do to a wallet and which rows record it, the
//! same for a single node's wallet in memory (`cell.rs`) and a shared
//! node's locked row (`shared.rs`).

use oneflow::Credits;
use oneflow::ledger::Wallet;

use crate::store::{IdempotencyRecord, OpenHold, WriteOp};

use super::messages::{Finish, Finished, Reserve, Settlement, WalletError};

/// An idempotency key and the answer to keep for it.
pub(super) type KeyAnswer = (String, IdempotencyRecord);

/// A change's result and the rows that record it.
pub(super) type Step<R> = Result<(R, Vec<WriteOp>), WalletError>;

/// Holds `m.amount`: the hold's id and its rows (its ledger entry, and
/// the hold with what is needed to record its request as interrupted).
pub(super) fn hold(w: &mut Wallet, m: &Reserve) -> Result<(u64, Vec<WriteOp>), WalletError> {
    let key = m.key.as_deref();
    let (hold, entry) = w.hold_with(
        &m.request_id,
        &m.provider,
        m.amount,
        &m.spenders,
        key,
        m.now,
    )?;
    let id = hold.id;
    let open = OpenHold {
        hold,
        model: m.model.clone(),
        modality: m.modality,
        prompt_preview: m.prompt_preview.clone(),
    };
    let ops = vec![
        WriteOp::AppendEntry(entry),
        WriteOp::PutHold(Box::new(open)),
    ];
    Ok((id, ops))
}

/// Charges or releases a finish's hold: the wallet's figures after it, its
/// rows (entries, the hold's end, the request's record), and the key's
/// answer with the figures only the wallet knows (not yet in the rows:
/// whether it is kept is the caller's).
pub(super) fn finish(
    w: &mut Wallet,
    user_id: &str,
    m: Finish,
) -> Result<(Finished, Vec<WriteOp>, Option<KeyAnswer>), WalletError> {
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
        user_id: user_id.to_string(),
        id: m.hold_id,
    });
    ops.push(WriteOp::PutRequest(record));
    let idem = m.idem.map(|(key, mut record)| {
        if let Some(r) = record.result.as_mut() {
            r.cost = charged;
            r.balance = finished.balance;
            r.available = finished.available;
        }
        record.at = m.now;
        (key, record)
    });
    Ok((finished, ops, idem))
}

/// A shared node's finish as a step for its writer: a success with a key
/// also writes the key's answer.
pub(super) fn finish_step(
    m: Finish,
    user: String,
    keep: bool,
) -> impl FnOnce(&mut Wallet) -> Step<Finished> + Send + 'static {
    move |w| {
        let (finished, mut ops, idem) = finish(w, &user, m)?;
        if let (Some((key, record)), true) = (idem, keep) {
            ops.push(WriteOp::PutIdempotency {
                user_id: user,
                key,
                record: Box::new(record),
            });
        }
        Ok((finished, ops))
    }
}
