//! Restarts: after a graceful stop, or a `kill -9` between two acknowledged
//! requests, a server started on the same data directory has the same users,
//! keys, balances, history, analytics and budgets, and the holds a crash left
//! open are released (their requests recorded as interrupted).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::Config;
use oneflow::ledger::{EntryKind, LedgerEntry};

use crate::process::Proc;
use crate::support::{ADMIN_KEY, Api, TestServer, assert_ledger_balances, credits};

async fn get(h: &Api, key: &str, path: &str) -> Value {
    let (s, v) = h.call(Method::GET, Some(key), path, None).await;
    assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
    v
}

async fn post(h: &Api, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
    h.call(Method::POST, Some(key), path, Some(&body)).await
}

async fn put_budget(h: &Api, key: &str, budget: Value) {
    let (s, v) = h
        .call(Method::PUT, Some(key), "/api/budget", Some(&budget))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Makes a request that must succeed and cost exactly `cost` credits.
async fn charged(h: &Api, key: &str, body: Value, cost: i64) -> Value {
    let (s, v) = post(h, key, "/api/request", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(credits(&v["cost"]), Credits::from_credits(cost), "{v}");
    v
}

/// Every request of the caller, newest first, read in small pages.
async fn history(h: &Api, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/history/requests?limit=2&cursor={c}"),
            None => "/api/history/requests?limit=2".to_string(),
        };
        let v = get(h, key, &path).await;
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(out.len() < 10_000, "request paging does not end");
    }
    out
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// What a user sees of their account.
#[derive(Debug)]
struct Snapshot {
    balance: Credits,
    available: Credits,
    held: Credits,
    /// `budget` of `GET /api/budget`: the configured limits.
    budget: Value,
    /// `windows` of `GET /api/budget`: spend per window.
    windows: Value,
    history: Vec<Value>,
    /// `GET /api/history/requests/{id}` of every request in `history`.
    records: Vec<Value>,
    analytics: Value,
    ledger: Vec<LedgerEntry>,
}

async fn snapshot(h: &Api, key: &str) -> Snapshot {
    let status = get(h, key, "/api/status").await;
    let budget = get(h, key, "/api/budget").await;
    let history = history(h, key).await;
    let mut records = Vec::new();
    for id in ids(&history) {
        records.push(get(h, key, &format!("/api/history/requests/{id}")).await);
    }
    Snapshot {
        balance: credits(&status["balance"]),
        available: credits(&status["available"]),
        held: credits(&status["held"]),
        budget: budget["budget"].clone(),
        windows: budget["windows"].clone(),
        history,
        records,
        analytics: get(h, key, "/api/analytics").await,
        ledger: h.ledger_paged(key, 4).await,
    }
}

/// Budget windows are equal, except one whose calendar period ended between
/// the two readings (its spend restarts at zero then).
fn assert_same_windows(before: &Value, after: &Value) {
    let (b, a) = (before.as_array().unwrap(), after.as_array().unwrap());
    assert_eq!(b.len(), a.len(), "{before} vs {after}");
    for (b, a) in b.iter().zip(a) {
        if b["resets_at"] == a["resets_at"] {
            assert_eq!(b, a, "budget window changed across the restart");
        }
    }
}

fn assert_same(who: &str, before: &Snapshot, after: &Snapshot) {
    assert_eq!(before.balance, after.balance, "{who}: balance");
    assert_eq!(before.available, after.available, "{who}: available");
    assert_eq!(before.held, after.held, "{who}: held");
    assert_eq!(before.budget, after.budget, "{who}: budget");
    assert_same_windows(&before.windows, &after.windows);
    assert_eq!(
        ids(&before.history),
        ids(&after.history),
        "{who}: history ids"
    );
    assert_eq!(before.history, after.history, "{who}: history");
    assert_eq!(before.records, after.records, "{who}: request records");
    assert_eq!(before.analytics, after.analytics, "{who}: analytics");
    assert_eq!(before.ledger, after.ledger, "{who}: ledger");
}

/// The daily window's end, to tell whether a day boundary passed.
async fn day_ends_at(h: &Api, key: &str) -> Value {
    let b = get(h, key, "/api/budget").await;
    b["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["window"] == "daily")
        .unwrap()["resets_at"]
        .clone()
}

// ---- graceful stop ----------------------------------------------------------

/// The default providers plus `flaky`, a text provider that always fails.
fn with_flaky(c: &mut Config) {
    let mut p = c
        .providers
        .iter()
        .find(|p| p.name == "gpt")
        .unwrap()
        .clone();
    p.name = "flaky".into();
    p.simulated.failure_rate = 1.0;
    c.providers.push(p);
}

#[tokio::test]
async fn a_graceful_restart_keeps_users_keys_money_history_analytics_and_budgets() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path(), with_flaky);
    let (ann_id, ann) = s.user("ann", "100").await;
    let (_, bob) = s.user("bob", "40").await;
    let (st, v) = post(
        &s,
        ADMIN_KEY,
        "/api/credits/add",
        json!({"user_id": ann_id, "amount": "50", "note": "before restart"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    put_budget(
        &s,
        &ann,
        json!({"daily": "62", "per_provider": {"audio": {"monthly": "8"}}}),
    )
    .await;

    // ann: every modality, a failure, and an idempotent request: 54 spent.
    charged(
        &s,
        &ann,
        json!({"model": "gpt", "prompt": "hello brave world", "max_tokens": 10}),
        5,
    )
    .await;
    charged(
        &s,
        &ann,
        json!({"model": "image", "prompt": "a cat", "n": 2}),
        20,
    )
    .await;
    charged(&s, &ann, json!({"model": "audio", "prompt": "a song"}), 5).await;
    charged(&s, &ann, json!({"model": "video", "prompt": "a film"}), 20).await;
    let (st, v) = post(
        &s,
        &ann,
        "/api/request",
        json!({"model": "flaky", "prompt": "fail", "max_tokens": 4}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    let idem_body = json!({"model": "gpt", "prompt": "one two", "max_tokens": 10});
    let (st, replayed, first) = s.idempotent(&ann, "restart-1", &idem_body).await;
    assert_eq!((st, replayed), (StatusCode::OK, false), "{first}");
    assert_eq!(credits(&first["cost"]), Credits::from_credits(4));
    // bob: 9 spent.
    charged(&s, &bob, json!({"model": "gpt", "prompt": "bob asks"}), 4).await;
    charged(&s, &bob, json!({"model": "audio", "prompt": "a tune"}), 5).await;

    let ann_before = snapshot(&s, &ann).await;
    let bob_before = snapshot(&s, &bob).await;
    assert_eq!(ann_before.balance, Credits::from_credits(96));
    assert_eq!(bob_before.balance, Credits::from_credits(31));
    assert_eq!(ann_before.held, Credits::ZERO);
    assert_eq!(ann_before.history.len(), 6);
    assert_eq!(ann_before.analytics["total_requests"], 6);
    assert_eq!(ann_before.analytics["providers"]["flaky"]["failures"], 1);
    let users_before = get(&s, ADMIN_KEY, "/api/users").await;
    let all_before = get(&s, ADMIN_KEY, "/api/analytics").await;
    let day = day_ends_at(&s, &ann).await;

    s.stop().await;
    let s = TestServer::start_in(tmp.path(), with_flaky);

    // The same keys authenticate, as the same users, and see the same data.
    let ann_after = snapshot(&s, &ann).await;
    let bob_after = snapshot(&s, &bob).await;
    assert_same("ann", &ann_before, &ann_after);
    assert_same("bob", &bob_before, &bob_after);
    assert_eq!(get(&s, ADMIN_KEY, "/api/users").await, users_before);
    assert_eq!(get(&s, ADMIN_KEY, "/api/analytics").await, all_before);
    assert_ledger_balances(&ann_after.ledger, ann_after.balance);
    assert_ledger_balances(&bob_after.ledger, bob_after.balance);
    let (st, v) = s.get("not-a-key-0123456789", "/api/status").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");

    // The idempotent request replays from the file and is not charged again.
    let (st, replayed, again) = s.idempotent(&ann, "restart-1", &idem_body).await;
    assert_eq!((st, replayed), (StatusCode::OK, true), "{again}");
    assert_eq!(again, first);
    assert_eq!(s.balance(&ann).await, Credits::from_credits(96));

    // Budgets are enforced against the spend made before the restart
    // (unless a day boundary passed meanwhile and reset the windows).
    if day_ends_at(&s, &ann).await == day {
        // audio: 5 spent of a monthly 8.
        let (st, v) = post(
            &s,
            &ann,
            "/api/request",
            json!({"model": "audio", "prompt": "x"}),
        )
        .await;
        assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("provider audio"),
            "{v}"
        );
        // Daily 62: 54 spent, a hold of 8 fits and is charged 3.
        charged(
            &s,
            &ann,
            json!({"model": "gpt", "prompt": "x", "max_tokens": 8}),
            3,
        )
        .await;
        let (st, v) = post(
            &s,
            &ann,
            "/api/request",
            json!({"model": "gpt", "prompt": "x", "max_tokens": 6}),
        )
        .await;
        assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("daily"),
            "{v}"
        );
        assert_eq!(s.balance(&ann).await, Credits::from_credits(93));
    }
    // The wallets keep working: bob is charged exactly, everything balances.
    let v = charged(&s, &bob, json!({"model": "video", "prompt": "after"}), 20).await;
    assert_eq!(credits(&v["balance"]), Credits::from_credits(11));
    for key in [&ann, &bob] {
        let balance = s.balance(key).await;
        assert_ledger_balances(&s.ledger_paged(key, 4).await, balance);
    }
    s.stop().await;
}

// ---- kill -9 -----------------------------------------------------------------

/// The four default providers at their default prices, without latency, and
/// `slow`: a text provider that takes a minute to answer.
pub(crate) const CONFIG: &str = r#"
[server]
workers = 2
shutdown_timeout_secs = 1

[[providers]]
name = "gpt"
kind = "simulated"
modality = "text"
[providers.rates]
per_output_token = 1
[providers.simulated]
latency_ms = 0

[[providers]]
name = "image"
kind = "simulated"
modality = "image"
[providers.rates]
per_image = 10
[providers.simulated]
latency_ms = 0

[[providers]]
name = "audio"
kind = "simulated"
modality = "audio"
[providers.rates]
per_request = 5
[providers.simulated]
latency_ms = 0

[[providers]]
name = "video"
kind = "simulated"
modality = "video"
[providers.rates]
per_request = 20
[providers.simulated]
latency_ms = 0

[[providers]]
name = "slow"
kind = "simulated"
modality = "text"
[providers.rates]
per_output_token = 1
[providers.simulated]
latency_ms = 60000
"#;

/// Polls `GET /api/status` until `held` is `want` (bounded).
async fn wait_held(api: &Api, key: &str, want: Credits) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = get(api, key, "/api/status").await;
        if credits(&v["held"]) == want {
            return v;
        }
        assert!(Instant::now() < deadline, "held never reached {want}: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Acknowledged request A, `in_flight` requests to `slow` left holding money,
/// acknowledged request C, `kill -9`, restart: A and C are kept, the holds
/// are released and their requests recorded as interrupted.
async fn kill_between_acknowledged_requests(in_flight: &[i64]) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("oneflow.toml"), CONFIG).unwrap();
    let server = Proc::spawn(tmp.path());
    let api = Api::new(&server.url);
    let (_, key) = api.user("kim", "100").await;
    put_budget(
        &api,
        &key,
        json!({"monthly": "500", "per_provider": {"slow": {"daily": "90"}}}),
    )
    .await;

    // A: acknowledged, 5 credits.
    let a = charged(
        &api,
        &key,
        json!({"model": "gpt", "prompt": "hello brave world", "max_tokens": 10}),
        5,
    )
    .await;
    // History is ordered by creation time in milliseconds: start each step
    // in a later millisecond than the last, so "newest" and "oldest" below
    // are not decided by a tie.
    tokio::time::sleep(Duration::from_millis(3)).await;
    // B...: held while `slow` takes a minute; their clients never get answers.
    let mut pending = Vec::new();
    for (i, &max_tokens) in in_flight.iter().enumerate() {
        let (http, url, key) = (api.http.clone(), api.url.clone(), key.clone());
        let body =
            json!({"model": "slow", "prompt": format!("slow {i}"), "max_tokens": max_tokens});
        pending.push(tokio::spawn(async move {
            http.post(format!("{url}/api/request"))
                .bearer_auth(key)
                .json(&body)
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    let held = Credits::from_credits(in_flight.iter().sum());
    wait_held(&api, &key, held).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    // C: acknowledged after the holds were taken, 4 credits.
    let c = charged(
        &api,
        &key,
        json!({"model": "gpt", "prompt": "one two", "max_tokens": 10}),
        4,
    )
    .await;
    assert_eq!(credits(&c["balance"]), Credits::from_credits(91));
    assert_eq!(credits(&c["available"]), Credits::from_credits(91) - held);
    let before = snapshot(&api, &key).await;
    assert_eq!(
        ids(&before.history),
        [&c["request_id"], &a["request_id"]].map(|v| v.as_str().unwrap().to_string())
    );
    assert_eq!(before.held, held);

    server.kill9();
    for t in pending {
        let res = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .unwrap()
            .unwrap();
        assert!(res.is_err(), "a request to `slow` was answered: {res:?}");
    }
    drop(api);

    let server = Proc::spawn(tmp.path());
    let api = Api::new(&server.url);
    let after = snapshot(&api, &key).await;

    // Money: A and C charged, nothing held, nothing else taken.
    assert_eq!(after.balance, Credits::from_credits(100 - 5 - 4));
    assert_eq!(after.held, Credits::ZERO);
    assert_eq!(after.available, after.balance);
    assert_eq!(after.budget, before.budget);

    // History: A and C as they were; the in-flight ones interrupted, free.
    let kept: Vec<&Value> = after
        .history
        .iter()
        .filter(|r| r["status"] != "interrupted")
        .collect();
    assert_eq!(kept, before.history.iter().collect::<Vec<_>>());
    let interrupted: Vec<&Value> = after
        .history
        .iter()
        .filter(|r| r["status"] == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), in_flight.len(), "{:?}", after.history);
    assert_eq!(after.history.len(), 2 + in_flight.len());
    assert_eq!(
        after.history.first(),
        before.history.first(),
        "C is the newest"
    );
    assert_eq!(
        after.history.last(),
        before.history.last(),
        "A is the oldest"
    );
    for r in &interrupted {
        assert_eq!(r["provider"], "slow", "{r}");
        assert_eq!(r["model"], "slow", "{r}");
        assert_eq!(r["modality"], "text", "{r}");
        assert!(
            r["prompt_preview"].as_str().unwrap().starts_with("slow "),
            "{r}"
        );
        assert_eq!(credits(&r["cost"]), Credits::ZERO, "{r}");
        assert!(r["error"].as_str().unwrap().contains("interrupted"), "{r}");
    }

    // Ledger: what was there, then one release per open hold, in full.
    assert_eq!(after.ledger.len(), before.ledger.len() + in_flight.len());
    assert_eq!(after.ledger[..before.ledger.len()], before.ledger[..]);
    let holds: Vec<&LedgerEntry> = before
        .ledger
        .iter()
        .filter(|e| e.kind == EntryKind::Hold)
        .filter(|e| {
            let rid = e.request_id.as_deref();
            rid != a["request_id"].as_str() && rid != c["request_id"].as_str()
        })
        .collect();
    assert_eq!(holds.len(), in_flight.len());
    for (hold, release) in holds.iter().zip(&after.ledger[before.ledger.len()..]) {
        assert_eq!(release.kind, EntryKind::Release, "{release:?}");
        assert_eq!(release.hold_id, Some(hold.seq), "{release:?}");
        assert_eq!(release.amount, hold.amount, "{release:?}");
        assert_eq!(release.request_id, hold.request_id, "{release:?}");
        let rid = hold.request_id.as_deref().unwrap();
        assert!(
            interrupted.iter().any(|r| r["id"] == rid),
            "no interrupted record for {rid}"
        );
    }

    // Analytics: A and C as before, plus the interrupted ones at `slow`.
    let (ab, aa) = (&before.analytics, &after.analytics);
    assert_eq!(aa["total_requests"], 2 + in_flight.len(), "{aa}");
    assert_eq!(aa["total_successes"], 2, "{aa}");
    assert_eq!(credits(&aa["total_cost"]), credits(&ab["total_cost"]));
    assert_eq!(credits(&aa["total_cost"]), Credits::from_credits(9));
    assert_eq!(aa["providers"]["gpt"], ab["providers"]["gpt"]);
    assert_eq!(aa["providers"]["slow"]["requests"], in_flight.len(), "{aa}");
    assert_eq!(aa["providers"]["slow"]["successes"], 0, "{aa}");
    assert_eq!(credits(&aa["providers"]["slow"]["cost"]), Credits::ZERO);

    let log = server.stderr_text();
    let n = in_flight.len();
    assert!(
        log.contains(&format!("released {n} holds"))
            && log.contains(&format!("{n} requests marked interrupted")),
        "{log}"
    );

    // The same key still works and the wallet serves: D is charged exactly.
    let d = charged(
        &api,
        &key,
        json!({"model": "gpt", "prompt": "after the crash", "max_tokens": 10}),
        5,
    )
    .await;
    assert_eq!(credits(&d["balance"]), Credits::from_credits(86));
    let status = get(&api, &key, "/api/status").await;
    assert_eq!(credits(&status["balance"]), Credits::from_credits(86));
    assert_eq!(credits(&status["held"]), Credits::ZERO);
    // Last, so a failure here comes after every other check: the ledger
    // replays cleanly (every entry's running balance and available) and sums
    // to the balance, right after recovery and after D.
    assert_ledger_balances(&after.ledger, after.balance);
    assert_ledger_balances(&api.ledger_paged(&key, 4).await, Credits::from_credits(86));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_acknowledged_requests_keeps_them_and_releases_the_open_hold() {
    kill_between_acknowledged_requests(&[7]).await;
}

/// Two holds of one user open at the crash: each release entry must count
/// the other hold while it is still open, or the ledger no longer replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_two_requests_in_flight_releases_both_holds() {
    kill_between_acknowledged_requests(&[7, 3]).await;
}

/// Nothing is acknowledged without a writer: when the persistence thread
/// panics (a failpoint in test builds, before its fifth commit), the process
/// ends with a non-zero code and no request after that point gets a 2xx;
/// every request that did get one is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_persistence_thread_stops_the_process_before_any_further_2xx() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("oneflow.toml"), CONFIG).unwrap();
    // Commits 0 and 1 create the user and its opening balance; each request
    // after that is one commit (its hold rides with its settle).
    let mut server = Proc::spawn_with(tmp.path(), &[("ONEFLOW_FAILPOINT_PANIC_AT_COMMIT", "4")]);
    let api = Api::new(&server.url);
    let (_, key) = api.user("pat", "100").await;
    let body = json!({"model": "gpt", "prompt": "one two", "max_tokens": 10});
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let r = api
            .http
            .post(format!("{}/api/request", api.url))
            .bearer_auth(&key)
            .json(&body)
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                assert_eq!(refused, 0, "a 2xx after the writer died");
                let v: Value = r.json().await.unwrap();
                acknowledged.push(v["request_id"].as_str().unwrap().to_string());
            }
            // The request whose commit never came may be told so (a 5xx)
            // in the moment before the process ends; later ones find it gone.
            Ok(r) if r.status().is_server_error() => refused += 1,
            Ok(r) => panic!("an answer other than success or failure: {}", r.status()),
            Err(_) => refused += 1,
        }
    }
    assert_eq!(
        acknowledged.len(),
        2,
        "commits 2 and 3 acknowledged two requests"
    );
    assert_eq!(refused, 6);
    let status = server.wait_exit();
    assert!(!status.success(), "exit status {status:?}");
    assert_eq!(status.code(), Some(70), "{status:?}");
    assert!(
        server.stderr_text().contains("persistence thread panicked"),
        "{}",
        server.stderr_text()
    );
    drop(server);

    let server = Proc::spawn(tmp.path());
    let api = Api::new(&server.url);
    let after = snapshot(&api, &key).await;
    let mut kept = ids(&after.history);
    kept.sort();
    acknowledged.sort();
    assert_eq!(
        kept, acknowledged,
        "history is exactly the acknowledged requests"
    );
    assert_eq!(after.balance, Credits::from_credits(100 - 2 * 4));
    assert_eq!(after.held, Credits::ZERO);
    assert_ledger_balances(&after.ledger, after.balance);
}
