//! The [`Store`] methods on PostgreSQL: the same batches and the same
//! reads, in the same orders, as the redb store (its tests compare them).

use tokio_postgres::Row;

use oneflow::analytics::{Bucket, Point, Rollup, SeriesBuilder};
use oneflow::budget::BudgetConfig;
use oneflow::ledger::{LedgerEntry, Wallet};
use oneflow::records::RequestRecord;
use oneflow::time::Millis;

use super::PgStore;
use super::apply::{apply_batch, big, key_time, width};
use super::pool::pg_err;
use super::reads::{Param, col, corrupt, json, param, rollup};
use crate::store::{
    ApiKeyRecord, Doc, DocWrite, IdempotencyRecord, OpenHold, Recovery, RequestCursor, Role, Store,
    StoreError, User, WriteOp,
};

impl PgStore {
    /// Applies `ops` inside `txn` (the caller commits), to the same final
    /// state the redb store reaches; holds are written as this node's.
    pub async fn apply(
        &self,
        txn: &tokio_postgres::Transaction<'_>,
        ops: Vec<WriteOp>,
    ) -> Result<(), StoreError> {
        apply_batch(txn, &self.node_id, ops).await
    }
}

/// A page size as a `LIMIT`.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The rows of one width and scope with `from <= start < to`, by start
/// then provider (and only `provider`'s, if given), as redb ranges them.
fn rollup_query(
    scope: &str,
    b: Bucket,
    from: Millis,
    to: Millis,
    provider: Option<&str>,
) -> Vec<Param> {
    vec![
        param(scope.to_string()),
        param(width(b)),
        param(key_time(from)),
        param(key_time(to)),
        param(provider.map(str::to_string)),
    ]
}

const ROLLUP_ROWS: &str = "SELECT start, provider, count, successes, cost, input_tokens,
        output_tokens, latency_ms_sum, latency_ms_max, latency
    FROM rollups
    WHERE scope = $1 AND width = $2 AND start >= $3 AND start < $4
        AND ($5::text IS NULL OR provider = $5)
    ORDER BY start, provider";

fn request_row(row: &Row) -> Result<((String, i64, String), RequestRecord), StoreError> {
    Ok(((col(row, 0)?, col(row, 1)?, col(row, 2)?), json(row, 3)?))
}

fn entry_row(row: &Row) -> Result<((String, i64), LedgerEntry), StoreError> {
    Ok(((col(row, 0)?, col(row, 1)?), json(row, 2)?))
}

impl Store for PgStore {
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

    /// One transaction, committed before this returns: PostgreSQL's commit
    /// is the durability.
    fn commit(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let pg = self.pg.clone();
        let node_id = self.node_id.clone();
        self.pg.block(async move {
            let mut c = pg.get().await?;
            let txn = c.transaction().await.map_err(pg_err)?;
            apply_batch(&txn, &node_id, ops).await?;
            txn.commit().await.map_err(pg_err)
        })?
    }

    fn open_holds(&self) -> Result<Vec<OpenHold>, StoreError> {
        self.rows("SELECT data FROM holds ORDER BY user_id, hold_id", vec![])?
            .iter()
            .map(|r| json(r, 0))
            .collect()
    }

    fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.row(
            "SELECT data FROM users WHERE id = $1",
            vec![param(id.to_string())],
        )?
        .map(|r| json(&r, 0))
        .transpose()
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        self.rows("SELECT data FROM users ORDER BY id", vec![])?
            .iter()
            .map(|r| json(r, 0))
            .collect()
    }

    fn api_key(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.row(
            "SELECT data FROM api_keys WHERE hash = $1",
            vec![param(hash.to_vec())],
        )?
        .map(|r| json(&r, 0))
        .transpose()
    }

    fn api_keys(&self) -> Result<Vec<([u8; 32], ApiKeyRecord)>, StoreError> {
        self.rows("SELECT hash, data FROM api_keys ORDER BY hash", vec![])?
            .iter()
            .map(|r| {
                let hash: Vec<u8> = col(r, 0)?;
                let hash: [u8; 32] = hash
                    .try_into()
                    .map_err(|_| corrupt("an api_keys hash is not 32 bytes"))?;
                Ok((hash, json(r, 1)?))
            })
            .collect()
    }

    /// Keys are few: decoded here, so the role's spelling in JSON is the
    /// record's own business.
    fn has_admin_key(&self) -> Result<bool, StoreError> {
        Ok(self.api_keys()?.iter().any(|(_, k)| k.role == Role::Admin))
    }

    /// The snapshot with the user's budget attached, as the redb store
    /// gives it, in one query.
    fn wallet(&self, user_id: &str) -> Result<Option<Wallet>, StoreError> {
        let Some(row) = self.row(
            "SELECT w.state, b.data FROM wallets w
             LEFT JOIN budgets b ON b.user_id = w.user_id WHERE w.user_id = $1",
            vec![param(user_id.to_string())],
        )?
        else {
            return Ok(None);
        };
        let mut w: Wallet = json(&row, 0)?;
        let budget: Option<tokio_postgres::types::Json<BudgetConfig>> = col(&row, 1)?;
        w.budget = budget.map(|b| b.0).unwrap_or_default();
        Ok(Some(w))
    }

    fn budget(&self, user_id: &str) -> Result<BudgetConfig, StoreError> {
        Ok(self
            .row(
                "SELECT data FROM budgets WHERE user_id = $1",
                vec![param(user_id.to_string())],
            )?
            .map(|r| json(&r, 0))
            .transpose()?
            .unwrap_or_default())
    }

    fn request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        self.row(
            "SELECT record FROM requests WHERE id = $1",
            vec![param(id.to_string())],
        )?
        .map(|r| json(&r, 0))
        .transpose()
    }

    fn requests_page(
        &self,
        user_id: &str,
        before: Option<&RequestCursor>,
        n: usize,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let user = param(user_id.to_string());
        // A cursor past the largest time we store is after every request.
        let rows = match before.filter(|c| i64::try_from(c.created_at).is_ok()) {
            Some(c) => self.rows(
                "SELECT record FROM requests WHERE user_id = $1 AND (created_at, id) < ($2, $3)
                 ORDER BY created_at DESC, id DESC LIMIT $4",
                vec![
                    user,
                    param(big(c.created_at)),
                    param(c.id.clone()),
                    param(limit(n)),
                ],
            )?,
            None => self.rows(
                "SELECT record FROM requests WHERE user_id = $1
                 ORDER BY created_at DESC, id DESC LIMIT $2",
                vec![user, param(limit(n))],
            )?,
        };
        rows.iter().map(|r| json(r, 0)).collect()
    }

    fn transactions_page(
        &self,
        user_id: &str,
        before: Option<u64>,
        n: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        self.rows(
            "SELECT entry FROM ledger WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            vec![
                param(user_id.to_string()),
                param(big(before.unwrap_or(u64::MAX))),
                param(limit(n)),
            ],
        )?
        .iter()
        .map(|r| json(r, 0))
        .collect()
    }

    /// A row without a record is a claim still running: not an answer.
    fn idempotency(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.row(
            "SELECT record FROM idempotency
             WHERE user_id = $1 AND key = $2 AND record IS NOT NULL",
            vec![
                param(user_id.to_string()),
                param(super::pg_key(key).into_owned()),
            ],
        )?
        .map(|r| json(&r, 0))
        .transpose()
    }

    fn each_wallet(
        &self,
        f: &mut dyn FnMut(String, Vec<u8>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.walk(
            "SELECT user_id, state::text FROM wallets ORDER BY user_id LIMIT $1",
            "SELECT user_id, state::text FROM wallets WHERE user_id > $1
             ORDER BY user_id LIMIT $2",
            |after: Option<&String>| after.map(|u| vec![param(u.clone())]).unwrap_or_default(),
            |row| {
                let user: String = col(row, 0)?;
                let state: String = col(row, 1)?;
                Ok((user.clone(), (user, state.into_bytes())))
            },
            &mut |(user, bytes)| f(user, bytes),
        )
    }

    fn budgets(&self) -> Result<Vec<(String, BudgetConfig)>, StoreError> {
        self.rows("SELECT user_id, data FROM budgets ORDER BY user_id", vec![])?
            .iter()
            .map(|r| Ok((col(r, 0)?, json(r, 1)?)))
            .collect()
    }

    fn providers(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.rows("SELECT name, config FROM providers ORDER BY name", vec![])?
            .iter()
            .map(|r| Ok((col(r, 0)?, json(r, 1)?)))
            .collect()
    }

    fn each_idempotency(
        &self,
        f: &mut dyn FnMut(String, String, IdempotencyRecord) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.walk(
            "SELECT user_id, key, record FROM idempotency WHERE record IS NOT NULL
             ORDER BY user_id, key LIMIT $1",
            "SELECT user_id, key, record FROM idempotency
             WHERE record IS NOT NULL AND (user_id, key) > ($1, $2)
             ORDER BY user_id, key LIMIT $3",
            |after: Option<&(String, String)>| {
                after
                    .map(|(u, k)| vec![param(u.clone()), param(k.clone())])
                    .unwrap_or_default()
            },
            |row| {
                let (user, key): (String, String) = (col(row, 0)?, col(row, 1)?);
                let shown = super::key_from_pg(key.clone());
                Ok(((user.clone(), key), (user, shown, json(row, 2)?)))
            },
            &mut |(user, key, record)| f(user, key, record),
        )
    }

    fn each_request(
        &self,
        user_id: Option<&str>,
        from: Millis,
        to: Millis,
        f: &mut dyn FnMut(RequestRecord) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let (from, to) = (key_time(from), key_time(to));
        match user_id {
            Some(u) => {
                let u = u.to_string();
                self.walk(
                    "SELECT user_id, created_at, id, record FROM requests
                     WHERE user_id = $1 AND created_at >= $2 AND created_at < $3
                     ORDER BY created_at, id LIMIT $4",
                    "SELECT user_id, created_at, id, record FROM requests
                     WHERE user_id = $1 AND created_at >= $2 AND created_at < $3
                         AND (created_at, id) > ($4, $5)
                     ORDER BY created_at, id LIMIT $6",
                    |after: Option<&(String, i64, String)>| {
                        let mut p = vec![param(u.clone()), param(from), param(to)];
                        if let Some((_, at, id)) = after {
                            p.extend([param(*at), param(id.clone())]);
                        }
                        p
                    },
                    request_row,
                    f,
                )
            }
            None => self.walk(
                "SELECT user_id, created_at, id, record FROM requests
                 WHERE created_at >= $1 AND created_at < $2
                 ORDER BY user_id, created_at, id LIMIT $3",
                "SELECT user_id, created_at, id, record FROM requests
                 WHERE created_at >= $1 AND created_at < $2
                     AND (user_id, created_at, id) > ($3, $4, $5)
                 ORDER BY user_id, created_at, id LIMIT $6",
                |after: Option<&(String, i64, String)>| {
                    let mut p = vec![param(from), param(to)];
                    if let Some((user, at, id)) = after {
                        p.extend([param(user.clone()), param(*at), param(id.clone())]);
                    }
                    p
                },
                request_row,
                f,
            ),
        }
    }

    fn each_entry(
        &self,
        user_id: Option<&str>,
        f: &mut dyn FnMut(LedgerEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        match user_id {
            Some(u) => {
                let u = u.to_string();
                self.walk(
                    "SELECT user_id, seq, entry FROM ledger WHERE user_id = $1
                     ORDER BY seq LIMIT $2",
                    "SELECT user_id, seq, entry FROM ledger WHERE user_id = $1 AND seq > $2
                     ORDER BY seq LIMIT $3",
                    |after: Option<&(String, i64)>| {
                        let mut p = vec![param(u.clone())];
                        if let Some((_, seq)) = after {
                            p.push(param(*seq));
                        }
                        p
                    },
                    entry_row,
                    f,
                )
            }
            None => self.walk(
                "SELECT user_id, seq, entry FROM ledger ORDER BY user_id, seq LIMIT $1",
                "SELECT user_id, seq, entry FROM ledger WHERE (user_id, seq) > ($1, $2)
                 ORDER BY user_id, seq LIMIT $3",
                |after: Option<&(String, i64)>| {
                    after
                        .map(|(u, seq)| vec![param(u.clone()), param(*seq)])
                        .unwrap_or_default()
                },
                entry_row,
                f,
            ),
        }
    }

    /// A range's rows are few (buckets x providers): one query.
    fn each_rollup(
        &self,
        scope: &str,
        b: Bucket,
        from: Millis,
        to: Millis,
        f: &mut dyn FnMut(Millis, &str, Rollup) -> bool,
    ) -> Result<(), StoreError> {
        if from >= to {
            return Ok(());
        }
        for row in self.rows(ROLLUP_ROWS, rollup_query(scope, b, from, to, None))? {
            let provider: &str = col(&row, 1)?;
            if !f(col(&row, 0)?, provider, rollup(&row, 2)?) {
                break;
            }
        }
        Ok(())
    }

    fn series(
        &self,
        scope: &str,
        b: Bucket,
        from: Millis,
        to: Millis,
        provider: Option<&str>,
    ) -> Result<Vec<Point>, StoreError> {
        let mut out = SeriesBuilder::new(b, from, to);
        if from < to {
            for row in self.rows(ROLLUP_ROWS, rollup_query(scope, b, from, to, provider))? {
                if let Some(slot) = out.slot(col(&row, 0)?) {
                    slot.merge(&rollup(&row, 2)?);
                }
            }
        }
        Ok(out.finish())
    }

    /// Holds are released by their node's lease, not at start: another
    /// node may be running with holds of its own open.
    fn recover(&self, _now: Millis) -> Result<Recovery, StoreError> {
        Ok(Recovery::default())
    }
}
