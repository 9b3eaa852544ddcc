//! A PostgreSQL schema of a test's own on the machine's server, dropped when
//! the test ends (also when it fails). A missing server fails the test: the
//! nodes cannot start.

use std::time::Duration;

use oneflow::config::{Config, StorageBackend};

/// `ONEFLOW_TEST_PG_URL`, or the machine's PostgreSQL with trust auth.
pub fn url() -> String {
    std::env::var("ONEFLOW_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

pub struct PgSchema {
    pub url: String,
    pub name: String,
    /// Short, so the lease tests end soon.
    pub lease_secs: u64,
}

impl PgSchema {
    pub fn new() -> PgSchema {
        let mut r = [0u8; 6];
        getrandom::fill(&mut r).unwrap();
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        PgSchema {
            url: url(),
            name: format!("t_{hex}"),
            lease_secs: 3,
        }
    }

    /// Points an in-process server's config at this schema, as node `node`.
    pub fn apply(&self, c: &mut Config, node: &str) {
        c.storage.backend = StorageBackend::Postgres;
        c.storage.url = Some(self.url.clone());
        c.storage.schema = Some(self.name.clone());
        c.storage.pool_size = 8;
        c.storage.hold_lease_secs = self.lease_secs;
        c.storage.node_id = Some(node.to_string());
    }

    /// The same for a child process.
    pub fn env(&self, node: &str) -> Vec<(String, String)> {
        vec![
            ("ONEFLOW__STORAGE__BACKEND".into(), "postgres".into()),
            ("ONEFLOW__STORAGE__URL".into(), self.url.clone()),
            ("ONEFLOW__STORAGE__SCHEMA".into(), self.name.clone()),
            ("ONEFLOW__STORAGE__POOL_SIZE".into(), "8".into()),
            (
                "ONEFLOW__STORAGE__HOLD_LEASE_SECS".into(),
                self.lease_secs.to_string(),
            ),
            ("ONEFLOW__STORAGE__NODE_ID".into(), node.into()),
        ]
    }

    /// Runs one SQL statement in the schema and returns the first column
    /// of each row as text.
    pub fn query(&self, sql: &str) -> Vec<Option<String>> {
        let (url, name, sql) = (self.url.clone(), self.name.clone(), sql.to_string());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("SET search_path TO {name}"))
                    .await
                    .unwrap();
                let rows = client.simple_query(&sql).await.unwrap();
                rows.iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some(r.get(0).map(str::to_string))
                        }
                        _ => None,
                    })
                    .collect()
            })
        })
        .join()
        .unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Bounded: a test that failed because the server is gone must not
        // hang here too.
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
                let (client, conn) = tokio::time::timeout(Duration::from_secs(5), connect)
                    .await
                    .ok()?
                    .ok()?;
                tokio::spawn(conn);
                let drop = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                tokio::time::timeout(Duration::from_secs(10), client.batch_execute(&drop))
                    .await
                    .ok()?
                    .ok()
            })
        });
        let _ = t.join();
    }
}
