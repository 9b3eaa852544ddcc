//! How the synchronous [`Store`] reads query PostgreSQL: one query on a
//! pooled connection ([`PgStore::rows`]), or a walk over many rows in pages
//! inside one snapshot ([`PgStore::walk`]), and decoding what comes back.
//!
//! [`Store`]: crate::store::Store

use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};

use oneflow::Credits;
use oneflow::analytics::{LATENCY_SLOTS, Rollup};

use super::PgStore;
use super::pool::{Conn, Pg, pg_err};
use crate::store::StoreError;

/// A statement parameter owned by the query that carries it to the
/// connections' thread.
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

pub(super) fn param<T: ToSql + Sync + Send + 'static>(v: T) -> Param {
    Box::new(v)
}

/// Rows a walk fetches per query: enough that the round trips do not
/// matter, few enough that a walk over millions holds little at a time.
pub(super) const PAGE: usize = 1000;

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as _).collect()
}

pub(super) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Column `i` of `row`, decoded from its JSON.
pub(super) fn json<T: DeserializeOwned>(row: &Row, i: usize) -> Result<T, StoreError> {
    row.try_get::<_, Json<T>>(i).map(|j| j.0).map_err(corrupt)
}

/// Column `i` of `row`, typed.
pub(super) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(corrupt)
}

/// A stored count or time: negative only if the row is broken.
pub(super) fn nat(row: &Row, i: usize) -> Result<u64, StoreError> {
    u64::try_from(col::<i64>(row, i)?).map_err(corrupt)
}

/// A rollup from the columns `count` .. `latency` starting at `i`.
pub(super) fn rollup(row: &Row, i: usize) -> Result<Rollup, StoreError> {
    let latency: Vec<i64> = col(row, i + 7)?;
    let mut slots = vec![0u64; LATENCY_SLOTS.max(latency.len())];
    for (slot, c) in slots.iter_mut().zip(latency) {
        *slot = u64::try_from(c).map_err(corrupt)?;
    }
    Ok(Rollup {
        count: nat(row, i)?,
        successes: nat(row, i + 1)?,
        cost: Credits(col(row, i + 2)?),
        input_tokens: nat(row, i + 3)?,
        output_tokens: nat(row, i + 4)?,
        latency_ms_sum: nat(row, i + 5)?,
        latency_ms_max: nat(row, i + 6)?,
        latency: slots,
    })
}

impl PgStore {
    /// Runs one query on a pooled connection and returns its rows.
    pub(super) fn rows(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Vec<Row>, StoreError> {
        let pg = self.pg.clone();
        self.pg.block(async move {
            let c = pg.get().await?;
            c.query(sql, &refs(&params)).await.map_err(pg_err)
        })?
    }

    /// At most one row.
    pub(super) fn row(
        &self,
        sql: &'static str,
        params: Vec<Param>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// Walks rows in pages of [`PAGE`], all read in one snapshot (a
    /// repeatable-read, read-only transaction), calling `f` on each decoded
    /// item until it returns false.
    ///
    /// `first` and `next` are the query of the first page and of the pages
    /// after a key (keyset paging: `next` resumes after the last row's key,
    /// so a page costs its rows, not an offset). `params` gives a page's
    /// parameters from the key it resumes after (`None` for the first);
    /// the page size is appended as the last parameter. `decode` returns
    /// a row's key and item.
    pub(super) fn walk<K, T>(
        &self,
        first: &'static str,
        next: &'static str,
        params: impl Fn(Option<&K>) -> Vec<Param>,
        decode: impl Fn(&Row) -> Result<(K, T), StoreError>,
        f: &mut dyn FnMut(T) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut snap = Snapshot::begin(&self.pg)?;
        let mut key: Option<K> = None;
        loop {
            let mut p = params(key.as_ref());
            p.push(param(PAGE as i64));
            let sql = if key.is_none() { first } else { next };
            let rows = snap.query(sql, p)?;
            for row in &rows {
                let (k, item) = decode(row)?;
                key = Some(k);
                if !f(item)? {
                    return snap.finish();
                }
            }
            if rows.len() < PAGE {
                return snap.finish();
            }
        }
    }
}

/// A connection held in a read-only snapshot across several queries.
/// Dropped unfinished (an error, a panic in a callback), it rolls back
/// before the connection goes back to the pool.
struct Snapshot {
    pg: Pg,
    conn: Option<Conn>,
}

impl Snapshot {
    fn begin(pg: &Pg) -> Result<Snapshot, StoreError> {
        let p = pg.clone();
        let conn = pg.block(async move {
            let c = p.get().await?;
            c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await
                .map_err(pg_err)?;
            Ok::<_, StoreError>(c)
        })??;
        Ok(Snapshot {
            pg: pg.clone(),
            conn: Some(conn),
        })
    }

    fn query(&mut self, sql: &'static str, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
        let c = self.conn.take().ok_or(StoreError::Closed)?;
        let (c, rows) = self.pg.block(async move {
            let rows = c.query(sql, &refs(&params)).await;
            (c, rows)
        })?;
        self.conn = Some(c);
        rows.map_err(pg_err)
    }

    fn finish(mut self) -> Result<(), StoreError> {
        let Some(c) = self.conn.take() else {
            return Ok(());
        };
        self.pg
            .block(async move { c.batch_execute("COMMIT").await.map_err(pg_err) })?
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = self.pg.block(async move {
                let _ = c.batch_execute("ROLLBACK").await;
            });
        }
    }
}
