//! The [`Store`] methods on PostgreSQL. (Being written: every method fails
//! until it is.)

use oneflow::analytics::{Bucket, Point, Rollup};
use oneflow::budget::BudgetConfig;
use oneflow::ledger::{LedgerEntry, Wallet};
use oneflow::records::RequestRecord;
use oneflow::time::Millis;

use super::PgStore;
use crate::store::{
    ApiKeyRecord, IdempotencyRecord, OpenHold, Recovery, RequestCursor, Store, StoreError, User,
    WriteOp,
};

fn todo<T>() -> Result<T, StoreError> {
    Err(StoreError::Backend(
        "postgres store: not written yet".into(),
    ))
}

impl PgStore {
    /// Applies `ops` inside `txn` (the caller commits).
    pub(crate) async fn apply(
        &self,
        _txn: &tokio_postgres::Transaction<'_>,
        _ops: Vec<WriteOp>,
    ) -> Result<(), StoreError> {
        todo()
    }
}

impl Store for PgStore {
    fn commit(&self, _ops: Vec<WriteOp>) -> Result<(), StoreError> {
        todo()
    }
    fn open_holds(&self) -> Result<Vec<OpenHold>, StoreError> {
        todo()
    }
    fn user(&self, _id: &str) -> Result<Option<User>, StoreError> {
        todo()
    }
    fn users(&self) -> Result<Vec<User>, StoreError> {
        todo()
    }
    fn api_key(&self, _hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        todo()
    }
    fn api_keys(&self) -> Result<Vec<([u8; 32], ApiKeyRecord)>, StoreError> {
        todo()
    }
    fn has_admin_key(&self) -> Result<bool, StoreError> {
        todo()
    }
    fn wallet(&self, _user_id: &str) -> Result<Option<Wallet>, StoreError> {
        todo()
    }
    fn budget(&self, _user_id: &str) -> Result<BudgetConfig, StoreError> {
        todo()
    }
    fn request(&self, _id: &str) -> Result<Option<RequestRecord>, StoreError> {
        todo()
    }
    fn requests_page(
        &self,
        _user_id: &str,
        _before: Option<&RequestCursor>,
        _limit: usize,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        todo()
    }
    fn transactions_page(
        &self,
        _user_id: &str,
        _before: Option<u64>,
        _limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        todo()
    }
    fn idempotency(
        &self,
        _user_id: &str,
        _key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        todo()
    }
    fn each_request(
        &self,
        _user_id: Option<&str>,
        _from: Millis,
        _to: Millis,
        _f: &mut dyn FnMut(RequestRecord) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        todo()
    }
    fn each_entry(
        &self,
        _user_id: Option<&str>,
        _f: &mut dyn FnMut(LedgerEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        todo()
    }
    fn each_rollup(
        &self,
        _scope: &str,
        _b: Bucket,
        _from: Millis,
        _to: Millis,
        _f: &mut dyn FnMut(Millis, &str, Rollup) -> bool,
    ) -> Result<(), StoreError> {
        todo()
    }
    fn series(
        &self,
        _scope: &str,
        _b: Bucket,
        _from: Millis,
        _to: Millis,
        _provider: Option<&str>,
    ) -> Result<Vec<Point>, StoreError> {
        todo()
    }
    /// Holds are released by their node's lease, not at start: another
    /// node may be running with holds of its own open.
    fn recover(&self, _now: Millis) -> Result<Recovery, StoreError> {
        Ok(Recovery::default())
    }
}
