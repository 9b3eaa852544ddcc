//! The settings that let several nodes share one ledger: where the money is
//! kept (`[storage]`) and where the nodes share their limits and notices
//! (`[coordination]`). One node on its own needs neither: redb is the
//! default and Redis is optional (docs/scale-out.md).

use serde::{Deserialize, Serialize};

/// Which store keeps the ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// An embedded redb file under `server.data_dir`: one node.
    #[default]
    Redb,
    /// A PostgreSQL database at `storage.url`: any number of nodes.
    Postgres,
}

/// Where the ledger lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// `postgres://user@host:port/database`; required for `postgres`.
    pub url: Option<String>,
    /// A schema inside the database to keep every table in (made if
    /// missing), so that several deployments, or tests, share one database.
    pub schema: Option<String>,
    /// Connections each node keeps open at most.
    pub pool_size: usize,
    /// The longest one statement may run before the server cancels it.
    pub statement_timeout_ms: u64,
    /// A node that has not renewed its lease for this long is taken for
    /// dead: whichever node sees it first releases the holds it left.
    pub hold_lease_secs: u64,
    /// This node's name in `/api/status` and in the holds it opens, where
    /// a random part is added per start (`a@3f9c01d2`), so that a restart
    /// under the same name never takes the old process's holds for its
    /// own. Unset: the host name and process id.
    pub node_id: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Redb,
            url: None,
            schema: None,
            pool_size: 16,
            statement_timeout_ms: 5_000,
            hold_lease_secs: 30,
            node_id: None,
        }
    }
}

/// Shared counters and notices between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinationConfig {
    /// `redis://host:port/db`. Unset: every limit is per node.
    pub redis_url: Option<String>,
    /// Refuse to start a node on a shared store without Redis, instead of
    /// running it with per-node limits.
    pub required: bool,
    /// Every key this deployment writes in Redis starts with this.
    pub prefix: String,
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        CoordinationConfig {
            redis_url: None,
            required: false,
            prefix: "oneflow:".into(),
        }
    }
}

/// A setting that makes no sense: its key and why.
pub type Invalid = (&'static str, &'static str);

impl StorageConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.backend == StorageBackend::Postgres {
            let url = self.url.as_deref().unwrap_or("");
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err((
                    "storage.url",
                    "the postgres backend needs a postgres:// URL",
                ));
            }
        }
        if let Some(s) = &self.schema {
            // Put into SQL as an identifier: plain names only.
            let plain = !s.is_empty()
                && s.len() <= 63
                && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain {
                return Err((
                    "storage.schema",
                    "must be 1-63 lowercase letters, digits or _, not starting with a digit",
                ));
            }
        }
        if self.pool_size == 0 || self.pool_size > 1024 {
            return Err(("storage.pool_size", "must be between 1 and 1024"));
        }
        if self.statement_timeout_ms == 0 {
            return Err(("storage.statement_timeout_ms", "must be above 0"));
        }
        if self.hold_lease_secs < 2 {
            return Err(("storage.hold_lease_secs", "must be at least 2"));
        }
        if let Some(id) = &self.node_id {
            let ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err((
                    "storage.node_id",
                    "must be 1-64 letters, digits, '-', '_' or '.'",
                ));
            }
        }
        Ok(())
    }
}

impl CoordinationConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(("coordination.redis_url", "must be a redis:// URL"));
            }
        }
        if self.prefix.is_empty() || self.prefix.len() > 64 {
            return Err(("coordination.prefix", "must be 1-64 characters"));
        }
        Ok(())
    }
}
