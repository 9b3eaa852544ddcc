//! Two nodes on one PostgreSQL ledger (the machine's server, a schema per
//! test): neither can spend money the other has spent, a key runs once
//! whichever node it is sent to, a key revoked on one stops working on the
//! other, and the holds of a node killed mid-flight are released once by
//! the other when its lease runs out.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::ledger::EntryKind;
use oneflow::records::RequestStatus;

use crate::pg::PgSchema;
use crate::process::Proc;
use crate::support::{ADMIN_KEY, Api, TestServer, assert_ledger_balances, credits};

const N: usize = 500;
const AFFORDABLE: i64 = 37;

fn node(pg: &PgSchema, name: &str) -> TestServer {
    TestServer::start_with(|c| pg.apply(c, name))
}

/// N audio requests (5 credits each, cost == quote) at once, every other
/// one to each node: (succeeded, refused for money).
async fn storm(a: &Api, b: &Api, key: &str) -> (usize, usize) {
    let body = json!({"model": "audio", "prompt": "x"});
    let futs = (0..N).map(|i| {
        let node = if i % 2 == 0 { a } else { b };
        node.post(key, "/api/request", body.clone())
    });
    let results = join_all(futs).await;
    let mut ok = 0;
    let mut refused = 0;
    for (st, v) in &results {
        match *st {
            StatusCode::OK => ok += 1,
            StatusCode::PAYMENT_REQUIRED => refused += 1,
            _ => panic!("{st}: {v}"),
        }
    }
    (ok, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_serve_exactly_37_of_500_from_a_wallet_for_37() {
    let pg = PgSchema::new();
    let a = node(&pg, "a");
    let b = node(&pg, "b");
    let (_, key) = a.user("dee", &(AFFORDABLE * 5 + 3).to_string()).await;
    let (ok, refused) = storm(&a, &b, &key).await;
    assert_eq!(
        (ok, refused),
        (AFFORDABLE as usize, N - AFFORDABLE as usize)
    );
    // Both nodes read the same wallet.
    assert_eq!(a.balance(&key).await, Credits::from_credits(3));
    assert_eq!(b.balance(&key).await, Credits::from_credits(3));
    let ledger = b.ledger(&key).await;
    assert!(
        ledger
            .iter()
            .all(|e| !e.balance_after.is_negative() && !e.available_after.is_negative())
    );
    assert_ledger_balances(&ledger, Credits::from_credits(3));
    let charged: Credits = ledger
        .iter()
        .filter(|e| e.kind == EntryKind::Charge)
        .map(|e| e.amount)
        .sum();
    let (_, an) = a.get(&key, "/api/analytics").await;
    assert_eq!(credits(&an["total_cost"]), charged);
    assert_eq!(an["providers"]["audio"]["successes"], AFFORDABLE);
    assert_eq!(pg.query("SELECT count(*) FROM holds"), [Some("0".into())]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_serve_exactly_37_of_500_under_a_daily_budget_for_37() {
    crate::support::avoid_midnight().await;
    let pg = PgSchema::new();
    let a = node(&pg, "a");
    let b = node(&pg, "b");
    let (_, key) = a.user("eve", "100000").await;
    let budget = json!({"daily": (AFFORDABLE * 5).to_string()});
    let (st, v) = b
        .call(
            reqwest::Method::PUT,
            Some(&key),
            "/api/budget",
            Some(&budget),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (ok, _) = storm(&a, &b, &key).await;
    assert_eq!(ok, AFFORDABLE as usize);
    let (_, bv) = a.get(&key, "/api/budget").await;
    let daily = &bv["windows"][0];
    assert_eq!(daily["window"], "daily");
    assert_eq!(
        credits(&daily["spent"]),
        Credits::from_credits(AFFORDABLE * 5)
    );
    let balance = b.balance(&key).await;
    assert_eq!(balance, Credits::from_credits(100_000 - AFFORDABLE * 5));
    assert_ledger_balances(&a.ledger(&key).await, balance);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_sent_to_both_nodes_at_once_runs_once() {
    let pg = PgSchema::new();
    // Slow answers, so the two sends of a key overlap: the second finds
    // the first's claim and waits for its answer.
    let slow = |name: &'static str| {
        let pg = &pg;
        TestServer::start_with(move |c| {
            pg.apply(c, name);
            for p in &mut c.providers {
                p.simulated.latency_ms = 300;
            }
        })
    };
    let (a, b) = (slow("a"), slow("b"));
    let (_, key) = a.user("ida", "100").await;
    let body = json!({"model": "audio", "prompt": "once"});
    for round in 0..5 {
        let idem = format!("same-{round}");
        let (ra, rb) = tokio::join!(
            a.post_raw(&key, "/api/request", Some(&idem), &body),
            b.post_raw(&key, "/api/request", Some(&idem), &body),
        );
        assert_eq!(ra.status, StatusCode::OK, "{:?}", ra.body);
        assert_eq!(rb.status, StatusCode::OK, "{:?}", rb.body);
        assert_eq!(
            ra.json()["request_id"],
            rb.json()["request_id"],
            "both answers are the one request's"
        );
        assert_eq!(
            [ra.replayed(), rb.replayed()]
                .iter()
                .filter(|r| **r)
                .count(),
            1,
            "exactly one of the two is the replay"
        );
    }
    let charges = b.charges(&key).await;
    assert_eq!(charges.len(), 5, "one charge per key: {charges:?}");
    assert_eq!(a.balance(&key).await, Credits::from_credits(100 - 5 * 5));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_revoked_through_one_node_fails_on_the_other_within_a_second() {
    let pg = PgSchema::new();
    let a = node(&pg, "a");
    let b = node(&pg, "b");
    let (_, key) = a.user("rev", "10").await;
    // B has the key in its cache.
    let (st, _) = b.get(&key, "/api/status").await;
    assert_eq!(st, StatusCode::OK);
    let (_, keys) = a.get(&key, "/api/keys").await;
    let id = keys["keys"][0]["id"].as_str().unwrap().to_string();
    let (st, v) = a
        .call(
            reqwest::Method::DELETE,
            Some(ADMIN_KEY),
            &format!("/api/keys/{id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let revoked = Instant::now();
    loop {
        let (st, _) = b.get(&key, "/api/status").await;
        if st == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "B still took the key a second after A revoked it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_lists_both_nodes() {
    let pg = PgSchema::new();
    let a = node(&pg, "a");
    let b = node(&pg, "b");
    let (st, v) = a.get(ADMIN_KEY, "/api/status").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let cluster = &v["cluster"];
    assert_eq!(cluster["storage"], "postgres");
    assert!(
        cluster["node_id"].as_str().unwrap().starts_with("a@"),
        "{cluster}"
    );
    assert_eq!(cluster["limits"], "per-node");
    let mut seen: Vec<&str> = cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["alive"] == true)
        .map(|n| n["id"].as_str().unwrap().split('@').next().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, ["a", "b"]);
    b.stop().await;
    // A node that stopped cleanly gave its lease up.
    let (_, v) = a.get(ADMIN_KEY, "/api/status").await;
    let b_row = v["cluster"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"].as_str().unwrap().starts_with("b@"))
        .cloned()
        .unwrap();
    assert_eq!(b_row["alive"], false, "{b_row}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_response_kept_by_one_node_is_retrieved_from_the_other() {
    let pg = PgSchema::new();
    let a = node(&pg, "a");
    let b = node(&pg, "b");
    let (_, key) = a.user("kept", "100").await;
    let (st, r) = a
        .post(
            &key,
            "/v1/responses",
            json!({"model": "gpt", "input": "keep this", "max_output_tokens": 10}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let id = r["id"].as_str().unwrap();
    // Kept under a key no client can send (it begins with NUL, which
    // PostgreSQL's text cannot hold: the store maps it).
    let (st, got) = b.get(&key, &format!("/v1/responses/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got, r);
    // A follow-up through B continues A's conversation.
    let (st, next) = b
        .post(
            &key,
            "/v1/responses",
            json!({"model": "gpt", "input": "and then?", "previous_response_id": id, "max_output_tokens": 10}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{next}");
    a.stop().await;
    b.stop().await;
}

/// A child-process node on the schema, with slow audio so requests are in
/// flight when it is killed.
fn spawn_node(dir: &std::path::Path, pg: &PgSchema, name: &str) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("oneflow.toml"),
        "[server]\nworkers = 2\nshutdown_timeout_secs = 1\n",
    )
    .unwrap();
    let env = pg.env(name);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Proc::spawn_with(dir, &env)
}

/// What one client saw: request id -> charged, for every 2xx.
type Seen = BTreeMap<String, Credits>;

/// Spends on `keys` through both nodes until `stop`, 32 clients each.
async fn spend(
    a: String,
    b: String,
    keys: Vec<String>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Seen {
    let clients = (0..64).map(|i| {
        let api = Api::new(if i % 2 == 0 { &a } else { &b });
        let key = keys[i % keys.len()].clone();
        let stop = stop.clone();
        async move {
            let mut seen = Seen::new();
            let body = json!({"model": "gpt", "prompt": "spend a little", "max_tokens": 5});
            while !*stop.borrow() {
                let res = api
                    .http
                    .post(format!("{}/api/request", api.url))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await;
                let Ok(res) = res else {
                    // The killed node: the client moves on.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                if res.status() != StatusCode::OK {
                    continue;
                }
                let Ok(v) = res.json::<Value>().await else {
                    continue;
                };
                let id = v["request_id"].as_str().unwrap().to_string();
                seen.insert(id, credits(&v["cost"]));
            }
            seen
        }
    });
    let mut all = Seen::new();
    for s in join_all(clients).await {
        all.extend(s);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_flight_leaves_nothing_held_or_lost() {
    let pg = PgSchema::new();
    let tmp = tempfile::tempdir().unwrap();
    let a = spawn_node(&tmp.path().join("a"), &pg, "a");
    let b = spawn_node(&tmp.path().join("b"), &pg, "b");
    let (api_a, api_b) = (Api::new(&a.url), Api::new(&b.url));
    let mut keys = Vec::new();
    for i in 0..8 {
        keys.push(api_a.user(&format!("k{i}"), "100000").await.1);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(spend(a.url.clone(), b.url.clone(), keys.clone(), stop_rx));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::spawn_blocking(move || a.kill9())
        .await
        .unwrap();
    // B keeps answering while A's holds wait for its lease to run out.
    let killed = Instant::now();
    // The server finishes what A had sent it (a commit, or its rollback)
    // before the holds A left are counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left: usize = pg.query("SELECT count(*) FROM holds WHERE node_id LIKE 'a@%'")[0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(left > 0, "A was killed with no request in flight");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (st, v) = api_b
        .post(
            &keys[0],
            "/api/request",
            json!({"model": "gpt", "prompt": "still here", "max_tokens": 5}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "B stopped answering: {v}");
    // Within the lease (and B's next look), nothing of A's is held.
    let deadline = killed + Duration::from_secs(pg.lease_secs + 2);
    loop {
        let open = pg.query("SELECT count(*) FROM holds WHERE node_id LIKE 'a@%'");
        if open == [Some("0".into())] {
            break;
        }
        assert!(Instant::now() < deadline, "A's holds were never released");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A again, under its old name: it answers too.
    let a = spawn_node(&tmp.path().join("a"), &pg, "a");
    let api_a = Api::new(&a.url);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(true).unwrap();
    let seen = load.await.unwrap();
    let (st, _) = api_a
        .post(
            &keys[1],
            "/api/request",
            json!({"model": "gpt", "prompt": "back", "max_tokens": 5}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(!seen.is_empty());

    // Every 2xx is in history exactly once, charged what its answer said;
    // no hold was released twice; every balance is what its ledger says.
    let mut history = BTreeMap::new();
    let mut released_by_b = 0;
    let mut interrupted = 0;
    for key in &keys {
        let records = crate::durability::history(&api_b, key, 500).await;
        let spent: Credits = records.iter().map(|r| r.cost).sum();
        interrupted += records
            .iter()
            .filter(|r| r.status == RequestStatus::Interrupted)
            .count();
        for r in records {
            assert!(
                history.insert(r.id.clone(), r.cost).is_none(),
                "{} twice in history",
                r.id
            );
        }
        // Each key's one top-up, less what its history says it spent.
        assert_eq!(
            api_b.balance(key).await,
            Credits::from_credits(100_000) - spent
        );
        let ledger = api_b.ledger(key).await;
        let releases: Vec<u64> = ledger
            .iter()
            .filter(|e| e.kind == EntryKind::Release)
            .filter_map(|e| e.hold_id)
            .collect();
        let unique: HashSet<_> = releases.iter().collect();
        assert_eq!(releases.len(), unique.len(), "a hold released twice");
        released_by_b += ledger
            .iter()
            .filter(|e| {
                e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("node running the request stopped"))
            })
            .count();
        assert_ledger_balances(&ledger, api_b.balance(key).await);
    }
    for (id, cost) in &seen {
        let charged = history
            .get(id)
            .unwrap_or_else(|| panic!("{id} answered but not in history"));
        assert_eq!(charged, cost, "{id}");
    }
    assert_eq!(pg.query("SELECT count(*) FROM holds"), [Some("0".into())]);
    // Each hold A left was released once, by B (A came back only after),
    // its request recorded as interrupted.
    assert_eq!(released_by_b, left);
    assert_eq!(interrupted, left);
    let log = b.stderr_text();
    assert!(log.contains("holds left by stopped nodes"), "{log}");
    drop(a);
    drop(b);
}
