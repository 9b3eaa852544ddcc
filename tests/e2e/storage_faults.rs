//! Storage faults, TigerBeetle's and redb's way: the real binary runs on a
//! redb file whose N-th write or sync fails (an I/O error) or stops the
//! process (as a power cut would), for N = 1..=200, across its start and a
//! fixed workload. After each fault a normal restart must find exactly what
//! was acknowledged: no acknowledged charge or credit lost, none applied
//! twice, no hold open, the ledger balanced.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::ledger::EntryKind;

use crate::process::Proc;
use crate::restart::CONFIG;
use crate::support::{ADMIN_KEY, Api, assert_ledger_balances, credits};

/// What the client was told: the user (if its creation was answered), the
/// requests answered 200 with their cost, the top-ups answered 200, and
/// whether one operation was in flight when the process went away.
#[derive(Default)]
struct Acknowledged {
    user: Option<(String, String)>,
    requests: HashMap<String, Credits>,
    top_ups: usize,
    in_flight: bool,
}

const OPENING: i64 = 100;
const TOP_UP: i64 = 10;

async fn post(api: &Api, key: &str, path: &str, body: &Value) -> Option<(StatusCode, Value)> {
    let res = api
        .http
        .post(format!("{}{path}", api.url))
        .bearer_auth(key)
        .json(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?;
    let status = res.status();
    Some((status, res.json().await.ok()?))
}

/// The fixed workload: a user, then requests and top-ups one at a time,
/// until the first that is not answered with success.
async fn workload(api: &Api) -> Acknowledged {
    let mut ack = Acknowledged::default();
    let user =
        json!({"name": "f", "email": "f@example.com", "initial_balance": OPENING.to_string()});
    match post(api, ADMIN_KEY, "/api/users", &user).await {
        Some((StatusCode::CREATED, v)) => {
            let id = v["id"].as_str().unwrap().to_string();
            let key = v["api_key"].as_str().unwrap().to_string();
            ack.user = Some((id, key));
        }
        _ => {
            ack.in_flight = true;
            return ack;
        }
    }
    let (id, key) = ack.user.clone().unwrap();
    for i in 0..16 {
        let done = if i % 4 == 3 {
            let body = json!({"user_id": id, "amount": TOP_UP.to_string()});
            match post(api, ADMIN_KEY, "/api/credits/add", &body).await {
                Some((StatusCode::OK, _)) => {
                    ack.top_ups += 1;
                    true
                }
                _ => false,
            }
        } else {
            let body = if i % 2 == 0 {
                json!({"model": "gpt", "prompt": "one two three", "max_tokens": 5})
            } else {
                json!({"model": "image", "prompt": "a fox", "n": 1, "size": "512x512"})
            };
            match post(api, &key, "/api/request", &body).await {
                Some((StatusCode::OK, v)) => {
                    let id = v["request_id"].as_str().unwrap().to_string();
                    ack.requests.insert(id, credits(&v["cost"]));
                    true
                }
                _ => false,
            }
        };
        if !done {
            ack.in_flight = true;
            break;
        }
    }
    ack
}

/// What a restart finds must be what was acknowledged (give or take the one
/// operation in flight at the fault, which is wholly there or wholly not).
async fn check(api: &Api, ack: &Acknowledged, n: u64) {
    let Some((_, key)) = &ack.user else {
        let (st, v) = api.get(ADMIN_KEY, "/api/users").await;
        assert_eq!(st, StatusCode::OK, "N={n}: {v}");
        return;
    };
    let (st, status) = api.get(key, "/api/status").await;
    assert_eq!(st, StatusCode::OK, "N={n}: {status}");
    assert_eq!(
        credits(&status["held"]),
        Credits::ZERO,
        "N={n}: a hold is open"
    );
    let balance = credits(&status["balance"]);
    let (st, h) = api.get(key, "/api/history/requests?limit=1000").await;
    assert_eq!(st, StatusCode::OK, "N={n}: {h}");
    let items = h["items"].as_array().unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut charged = Credits::ZERO;
    let mut unacknowledged = 0;
    for r in items {
        let id = r["id"].as_str().unwrap().to_string();
        *seen.entry(id.clone()).or_default() += 1;
        let cost = credits(&r["cost"]);
        charged += cost;
        match ack.requests.get(&id) {
            Some(c) => {
                assert_eq!(r["status"], "succeeded", "N={n}: {r}");
                assert_eq!(cost, *c, "N={n}: acknowledged at another cost: {r}");
            }
            None => unacknowledged += 1,
        }
    }
    assert!(
        seen.values().all(|c| *c == 1),
        "N={n}: a request recorded twice"
    );
    for id in ack.requests.keys() {
        assert!(
            seen.contains_key(id),
            "N={n}: acknowledged request {id} lost"
        );
    }
    assert!(
        unacknowledged <= usize::from(ack.in_flight),
        "N={n}: {unacknowledged} requests nobody was told of"
    );
    let ledger = api.ledger(key).await;
    assert_ledger_balances(&ledger, balance);
    let top_ups = ledger.iter().filter(|e| e.kind == EntryKind::TopUp).count();
    // The opening balance is the first top-up.
    let acked = 1 + ack.top_ups;
    assert!(
        top_ups == acked || (ack.in_flight && top_ups == acked + 1),
        "N={n}: {top_ups} top-ups in the ledger, {acked} acknowledged"
    );
    let credited = Credits::from_credits(OPENING + TOP_UP * (top_ups as i64 - 1));
    assert_eq!(
        balance,
        credited - charged,
        "N={n}: balance against history"
    );
}

async fn run_once(n: u64) -> bool {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("oneflow.toml"), CONFIG).unwrap();
    let mode = if n % 2 == 1 { "stop" } else { "fail" };
    let plan = format!("{mode}:{n}");
    let env = [("ONEFLOW_FAILPOINT_STORAGE", plan.as_str())];
    let (ack, faulted) = match Proc::try_spawn_with(tmp.path(), &env) {
        // The fault came during the start: nothing was acknowledged.
        Err((_, stderr)) => {
            assert!(stderr.contains("injected"), "N={n}: {stderr}");
            (Acknowledged::default(), true)
        }
        Ok(mut p) => {
            let api = Api::new(&p.url);
            let ack = workload(&api).await;
            drop(api);
            if ack.in_flight {
                let status = p.wait_exit();
                let want = if mode == "stop" { 86 } else { 70 };
                assert_eq!(status.code(), Some(want), "N={n}: {}", p.stderr_text());
            }
            // The process ended at the fault (the exit code says which).
            let faulted = ack.in_flight;
            (ack, faulted)
        }
    };
    let server = Proc::spawn(tmp.path());
    let api = Api::new(&server.url);
    check(&api, &ack, n).await;
    drop(api);
    drop(server);
    faulted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_storage_fault_at_any_of_the_first_200_writes_a_restart_finds_what_was_acknowledged()
 {
    let mut faulted = 0;
    for n in 1..=200 {
        if run_once(n).await {
            faulted += 1;
        }
    }
    // The workload must be long enough for every N to land inside it.
    assert_eq!(faulted, 200, "some N fell after the workload's last write");
}
