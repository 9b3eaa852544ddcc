//! A consistent copy of a running broker's redb file, and the check that a
//! copy is sound.
//!
//! Copying the file's bytes while the persistence thread commits would
//! catch a commit half-written, so the copy is made through the database
//! instead: one read transaction sees one committed state of every table,
//! and its rows are written into a new file in one write transaction. redb
//! readers never block its writer, so requests go on meanwhile; the price
//! is that pages the writer frees during the copy are kept until it ends.

use std::path::Path;

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableError,
    TableHandle, Value, WriteTransaction,
};
use serde::Serialize;

use oneflow::Credits;
use oneflow::ledger::{LedgerEntry, Wallet, audit};

use super::redb::{
    API_KEYS, BUDGETS, DOCS, HOLDS, IDEMPOTENCY, IDEMPOTENCY_BY_TIME, META, PROVIDERS,
    REQUEST_INDEX, REQUESTS, TRANSACTIONS, USERS, WALLETS,
};
use super::rollups::{DAYS, HOURS, MINUTES, OLD_ROLLUPS};
use super::{RedbStore, Store, StoreError};

/// What a copy holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Rows copied, over every table.
    pub rows: u64,
    /// Tables copied (a table the file never made is not counted).
    pub tables: u64,
}

/// Rows of one table from the snapshot into the copy; a table the source
/// never made is skipped (an old file may lack a newer table).
fn table<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    def: TableDefinition<K, V>,
    copy: &mut Copy,
) -> Result<(), StoreError> {
    let src = match from.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut dst = to.open_table(def)?;
    for row in src.iter()? {
        let (k, v) = row?;
        dst.insert(k.value(), v.value())?;
        copy.rows += 1;
    }
    copy.tables += 1;
    Ok(())
}

/// Writes a consistent copy of `store` to a new file at `dest` (which must
/// not exist) and makes it durable. Fails, leaving no file, if the source
/// holds a table this build does not know: a copy without it would be a
/// backup that silently lost data.
pub fn snapshot(store: &RedbStore, dest: &Path) -> Result<Copy, StoreError> {
    let io = |e: std::io::Error| StoreError::Backend(format!("{}: {e}", dest.display()));
    if dest.exists() {
        return Err(StoreError::Backend(format!(
            "{}: already exists",
            dest.display()
        )));
    }
    let made = (|| {
        let from = store.db.begin_read()?;
        let out = Database::create(dest)?;
        let mut to = out.begin_write()?;
        to.set_durability(redb::Durability::Immediate)?;
        let mut copy = Copy::default();
        table(&from, &to, META, &mut copy)?;
        table(&from, &to, USERS, &mut copy)?;
        table(&from, &to, API_KEYS, &mut copy)?;
        table(&from, &to, WALLETS, &mut copy)?;
        table(&from, &to, BUDGETS, &mut copy)?;
        table(&from, &to, PROVIDERS, &mut copy)?;
        table(&from, &to, REQUESTS, &mut copy)?;
        table(&from, &to, REQUEST_INDEX, &mut copy)?;
        table(&from, &to, TRANSACTIONS, &mut copy)?;
        table(&from, &to, HOLDS, &mut copy)?;
        table(&from, &to, IDEMPOTENCY, &mut copy)?;
        table(&from, &to, IDEMPOTENCY_BY_TIME, &mut copy)?;
        table(&from, &to, DOCS, &mut copy)?;
        table(&from, &to, MINUTES, &mut copy)?;
        table(&from, &to, HOURS, &mut copy)?;
        table(&from, &to, DAYS, &mut copy)?;
        table(&from, &to, OLD_ROLLUPS, &mut copy)?;
        let known = from.list_tables()?.count() as u64;
        if known != copy.tables {
            let names: Vec<String> = from.list_tables()?.map(|t| t.name().to_string()).collect();
            return Err(StoreError::Corrupt(format!(
                "the file holds tables this build does not copy (it holds {names:?})"
            )));
        }
        to.commit()?;
        Ok(copy)
    })();
    match made {
        Ok(copy) => {
            // The new name must survive a crash, like the rows under it.
            if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io)?;
            }
            Ok(copy)
        }
        Err(e) => {
            let _ = std::fs::remove_file(dest);
            Err(e)
        }
    }
}

/// What checking a store's ledger found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Audited {
    /// Wallets whose ledger replays to their balance.
    pub wallets: u64,
    /// Ledger entries read.
    pub entries: u64,
    /// The sum of every wallet's balance.
    pub balances: Credits,
    /// Holds open in the store (a backup of a busy broker has some; the
    /// broker that opens the copy releases them at start).
    pub open_holds: u64,
    /// Each wallet whose ledger does not replay to its balance, and why.
    pub mismatches: Vec<String>,
}

/// Replays every wallet's ledger (`ledger::audit`) and compares the result
/// with the wallet's balance.
pub fn audit_ledgers(store: &dyn Store) -> Result<Audited, StoreError> {
    audit_each(store, &mut |_, _| Ok(()))
}

/// The same, calling `each` with every readable wallet's user and balance.
pub fn audit_each(
    store: &dyn Store,
    each: &mut dyn FnMut(&str, Credits) -> Result<(), StoreError>,
) -> Result<Audited, StoreError> {
    let mut wallets: Vec<(String, Result<Credits, String>)> = Vec::new();
    // Balances first, ledgers after: no read runs inside another's walk.
    store.each_wallet(&mut |user, bytes| {
        let w = serde_json::from_slice::<Wallet>(&bytes)
            .map(|w| w.balance)
            .map_err(|e| format!("unreadable wallet: {e}"));
        wallets.push((user, w));
        Ok(true)
    })?;
    let mut a = Audited {
        open_holds: store.open_holds()?.len() as u64,
        ..Audited::default()
    };
    for (user, balance) in wallets {
        let balance = match balance {
            Ok(b) => b,
            Err(e) => {
                a.mismatches.push(format!("user {user}: {e}"));
                continue;
            }
        };
        let mut entries: Vec<LedgerEntry> = Vec::new();
        store.each_entry(Some(&user), &mut |e| {
            entries.push(e);
            Ok(true)
        })?;
        a.entries += entries.len() as u64;
        a.balances += balance;
        each(&user, balance)?;
        match audit(&entries) {
            Ok(b) if b == balance => a.wallets += 1,
            Ok(b) => a.mismatches.push(format!(
                "user {user}: the ledger sums to {b}, the wallet holds {balance}"
            )),
            Err(e) => a
                .mismatches
                .push(format!("user {user}: the ledger does not replay: {e}")),
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_the_copy_does_not_know_fails_the_backup_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("oneflow.redb")).unwrap();
        let first = dir.path().join("first.redb");
        let copy = snapshot(&store, &first).unwrap();
        assert!(copy.tables > 0 && copy.rows > 0, "{copy:?}");
        assert!(
            audit_ledgers(&RedbStore::open(&first).unwrap())
                .unwrap()
                .mismatches
                .is_empty()
        );
        // A second copy never overwrites the first.
        assert!(snapshot(&store, &first).is_err());

        let w = store.db.begin_write().unwrap();
        w.open_table(TableDefinition::<&str, u64>::new("stranger"))
            .unwrap()
            .insert("x", 1)
            .unwrap();
        w.commit().unwrap();
        let second = dir.path().join("second.redb");
        let e = snapshot(&store, &second).unwrap_err();
        assert!(e.to_string().contains("stranger"), "{e}");
        assert!(!second.exists());
    }
}
