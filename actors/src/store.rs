//! The redb file: table layout, typed reads, and applying a batch of writes
//! in one transaction. Only the persistence thread writes; anyone may read
//! (redb readers never block the writer).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use oneflow::budget::BudgetConfig;
use oneflow::ledger::{Hold, LedgerEntry, Wallet};
use oneflow::pricing::Modality;
use oneflow::records::{RequestRecord, RequestStatus};
use oneflow::time::Millis;

use crate::views::RequestOutcome;

pub mod rollups;

/// Bumped when the file format changes incompatibly.
pub const SCHEMA_VERSION: u64 = 1;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const API_KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("api_keys");
const WALLETS: TableDefinition<&str, &[u8]> = TableDefinition::new("wallets");
const BUDGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("budget_configs");
const PROVIDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("provider_configs");
/// (user, created_at, request id): history pages by key range, newest first.
pub(crate) const REQUESTS: TableDefinition<(&str, u64, &str), &[u8]> =
    TableDefinition::new("requests");
/// request id -> (user, created_at): finds one request without a scan.
const REQUEST_INDEX: TableDefinition<&str, (&str, u64)> = TableDefinition::new("request_index");
/// (user, seq): the append-only ledger.
pub(crate) const TRANSACTIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("transactions");
/// (user, hold id): holds open right now; what a crash leaves here is released.
const HOLDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("holds");
/// (user, key): the finished result of an idempotent request.
const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("idempotency");

/// A storage failure: always our fault, never the client's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Db(#[from] redb::Error),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("the data file has schema version {found}, this build reads {SCHEMA_VERSION}")]
    Schema { found: u64 },
    #[error("the persistence queue is closed")]
    Closed,
}

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError { fn from(e: $t) -> Self { StoreError::Db(e.into()) } })*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

pub use crate::views::Role;

/// An account. Money lives in its wallet, not here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub created_at: Millis,
    /// The user's default routing strategy; `None` follows the global one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<oneflow::routing::Strategy>,
}

/// What is kept of an API key: never the key itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub user_id: String,
    pub role: Role,
    /// The first characters, so people can tell keys apart.
    pub prefix: String,
    pub created_at: Millis,
}

/// A hold as stored while open, with what is needed to record its request
/// as interrupted if the broker dies before the request finishes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenHold {
    pub hold: Hold,
    pub model: String,
    pub modality: Modality,
    pub prompt_preview: String,
}

impl OpenHold {
    fn interrupted(&self) -> RequestRecord {
        let h = &self.hold;
        RequestRecord {
            id: h.request_id.clone(),
            user_id: h.user_id.clone(),
            model: self.model.clone(),
            modality: self.modality,
            provider: h.provider.clone(),
            status: RequestStatus::Interrupted,
            prompt_preview: self.prompt_preview.clone(),
            response: None,
            usage: Default::default(),
            quote: h.amount,
            cost: Default::default(),
            shortfall: Default::default(),
            error: Some("interrupted: the broker stopped before the request finished; its hold was released".into()),
            route: String::new(),
            created_at: h.at,
            latency_ms: 0,
            attempts: Vec::new(),
        }
    }
}

/// The stored result of an idempotent request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub body_hash: [u8; 32],
    pub result: RequestOutcome,
}

/// One change to the database; a batch of them commits atomically.
#[derive(Debug)]
pub enum WriteOp {
    PutUser(User),
    PutKey {
        hash: [u8; 32],
        record: ApiKeyRecord,
    },
    /// Revokes a key: its hash leaves the table, so it authenticates no more.
    DeleteKey {
        hash: [u8; 32],
    },
    /// A wallet snapshot, serialised by the wallet so the order of
    /// snapshots is the order of its operations.
    PutWallet {
        user_id: String,
        bytes: Vec<u8>,
    },
    PutBudget {
        user_id: String,
        budget: BudgetConfig,
    },
    PutProvider {
        name: String,
        config: serde_json::Value,
    },
    AppendEntry(LedgerEntry),
    PutHold(Box<OpenHold>),
    DeleteHold {
        user_id: String,
        id: u64,
    },
    /// Stores a finished request and adds it to the user's and the global
    /// rollups.
    PutRequest(Box<RequestRecord>),
    PutIdempotency {
        user_id: String,
        key: String,
        record: IdempotencyRecord,
    },
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Where to resume a newest-first page of requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestCursor {
    pub created_at: u64,
    pub id: String,
}

/// What start-up recovery did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub holds_released: usize,
    pub requests_interrupted: usize,
}

/// The database, shared by readers and the one writer.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<Database>,
}

/// redb's read cache when none is configured. Its own default is 1 GiB,
/// more than a small host should give a cache; pages past it are read from
/// the OS page cache.
pub const DEFAULT_CACHE_BYTES: usize = 8 * 1024 * 1024;

impl Store {
    /// Opens or creates the file and checks its schema version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// The same, with a read cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Store, StoreError> {
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
        let store = Store { db: Arc::new(db) };
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
                Some(v) if v != SCHEMA_VERSION => return Err(StoreError::Schema { found: v }),
                Some(_) => {}
                None => {
                    meta.insert("schema_version", enc(&SCHEMA_VERSION)?.as_slice())?;
                }
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
        }
        let rolled = rollups::ensure_rollups(&txn)?;
        txn.commit()?;
        if rolled > 0 {
            eprintln!("oneflow: rebuilt analytics rollups from {rolled} stored requests");
        }
        Ok(())
    }

    /// Commits `ops` in one durable transaction.
    pub fn commit(&self, ops: impl IntoIterator<Item = WriteOp>) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        apply_all(&txn, ops.into_iter().collect())?;
        txn.commit()?;
        Ok(())
    }

    pub fn recover(&self, now: Millis) -> Result<Recovery, StoreError> {
        let mut by_user: BTreeMap<String, Vec<OpenHold>> = BTreeMap::new();
        for h in self.open_holds()? {
            by_user.entry(h.hold.user_id.clone()).or_default().push(h);
        }
        let mut report = Recovery::default();
        let mut ops = Vec::new();
        for (user_id, holds) in by_user {
            let mut w = self
                .wallet(&user_id)?
                .unwrap_or_else(|| Wallet::new(user_id.clone()));
            // Every orphan is open again before any is released, so each
            // release entry's `available_after` counts the ones still open.
            for h in &holds {
                w.holds.insert(h.hold.id, h.hold.clone());
            }
            for h in holds {
                let note = "released on restart: the broker stopped during the request";
                let entry = w
                    .release(h.hold.id, Some(note), now)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                ops.push(WriteOp::AppendEntry(entry));
                ops.push(WriteOp::DeleteHold {
                    user_id: user_id.clone(),
                    id: h.hold.id,
                });
                report.holds_released += 1;
                if self.request(&h.hold.request_id)?.is_none() {
                    ops.push(WriteOp::PutRequest(Box::new(h.interrupted())));
                    report.requests_interrupted += 1;
                }
            }
            ops.push(WriteOp::PutWallet {
                user_id,
                bytes: enc(&w)?,
            });
        }
        if !ops.is_empty() {
            self.commit(ops)?;
        }
        Ok(report)
    }

    /// Every hold stored as open.
    pub fn open_holds(&self) -> Result<Vec<OpenHold>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(HOLDS)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(dec(row?.1.value())?);
        }
        Ok(out)
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

    pub fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.get(USERS, id)
    }

    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(USERS)?;
        let mut v = Vec::new();
        for row in t.iter()? {
            v.push(dec(row?.1.value())?);
        }
        Ok(v)
    }

    pub fn api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.get(API_KEYS, hash.as_slice())
    }

    /// Every stored key with its hash (keys are few: a scan is fine).
    pub fn api_keys(&self) -> Result<Vec<([u8; 32], ApiKeyRecord)>, StoreError> {
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

    pub fn has_admin_key(&self) -> Result<bool, StoreError> {
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
    pub fn wallet(&self, user_id: &str) -> Result<Option<Wallet>, StoreError> {
        let w: Option<Wallet> = self.get(WALLETS, user_id)?;
        let budget = self.budget(user_id)?;
        Ok(w.map(|mut w| {
            w.budget = budget;
            w
        }))
    }

    pub fn budget(&self, user_id: &str) -> Result<BudgetConfig, StoreError> {
        Ok(self.get(BUDGETS, user_id)?.unwrap_or_default())
    }

    pub fn request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
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
    pub fn requests_page(
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
    pub fn transactions_page(
        &self,
        user_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TRANSACTIONS)?;
        let mut out = Vec::with_capacity(limit.min(1024));
        for row in t
            .range((user_id, 0u64)..(user_id, before.unwrap_or(u64::MAX)))?
            .rev()
            .take(limit)
        {
            out.push(dec(row?.1.value())?);
        }
        Ok(out)
    }

    pub fn idempotency(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.get(IDEMPOTENCY, (user_id, key))
    }
}

/// Applies a batch in one transaction, skipping what a later write in the
/// same batch makes moot: only a user's last wallet snapshot is written, a
/// hold opened and closed within the batch is never written, and rollup
/// deltas are summed first so each rollup row is read and written once.
/// The final state is the same as applying every op in order.
fn apply_all(txn: &WriteTransaction, ops: Vec<WriteOp>) -> Result<(), StoreError> {
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
    let skip: Vec<bool> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| match op {
            WriteOp::PutWallet { user_id, .. } => last_snapshot.get(user_id.as_str()) != Some(&i),
            WriteOp::PutHold(h) => closed.contains(&(h.hold.user_id.as_str(), h.hold.id)),
            WriteOp::DeleteHold { user_id, id } => opened.contains(&(user_id.as_str(), *id)),
            _ => false,
        })
        .collect();
    drop((last_snapshot, opened, closed));

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
    let mut rollup_deltas = rollups::Deltas::default();
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
                transactions.insert((e.user_id.as_str(), e.seq), enc(&e)?.as_slice())?;
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
                idempotency.insert((user_id.as_str(), key.as_str()), enc(&record)?.as_slice())?;
            }
        }
    }
    rollup_deltas.apply(txn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneflow::Credits;
    use oneflow::analytics::Bucket;
    use oneflow::ledger::{EntryKind, Hold};
    use oneflow::pricing::Usage;

    fn hold(id: u64) -> WriteOp {
        let hold = Hold {
            user_id: "u".into(),
            id,
            request_id: format!("r{id}"),
            provider: "p".into(),
            amount: Credits(9),
            at: 0,
        };
        WriteOp::PutHold(Box::new(OpenHold {
            hold,
            model: "m".into(),
            modality: Modality::Text,
            prompt_preview: "x".into(),
        }))
    }

    fn request(id: &str, at: Millis, cost: i64) -> WriteOp {
        WriteOp::PutRequest(Box::new(RequestRecord {
            id: id.into(),
            user_id: "u".into(),
            model: "m".into(),
            modality: Modality::Text,
            provider: "p".into(),
            status: RequestStatus::Succeeded,
            prompt_preview: String::new(),
            response: None,
            usage: Usage {
                output_tokens: 3,
                ..Usage::default()
            },
            quote: Credits(cost),
            cost: Credits(cost),
            shortfall: Credits::ZERO,
            error: None,
            route: String::new(),
            created_at: at,
            latency_ms: 7,
            attempts: Vec::new(),
        }))
    }

    fn entry(seq: u64) -> WriteOp {
        WriteOp::AppendEntry(LedgerEntry {
            user_id: "u".into(),
            seq,
            kind: EntryKind::Hold,
            amount: Credits(9),
            balance_after: Credits(0),
            available_after: Credits(0),
            hold_id: Some(seq),
            request_id: None,
            note: None,
            at: 0,
        })
    }

    fn wallet(v: u8) -> WriteOp {
        WriteOp::PutWallet {
            user_id: "u".into(),
            bytes: format!("{{\"v\":{v}}}").into_bytes(),
        }
    }

    fn batch() -> Vec<WriteOp> {
        vec![
            wallet(1),
            hold(1),
            entry(1),
            request("a", 10, 5),
            wallet(2),
            WriteOp::DeleteHold {
                user_id: "u".into(),
                id: 1,
            },
            hold(2),
            entry(2),
            request("b", 3_700_000, 4),
            request("c", 20, 6),
            wallet(3),
        ]
    }

    type Rollups = Vec<rollups::Row>;

    /// Wallet bytes, open holds, the user's and global rollups, entry count.
    fn state(s: &Store) -> (Vec<u8>, Vec<OpenHold>, Rollups, Rollups, usize) {
        let r = s.db.begin_read().unwrap();
        let w = r
            .open_table(WALLETS)
            .unwrap()
            .get("u")
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        let tx = s.transactions_page("u", None, 100).unwrap().len();
        (
            w,
            s.open_holds().unwrap(),
            s.rollup_rows("u", Bucket::Hour, 0, i64::MAX).unwrap(),
            s.rollup_rows("", Bucket::Hour, 0, i64::MAX).unwrap(),
            tx,
        )
    }

    /// Coalescing a batch leaves exactly the state that applying each write
    /// in its own commit leaves.
    #[test]
    fn a_coalesced_batch_equals_one_commit_per_write() {
        let dir = tempfile::tempdir().unwrap();
        let one_by_one = Store::open(&dir.path().join("a.redb")).unwrap();
        for op in batch() {
            one_by_one.commit([op]).unwrap();
        }
        let batched = Store::open(&dir.path().join("b.redb")).unwrap();
        batched.commit(batch()).unwrap();
        let (a, b) = (state(&one_by_one), state(&batched));
        assert_eq!(a, b);
        assert_eq!(a.0, b"{\"v\":3}");
        assert_eq!(a.1.len(), 1, "hold 1 closed, hold 2 open");
        assert_eq!(a.2.len(), 2, "two hours");
        assert_eq!(a.2[0].2.count, 2);
        assert_eq!(a.2[0].2.cost, Credits(11));
        assert_eq!(a.4, 2);
        assert_eq!(batched.requests_page("u", None, 10).unwrap().len(), 3);
    }

    /// An idempotency record as this store wrote it when the outcome was
    /// kept as a JSON value reads as the typed outcome, and writes back as
    /// the same JSON: files written before keep replaying.
    #[test]
    fn an_idempotency_record_in_the_earlier_json_still_reads() {
        use crate::views::{ErrorCode, RequestOutcome};
        let hash: Vec<String> = (0..32).map(|i| i.to_string()).collect();
        let old = format!(
            r#"{{"body_hash":[{}],"result":{{"available":41.5,"balance":42,"cost":0.000123,"created_at":1700000000000,"latency_ms":12,"model":"gpt-4o-mini","provider":"openai","quote":0.5,"request_id":"req_1","response":"hi","route":"cheapest of 2","status":"succeeded","usage":{{"images":0,"input_tokens":3,"output_tokens":1,"seconds":0}}}}}}"#,
            hash.join(",")
        );
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let txn = s.db.begin_write().unwrap();
        txn.open_table(IDEMPOTENCY)
            .unwrap()
            .insert(("u", "k"), old.as_bytes())
            .unwrap();
        txn.commit().unwrap();
        let rec = s.idempotency("u", "k").unwrap().expect("stored");
        assert_eq!(rec.body_hash, std::array::from_fn(|i| i as u8));
        let o: &RequestOutcome = &rec.result;
        assert_eq!(o.request_id, "req_1");
        assert_eq!(o.status, RequestStatus::Succeeded);
        assert_eq!(o.response.as_deref(), Some("hi"));
        assert_eq!(o.usage.input_tokens, 3);
        assert_eq!(o.cost, Credits(123));
        assert_eq!(o.balance, Credits::from_credits(42));
        assert_eq!(o.available, Credits(41_500_000));
        assert_eq!((o.error_code, o.error.as_deref()), (None, None));
        let again: serde_json::Value = serde_json::from_slice(&enc(&rec).unwrap()).unwrap();
        let was: serde_json::Value = serde_json::from_str(&old).unwrap();
        assert_eq!(again, was);
        // A failed outcome's code reads as the typed code.
        let failed = r#"{"request_id":"r","status":"failed","model":"m","provider":"p","usage":{"input_tokens":0,"output_tokens":0,"images":0,"seconds":0},"quote":1,"cost":0,"balance":0,"available":0,"route":"","error_code":"provider_timeout","error":"slow","retry_after_secs":2,"latency_ms":1,"created_at":1}"#;
        let o: RequestOutcome = serde_json::from_str(failed).unwrap();
        assert_eq!(o.error_code, Some(ErrorCode::ProviderTimeout));
        assert_eq!(
            serde_json::to_value(&o).unwrap(),
            serde_json::from_str::<serde_json::Value>(failed).unwrap()
        );
    }
}
