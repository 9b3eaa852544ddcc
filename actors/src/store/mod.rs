//! Storage: what the broker keeps and the one interface it keeps it
//! through. [`Store`] is that interface; [`RedbStore`] (an embedded redb
//! file) is the implementation today, and a shared database for many nodes
//! is the next (see docs/architecture.md).
//!
//! Only the persistence thread writes, a batch at a time ([`Store::commit`]);
//! anyone may read. Everything above this module sees storage through the
//! trait, so nothing above knows which backend is behind it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use oneflow::analytics::{Bucket, Point, Rollup, Summary, cover, summarize};
use oneflow::budget::BudgetConfig;
use oneflow::key_scope::KeyScope;
use oneflow::ledger::{Hold, LedgerEntry, Wallet};
use oneflow::pricing::Modality;
use oneflow::records::{RequestRecord, RequestStatus};
use oneflow::time::Millis;

use crate::views::RequestOutcome;

pub mod backup;
mod batch;
pub mod docs;
#[cfg(any(test, feature = "failpoints"))]
pub mod faulty;
#[cfg(test)]
mod model_tests;
pub mod postgres;
mod redb;
pub mod rollups;
#[cfg(test)]
mod tests;
pub mod transfer;

pub use self::docs::{Doc, DocWrite};
pub use self::redb::{DEFAULT_CACHE_BYTES, RedbStore, SCHEMA_VERSION};

/// A storage failure: always our fault, never the client's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, a full disk, a broken file or connection).
    #[error("storage: {0}")]
    Backend(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// Data written by a newer build. The message names both backends'
    /// versions: the variant is shared, so it cannot tell which one failed.
    #[error(
        "the stored data has schema version {found}, which this build cannot read (it reads version {SCHEMA_VERSION} of a redb file, up to {} of a PostgreSQL schema)",
        postgres::PG_SCHEMA_VERSION
    )]
    Schema { found: u64 },
    #[error("the persistence queue is closed")]
    Closed,
}

pub use crate::views::Role;

/// An account. Money lives in its wallet, not here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
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
    /// The team whose wallet the key spends from; `None`: its user's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// What the key is limited to (models, providers, expiry, its own
    /// budget); records made before scopes existed read as unlimited.
    #[serde(default, skip_serializing_if = "KeyScope::is_empty")]
    pub scope: KeyScope,
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
    /// The record of a request whose broker stopped before it finished.
    pub(crate) fn interrupted(&self) -> RequestRecord {
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
            usage_anomaly: false,
            member: None,
            cached: false,
            experiment: None,
            key_id: None,
        }
    }
}

/// The stored first answer under an `Idempotency-Key`: what a repeat with
/// the same body gets again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub body_hash: [u8; 32],
    /// A request's outcome; absent for a top-up, whose answer is all in
    /// `answer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RequestOutcome>,
    /// The rest of the first answer, encoded by the layer that made it (a
    /// request's full output, a top-up's ledger entry). A request's output
    /// larger than `idempotency.max_answer_bytes` is not kept: its replays
    /// have the outcome only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// When the first answer was given; the retention runs from here.
    /// Records written before this field take their outcome's time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at: Millis,
}

fn is_zero(v: &Millis) -> bool {
    *v == 0
}

impl IdempotencyRecord {
    /// When the retention of this record started.
    pub fn answered_at(&self) -> Millis {
        match (self.at, &self.result) {
            (0, Some(r)) => r.created_at,
            (at, _) => at,
        }
    }

    /// Bytes this record keeps beyond its fixed fields (the memory bound
    /// counts these).
    pub fn weight(&self) -> usize {
        self.answer.as_ref().map_or(0, String::len)
            + self
                .result
                .as_ref()
                .and_then(|r| r.response.as_ref())
                .map_or(0, String::len)
    }
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
        record: Box<IdempotencyRecord>,
    },
    /// Deletes up to `limit` idempotency records answered before `before`
    /// (the retention's end), oldest first.
    PurgeIdempotency {
        before: Millis,
        limit: usize,
    },
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

/// A stored rollup row: bucket start, provider, sums.
pub type RollupRow = (Millis, String, Rollup);

/// What the broker needs of storage. Reads may come from any thread at any
/// time; `commit` is called by the persistence thread alone, one batch at a
/// time, and must be durable when it returns `Ok` (acknowledged means
/// committed).
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` in order, atomically and durably. The result must equal
    /// applying them one by one; a backend may skip writes a later one in
    /// the same batch makes moot (a wallet's older snapshot, a hold opened
    /// and closed within the batch).
    fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;

    /// Every hold stored as open.
    fn open_holds(&self) -> Result<Vec<OpenHold>, StoreError>;
    fn user(&self, id: &str) -> Result<Option<User>, StoreError>;
    fn users(&self) -> Result<Vec<User>, StoreError>;
    fn api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Every stored key with its hash.
    fn api_keys(&self) -> Result<Vec<([u8; 32], ApiKeyRecord)>, StoreError>;
    fn has_admin_key(&self) -> Result<bool, StoreError>;
    /// A user's wallet snapshot with its budget, if the user has one.
    fn wallet(&self, user_id: &str) -> Result<Option<Wallet>, StoreError>;
    fn budget(&self, user_id: &str) -> Result<BudgetConfig, StoreError>;
    fn request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError>;
    /// Up to `limit` of a user's requests, newest first, older than `before`.
    fn requests_page(
        &self,
        user_id: &str,
        before: Option<&RequestCursor>,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, StoreError>;
    /// Up to `limit` of a user's ledger entries, newest first, below `before`.
    fn transactions_page(
        &self,
        user_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError>;
    fn idempotency(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Writes a consistent copy of everything stored to a new file at
    /// `dest` while the broker runs (see `backup.rs`). `None`: this backend
    /// makes no such copies (a PostgreSQL deployment uses its database's
    /// own tools).
    fn backup(&self, _dest: &std::path::Path) -> Result<Option<backup::Copy>, StoreError> {
        Ok(None)
    }

    /// The document `kind`/`id`, if stored (see `docs.rs`).
    fn doc(&self, kind: &str, id: &str) -> Result<Option<Doc>, StoreError>;
    /// Up to `limit` documents of `kind` whose ids start with `prefix`, in
    /// id order (as bytes), after the id `after` if given.
    fn docs(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Doc)>, StoreError>;
    /// Applies every write, atomically and durably, if each finds the
    /// version it names; `Ok(false)`, with nothing written, if any does
    /// not. Callable from any thread, beside the persistence thread.
    fn write_docs(&self, writes: Vec<DocWrite>) -> Result<bool, StoreError>;

    /// Calls `f` on each wallet snapshot as stored (the bytes of its last
    /// `PutWallet`, or the same JSON), ordered by user id, until it
    /// returns false. Copying a store reads through this.
    fn each_wallet(
        &self,
        f: &mut dyn FnMut(String, Vec<u8>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;
    /// Every budget ever set, by user id.
    fn budgets(&self) -> Result<Vec<(String, BudgetConfig)>, StoreError>;
    /// Every stored provider configuration, by name.
    fn providers(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError>;
    /// Calls `f` on each stored idempotency answer (user, key, record),
    /// ordered by user then key, until it returns false. Claims still
    /// running have no answer and are not walked.
    fn each_idempotency(
        &self,
        f: &mut dyn FnMut(String, String, IdempotencyRecord) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;

    /// Calls `f` on each request of one user (or everyone's) created in
    /// `[from, to)`, oldest first within a user, until it returns false.
    /// Exports read through this: one consistent view for the whole walk.
    fn each_request(
        &self,
        user_id: Option<&str>,
        from: Millis,
        to: Millis,
        f: &mut dyn FnMut(RequestRecord) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;
    /// Calls `f` on each ledger entry of one user (or everyone's), in seq
    /// order within a user, until it returns false.
    fn each_entry(
        &self,
        user_id: Option<&str>,
        f: &mut dyn FnMut(LedgerEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;
    /// Calls `f` on each rollup row of one width and scope (a user id, or
    /// "" for everyone) with `from <= start < to`, ordered by start then
    /// provider, until it returns false.
    fn each_rollup(
        &self,
        scope: &str,
        b: Bucket,
        from: Millis,
        to: Millis,
        f: &mut dyn FnMut(Millis, &str, Rollup) -> bool,
    ) -> Result<(), StoreError>;
    /// The dense series of one scope (and, if given, one provider) over
    /// `[from, to)` on `b` boundaries.
    fn series(
        &self,
        scope: &str,
        b: Bucket,
        from: Millis,
        to: Millis,
        provider: Option<&str>,
    ) -> Result<Vec<Point>, StoreError>;

    /// The rollup rows of one width and scope in `[from, to)`.
    fn rollup_rows(
        &self,
        scope: &str,
        b: Bucket,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<RollupRow>, StoreError> {
        let mut out = Vec::new();
        self.each_rollup(scope, b, from, to, &mut |start, p, r| {
            out.push((start, p.to_string(), r));
            true
        })?;
        Ok(out)
    }

    /// Totals and per-provider figures of one scope over `[from, to)` (whole
    /// minutes), read from the widest rows that cover it; `None` for all
    /// time.
    fn summary(&self, scope: &str, range: Option<(Millis, Millis)>) -> Result<Summary, StoreError> {
        let parts = match range {
            Some((from, to)) => cover(from, to),
            None => vec![(Bucket::Day, 0, Millis::MAX)],
        };
        let mut rows = Vec::new();
        for (b, from, to) in parts {
            rows.extend(self.rollup_rows(scope, b, from, to)?);
        }
        Ok(summarize(rows.iter().map(|(_, p, r)| (p.as_str(), r))))
    }

    /// Releases every hold a stopped process left open (its request is
    /// recorded as interrupted if it has no record yet), in one commit.
    /// Run once at start, before anyone may spend.
    fn recover(&self, now: Millis) -> Result<Recovery, StoreError> {
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
                bytes: serde_json::to_vec(&w).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            });
        }
        if !ops.is_empty() {
            self.commit(ops)?;
        }
        Ok(report)
    }
}
