//! The PostgreSQL store against a real server (never a mock): every read
//! equals the redb store's after the same batches, concurrent commits add
//! to the same rollup rows without losing any, the purge and claims behave,
//! migrations run once, and a store copies both ways.
//!
//! The server is `ONEFLOW_TEST_PG_URL` (default
//! `postgres://root@127.0.0.1/test`). Each test works in a schema of its
//! own, dropped when the test ends, passing or not. No server is a failure,
//! never a skip: a skipped ledger test would pass CI without testing.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use oneflow::Credits;
use oneflow::analytics::Bucket;
use oneflow::budget::BudgetConfig;
use oneflow::ledger::Wallet;
use oneflow::pricing::{Modality, Usage};
use oneflow::records::{RequestRecord, RequestStatus};
use oneflow::time::Millis;

use super::{Pg, PgSettings, PgStore, migrate, pg_err};
use crate::store::transfer::{TransferError, copy, verify};
use crate::store::{
    ApiKeyRecord, IdempotencyRecord, OpenHold, RedbStore, RequestCursor, Role, Store, StoreError,
    User, WriteOp,
};

const DEFAULT_URL: &str = "postgres://root@127.0.0.1/test";

fn url() -> String {
    std::env::var("ONEFLOW_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_URL.into())
}

/// A schema of the test's own, dropped when this is (also when the test
/// panics).
struct TestPg {
    settings: PgSettings,
}

impl TestPg {
    fn new() -> TestPg {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("the OS gives random bytes");
        let schema = format!(
            "t_{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
        TestPg {
            settings: PgSettings {
                url: url(),
                schema: Some(schema),
                pool_size: 4,
                statement_timeout_ms: 60_000,
            },
        }
    }

    fn open(&self, node_id: &str) -> Arc<PgStore> {
        PgStore::open(&self.settings, node_id).unwrap_or_else(|e| {
            panic!(
                "these tests need PostgreSQL at {} (set ONEFLOW_TEST_PG_URL): {e}",
                self.settings.url
            )
        })
    }

    fn schema(&self) -> &str {
        self.settings.schema.as_deref().unwrap_or("public")
    }

    /// Runs SQL in the test's schema.
    fn sql(&self, pg: &Pg, sql: &str) {
        let (pg2, sql) = (pg.clone(), sql.to_string());
        pg.block(async move {
            let c = pg2.get().await?;
            c.batch_execute(&sql).await.map_err(pg_err)
        })
        .unwrap()
        .unwrap();
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        let settings = PgSettings {
            schema: None,
            ..self.settings.clone()
        };
        let Ok(pg) = Pg::connect(&settings) else {
            return;
        };
        let drop_it = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema());
        let p = pg.clone();
        let _ = pg.block(async move {
            if let Ok(c) = p.get().await {
                let _ = c.batch_execute(&drop_it).await;
            }
        });
    }
}

fn redb() -> (tempfile::TempDir, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    (dir, s)
}

mod docs;
mod reads;
mod workload;

use reads::*;
use workload::*;

// ------------------------------------------------------------------- tests

/// The same batches on both stores give the same answer to every read, for
/// several random workloads; on PostgreSQL, one commit per write gives the
/// same reads as the batches (coalescing changes nothing).
#[test]
fn every_read_equals_the_redb_stores_after_the_same_batches() {
    for seed in [1, 7, 2024] {
        let db = TestPg::new();
        let pg = db.open("node-a");
        let (_dir, rs) = redb();
        commit_all(&rs, workload(seed, 300));
        commit_all(&*pg, workload(seed, 300));
        let all = reads(&rs);
        assert!(all.iter().any(|(l, v)| l == "open_holds" && v.len() > 10));
        assert_same_reads(&rs, &*pg);

        let one = TestPg::new();
        let by_one = one.open("node-a");
        for op in workload(seed, 300).into_iter().flatten() {
            by_one.commit(vec![op]).unwrap();
        }
        assert_same_reads(&*pg, &*by_one);
    }
}

/// Two nodes adding to the same rollup rows at the same time: every
/// request counts (the upsert adds on the server; nothing is read and
/// written back), and neither commit deadlocks the other.
#[test]
fn rollups_from_two_nodes_at_once_add_up() {
    let db = TestPg::new();
    let (a, b) = (db.open("node-a"), db.open("node-b"));
    const COMMITS: u64 = 25;
    const PER: u64 = 8;
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|t| {
        for (n, s) in [(0u64, &a), (1, &b)] {
            let barrier = &barrier;
            t.spawn(move || {
                barrier.wait();
                for c in 0..COMMITS {
                    let ops = (0..PER)
                        .map(|i| {
                            let mut g = Gen {
                                rng: i,
                                now: START + (i as Millis) * 1_000,
                                wallets: BTreeMap::new(),
                                open: Vec::new(),
                                next: 0,
                            };
                            let id = format!("n{n}-{c}-{i}");
                            let user = USERS[(i % 2) as usize];
                            WriteOp::PutRequest(Box::new(g.record(
                                user,
                                &id,
                                "p",
                                Credits(3),
                                true,
                            )))
                        })
                        .collect();
                    s.commit(ops).unwrap();
                }
            });
        }
    });
    let total = 2 * COMMITS * PER;
    let rows = a.rollup_rows("", Bucket::Minute, 0, Millis::MAX).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0].2;
    assert_eq!(r.count, total);
    assert_eq!(r.successes, total);
    assert_eq!(r.cost, Credits(3 * total as i64));
    assert_eq!(r.latency.iter().sum::<u64>(), total);
    for b in Bucket::ALL {
        let per_user: u64 = USERS[..2].iter().map(|u| b_count(&*a, u, b)).sum();
        assert_eq!(per_user, total, "{b:?}");
    }
    // A store that sums the same requests alone agrees row for row.
    let (_dir, rs) = redb();
    let mut all = Vec::new();
    a.each_request(None, Millis::MIN, Millis::MAX, &mut |r| {
        all.push(WriteOp::PutRequest(Box::new(r)));
        Ok(true)
    })
    .unwrap();
    rs.commit(all).unwrap();
    for scope in ["", USERS[0], USERS[1]] {
        for b in Bucket::ALL {
            assert_eq!(
                a.rollup_rows(scope, b, 0, Millis::MAX).unwrap(),
                rs.rollup_rows(scope, b, 0, Millis::MAX).unwrap()
            );
        }
    }
}

fn b_count(s: &dyn Store, scope: &str, b: Bucket) -> u64 {
    s.rollup_rows(scope, b, 0, Millis::MAX)
        .unwrap()
        .iter()
        .map(|(_, _, r)| r.count)
        .sum()
}

fn idem(at: Millis) -> Box<IdempotencyRecord> {
    Box::new(IdempotencyRecord {
        body_hash: [1; 32],
        result: None,
        answer: Some(format!("at {at}")),
        at,
    })
}

/// The purge deletes answered records older than its bound, oldest first
/// and no more than its limit, and never a claim still running (a row
/// without a record), which reads as no record at all.
#[test]
fn the_purge_takes_only_expired_answers_and_a_claim_reads_as_none() {
    let db = TestPg::new();
    let s = db.open("node-a");
    let (_dir, rs) = redb();
    let puts = || {
        [100, 300, 200, 400]
            .into_iter()
            .map(|at| WriteOp::PutIdempotency {
                user_id: "u".into(),
                key: format!("k{at}"),
                record: idem(at),
            })
            .collect::<Vec<_>>()
    };
    s.commit(puts()).unwrap();
    rs.commit(puts()).unwrap();
    // Claims as the shared idempotency keeps them: no record yet.
    db.sql(
        s.pg(),
        "INSERT INTO idempotency (user_id, key, answered_at, node_id, record)
         VALUES ('u', 'claimed', 0, 'node-b', NULL), ('u', 'claimed-late', 50, 'node-b', NULL)",
    );
    assert_eq!(s.idempotency("u", "claimed").unwrap(), None);
    assert_eq!(s.idempotency("u", "k100").unwrap(), Some(*idem(100)));

    let purge = |before, limit| vec![WriteOp::PurgeIdempotency { before, limit }];
    let keys = |st: &dyn Store| {
        let mut k = Vec::new();
        st.each_idempotency(&mut |_, key, _| {
            k.push(key);
            Ok(true)
        })
        .unwrap();
        k
    };
    s.commit(purge(350, 1)).unwrap();
    rs.commit(purge(350, 1)).unwrap();
    assert_eq!(keys(&*s), ["k200", "k300", "k400"], "the oldest one only");
    assert_eq!(keys(&*s), keys(&rs));
    s.commit(purge(350, 10)).unwrap();
    rs.commit(purge(350, 10)).unwrap();
    assert_eq!(keys(&*s), ["k400"]);
    assert_eq!(keys(&*s), keys(&rs));

    let pg = s.pg().clone();
    let claims = s
        .pg()
        .block(async move {
            let c = pg.get().await?;
            let row = c
                .query_one("SELECT count(*) FROM idempotency WHERE record IS NULL", &[])
                .await
                .map_err(pg_err)?;
            Ok::<i64, StoreError>(row.get(0))
        })
        .unwrap()
        .unwrap();
    assert_eq!(claims, 2, "claims survive every purge");
    // Answering a claim makes it a record (and not a claim any more).
    s.commit(vec![WriteOp::PutIdempotency {
        user_id: "u".into(),
        key: "claimed".into(),
        record: idem(500),
    }])
    .unwrap();
    assert_eq!(s.idempotency("u", "claimed").unwrap(), Some(*idem(500)));
}

/// Migrating again applies nothing; a schema a newer build wrote is
/// refused, by `migrate` and by opening the store.
#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let db = TestPg::new();
    let s = db.open("node-a");
    let pg = s.pg().clone();
    let again = s
        .pg()
        .block(async move {
            let mut c = pg.get().await?;
            let a = migrate(&mut c).await?;
            let b = migrate(&mut c).await?;
            let n: i64 = c
                .query_one("SELECT count(*) FROM oneflow_schema", &[])
                .await
                .map_err(pg_err)?
                .get(0);
            Ok::<_, StoreError>((a, b, n))
        })
        .unwrap()
        .unwrap();
    assert_eq!(again, (vec![], vec![], i64::from(super::PG_SCHEMA_VERSION)));

    db.sql(s.pg(), "INSERT INTO oneflow_schema (version) VALUES (99)");
    let pg = s.pg().clone();
    let refused = s
        .pg()
        .block(async move {
            let mut c = pg.get().await?;
            migrate(&mut c).await
        })
        .unwrap();
    assert!(
        matches!(refused, Err(StoreError::Schema { found: 99 })),
        "{refused:?}"
    );
    let opened = PgStore::open(&db.settings, "node-b");
    assert!(matches!(opened, Err(StoreError::Schema { found: 99 })));
}

/// The coalescing rule on PostgreSQL: a hold opened and closed in one
/// batch is never written, and only a wallet's last snapshot is.
#[test]
fn a_batch_skips_what_it_makes_moot() {
    let db = TestPg::new();
    let s = db.open("node-a");
    let mut g = Gen {
        rng: 3,
        now: START,
        wallets: BTreeMap::new(),
        open: Vec::new(),
        next: 0,
    };
    let mut w = Wallet::new("u");
    w.top_up(Credits(1_000_000), None, START).unwrap();
    g.wallets.insert("u".into(), w);
    let (hold, _) = g
        .wallets
        .get_mut("u")
        .unwrap()
        .hold("r", "p", Credits(10), START)
        .unwrap();
    let first = g.snapshot("u");
    let open = OpenHold {
        hold,
        model: "m".into(),
        modality: Modality::Text,
        prompt_preview: String::new(),
    };
    g.wallets
        .get_mut("u")
        .unwrap()
        .release(open.hold.id, None, START)
        .unwrap();
    let last = g.snapshot("u");
    s.commit(vec![
        first,
        WriteOp::PutHold(Box::new(open.clone())),
        WriteOp::DeleteHold {
            user_id: "u".into(),
            id: open.hold.id,
        },
        last,
    ])
    .unwrap();
    assert!(s.open_holds().unwrap().is_empty());
    assert_eq!(s.wallet("u").unwrap().unwrap(), g.wallets["u"]);
    // One write of the wallet row, so its version is 1.
    let pg = s.pg().clone();
    let v = s
        .pg()
        .block(async move {
            let c = pg.get().await?;
            let v: i64 = c
                .query_one("SELECT version FROM wallets WHERE user_id = 'u'", &[])
                .await
                .map_err(pg_err)?
                .get(0);
            Ok::<_, StoreError>(v)
        })
        .unwrap()
        .unwrap();
    assert_eq!(v, 1);
    // Held across batches, it is stored as this node's.
    s.commit(vec![WriteOp::PutHold(Box::new(open.clone()))])
        .unwrap();
    assert_eq!(s.open_holds().unwrap(), [open]);
}

/// A redb file with a few hundred requests over several users goes into
/// PostgreSQL and back: after each copy the target answers every read as
/// the source does, and its ledger checks out; a non-empty target is
/// refused.
#[test]
fn a_store_copies_to_postgres_and_back() {
    let (dir, rs) = redb();
    commit_all(&rs, workload(11, 600));
    let db = TestPg::new();
    let pg = db.open("export");
    let n = copy(&rs, &*pg, 100).unwrap();
    assert!(n.requests >= 200, "{n:?}");
    assert_eq!(n.users, USERS.len() as u64);
    let v = verify(&rs, &*pg).unwrap();
    assert!(v.mismatches.is_empty(), "{v:?}");
    assert_eq!(v.wallets_audited, USERS.len() as u64);
    assert_same_reads(&rs, &*pg);

    let back = RedbStore::open(&dir.path().join("back.redb")).unwrap();
    copy(&*pg, &back, 1000).unwrap();
    let v = verify(&*pg, &back).unwrap();
    assert!(v.mismatches.is_empty(), "{v:?}");
    assert_same_reads(&*pg, &back);

    assert!(matches!(
        copy(&rs, &*pg, 100),
        Err(TransferError::NotEmpty("users"))
    ));
    // A broken copy is found: one more entry in the target's ledger.
    let mut extra = Vec::new();
    back.each_entry(Some(USERS[1]), &mut |e| {
        extra = vec![e];
        Ok(false)
    })
    .unwrap();
    // The first entry, a top-up: replayed again, it adds to the sum.
    let mut e = extra.pop().unwrap();
    e.seq += 100_000;
    back.commit(vec![WriteOp::AppendEntry(e)]).unwrap();
    let v = verify(&*pg, &back).unwrap();
    assert_eq!(v.mismatches.len(), 2, "{v:?}");
}
