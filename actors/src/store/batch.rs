//! Applying one batch of writes to the redb file in one transaction.

use std::collections::{HashMap, HashSet};

use redb::{ReadableTable, WriteTransaction};

use oneflow::ledger::LedgerEntry;

use super::IdempotencyRecord;
use super::redb::{
    API_KEYS, BUDGETS, HOLDS, IDEMPOTENCY, IDEMPOTENCY_BY_TIME, PROVIDERS, REQUEST_INDEX, REQUESTS,
    TRANSACTIONS, USERS, WALLETS, dec, enc, key_time,
};
use super::{StoreError, WriteOp, rollups};

/// Applies a batch in one transaction, skipping what a later write in the
/// same batch makes moot: only a user's last wallet snapshot is written, a
/// hold opened and closed within the batch is never written, and rollup
/// deltas are summed first so each rollup row is read and written once.
/// The final state is the same as applying every op in order.
pub(super) fn apply_all(txn: &WriteTransaction, ops: Vec<WriteOp>) -> Result<(), StoreError> {
    let skip = moot(&ops);

    let mut users = txn.open_table(USERS)?;
    let mut keys = txn.open_table(API_KEYS)?;
    let mut wallets = txn.open_table(WALLETS)?;
    let mut budgets = txn.open_table(BUDGETS)?;
    let mut providers = txn.open_table(PROVIDERS)?;
    let mut transactions = txn.open_table(TRANSACTIONS)?;
    let mut holds = txn.open_table(HOLDS)?;
    let mut requests = txn.open_table(REQUESTS)?;
    let mut index = txn.open_table(REQUEST_INDEX)?;
    let mut idempotency = txn.open_table(IDEMPOTENCY)?;
    let mut idem_by_time = txn.open_table(IDEMPOTENCY_BY_TIME)?;
    let mut rollup_deltas = rollups::Deltas::default();
    // Each user's entries of this batch, in the order written: one row each.
    let mut entries: Vec<Vec<LedgerEntry>> = Vec::new();
    let mut entries_of: HashMap<String, usize> = HashMap::new();
    for (op, skip) in ops.into_iter().zip(skip) {
        if skip {
            continue;
        }
        match op {
            WriteOp::PutUser(u) => {
                users.insert(u.id.as_str(), enc(&u)?.as_slice())?;
            }
            WriteOp::PutKey { hash, record } => {
                keys.insert(hash.as_slice(), enc(&record)?.as_slice())?;
            }
            WriteOp::DeleteKey { hash } => {
                keys.remove(hash.as_slice())?;
            }
            WriteOp::PutWallet { user_id, bytes } => {
                wallets.insert(user_id.as_str(), bytes.as_slice())?;
            }
            WriteOp::PutBudget { user_id, budget } => {
                budgets.insert(user_id.as_str(), enc(&budget)?.as_slice())?;
            }
            WriteOp::PutProvider { name, config } => {
                providers.insert(name.as_str(), enc(&config)?.as_slice())?;
            }
            WriteOp::AppendEntry(e) => {
                let next = entries.len();
                let i = *entries_of.entry(e.user_id.clone()).or_insert(next);
                if i == next {
                    entries.push(Vec::new());
                }
                entries[i].push(e);
            }
            WriteOp::PutHold(h) => {
                holds.insert((h.hold.user_id.as_str(), h.hold.id), enc(&*h)?.as_slice())?;
            }
            WriteOp::DeleteHold { user_id, id } => {
                holds.remove((user_id.as_str(), id))?;
            }
            WriteOp::PutRequest(r) => {
                let at = u64::try_from(r.created_at).unwrap_or(0);
                requests.insert(
                    (r.user_id.as_str(), at, r.id.as_str()),
                    enc(&*r)?.as_slice(),
                )?;
                index.insert(r.id.as_str(), (r.user_id.as_str(), at))?;
                rollup_deltas.add(&r);
            }
            WriteOp::PutIdempotency {
                user_id,
                key,
                record,
            } => {
                let at = key_time(record.answered_at());
                let old = idempotency
                    .insert((user_id.as_str(), key.as_str()), enc(&record)?.as_slice())?;
                // A key used again after its record expired replaces it: its
                // old age row goes with it.
                if let Some(old) = old {
                    let old: IdempotencyRecord = dec(old.value())?;
                    idem_by_time.remove((
                        key_time(old.answered_at()),
                        user_id.as_str(),
                        key.as_str(),
                    ))?;
                }
                idem_by_time.insert((at, user_id.as_str(), key.as_str()), ())?;
            }
            WriteOp::PurgeIdempotency { before, limit } => {
                let mut expired = Vec::new();
                for row in idem_by_time
                    .range(..(key_time(before), "", ""))?
                    .take(limit)
                {
                    let (k, _) = row?;
                    let (at, user, key) = k.value();
                    expired.push((at, user.to_string(), key.to_string()));
                }
                for (at, user, key) in &expired {
                    idem_by_time.remove((*at, user.as_str(), key.as_str()))?;
                    idempotency.remove((user.as_str(), key.as_str()))?;
                }
                crate::metrics::idempotency_purged(expired.len());
            }
        }
    }
    for mut row in entries {
        row.sort_by_key(|e| e.seq);
        let first = &row[0];
        transactions.insert((first.user_id.as_str(), first.seq), enc(&row)?.as_slice())?;
    }
    rollup_deltas.apply(txn)?;
    Ok(())
}

/// Which writes of a batch a later one makes moot (true: skip it): a
/// user's wallet snapshots but the last, and a hold both opened and closed
/// within the batch (its open and its close). Every backend skips the same
/// ones, so they all end in the same state.
pub(super) fn moot(ops: &[WriteOp]) -> Vec<bool> {
    let mut last_snapshot: HashMap<&str, usize> = HashMap::new();
    let mut opened: HashSet<(&str, u64)> = HashSet::new();
    let mut closed: HashSet<(&str, u64)> = HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            WriteOp::PutWallet { user_id, .. } => {
                last_snapshot.insert(user_id.as_str(), i);
            }
            WriteOp::PutHold(h) => {
                opened.insert((h.hold.user_id.as_str(), h.hold.id));
            }
            WriteOp::DeleteHold { user_id, id } => {
                closed.insert((user_id.as_str(), *id));
            }
            _ => {}
        }
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| match op {
            WriteOp::PutWallet { user_id, .. } => last_snapshot.get(user_id.as_str()) != Some(&i),
            WriteOp::PutHold(h) => closed.contains(&(h.hold.user_id.as_str(), h.hold.id)),
            WriteOp::DeleteHold { user_id, id } => opened.contains(&(user_id.as_str(), *id)),
            _ => false,
        })
        .collect()
}
