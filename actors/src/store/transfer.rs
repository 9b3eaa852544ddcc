//! Copying everything one store keeps into another, whichever backends they
//! are: how a deployment moves its redb file into PostgreSQL (and back).
//!
//! Records go through the target's own batch path, so the target's derived
//! rows (the analytics rollups) are built from the copied requests exactly
//! as if they had been written there. The copy ends with a check that the
//! target's ledger is whole: every wallet's entries replay to its balance.

use oneflow::time::Millis;

use super::backup::audit_each;
use super::{Store, StoreError, WriteOp};

/// Why a copy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Copying into a store that holds data would mix two ledgers.
    #[error("the target store is not empty (it has {0}); copy into an empty one")]
    NotEmpty(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a copy wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub users: u64,
    pub keys: u64,
    pub wallets: u64,
    pub budgets: u64,
    pub providers: u64,
    pub entries: u64,
    pub holds: u64,
    pub requests: u64,
    pub idempotency: u64,
}

/// What the check after a copy found: counts in the source and the target,
/// and every disagreement (none when the copy is whole).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    pub users: (u64, u64),
    pub requests: (u64, u64),
    pub entries: (u64, u64),
    /// Wallets of the target whose ledger replayed to their balance.
    pub wallets_audited: u64,
    pub mismatches: Vec<String>,
}

/// Whether a walk meets anything at all (it stops at the first item).
fn meets(
    walk: impl FnOnce(&mut dyn FnMut() -> Result<bool, StoreError>) -> Result<(), StoreError>,
) -> Result<bool, StoreError> {
    let mut found = false;
    walk(&mut || {
        found = true;
        Ok(false)
    })?;
    Ok(found)
}

/// The first kind of data `s` holds, if any.
pub fn first_kept(s: &dyn Store) -> Result<Option<&'static str>, StoreError> {
    let kept = [
        ("users", !s.users()?.is_empty()),
        ("API keys", !s.api_keys()?.is_empty()),
        ("wallets", meets(|f| s.each_wallet(&mut |_, _| f()))?),
        (
            "ledger entries",
            meets(|f| s.each_entry(None, &mut |_| f()))?,
        ),
        (
            "requests",
            meets(|f| s.each_request(None, Millis::MIN, Millis::MAX, &mut |_| f()))?,
        ),
        (
            "idempotency records",
            meets(|f| s.each_idempotency(&mut |_, _, _| f()))?,
        ),
        ("open holds", !s.open_holds()?.is_empty()),
        ("budgets", !s.budgets()?.is_empty()),
        ("provider configurations", !s.providers()?.is_empty()),
    ];
    Ok(kept.into_iter().find(|(_, k)| *k).map(|(what, _)| what))
}

/// Batches writes to the target, `size` at a time.
struct Out<'a> {
    to: &'a dyn Store,
    ops: Vec<WriteOp>,
    size: usize,
}

impl Out<'_> {
    fn push(&mut self, op: WriteOp) -> Result<(), StoreError> {
        self.ops.push(op);
        if self.ops.len() >= self.size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.ops.is_empty() {
            return Ok(());
        }
        self.to.commit(std::mem::take(&mut self.ops))
    }
}

/// Copies everything `from` keeps into the empty `to`, `batch` writes per
/// commit. Not atomic as a whole: a copy that fails part way leaves a
/// partial target, which the next attempt refuses as not empty (drop it
/// and start again).
pub fn copy(from: &dyn Store, to: &dyn Store, batch: usize) -> Result<Copied, TransferError> {
    if let Some(what) = first_kept(to)? {
        return Err(TransferError::NotEmpty(what));
    }
    let mut n = Copied::default();
    let mut out = Out {
        to,
        ops: Vec::new(),
        size: batch.max(1),
    };
    for u in from.users()? {
        out.push(WriteOp::PutUser(u))?;
        n.users += 1;
    }
    for (hash, record) in from.api_keys()? {
        out.push(WriteOp::PutKey { hash, record })?;
        n.keys += 1;
    }
    for (user_id, budget) in from.budgets()? {
        out.push(WriteOp::PutBudget { user_id, budget })?;
        n.budgets += 1;
    }
    for (name, config) in from.providers()? {
        out.push(WriteOp::PutProvider { name, config })?;
        n.providers += 1;
    }
    from.each_wallet(&mut |user_id, bytes| {
        out.push(WriteOp::PutWallet { user_id, bytes })?;
        n.wallets += 1;
        Ok(true)
    })?;
    from.each_entry(None, &mut |e| {
        out.push(WriteOp::AppendEntry(e))?;
        n.entries += 1;
        Ok(true)
    })?;
    for h in from.open_holds()? {
        out.push(WriteOp::PutHold(Box::new(h)))?;
        n.holds += 1;
    }
    from.each_request(None, Millis::MIN, Millis::MAX, &mut |r| {
        out.push(WriteOp::PutRequest(Box::new(r)))?;
        n.requests += 1;
        Ok(true)
    })?;
    from.each_idempotency(&mut |user_id, key, record| {
        out.push(WriteOp::PutIdempotency {
            user_id,
            key,
            record: Box::new(record),
        })?;
        n.idempotency += 1;
        Ok(true)
    })?;
    out.flush()?;
    Ok(n)
}

fn count_requests(s: &dyn Store) -> Result<u64, StoreError> {
    let mut n = 0;
    s.each_request(None, Millis::MIN, Millis::MAX, &mut |_| {
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

fn count_entries(s: &dyn Store) -> Result<u64, StoreError> {
    let mut n = 0;
    s.each_entry(None, &mut |_| {
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

/// Checks a copy: the counts of users, requests and ledger entries agree,
/// and every wallet of `to` has a ledger that replays (`ledger::audit`) to
/// its balance, the same balance `from` has.
pub fn verify(from: &dyn Store, to: &dyn Store) -> Result<Verified, StoreError> {
    let mut v = Verified {
        users: (from.users()?.len() as u64, to.users()?.len() as u64),
        requests: (count_requests(from)?, count_requests(to)?),
        entries: (count_entries(from)?, count_entries(to)?),
        ..Verified::default()
    };
    for (what, (a, b)) in [
        ("users", v.users),
        ("requests", v.requests),
        ("ledger entries", v.entries),
    ] {
        if a != b {
            v.mismatches
                .push(format!("{what}: {a} in the source, {b} in the target"));
        }
    }
    let audited = audit_each(to, &mut |user, balance| {
        let source = from.wallet(user)?.map(|w| w.balance);
        if source != Some(balance) {
            v.mismatches.push(format!(
                "user {user}: balance {balance} in the target, {source:?} in the source"
            ));
        }
        Ok(())
    })?;
    v.wallets_audited = audited.wallets;
    v.mismatches.extend(audited.mismatches);
    Ok(v)
}
