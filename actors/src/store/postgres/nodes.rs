//! Nodes and their leases. A node renews its row while it runs; holds and
//! idempotency claims carry the node that made them, so when a node stops
//! renewing, whichever node looks first finds what it left open.
//!
//! Times here are the database server's clock, never a node's: two nodes'
//! clocks may disagree, the server's is one clock for all of them.

use tokio_postgres::types::Json;

use super::{PgStore, pg_err};
use oneflow::records::RequestRecord;

use crate::store::{OpenHold, StoreError, WriteOp};
use crate::views::NodeSeen;

/// Taken by the node purging expired idempotency answers.
const PURGE_LOCK: i64 = 0x0F1E_0001;

/// The server's clock in milliseconds since the Unix epoch.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A hold whose node's lease has run out (or this node's own, left by a
/// commit whose outcome it never learned).
#[derive(Debug)]
pub struct Orphan {
    pub node_id: String,
    pub hold: OpenHold,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl PgStore {
    /// Records this node as started (or started again) and alive.
    pub async fn register_node(&self, version: &str) -> Result<(), StoreError> {
        let c = self.pg.get().await?;
        let sql = format!(
            "INSERT INTO nodes (id, version, started_at, heartbeat_at)
             VALUES ($1, $2, {NOW_MS}, {NOW_MS})
             ON CONFLICT (id) DO UPDATE SET version = excluded.version,
               started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at"
        );
        c.execute(&sql, &[&self.node_id, &version])
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    /// Renews this node's lease, on `c` (a connection of the lease's own,
    /// so a busy pool never delays it).
    pub async fn heartbeat(&self, c: &tokio_postgres::Client) -> Result<(), StoreError> {
        let sql = format!("UPDATE nodes SET heartbeat_at = {NOW_MS} WHERE id = $1");
        c.execute(&sql, &[&self.node_id]).await.map_err(pg_err)?;
        Ok(())
    }

    /// Gives up this node's lease at a clean stop, so anything it still
    /// had open is released by the next node that looks, at once.
    pub async fn leave(&self) -> Result<(), StoreError> {
        let c = self.pg.get().await?;
        c.execute(
            "UPDATE nodes SET heartbeat_at = 0 WHERE id = $1",
            &[&self.node_id],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    /// Every node seen, newest first.
    pub async fn nodes(&self, lease_ms: i64) -> Result<Vec<NodeSeen>, StoreError> {
        let c = self.pg.get().await?;
        let sql = format!(
            "SELECT id, version, started_at, heartbeat_at,
                    heartbeat_at >= {NOW_MS} - $1 AS alive
             FROM nodes ORDER BY started_at DESC LIMIT 100"
        );
        let rows = c.query(&sql, &[&lease_ms]).await.map_err(pg_err)?;
        Ok(rows
            .iter()
            .map(|r| NodeSeen {
                id: r.get(0),
                version: r.get(1),
                started_at: r.get(2),
                heartbeat_at: r.get(3),
                alive: r.get(4),
            })
            .collect())
    }

    /// Holds of nodes whose lease ran out (or that never registered),
    /// oldest first, at most `limit`.
    pub async fn orphan_holds(&self, lease_ms: i64, limit: i64) -> Result<Vec<Orphan>, StoreError> {
        let sql = format!(
            "SELECT h.node_id, h.data FROM holds h LEFT JOIN nodes n ON n.id = h.node_id
             WHERE h.node_id <> $1 AND (n.id IS NULL OR n.heartbeat_at < {NOW_MS} - $2)
             ORDER BY h.hold_id LIMIT $3"
        );
        self.orphans(&sql, &[&self.node_id, &lease_ms, &limit])
            .await
    }

    /// This node's own holds opened before `before` (by the hold's clock),
    /// oldest first, at most `limit`: the caller knows which of them a
    /// request still waits on.
    pub async fn own_old_holds(&self, before: i64, limit: i64) -> Result<Vec<Orphan>, StoreError> {
        let sql = "SELECT node_id, data FROM holds
             WHERE node_id = $1 AND (data->'hold'->>'at')::bigint < $2
             ORDER BY hold_id LIMIT $3";
        self.orphans(sql, &[&self.node_id, &before, &limit]).await
    }

    async fn orphans(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Orphan>, StoreError> {
        let c = self.pg.get().await?;
        let rows = c.query(sql, params).await.map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                let Json(hold): Json<OpenHold> = r.try_get(1).map_err(corrupt)?;
                Ok(Orphan {
                    node_id: r.get(0),
                    hold,
                })
            })
            .collect()
    }

    /// This node's idempotency claims made before `before`, still without
    /// an answer.
    pub async fn own_old_claims(&self, before: i64) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.pg.get().await?;
        let rows = c
            .query(
                "SELECT user_id, key FROM idempotency
                 WHERE record IS NULL AND node_id = $1 AND answered_at < $2 LIMIT 1000",
                &[&self.node_id, &before],
            )
            .await
            .map_err(pg_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Deletes answered idempotency records older than `before`, at most
    /// `limit`, unless another node is purging right now (one is enough).
    pub async fn purge_answers(&self, before: i64, limit: usize) -> Result<(), StoreError> {
        let mut c = self.pg.get().await?;
        let txn = c.transaction().await.map_err(pg_err)?;
        let row = txn
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK])
            .await
            .map_err(pg_err)?;
        if !row.get::<_, bool>(0) {
            return Ok(());
        }
        self.apply(&txn, vec![WriteOp::PurgeIdempotency { before, limit }])
            .await?;
        txn.commit().await.map_err(pg_err)
    }

    /// Frees the idempotency claims of nodes whose lease ran out: their
    /// requests will never answer.
    pub async fn drop_dead_claims(&self, lease_ms: i64) -> Result<u64, StoreError> {
        let c = self.pg.get().await?;
        let sql = format!(
            "DELETE FROM idempotency i WHERE i.record IS NULL AND i.node_id <> $1
             AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = i.node_id
                             AND n.heartbeat_at >= {NOW_MS} - $2)"
        );
        c.execute(&sql, &[&self.node_id, &lease_ms])
            .await
            .map_err(pg_err)
    }

    /// Deletes a hold row whose hold the wallet no longer has (released
    /// by a node that saw it first).
    pub async fn forget_hold(&self, user_id: &str, hold_id: u64) -> Result<(), StoreError> {
        let c = self.pg.get().await?;
        c.execute(
            "DELETE FROM holds WHERE user_id = $1 AND hold_id = $2",
            &[&user_id, &(hold_id as i64)],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    /// A request's record, if it has one.
    pub async fn request_record(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let c = self.pg.get().await?;
        let row = c
            .query_opt("SELECT record FROM requests WHERE id = $1", &[&id])
            .await
            .map_err(pg_err)?;
        row.map(|r| r.try_get::<_, Json<RequestRecord>>(0).map(|j| j.0))
            .transpose()
            .map_err(corrupt)
    }

    /// Whether a request has its record.
    pub async fn has_request(&self, id: &str) -> Result<bool, StoreError> {
        let c = self.pg.get().await?;
        let row = c
            .query_opt("SELECT 1 FROM requests WHERE id = $1", &[&id])
            .await
            .map_err(pg_err)?;
        Ok(row.is_some())
    }
}
