//! Documents on PostgreSQL (see `store/docs.rs`): each write of a batch is
//! an insert that must not conflict or an update or delete that must find
//! the version it names, all in one transaction that is rolled back at the
//! first that finds another.

use super::PgStore;
use super::pool::pg_err;
use super::reads::{col, param};
use crate::store::{Doc, DocWrite, StoreError};

fn doc_of(version: i64, body: Vec<u8>) -> Result<Doc, StoreError> {
    let version = u64::try_from(version)
        .map_err(|_| StoreError::Corrupt("a document with a negative version".into()))?;
    Ok(Doc { version, body })
}

fn pg_version(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("document version {v}")))
}

impl PgStore {
    pub(super) fn doc_get(&self, kind: &str, id: &str) -> Result<Option<Doc>, StoreError> {
        self.row(
            "SELECT version, body FROM docs WHERE kind = $1 AND id = $2",
            vec![param(kind.to_string()), param(id.to_string())],
        )?
        .map(|r| doc_of(col(&r, 0)?, col(&r, 1)?))
        .transpose()
    }

    pub(super) fn doc_list(
        &self,
        kind: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Doc)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.rows(
            "SELECT id, version, body FROM docs
             WHERE kind = $1 AND starts_with(id, $2) AND ($3::text IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
            vec![
                param(kind.to_string()),
                param(prefix.to_string()),
                param(after.map(str::to_string)),
                param(limit),
            ],
        )?
        .iter()
        .map(|r| Ok((col(r, 0)?, doc_of(col(r, 1)?, col(r, 2)?)?)))
        .collect()
    }

    pub(super) fn doc_write(&self, writes: Vec<DocWrite>) -> Result<bool, StoreError> {
        for w in &writes {
            w.check()?;
        }
        let pg = self.pg.clone();
        self.pg.block(async move {
            let mut c = pg.get().await?;
            let txn = c.transaction().await.map_err(pg_err)?;
            for w in &writes {
                let expected = pg_version(w.expected)?;
                let done = match (&w.body, w.expected) {
                    (Some(b), 0) => txn
                        .execute(
                            "INSERT INTO docs (kind, id, version, body) VALUES ($1, $2, 1, $3)
                             ON CONFLICT DO NOTHING",
                            &[&w.kind, &w.id, b],
                        )
                        .await
                        .map_err(pg_err)?,
                    (Some(b), _) => txn
                        .execute(
                            "UPDATE docs SET version = version + 1, body = $4
                             WHERE kind = $1 AND id = $2 AND version = $3",
                            &[&w.kind, &w.id, &expected, b],
                        )
                        .await
                        .map_err(pg_err)?,
                    // Deleting what must be absent: it is, or the batch fails.
                    (None, 0) => {
                        let found = txn
                            .query_opt(
                                "SELECT 1 FROM docs WHERE kind = $1 AND id = $2",
                                &[&w.kind, &w.id],
                            )
                            .await
                            .map_err(pg_err)?;
                        u64::from(found.is_none())
                    }
                    (None, _) => txn
                        .execute(
                            "DELETE FROM docs WHERE kind = $1 AND id = $2 AND version = $3",
                            &[&w.kind, &w.id, &expected],
                        )
                        .await
                        .map_err(pg_err)?,
                };
                if done != 1 {
                    txn.rollback().await.map_err(pg_err)?;
                    return Ok(false);
                }
            }
            txn.commit().await.map_err(pg_err)?;
            Ok(true)
        })?
    }
}
