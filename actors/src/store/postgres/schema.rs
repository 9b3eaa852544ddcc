//! The PostgreSQL schema and its migrations, carried in the binary: run by
//! `oneflow migrate` and at every start, each version once, under an
//! advisory lock so that nodes starting together do not race.
//!
//! Rows keep the same JSON the redb store keeps, with the columns queries
//! select or order by beside it. The JSON columns are `json`, not `jsonb`:
//! `jsonb` refuses a string holding U+0000, which any prompt or answer may
//! hold, and one such request would fail its whole batch; nothing queries
//! inside the JSON, and `json` keeps it byte for byte. Amounts are micro-credits
//! (`bigint`), times milliseconds since the Unix epoch (`bigint`).

use tokio_postgres::Client;

use super::pool::pg_err;
use crate::store::StoreError;

/// The newest schema this build writes.
pub const PG_SCHEMA_VERSION: i32 = 2;

/// Any number; every OneFlow node takes this lock to migrate.
const MIGRATION_LOCK: i64 = 0x0F1E_F10E;

/// Version `i + 1` is `MIGRATIONS[i]`. Never edit one that has shipped:
/// add the next.
const MIGRATIONS: &[&str] = &[
    r#"
-- Text keys compare as bytes ("C"): pages and walks come out in the order
-- the redb store gives, whatever the database's default collation.
CREATE TABLE users (
    id text COLLATE "C" PRIMARY KEY,
    data json NOT NULL
);
CREATE TABLE api_keys (
    hash bytea PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    data json NOT NULL
);
-- The wallet as the ledger leaves it (balance, holds, budget windows):
-- every change is written only where `version` is still the one it was
-- computed from, so no two nodes can both spend the same money.
CREATE TABLE wallets (
    user_id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    state json NOT NULL
);
CREATE TABLE budgets (
    user_id text COLLATE "C" PRIMARY KEY,
    data json NOT NULL
);
CREATE TABLE providers (
    name text COLLATE "C" PRIMARY KEY,
    config json NOT NULL
);
-- Append-only, one row per entry.
CREATE TABLE ledger (
    user_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    entry json NOT NULL,
    PRIMARY KEY (user_id, seq)
);
-- Holds open now, with the node that opened them: a dead node's are
-- released by another (nodes below).
CREATE TABLE holds (
    user_id text COLLATE "C" NOT NULL,
    hold_id bigint NOT NULL,
    node_id text COLLATE "C" NOT NULL,
    data json NOT NULL,
    PRIMARY KEY (user_id, hold_id)
);
CREATE INDEX holds_by_node ON holds (node_id);
CREATE TABLE requests (
    id text COLLATE "C" PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    record json NOT NULL
);
CREATE INDEX requests_by_user ON requests (user_id, created_at, id);
CREATE INDEX requests_by_time ON requests (created_at, id);
-- `record` NULL: claimed by `node_id` and running; set: the first answer.
CREATE TABLE idempotency (
    user_id text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    answered_at bigint NOT NULL,
    node_id text COLLATE "C",
    record json,
    PRIMARY KEY (user_id, key)
);
-- The purge reads answered records oldest first.
CREATE INDEX idempotency_by_time ON idempotency (answered_at, user_id, key)
    WHERE record IS NOT NULL;
-- Sums of finished requests per scope (a user id, or '' for everyone),
-- bucket width (0 minute, 1 hour, 2 day), bucket start and provider;
-- added to by upsert, so nodes never overwrite each other's sums.
CREATE TABLE rollups (
    scope text COLLATE "C" NOT NULL,
    width smallint NOT NULL,
    start bigint NOT NULL,
    provider text COLLATE "C" NOT NULL,
    count bigint NOT NULL,
    successes bigint NOT NULL,
    cost bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    latency_ms_sum bigint NOT NULL,
    latency_ms_max bigint NOT NULL,
    latency bigint[] NOT NULL,
    PRIMARY KEY (scope, width, start, provider)
);
-- Every node that ran, and when it last renewed its lease.
CREATE TABLE nodes (
    id text COLLATE "C" PRIMARY KEY,
    version text COLLATE "C" NOT NULL,
    started_at bigint NOT NULL,
    heartbeat_at bigint NOT NULL
);
"#,
    r#"
-- Documents (store/docs.rs): the account side's records, each written only
-- where `version` is still the one its writer read.
CREATE TABLE docs (
    kind text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (kind, id)
);
"#,
];

/// Brings the schema up to [`PG_SCHEMA_VERSION`]; returns the versions it
/// applied. A database written by a newer build is refused.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    let txn = client.transaction().await.map_err(pg_err)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS oneflow_schema (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(pg_err)?;
    let row = txn
        .query_one("SELECT coalesce(max(version), 0) FROM oneflow_schema", &[])
        .await
        .map_err(pg_err)?;
    let found: i32 = row.get(0);
    if found > PG_SCHEMA_VERSION {
        return Err(StoreError::Schema {
            found: found as u64,
        });
    }
    let mut applied = Vec::new();
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i32 + 1;
        txn.batch_execute(sql).await.map_err(pg_err)?;
        txn.execute(
            "INSERT INTO oneflow_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(pg_err)?;
        applied.push(version);
    }
    txn.commit().await.map_err(pg_err)?;
    Ok(applied)
}
