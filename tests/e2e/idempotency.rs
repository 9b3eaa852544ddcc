//! `Idempotency-Key`: a repeat (also a concurrent one) returns the first
//! result and is charged once; the key with another body is refused.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use oneflow::Credits;

use crate::support::{TestServer, assert_ledger_balances};

#[tokio::test]
async fn a_repeat_returns_the_first_result_and_charges_once() {
    let s = TestServer::start();
    let (_, key) = s.user("fay", "100").await;
    let body = json!({"model": "video", "prompt": "a film"});
    let (st1, r1, v1) = s.idempotent(&key, "k-1", &body).await;
    let (st2, r2, v2) = s.idempotent(&key, "k-1", &body).await;
    assert_eq!((st1, st2), (StatusCode::OK, StatusCode::OK));
    assert!(!r1 && r2, "only the second is a replay");
    assert_eq!(v1, v2);
    assert_eq!(s.balance(&key).await, Credits::from_credits(80));

    // Same key, other body: refused, nothing charged.
    let other = json!({"model": "video", "prompt": "another film"});
    let (st, _, v) = s.idempotent(&key, "k-1", &other).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "idempotency_key_reused");
    assert_eq!(s.balance(&key).await, Credits::from_credits(80));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_repeats_charge_once() {
    // A little latency so the repeats arrive while the first is in flight.
    let s = TestServer::start_with(|c| {
        c.providers
            .iter_mut()
            .for_each(|p| p.simulated.latency_ms = 50)
    });
    let (_, key) = s.user("gus", "100").await;
    let body = json!({"model": "audio", "prompt": "one song"});
    let results = join_all((0..20).map(|_| s.idempotent(&key, "same-key", &body))).await;
    let first = &results[0].2;
    for (st, _, v) in &results {
        assert_eq!(*st, StatusCode::OK, "{v}");
        assert_eq!(v, first);
    }
    assert_eq!(
        results.iter().filter(|(_, replayed, _)| !replayed).count(),
        1
    );
    let balance = s.balance(&key).await;
    assert_eq!(balance, Credits::from_credits(95));
    let (_, h) = s.get(&key, "/api/history/requests").await;
    assert_eq!(h["items"].as_array().unwrap().len(), 1);
    assert_ledger_balances(&s.ledger(&key).await, balance);
    s.stop().await;
}

/// A failed request charged nothing, so its key is not spent: retrying it
/// runs the request again (and that success is then what replays).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_request_can_be_retried_with_its_key() {
    let s = TestServer::start_with(|c| {
        let video = &mut c.providers[3];
        video.simulated.latency_ms = 200;
        video.limits.max_concurrency = 1;
        video.limits.queue = 1;
    });
    let (_, key) = s.user("hal", "1000").await;
    let body = json!({"model": "video", "prompt": "busy"});
    let keys: Vec<String> = (0..5).map(|i| format!("k-{i}")).collect();
    let results = join_all(keys.iter().map(|k| s.idempotent(&key, k, &body))).await;
    let failed = results
        .iter()
        .zip(&keys)
        .find(|((st, _, _), _)| *st == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, k)| k.clone())
        .expect("with one slot and a queue of one, some of five must be refused");
    let served = results
        .iter()
        .filter(|(st, _, _)| *st == StatusCode::OK)
        .count() as i64;
    let (st, replayed, v) = s.idempotent(&key, &failed, &body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(!replayed, "the retry must run, not replay the 429");
    let (st, replayed, again) = s.idempotent(&key, &failed, &body).await;
    assert_eq!((st, replayed), (StatusCode::OK, true));
    assert_eq!(again, v);
    let balance = s.balance(&key).await;
    assert_eq!(balance, Credits::from_credits(1000 - 20 * (served + 1)));
    assert_ledger_balances(&s.ledger(&key).await, balance);
    s.stop().await;
}
