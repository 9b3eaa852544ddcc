//! Documents: the account side's records (sign-in credentials and
//! sessions, invitations, teams, webhooks and their outbox, the
//! scheduler's marks), each kept as bytes under a kind and an id with a
//! version. Every write names the version it was computed from (0: the
//! document must not exist), and a batch of writes lands whole or not at
//! all, so that of two writers (two HTTP workers, two nodes) only one wins:
//! a refresh token is spent once, an invitation used once, an e-mail
//! address registered once, a webhook delivery claimed once.
//!
//! Money never lives here: wallets, holds and the ledger keep their own
//! tables and their own group commit. Document writes are rare (a sign-in,
//! a delivery) and commit on their own, outside the persistence thread's
//! batches; on redb they queue behind its commit for the file's one writer.
//!
//! A deleted document's next version starts again at 1: callers that
//! delete and re-create under one id must not rely on versions across that.

use serde::Serialize;
use serde::de::DeserializeOwned;

use redb::{ReadableDatabase, ReadableTable};

use super::StoreError;
use super::redb::{DOCS, RedbStore};

/// Longest kind, in bytes.
pub const MAX_KIND: usize = 64;
/// Longest id, in bytes.
pub const MAX_ID: usize = 512;
/// Largest body, in bytes: these are records, not files.
pub const MAX_BODY: usize = 1 << 20;

/// One stored document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc {
    /// 1 for a new document, one more at each write.
    pub version: u64,
    pub body: Vec<u8>,
}

impl Doc {
    /// The body, decoded from JSON.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_slice(&self.body).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// One write of a batch: set (`body` given) or delete (`None`) the
/// document, provided its version is still `expected` (0: absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocWrite {
    pub kind: String,
    pub id: String,
    pub expected: u64,
    pub body: Option<Vec<u8>>,
}

impl DocWrite {
    /// Creates a document that must not exist yet.
    pub fn create<T: Serialize>(kind: &str, id: &str, v: &T) -> Result<DocWrite, StoreError> {
        Self::replace(kind, id, 0, v)
    }

    /// Replaces version `expected` of a document (0: creates it).
    pub fn replace<T: Serialize>(
        kind: &str,
        id: &str,
        expected: u64,
        v: &T,
    ) -> Result<DocWrite, StoreError> {
        let body = serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(DocWrite {
            kind: kind.to_string(),
            id: id.to_string(),
            expected,
            body: Some(body),
        })
    }

    /// Deletes version `expected` of a document.
    pub fn delete(kind: &str, id: &str, expected: u64) -> DocWrite {
        DocWrite {
            kind: kind.to_string(),
            id: id.to_string(),
            expected,
            body: None,
        }
    }

    /// Refuses what no backend should be asked to keep.
    pub fn check(&self) -> Result<(), StoreError> {
        let bad = |what: String| {
            Err(StoreError::Backend(format!(
                "document write refused: {what}"
            )))
        };
        if self.kind.is_empty() || self.kind.len() > MAX_KIND {
            return bad(format!("kind of {} bytes", self.kind.len()));
        }
        if self.id.len() > MAX_ID || self.id.contains('\0') || self.kind.contains('\0') {
            return bad(format!("id of {} bytes or with a NUL", self.id.len()));
        }
        if self.body.as_ref().is_some_and(|b| b.len() > MAX_BODY) {
            return bad("a body over 1 MiB".into());
        }
        Ok(())
    }
}

/// A document's stored form on redb: the version (8 bytes, little endian)
/// then the body.
pub(super) fn pack(version: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(body);
    v
}

pub(super) fn unpack(bytes: &[u8]) -> Result<Doc, StoreError> {
    let (head, body) = bytes
        .split_at_checked(8)
        .ok_or_else(|| StoreError::Corrupt("a document shorter than its version".into()))?;
    let mut v = [0u8; 8];
    v.copy_from_slice(head);
    Ok(Doc {
        version: u64::from_le_bytes(v),
        body: body.to_vec(),
    })
}

/// Documents on the redb file: one table keyed by (kind, id), written in a
/// transaction of its own that waits for the file's one writer.
impl RedbStore {
    pub(super) fn doc_get(&self, kind: &str, id: &str) -> Result<Option<Doc>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(DOCS)?;
        let v = t.get((kind, id))?;
        v.map(|v| unpack(v.value())).transpose()
    }

    pub(super) fn doc_list(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Doc)>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(DOCS)?;
        let start = after.filter(|a| *a >= prefix).unwrap_or(prefix);
        let mut out = Vec::new();
        for row in t.range((kind, start)..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            let (k_kind, id) = k.value();
            if k_kind != kind || !id.starts_with(prefix) {
                break;
            }
            if after == Some(id) {
                continue;
            }
            out.push((id.to_string(), unpack(v.value())?));
        }
        Ok(out)
    }

    pub(super) fn doc_write(&self, writes: Vec<DocWrite>) -> Result<bool, StoreError> {
        for w in &writes {
            w.check()?;
        }
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        {
            let mut t = txn.open_table(DOCS)?;
            for w in &writes {
                let found = match t.get((w.kind.as_str(), w.id.as_str()))? {
                    Some(v) => unpack(v.value())?.version,
                    None => 0,
                };
                if found != w.expected {
                    // Dropping the transaction uncommitted aborts it.
                    return Ok(false);
                }
                match &w.body {
                    Some(b) => {
                        t.insert(
                            (w.kind.as_str(), w.id.as_str()),
                            pack(found + 1, b).as_slice(),
                        )?;
                    }
                    None => {
                        t.remove((w.kind.as_str(), w.id.as_str()))?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(true)
    }
}
