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

// ---------------------------------------------------------------- workload

/// Mixed case, an underscore, a non-ASCII name: byte order differs from
/// most collations' order, and both stores must page in byte order.
const USERS: [&str; 5] = ["alice", "Bob", "_z", "a", "\u{fc}ber"];
const START: Millis = 1_764_000_000_000;

fn key_hash(i: usize) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0] = i as u8;
    h[31] = 0xa5;
    h
}

/// A little deterministic generator (no dependency on proptest's RNG).
struct Gen {
    rng: u64,
    now: Millis,
    wallets: BTreeMap<String, Wallet>,
    /// Open holds: user, hold id, request id, provider, model.
    open: Vec<(String, u64, String, String)>,
    next: u64,
}

impl Gen {
    fn roll(&mut self, n: u64) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.rng >> 33) % n.max(1)
    }

    fn snapshot(&self, user: &str) -> WriteOp {
        WriteOp::PutWallet {
            user_id: user.into(),
            bytes: serde_json::to_vec(&self.wallets[user]).unwrap(),
        }
    }

    fn record(
        &mut self,
        user: &str,
        id: &str,
        provider: &str,
        cost: Credits,
        ok: bool,
    ) -> RequestRecord {
        let latency = self.roll(5_000);
        RequestRecord {
            id: id.into(),
            user_id: user.into(),
            model: "m".into(),
            modality: Modality::Text,
            provider: provider.into(),
            status: if ok {
                RequestStatus::Succeeded
            } else {
                RequestStatus::Failed
            },
            // U+0000 in text a user controls: every store must keep it.
            prompt_preview: format!("prompt {id}\0"),
            response: ok.then(|| format!("answer to {id}\u{0}")),
            usage: Usage {
                input_tokens: self.roll(1000),
                output_tokens: self.roll(1000),
                ..Usage::default()
            },
            quote: cost,
            cost,
            shortfall: Credits::ZERO,
            error: (!ok).then(|| "upstream said no".to_string()),
            route: "cheapest".into(),
            created_at: self.now,
            latency_ms: latency,
            attempts: Vec::new(),
            usage_anomaly: false,
        }
    }

    /// One random operation's writes.
    fn op(&mut self, out: &mut Vec<WriteOp>) {
        // Mostly small steps, sometimes the same millisecond, sometimes a day.
        self.now += match self.roll(20) {
            0 => 0,
            1 => 86_400_000,
            _ => self.roll(200_000) as Millis,
        };
        let user = USERS[self.roll(USERS.len() as u64) as usize].to_string();
        let now = self.now;
        match self.roll(12) {
            0..=4 => {
                let id = format!("r{:05}", self.next);
                self.next += 1;
                let provider = format!("p{}", self.roll(3));
                let amount = Credits(1_000 + self.roll(100_000) as i64);
                let w = self.wallets.get_mut(&user).unwrap();
                let (hold, entry) = w.hold(&id, &provider, amount, now).unwrap();
                out.push(WriteOp::PutHold(Box::new(OpenHold {
                    hold: hold.clone(),
                    model: "m".into(),
                    modality: Modality::Text,
                    prompt_preview: format!("prompt \0{id}"),
                })));
                out.push(WriteOp::AppendEntry(entry));
                out.push(self.snapshot(&user));
                self.open.push((user, hold.id, id, provider));
            }
            5..=8 if !self.open.is_empty() => {
                let i = self.roll(self.open.len() as u64) as usize;
                let (user, hold_id, id, provider) = self.open.swap_remove(i);
                let ok = self.roll(6) != 0;
                let cost = if ok {
                    let held = self.wallets[&user].holds[&hold_id].amount;
                    let cost = Credits(self.roll(held.0 as u64 + 500) as i64);
                    let w = self.wallets.get_mut(&user).unwrap();
                    let s = w.settle(hold_id, cost, now).unwrap();
                    out.extend(s.entries.into_iter().map(WriteOp::AppendEntry));
                    s.charged
                } else {
                    let w = self.wallets.get_mut(&user).unwrap();
                    let e = w.release(hold_id, Some("failed"), now).unwrap();
                    out.push(WriteOp::AppendEntry(e));
                    Credits::ZERO
                };
                out.push(WriteOp::DeleteHold {
                    user_id: user.clone(),
                    id: hold_id,
                });
                let r = self.record(&user, &id, &provider, cost, ok);
                out.push(WriteOp::PutRequest(Box::new(r)));
                out.push(self.snapshot(&user));
            }
            9 => {
                let w = self.wallets.get_mut(&user).unwrap();
                let e = w.top_up(Credits(5_000_000), Some("more"), now).unwrap();
                out.push(WriteOp::AppendEntry(e));
                out.push(self.snapshot(&user));
            }
            10 => {
                let key = format!("k{}", self.roll(40));
                out.push(WriteOp::PutIdempotency {
                    user_id: user,
                    key,
                    record: Box::new(IdempotencyRecord {
                        body_hash: [self.roll(256) as u8; 32],
                        result: None,
                        answer: Some(format!("answer at {now}")),
                        at: now,
                    }),
                });
            }
            _ => match self.roll(4) {
                0 => out.push(WriteOp::PurgeIdempotency {
                    before: now - 3_600_000,
                    limit: 2,
                }),
                1 => out.push(WriteOp::DeleteKey {
                    hash: key_hash(self.roll(USERS.len() as u64) as usize),
                }),
                2 => out.push(WriteOp::PutBudget {
                    user_id: user,
                    budget: BudgetConfig {
                        daily: Some(Credits(self.roll(1_000_000) as i64)),
                        ..BudgetConfig::default()
                    },
                }),
                _ => {
                    // A request stored with no hold of ours, in the same
                    // millisecond as the previous one.
                    let id = format!("x{:05}", self.next);
                    self.next += 1;
                    let r = self.record(&user, &id, "p9", Credits(7), true);
                    out.push(WriteOp::PutRequest(Box::new(r)));
                }
            },
        }
    }
}

/// A deterministic run of batches over every kind of write: setup, then
/// `n` random operations in batches of random sizes (a hold may open and
/// close within one batch, a wallet be written several times in one).
fn workload(seed: u64, n: usize) -> Vec<Vec<WriteOp>> {
    let mut g = Gen {
        rng: seed,
        now: START,
        wallets: BTreeMap::new(),
        open: Vec::new(),
        next: 0,
    };
    let mut setup = Vec::new();
    for (i, u) in USERS.iter().enumerate() {
        setup.push(WriteOp::PutUser(User {
            id: u.to_string(),
            name: format!("user {u}\0"),
            email: format!("{i}@example.com"),
            role: if i == 0 { Role::Admin } else { Role::User },
            created_at: START,
            strategy: None,
        }));
        setup.push(WriteOp::PutKey {
            hash: key_hash(i),
            record: ApiKeyRecord {
                user_id: u.to_string(),
                role: if i == 0 { Role::Admin } else { Role::User },
                prefix: format!("of_{i}"),
                created_at: START,
            },
        });
        let mut w = Wallet::new(*u);
        let e = w.top_up(Credits(1_000_000_000), None, START).unwrap();
        setup.push(WriteOp::AppendEntry(e));
        g.wallets.insert(u.to_string(), w);
        setup.push(g.snapshot(u));
    }
    setup.push(WriteOp::PutProvider {
        name: "p0".into(),
        config: serde_json::json!({"name": "p0", "price": 1.25, "big": 12345678901234567890u64}),
    });
    let mut batches = vec![setup];
    let mut done = 0;
    while done < n {
        let size = 1 + g.roll(12) as usize;
        let mut b = Vec::new();
        for _ in 0..size {
            g.op(&mut b);
        }
        done += size;
        batches.push(b);
    }
    batches
}

// ------------------------------------------------------------------- reads

/// Every read of the trait over the workload's users, keys and times, as
/// labelled text (a failure names the read that differs).
fn reads(s: &dyn Store) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |label: String, v: &dyn Debug| out.push((label, format!("{v:#?}")));
    put("users".into(), &s.users().unwrap());
    put("api_keys".into(), &s.api_keys().unwrap());
    put("has_admin_key".into(), &s.has_admin_key().unwrap());
    put("open_holds".into(), &s.open_holds().unwrap());
    put("budgets".into(), &s.budgets().unwrap());
    put("providers".into(), &s.providers().unwrap());
    let mut wallets = Vec::new();
    s.each_wallet(&mut |u, b| {
        // Byte for byte: the copy between stores passes these bytes on.
        wallets.push((u, String::from_utf8(b).unwrap()));
        Ok(true)
    })
    .unwrap();
    put("each_wallet".into(), &wallets);
    let mut idem = Vec::new();
    s.each_idempotency(&mut |u, k, r| {
        idem.push((u, k, r));
        Ok(true)
    })
    .unwrap();
    put("each_idempotency".into(), &idem);

    let mut all = Vec::new();
    s.each_request(None, Millis::MIN, Millis::MAX, &mut |r| {
        all.push(r);
        Ok(true)
    })
    .unwrap();
    put("each_request(all)".into(), &all);
    let mut ids: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
    ids.push("missing".into());
    for id in ids.iter().step_by(7) {
        put(format!("request({id})"), &s.request(id).unwrap());
    }
    let window = (START + 3 * 3_600_000, START + 30 * 3_600_000);
    let mut some = Vec::new();
    s.each_request(None, window.0, window.1, &mut |r| {
        some.push(r.id);
        Ok(some.len() < 1500)
    })
    .unwrap();
    put("each_request(window)".into(), &some);
    let mut entries = Vec::new();
    s.each_entry(None, &mut |e| {
        entries.push(e);
        Ok(true)
    })
    .unwrap();
    put("each_entry(all)".into(), &entries);

    let users: Vec<&str> = USERS.iter().copied().chain(["nobody"]).collect();
    for u in users {
        put(format!("user({u})"), &s.user(u).unwrap());
        put(format!("wallet({u})"), &s.wallet(u).unwrap());
        put(format!("budget({u})"), &s.budget(u).unwrap());
        for k in 0..40 {
            let key = format!("k{k}");
            put(
                format!("idempotency({u},{key})"),
                &s.idempotency(u, &key).unwrap(),
            );
        }
        // Newest first, seven at a time, each page resuming at the last.
        let mut pages = Vec::new();
        let mut before: Option<RequestCursor> = None;
        loop {
            let page = s.requests_page(u, before.as_ref(), 7).unwrap();
            let Some(last) = page.last() else { break };
            before = Some(RequestCursor {
                created_at: last.created_at as u64,
                id: last.id.clone(),
            });
            pages.push(page.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
        }
        put(format!("requests_page({u})"), &pages);
        put(
            format!("requests_page({u}, all)"),
            &s.requests_page(u, None, 10_000).unwrap(),
        );
        let mut tx = Vec::new();
        let mut before = None;
        loop {
            let page = s.transactions_page(u, before, 5).unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.seq);
            tx.push(page);
        }
        put(format!("transactions_page({u})"), &tx);
        let mut mine = Vec::new();
        s.each_request(Some(u), window.0, window.1, &mut |r| {
            mine.push(r.id);
            Ok(mine.len() < 4)
        })
        .unwrap();
        put(format!("each_request({u}, window, stop at 4)"), &mine);
        let mut mine = Vec::new();
        s.each_entry(Some(u), &mut |e| {
            mine.push(e.seq);
            Ok(true)
        })
        .unwrap();
        put(format!("each_entry({u})"), &mine);
    }
    let hour0 = Bucket::Hour.floor(START);
    for scope in USERS.iter().copied().chain([""]) {
        for b in Bucket::ALL {
            put(
                format!("rollup_rows({scope}, {b:?})"),
                &s.rollup_rows(scope, b, 0, Millis::MAX).unwrap(),
            );
        }
        put(
            format!("rollup_rows({scope}, hour, window)"),
            &s.rollup_rows(scope, Bucket::Hour, window.0, window.1)
                .unwrap(),
        );
        let mut stopped = Vec::new();
        s.each_rollup(scope, Bucket::Minute, 0, Millis::MAX, &mut |t, p, r| {
            stopped.push((t, p.to_string(), r.count));
            stopped.len() < 3
        })
        .unwrap();
        put(format!("each_rollup({scope}, stop at 3)"), &stopped);
        for provider in [None, Some("p1")] {
            put(
                format!("series({scope}, hour, {provider:?})"),
                &s.series(scope, Bucket::Hour, hour0, hour0 + 30 * 3_600_000, provider)
                    .unwrap(),
            );
            put(
                format!("series({scope}, minute, {provider:?})"),
                &s.series(
                    scope,
                    Bucket::Minute,
                    hour0 + 3_600_000,
                    hour0 + 3 * 3_600_000,
                    provider,
                )
                .unwrap(),
            );
        }
        put(
            format!("summary({scope})"),
            &s.summary(scope, None).unwrap(),
        );
        let minutes = (
            Bucket::Minute.floor(window.0) + 17 * 60_000,
            Bucket::Minute.floor(window.1),
        );
        put(
            format!("summary({scope}, window)"),
            &s.summary(scope, Some(minutes)).unwrap(),
        );
    }
    out
}

fn assert_same_reads(a: &dyn Store, b: &dyn Store) {
    let (a, b) = (reads(a), reads(b));
    assert_eq!(a.len(), b.len());
    for ((la, va), (lb, vb)) in a.iter().zip(&b) {
        assert_eq!(la, lb);
        assert_eq!(va, vb, "{la} differs");
    }
}

fn commit_all(s: &dyn Store, batches: Vec<Vec<WriteOp>>) {
    for b in batches {
        s.commit(b).unwrap();
    }
}

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
