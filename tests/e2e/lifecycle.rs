//! Bounded queues answer overload clearly, and wallets that leave memory
//! when idle come back from the store with the exact same money.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use oneflow::Credits;

use crate::support::{TestServer, assert_ledger_balances, credits};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_provider_queue_answers_429_and_releases_the_hold() {
    let s = TestServer::start_with(|c| {
        let video = &mut c.providers[3];
        video.simulated.latency_ms = 300;
        video.limits.max_concurrency = 1;
        video.limits.queue = 1;
    });
    let (_, key) = s.user("q", "1000").await;
    let body = json!({"model": "video", "prompt": "x"});
    let results = join_all((0..6).map(|_| s.post(&key, "/api/request", body.clone()))).await;
    let ok = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::OK)
        .count();
    let overloaded: Vec<_> = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(ok + overloaded.len(), 6, "{results:?}");
    // One runs, one waits: the rest find the queue full.
    assert!(
        ok >= 2 && !overloaded.is_empty(),
        "ok={ok} overloaded={}",
        overloaded.len()
    );
    for (_, v) in &overloaded {
        assert_eq!(v["error"]["code"], "provider_overloaded");
        assert_eq!(credits(&v["request"]["cost"]), Credits::ZERO);
    }
    let balance = s.balance(&key).await;
    assert_eq!(balance, Credits::from_credits(1000 - 20 * ok as i64));
    assert_ledger_balances(&s.ledger(&key).await, balance);

    // Retry-After is sent with the 429.
    let mut saw_retry_after = false;
    for _ in 0..3 {
        let futs = (0..4).map(|_| {
            s.http
                .post(format!("{}/api/request", s.url))
                .bearer_auth(&key)
                .json(&body)
                .send()
        });
        for r in join_all(futs).await {
            let r = r.unwrap();
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                let secs: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(secs >= 1);
                saw_retry_after = true;
            }
        }
        if saw_retry_after {
            break;
        }
    }
    assert!(saw_retry_after);
    s.stop().await;
}

#[tokio::test]
async fn idle_wallets_stop_and_reload_exactly() {
    crate::support::avoid_midnight().await;
    let s = TestServer::start_with(|c| c.wallets.idle_stop_secs = 0);
    let (_, key) = s.user("idle", "50").await;
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            Some(&key),
            "/api/budget",
            Some(&json!({"daily": "30"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "video", "prompt": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Wait (bounded) until the wallet has left memory.
    let mut stopped = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, v) = s.get(crate::support::ADMIN_KEY, "/api/status").await;
        // The admin's own wallet is alive while answering; the user's is not.
        if v["wallets_alive"].as_u64().is_some_and(|n| n <= 1) {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "the idle wallet never left memory");
    // A fresh actor reloads balance and the day's spend: 20 of the daily 30
    // is spent, so another video (20) must be refused.
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "video", "prompt": "y"}),
        )
        .await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(v["error"]["code"], "budget_exceeded");
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "audio", "prompt": "y"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(credits(&v["balance"]), Credits::from_credits(25));
    assert_ledger_balances(&s.ledger(&key).await, Credits::from_credits(25));
    s.stop().await;
}

/// A client that hangs up mid-request does not stop its settle: the hold is
/// closed and the request recorded and charged exactly once.
#[tokio::test]
async fn a_client_that_hangs_up_is_still_settled() {
    let s = TestServer::start_with(|c| c.providers[2].simulated.latency_ms = 300);
    let (_, key) = s.user("gone", "40").await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(60))
        .build()
        .unwrap();
    let res = impatient
        .post(format!("{}/api/request", s.url))
        .bearer_auth(&key)
        .json(&json!({"model": "audio", "prompt": "hang up"}))
        .send()
        .await;
    assert!(res.is_err(), "the client should have timed out");
    drop(impatient);
    // Bounded wait for the detached settle.
    let mut settled = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, v) = s.get(&key, "/api/status").await;
        if credits(&v["held"]) == Credits::ZERO
            && credits(&v["balance"]) != Credits::from_credits(40)
        {
            settled = Some(v);
            break;
        }
    }
    let v = settled.expect("the hold was never settled");
    assert_eq!(credits(&v["balance"]), Credits::from_credits(35));
    // The status shows the wallet's memory, which can be a moment ahead of
    // the commit that stores the record: wait (bounded) for the record.
    let mut items = Vec::new();
    for _ in 0..50 {
        let (_, h) = s.get(&key, "/api/history/requests").await;
        items = h["items"].as_array().unwrap().clone();
        if !items.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "succeeded");
    assert_ledger_balances(&s.ledger(&key).await, Credits::from_credits(35));
    s.stop().await;
}

/// One user may have a bounded number of requests holding money at once;
/// past it the answer is 429 `too_many_in_flight` with Retry-After, and
/// nothing is charged for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_over_max_in_flight_answers_429() {
    // Each request holds for the simulated provider's 200 ms, so the
    // concurrent ones find the user's one slot taken.
    let s = TestServer::start_with(|c| {
        c.wallets.max_in_flight = 1;
        for p in &mut c.providers {
            p.simulated.latency_ms = 200;
        }
    });
    let (_, key) = s.user("crowd", "1000").await;
    let body = json!({"model": "audio", "prompt": "x"});
    let futs = (0..64).map(|_| {
        s.http
            .post(format!("{}/api/request", s.url))
            .bearer_auth(&key)
            .json(&body)
            .send()
    });
    let mut ok = 0i64;
    let mut busy = 0;
    for r in join_all(futs).await {
        let r = r.unwrap();
        match r.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(r.headers().contains_key("retry-after"));
                let v: serde_json::Value = r.json().await.unwrap();
                assert_eq!(v["error"]["code"], "too_many_in_flight");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 1 && busy >= 1, "ok={ok} busy={busy}");
    let balance = s.balance(&key).await;
    assert_eq!(balance, Credits::from_credits(1000 - 5 * ok));
    assert_ledger_balances(&s.ledger(&key).await, balance);
    s.stop().await;
}
