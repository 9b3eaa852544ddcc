//! Applying one batch of writes to PostgreSQL inside a transaction the
//! caller owns.
//!
//! The batch is first folded per table (what a later write in the batch
//! makes moot is dropped the way the redb store drops it, see
//! `batch::moot`), then each table gets one multi-row statement (arrays
//! through `unnest`), and the statements go out together: the driver
//! pipelines them on the one connection, so a batch costs about two round
//! trips whatever its size. Keys are sorted, so two nodes writing the same
//! rows lock them in the same order and never deadlock.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use futures_util::future::try_join_all;
use tokio_postgres::Transaction;
use tokio_postgres::types::{Json, ToSql};

use oneflow::analytics::Bucket;
use oneflow::budget::BudgetConfig;
use oneflow::ledger::LedgerEntry;
use oneflow::records::RequestRecord;
use oneflow::time::Millis;

use super::pool::pg_err;
use crate::store::rollups::Deltas;
use crate::store::{ApiKeyRecord, IdempotencyRecord, OpenHold, StoreError, User, WriteOp, batch};

/// One statement (or a chain of them that must run in order) of a batch.
type Step<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// A parameter of a statement, owned by the statement's future.
type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

fn param<'a, T: ToSql + Sync + Send + 'a>(v: T) -> Param<'a> {
    Box::new(v)
}

/// An amount or count as PostgreSQL's `bigint`. Nothing we store comes
/// near 2^63; were it to, the largest value is kept rather than a wrapped
/// negative one.
pub(super) fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A time as the redb store keys it (times before the epoch as 0), so both
/// stores order and range over the same values.
pub(super) fn key_time(at: Millis) -> i64 {
    at.max(0)
}

/// Rollup widths as stored in `rollups.width`.
pub(super) fn width(b: Bucket) -> i16 {
    match b {
        Bucket::Minute => 0,
        Bucket::Hour => 1,
        Bucket::Day => 2,
    }
}

/// Idempotency writes, in the order they must run: a purge must see the
/// records put before it in the batch (and only those).
enum Idem {
    Put(BTreeMap<(String, String), Box<IdempotencyRecord>>),
    Purge { before: Millis, limit: usize },
}

/// A batch folded per table: the last write to each key wins, as it would
/// applying the writes one by one.
#[derive(Default)]
struct Folded {
    users: BTreeMap<String, User>,
    /// `None`: deleted.
    keys: BTreeMap<[u8; 32], Option<ApiKeyRecord>>,
    wallets: BTreeMap<String, Vec<u8>>,
    budgets: BTreeMap<String, BudgetConfig>,
    providers: BTreeMap<String, serde_json::Value>,
    entries: Vec<LedgerEntry>,
    /// `None`: deleted.
    holds: BTreeMap<(String, u64), Option<Box<OpenHold>>>,
    requests: BTreeMap<String, Box<RequestRecord>>,
    rollups: Deltas,
    idempotency: Vec<Idem>,
}

impl Folded {
    fn add(&mut self, op: WriteOp) {
        match op {
            WriteOp::PutUser(u) => {
                self.users.insert(u.id.clone(), u);
            }
            WriteOp::PutKey { hash, record } => {
                self.keys.insert(hash, Some(record));
            }
            WriteOp::DeleteKey { hash } => {
                self.keys.insert(hash, None);
            }
            WriteOp::PutWallet { user_id, bytes } => {
                self.wallets.insert(user_id, bytes);
            }
            WriteOp::PutBudget { user_id, budget } => {
                self.budgets.insert(user_id, budget);
            }
            WriteOp::PutProvider { name, config } => {
                self.providers.insert(name, config);
            }
            WriteOp::AppendEntry(e) => self.entries.push(e),
            WriteOp::PutHold(h) => {
                self.holds
                    .insert((h.hold.user_id.clone(), h.hold.id), Some(h));
            }
            WriteOp::DeleteHold { user_id, id } => {
                self.holds.insert((user_id, id), None);
            }
            WriteOp::PutRequest(r) => {
                // Every write of a request adds to the rollups, as in redb.
                self.rollups.add(&r);
                self.requests.insert(r.id.clone(), r);
            }
            WriteOp::PutIdempotency {
                user_id,
                key,
                record,
            } => {
                if !matches!(self.idempotency.last(), Some(Idem::Put(_))) {
                    self.idempotency.push(Idem::Put(BTreeMap::new()));
                }
                if let Some(Idem::Put(puts)) = self.idempotency.last_mut() {
                    puts.insert((user_id, key), record);
                }
            }
            WriteOp::PurgeIdempotency { before, limit } => {
                self.idempotency.push(Idem::Purge { before, limit });
            }
        }
    }
}

/// Applies `ops` in `txn`, to the same final state the redb store's
/// `apply_all` reaches. Holds are written as `node_id`'s.
pub(super) async fn apply_batch(
    txn: &Transaction<'_>,
    node_id: &str,
    ops: Vec<WriteOp>,
) -> Result<(), StoreError> {
    let skip = batch::moot(&ops);
    let mut b = Folded::default();
    for (op, skip) in ops.into_iter().zip(skip) {
        if !skip {
            b.add(op);
        }
    }
    let mut steps: Vec<Step<'_>> = Vec::new();
    let run = |sql, params| exec(txn, sql, params);

    if !b.users.is_empty() {
        let ids: Vec<&str> = b.users.keys().map(String::as_str).collect();
        let data: Vec<Json<&User>> = b.users.values().map(Json).collect();
        steps.push(run(
            "INSERT INTO users (id, data) SELECT * FROM unnest($1::text[], $2::json[])
             ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            vec![param(ids), param(data)],
        ));
    }

    let (mut put_hashes, mut put_users, mut put_keys, mut gone_keys) =
        (vec![], vec![], vec![], vec![]);
    for (hash, rec) in &b.keys {
        match rec {
            Some(r) => {
                put_hashes.push(hash.as_slice());
                put_users.push(r.user_id.as_str());
                put_keys.push(Json(r));
            }
            None => gone_keys.push(hash.as_slice()),
        }
    }
    if !put_hashes.is_empty() {
        steps.push(run(
            "INSERT INTO api_keys (hash, user_id, data)
             SELECT * FROM unnest($1::bytea[], $2::text[], $3::json[])
             ON CONFLICT (hash) DO UPDATE SET user_id = excluded.user_id, data = excluded.data",
            vec![param(put_hashes), param(put_users), param(put_keys)],
        ));
    }
    if !gone_keys.is_empty() {
        steps.push(run(
            "DELETE FROM api_keys WHERE hash = ANY($1::bytea[])",
            vec![param(gone_keys)],
        ));
    }

    if !b.wallets.is_empty() {
        let users: Vec<&str> = b.wallets.keys().map(String::as_str).collect();
        let states = b
            .wallets
            .values()
            .map(|v| std::str::from_utf8(v))
            .collect::<Result<Vec<&str>, _>>()
            .map_err(|e| StoreError::Corrupt(format!("a wallet snapshot is not text: {e}")))?;
        // The snapshot goes in as the wallet serialised it; the server
        // parses it. A new version on every write lets the shared wallets
        // write only over the version they read.
        steps.push(run(
            "INSERT INTO wallets (user_id, version, state)
             SELECT u, 1, s::json FROM unnest($1::text[], $2::text[]) AS t(u, s)
             ON CONFLICT (user_id) DO UPDATE
             SET version = wallets.version + 1, state = excluded.state",
            vec![param(users), param(states)],
        ));
    }

    if !b.budgets.is_empty() {
        let users: Vec<&str> = b.budgets.keys().map(String::as_str).collect();
        let data: Vec<Json<&BudgetConfig>> = b.budgets.values().map(Json).collect();
        steps.push(run(
            "INSERT INTO budgets (user_id, data) SELECT * FROM unnest($1::text[], $2::json[])
             ON CONFLICT (user_id) DO UPDATE SET data = excluded.data",
            vec![param(users), param(data)],
        ));
    }

    if !b.providers.is_empty() {
        let names: Vec<&str> = b.providers.keys().map(String::as_str).collect();
        let data: Vec<Json<&serde_json::Value>> = b.providers.values().map(Json).collect();
        steps.push(run(
            "INSERT INTO providers (name, config) SELECT * FROM unnest($1::text[], $2::json[])
             ON CONFLICT (name) DO UPDATE SET config = excluded.config",
            vec![param(names), param(data)],
        ));
    }

    if !b.entries.is_empty() {
        let users: Vec<&str> = b.entries.iter().map(|e| e.user_id.as_str()).collect();
        let seqs: Vec<i64> = b.entries.iter().map(|e| big(e.seq)).collect();
        let data: Vec<Json<&LedgerEntry>> = b.entries.iter().map(Json).collect();
        // Append-only: an entry whose seq is taken is a broken wallet, and
        // the whole batch fails rather than overwrite history.
        steps.push(run(
            "INSERT INTO ledger (user_id, seq, entry)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::json[])",
            vec![param(users), param(seqs), param(data)],
        ));
    }

    let (mut put_holds, mut gone_holds) = (Vec::new(), Vec::new());
    for ((user, id), h) in &b.holds {
        match h {
            Some(h) => put_holds.push((user.as_str(), big(*id), Json(&**h))),
            None => gone_holds.push((user.as_str(), big(*id))),
        }
    }
    if !put_holds.is_empty() {
        let (users, rest): (Vec<&str>, Vec<_>) =
            put_holds.into_iter().map(|(u, i, d)| (u, (i, d))).unzip();
        let (ids, data): (Vec<i64>, Vec<Json<&OpenHold>>) = rest.into_iter().unzip();
        steps.push(run(
            "INSERT INTO holds (user_id, hold_id, node_id, data)
             SELECT u, i, $3, d FROM unnest($1::text[], $2::int8[], $4::json[]) AS t(u, i, d)
             ON CONFLICT (user_id, hold_id) DO UPDATE
             SET node_id = excluded.node_id, data = excluded.data",
            vec![param(users), param(ids), param(node_id), param(data)],
        ));
    }
    if !gone_holds.is_empty() {
        let (users, ids): (Vec<&str>, Vec<i64>) = gone_holds.into_iter().unzip();
        steps.push(run(
            "DELETE FROM holds h USING unnest($1::text[], $2::int8[]) AS d(u, i)
             WHERE h.user_id = d.u AND h.hold_id = d.i",
            vec![param(users), param(ids)],
        ));
    }

    if !b.requests.is_empty() {
        let ids: Vec<&str> = b.requests.keys().map(String::as_str).collect();
        let users: Vec<&str> = b.requests.values().map(|r| r.user_id.as_str()).collect();
        let times: Vec<i64> = b
            .requests
            .values()
            .map(|r| key_time(r.created_at))
            .collect();
        let data: Vec<Json<&RequestRecord>> = b.requests.values().map(|r| Json(&**r)).collect();
        steps.push(run(
            "INSERT INTO requests (id, user_id, created_at, record)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::json[])
             ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id,
                 created_at = excluded.created_at, record = excluded.record",
            vec![param(ids), param(users), param(times), param(data)],
        ));
    }

    let rollups = std::mem::take(&mut b.rollups);
    steps.push(Box::pin(add_rollups(txn, rollups)));

    if !b.idempotency.is_empty() {
        steps.push(Box::pin(idempotency(txn, &b.idempotency)));
    }

    try_join_all(steps).await?;
    Ok(())
}

fn exec<'a>(txn: &'a Transaction<'_>, sql: &'static str, params: Vec<Param<'a>>) -> Step<'a> {
    Box::pin(async move {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as _).collect();
        txn.execute(sql, &refs).await.map_err(pg_err)?;
        Ok(())
    })
}

/// Adds the batch's rollup deltas to the stored rows, each in one upsert
/// that adds on the server: two nodes adding to the same row both count.
async fn add_rollups(txn: &Transaction<'_>, deltas: Deltas) -> Result<(), StoreError> {
    let rows: Vec<_> = deltas.into_rows().collect();
    if rows.is_empty() {
        return Ok(());
    }
    let stmt = txn
        .prepare(
            "INSERT INTO rollups AS r (scope, width, start, provider, count, successes, cost,
                 input_tokens, output_tokens, latency_ms_sum, latency_ms_max, latency)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (scope, width, start, provider) DO UPDATE SET
                 count = r.count + excluded.count,
                 successes = r.successes + excluded.successes,
                 cost = r.cost + excluded.cost,
                 input_tokens = r.input_tokens + excluded.input_tokens,
                 output_tokens = r.output_tokens + excluded.output_tokens,
                 latency_ms_sum = r.latency_ms_sum + excluded.latency_ms_sum,
                 latency_ms_max = greatest(r.latency_ms_max, excluded.latency_ms_max),
                 latency = ARRAY(
                     SELECT coalesce(a, 0) + coalesce(b, 0)
                     FROM unnest(r.latency, excluded.latency) WITH ORDINALITY AS t(a, b, i)
                     ORDER BY i)",
        )
        .await
        .map_err(pg_err)?;
    // Sent in this (sorted) order on the one connection: see the module
    // comment on deadlocks.
    let writes = rows.iter().map(|((b, scope, start, provider), r)| {
        let stmt = &stmt;
        async move {
            let latency: Vec<i64> = r.latency.iter().map(|c| big(*c)).collect();
            txn.execute(
                stmt,
                &[
                    &scope.as_str(),
                    &width(*b),
                    &big(*start),
                    &provider.as_str(),
                    &big(r.count),
                    &big(r.successes),
                    &r.cost.0,
                    &big(r.input_tokens),
                    &big(r.output_tokens),
                    &big(r.latency_ms_sum),
                    &big(r.latency_ms_max),
                    &latency,
                ],
            )
            .await
            .map_err(pg_err)
        }
    });
    try_join_all(writes).await?;
    Ok(())
}

/// The batch's idempotency writes, in order.
async fn idempotency(txn: &Transaction<'_>, steps: &[Idem]) -> Result<(), StoreError> {
    for step in steps {
        match step {
            Idem::Put(puts) => {
                let users: Vec<&str> = puts.keys().map(|(u, _)| u.as_str()).collect();
                let keys: Vec<std::borrow::Cow<'_, str>> =
                    puts.keys().map(|(_, k)| super::pg_key(k)).collect();
                let at: Vec<i64> = puts.values().map(|r| r.answered_at()).collect();
                let data: Vec<Json<&IdempotencyRecord>> =
                    puts.values().map(|r| Json(&**r)).collect();
                txn.execute(
                    "INSERT INTO idempotency (user_id, key, answered_at, node_id, record)
                     SELECT u, k, a, NULL, r
                     FROM unnest($1::text[], $2::text[], $3::int8[], $4::json[]) AS t(u, k, a, r)
                     ON CONFLICT (user_id, key) DO UPDATE SET answered_at = excluded.answered_at,
                         node_id = NULL, record = excluded.record",
                    &[&users, &keys, &at, &data],
                )
                .await
                .map_err(pg_err)?;
            }
            Idem::Purge { before, limit } => {
                let limit = i64::try_from(*limit).unwrap_or(i64::MAX);
                // Claims in progress (no record yet) are not the purge's.
                let n = txn
                    .execute(
                        "DELETE FROM idempotency WHERE (user_id, key) IN (
                             SELECT user_id, key FROM idempotency
                             WHERE record IS NOT NULL AND answered_at < $1
                             ORDER BY answered_at, user_id, key LIMIT $2)",
                        &[before, &limit],
                    )
                    .await
                    .map_err(pg_err)?;
                crate::metrics::idempotency_purged(usize::try_from(n).unwrap_or(usize::MAX));
            }
        }
    }
    Ok(())
}
