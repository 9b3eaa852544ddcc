//! [`Store`] on PostgreSQL, for any number of nodes sharing one ledger.
//!
//! `pool.rs` holds the connections, `schema.rs` the tables and their
//! migrations, `store_impl.rs` the [`Store`] methods (the same batches and
//! reads as the redb file): `apply.rs` writes a batch, `reads.rs` holds
//! the query and snapshot-walk helpers the reads share. `wallets.rs` holds
//! the batched wallet changes under row locks that keep two nodes from
//! spending the same money (driven by the shared wallets, `wallet/shared.rs`), and
//! `nodes.rs` the nodes' leases.

use std::sync::Arc;

use crate::store::{Store, StoreError};

mod apply;
mod docs;
mod nodes;
mod pool;
mod reads;
mod schema;
mod store_impl;
#[cfg(test)]
mod tests;
mod wallets;

pub use nodes::Orphan;
pub use pool::{Conn, Pg, PgSettings, pg_err};
pub use schema::{PG_SCHEMA_VERSION, migrate};
pub use wallets::{Answer, Change, Claim};

/// Kept responses' idempotency keys hold NULs, which no client can send
/// (`usecase/kept.rs`); PostgreSQL's `text` refuses NUL, so in the
/// database they hold U+0001 instead, which no client can send either
/// (clients' keys are printable ASCII).
pub(crate) fn pg_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.contains('\0') {
        key.replace('\0', "\u{1}").into()
    } else {
        key.into()
    }
}

/// The key as the layers above know it (see [`pg_key`]).
pub(crate) fn key_from_pg(key: String) -> String {
    if key.contains('\u{1}') {
        key.replace('\u{1}', "\0")
    } else {
        key
    }
}

/// The PostgreSQL store of one node.
pub struct PgStore {
    pub(crate) pg: Pg,
    /// Written into every hold this node opens (see `holds` in schema.rs).
    pub(crate) node_id: String,
    /// Users this node knows have a wallet row (`wallets.rs`).
    pub(crate) wallet_rows: dashmap::DashSet<String>,
}

impl PgStore {
    /// Connects, brings the schema up to date, and returns the store.
    pub fn open(settings: &PgSettings, node_id: &str) -> Result<Arc<PgStore>, StoreError> {
        let pg = Pg::connect(settings)?;
        let p = pg.clone();
        pg.block(async move {
            let mut c = p.get().await?;
            migrate(&mut c).await
        })??;
        Ok(Arc::new(PgStore {
            pg,
            node_id: node_id.to_string(),
            wallet_rows: dashmap::DashSet::new(),
        }))
    }

    /// The connections, for the shared wallets and the node registry.
    pub fn pg(&self) -> &Pg {
        &self.pg
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }
}

/// Both kinds as the broker holds them.
pub fn as_store(s: Arc<PgStore>) -> Arc<dyn Store> {
    s
}
