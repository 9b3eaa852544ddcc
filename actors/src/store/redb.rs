//! [`Store`] on an embedded redb file: table layout, typed reads, and the
//! schema version. Applying a batch is in `batch.rs`, the analytics rollup
//! tables in `rollups.rs`. redb readers never block its one writer.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use oneflow::analytics::{Bucket, Point, Rollup};
use oneflow::budget::BudgetConfig;
use oneflow::ledger::{LedgerEntry, Wallet};
use oneflow::records::RequestRecord;
use oneflow::time::Millis;

use super::{
    ApiKeyRecord, Doc, DocWrite, IdempotencyRecord, OpenHold, RequestCursor, Role, Store,
    StoreError, User, WriteOp, batch, rollups,
};

/// Bumped when the file format changes. Version 2 stores a batch's ledger
/// entries of one user as one row; a version 1 file is read as it is (its
/// rows hold one entry each, which readers still take) and marked 2 on open.
pub const SCHEMA_VERSION: u64 = 2;

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(super) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
pub(super) const API_KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("api_keys");
pub(super) const WALLETS: TableDefinition<&str, &[u8]> = TableDefinition::new("wallets");
pub(super) const BUDGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("budget_configs");
pub(super) const PROVIDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("provider_configs");
/// (user, created_at, request id): history pages by key range, newest first.
pub(super) const REQUESTS: TableDefinition<(&str, u64, &str), &[u8]> =
    TableDefinition::new("requests");
/// request id -> (user, created_at): finds one request without a scan.
pub(super) const REQUEST_INDEX: TableDefinition<&str, (&str, u64)> =
    TableDefinition::new("request_index");
/// (user, seq of the row's first entry): the append-only ledger. One row
/// holds every entry of one user that one commit wrote (a JSON array), so a
/// request's hold, charge and release cost one row, not three; rows of the
/// first format hold a single entry (a JSON object). Read with
/// [`ledger_row`].
pub(super) const TRANSACTIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("transactions");
/// (user, hold id): holds open right now; what a crash leaves here is released.
pub(super) const HOLDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("holds");
/// (user, key): the finished result of an idempotent request.
pub(super) const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("idempotency");
/// (answered at, user, key): the idempotency records by age, so the purge
/// of expired ones reads only what it deletes.
/// (kind, id): documents, each its version then its body (`docs.rs`).
pub(super) const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs");
pub(super) const IDEMPOTENCY_BY_TIME: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("idempotency_by_time");

/// Any redb failure is a backend failure to the layers above.
macro_rules! backend_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::Backend(e.to_string()) }
    })*};
}
backend_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

pub(super) fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The entries of one `TRANSACTIONS` row, oldest first: an array (what a
/// commit writes now) or a single entry (the first file format).
pub(super) fn ledger_row(b: &[u8]) -> Result<Vec<LedgerEntry>, StoreError> {
    match b.iter().find(|c| !c.is_ascii_whitespace()) {
        Some(b'[') => dec(b),
        _ => Ok(vec![dec(b)?]),
    }
}

/// The database, shared by readers and the one writer. Cheap to clone.
#[derive(Clone)]
pub struct RedbStore {
    pub(super) db: Arc<Database>,
}

/// redb's read cache when none is configured. Its own default is 1 GiB,
/// more than a small host should give a cache; pages past it are read from
/// the OS page cache.
pub const DEFAULT_CACHE_BYTES: usize = 8 * 1024 * 1024;

impl RedbStore {
    /// Opens or creates the file and checks its schema version.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// The same, with a read cache of `cache_bytes`.
    ///
    /// A new file is made under a temporary name and renamed into place
    /// once its first commit (the tables and the schema version) is
    /// durable: a process that dies while making it leaves no half-made
    /// file that the next start would refuse as "not a redb database".
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<RedbStore, StoreError> {
        if !path.exists() {
            let making = path.with_extension("redb.making");
            match std::fs::remove_file(&making) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::Backend(format!("{}: {e}", making.display())));
                }
                _ => {}
            }
            drop(Self::open_file(&making, cache_bytes)?);
            let io = |e: std::io::Error| StoreError::Backend(format!("{}: {e}", path.display()));
            std::fs::rename(&making, path).map_err(io)?;
            // The rename itself must survive a crash.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io)?;
            }
        }
        Self::open_file(path, cache_bytes)
    }

    fn open_file(path: &Path, cache_bytes: usize) -> Result<RedbStore, StoreError> {
        #[cfg(feature = "failpoints")]
        if let Some((mode, at)) = std::env::var("ONEFLOW_FAILPOINT_STORAGE")
            .ok()
            .and_then(|s| super::faulty::parse_plan(&s))
        {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            let backend = super::faulty::FaultyFile::new(file, mode, at)?;
            return Self::open_on(backend, cache_bytes);
        }
        // A previous process (or, in tests, a previous server in this one)
        // may still be letting go of the file: wait a little for it.
        let mut tries = 0;
        let db = loop {
            match Database::builder().set_cache_size(cache_bytes).create(path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => break other?,
            }
        };
        let store = RedbStore { db: Arc::new(db) };
        store.init()?;
        Ok(store)
    }

    /// A store on a test backend (see `faulty.rs`).
    #[cfg(any(test, feature = "failpoints"))]
    pub fn open_on(
        backend: impl redb::StorageBackend,
        cache_bytes: usize,
    ) -> Result<RedbStore, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create_with_backend(backend)?;
        let store = RedbStore { db: Arc::new(db) };
        store.init()?;
        Ok(store)
    }

    fn init(&self) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta
                .get("schema_version")?
                .map(|v| dec::<u64>(v.value()))
                .transpose()?;
            match found {
                Some(v) if v == SCHEMA_VERSION => {}
                // Every version 1 row is readable as it is.
                Some(1) | None => {
                    meta.insert("schema_version", enc(&SCHEMA_VERSION)?.as_slice())?;
                }
                Some(v) => return Err(StoreError::Schema { found: v }),
            }
            // Create every table so readers never meet a missing one.
            txn.open_table(USERS)?;
            txn.open_table(API_KEYS)?;
            txn.open_table(WALLETS)?;
            txn.open_table(BUDGETS)?;
            txn.open_table(PROVIDERS)?;
            txn.open_table(REQUESTS)?;
            txn.open_table(REQUEST_INDEX)?;
            txn.open_table(TRANSACTIONS)?;
            txn.open_table(HOLDS)?;
            txn.open_table(IDEMPOTENCY)?;
            txn.open_table(DOCS)?;
        }
        let indexed = index_idempotency(&txn)?;
        if indexed > 0 {
            eprintln!("oneflow: indexed {indexed} idempotency records by age");
        }
        let rolled = rollups::ensure_rollups(&txn)?;
        txn.commit()?;
        if rolled > 0 {
            eprintln!("oneflow: rebuilt analytics rollups from {rolled} stored requests");
        }
        Ok(())
    }

    fn get<K: redb::Key + 'static, T: DeserializeOwned>(
        &self,
        def: TableDefinition<K, &[u8]>,
        key: K::SelfType<'_>,
    ) -> Result<Option<T>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(def)?;
        let v = t.get(key)?;
        v.map(|v| dec(v.value())).transpose()
    }
}

impl Store for RedbStore {
    fn backup(&self, dest: &Path) -> Result<Option<super::backup::Copy>, StoreError> {
        super::backup::snapshot(self, dest).map(Some)
    }

    fn doc(&self, kind: &str, id: &str) -> Result<Option<Doc>, StoreError> {
        self.doc_get(kind, id)
    }

    fn docs(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Doc)>, StoreError> {
        self.doc_list(kind, prefix, after, limit)
    }

    fn write_docs(&self, writes: Vec<DocWrite>) -> Result<bool, StoreError> {
        self.doc_write(writes)
    }

    /// Commits `ops` in one durable transaction.
    fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        batch::apply_all(&txn, ops)?;
        txn.commit()?;
        Ok(())
    }

    /// Every hold stored as open.
    fn open_holds(&self) -> Result<Vec<OpenHold>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(HOLDS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(dec(row?.1.value())?);
        }
        Ok(out)
    }

    fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.get(USERS, id)
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(USERS)?;
        let mut v = Vec::new();
        for row in t.iter()? {
            v.push(dec(row?.1.value())?);
        }
        Ok(v)
    }

    fn api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.get(API_KEYS, hash.as_slice())
    }

    /// Every stored key with its hash (keys are few: a scan is fine).
    fn api_keys(&self) -> Result<Vec<([u8; 32], ApiKeyRecord)>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(API_KEYS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let hash: [u8; 32] = k
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt("an api_keys key is not 32 bytes".into()))?;
            out.push((hash, dec(v.value())?));
        }
        Ok(out)
    }

    fn has_admin_key(&self) -> Result<bool, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(API_KEYS)?;
        for row in t.iter()? {
            if dec::<ApiKeyRecord>(row?.1.value())?.role == Role::Admin {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A user's wallet snapshot with its budget, if the user has one.
    fn wallet(&self, user_id: &str) -> Result<Option<Wallet>, StoreError> {
        let w: Option<Wallet> = self.get(WALLETS, user_id)?;
        let budget = self.budget(user_id)?;
        Ok(w.map(|mut w| {
            w.budget = budget;
            w
        }))
    }

    fn budget(&self, user_id: &str) -> Result<BudgetConfig, StoreError> {
        Ok(self.get(BUDGETS, user_id)?.unwrap_or_default())
    }

    fn request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let r = self.db.begin_read()?;
        let idx = r.open_table(REQUEST_INDEX)?;
        let Some(loc) = idx.get(id)? else {
            return Ok(None);
        };
        let (user, at) = loc.value();
        let t = r.open_table(REQUESTS)?;
        let v = t.get((user, at, id))?;
        v.map(|v| dec(v.value())).transpose()
    }

    /// Up to `limit` of a user's requests, newest first, older than `before`.
    fn requests_page(
        &self,
        user_id: &str,
        before: Option<&RequestCursor>,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(REQUESTS)?;
        let lo = (user_id, 0u64, "");
        let mut out = Vec::with_capacity(limit.min(1024));
        let rows = match before {
            Some(c) => t.range(lo..(user_id, c.created_at, c.id.as_str()))?,
            None => t.range(lo..(user_id, u64::MAX, ""))?,
        };
        for row in rows.rev().take(limit) {
            out.push(dec(row?.1.value())?);
        }
        Ok(out)
    }

    /// Up to `limit` of a user's ledger entries, newest first, below `before`.
    fn transactions_page(
        &self,
        user_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TRANSACTIONS)?;
        let before = before.unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity(limit.min(1024));
        // A row's key is its first entry's seq: rows keyed below `before`
        // may still hold entries at or above it.
        for row in t.range((user_id, 0u64)..(user_id, before))?.rev() {
            for e in ledger_row(row?.1.value())?.into_iter().rev() {
                if out.len() == limit {
                    return Ok(out);
                }
                if e.seq < before {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    fn idempotency(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.get(IDEMPOTENCY, (user_id, key))
    }

    fn each_wallet(
        &self,
        f: &mut dyn FnMut(String, Vec<u8>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(WALLETS)?;
        for row in t.iter()? {
            let (k, v) = row?;
            if !f(k.value().to_string(), v.value().to_vec())? {
                break;
            }
        }
        Ok(())
    }

    fn budgets(&self) -> Result<Vec<(String, BudgetConfig)>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BUDGETS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), dec(v.value())?));
        }
        Ok(out)
    }

    fn providers(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PROVIDERS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), dec(v.value())?));
        }
        Ok(out)
    }

    fn each_idempotency(
        &self,
        f: &mut dyn FnMut(String, String, IdempotencyRecord) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(IDEMPOTENCY)?;
        for row in t.iter()? {
            let (k, v) = row?;
            let (user, key) = k.value();
            if !f(user.to_string(), key.to_string(), dec(v.value())?)? {
                break;
            }
        }
        Ok(())
    }

    fn each_request(
        &self,
        user_id: Option<&str>,
        from: Millis,
        to: Millis,
        f: &mut dyn FnMut(RequestRecord) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let (from, to) = (key_time(from), key_time(to));
        let r = self.db.begin_read()?;
        let t = r.open_table(REQUESTS)?;
        let rows = match user_id {
            Some(u) => t.range((u, from, "")..(u, to, ""))?,
            None => t.range::<(&str, u64, &str)>(..)?,
        };
        for row in rows {
            let (k, v) = row?;
            let at = k.value().1;
            if at < from || at >= to {
                continue;
            }
            if !f(dec(v.value())?)? {
                break;
            }
        }
        Ok(())
    }

    fn each_entry(
        &self,
        user_id: Option<&str>,
        f: &mut dyn FnMut(LedgerEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TRANSACTIONS)?;
        let rows = match user_id {
            Some(u) => t.range((u, 0u64)..=(u, u64::MAX))?,
            None => t.range::<(&str, u64)>(..)?,
        };
        for row in rows {
            for e in ledger_row(row?.1.value())? {
                if !f(e)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn each_rollup(
        &self,
        scope: &str,
        b: Bucket,
        from: Millis,
        to: Millis,
        f: &mut dyn FnMut(Millis, &str, Rollup) -> bool,
    ) -> Result<(), StoreError> {
        rollups::each_row(self, scope, b, from, to, f)
    }

    fn series(
        &self,
        scope: &str,
        b: Bucket,
        from: Millis,
        to: Millis,
        provider: Option<&str>,
    ) -> Result<Vec<Point>, StoreError> {
        rollups::series(self, scope, b, from, to, provider)
    }
}

/// A time as a key: times before the epoch sort first.
/// Files written before the age index have records it lacks: index them
/// all (once; afterwards every write keeps the two tables in step).
fn index_idempotency(txn: &redb::WriteTransaction) -> Result<u64, StoreError> {
    let records = txn.open_table(IDEMPOTENCY)?;
    let mut by_time = txn.open_table(IDEMPOTENCY_BY_TIME)?;
    if records.len()? == by_time.len()? {
        return Ok(0);
    }
    let mut n = 0;
    for row in records.iter()? {
        let (k, v) = row?;
        let (user, key) = k.value();
        let rec: IdempotencyRecord = dec(v.value())?;
        by_time.insert((key_time(rec.answered_at()), user, key), ())?;
        n += 1;
    }
    Ok(n)
}

pub(super) fn key_time(at: Millis) -> u64 {
    u64::try_from(at).unwrap_or(0)
}
