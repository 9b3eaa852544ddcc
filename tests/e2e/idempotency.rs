//! `Idempotency-Key`: a repeat (also a concurrent one) returns the first
//! result and is charged once; the key with another body is refused.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;

use crate::support::{ADMIN_KEY, Raw, TestServer, assert_ledger_balances, credits};

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

/// Every header a replay must repeat: all but the date and the replay
/// mark.
fn lasting_headers(r: &Raw) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "idempotent-replayed"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    h.sort();
    h
}

/// `/v1` takes `Idempotency-Key` as the native API does: the same key
/// three times on each resource is one charge and two replays of the
/// first answer, byte for byte; another body under the key is 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_repeats_with_a_key_are_charged_once_and_replayed_byte_for_byte() {
    let s = TestServer::start();
    let (_, key) = s.user("vic", "1000").await;
    let calls = [
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": [{"role": "user", "content": "say something long"}], "max_tokens": 30}),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt", "prompt": "once upon a time", "max_tokens": 12}),
        ),
        (
            "/v1/images/generations",
            json!({"model": "image", "prompt": "a fox", "n": 2, "size": "512x512"}),
        ),
        (
            "/v1/audio/speech",
            json!({"model": "audio", "input": "hello there"}),
        ),
    ];
    let mut before = s.balance(&key).await;
    for (i, (path, body)) in calls.iter().enumerate() {
        let k = format!("v1-{i}");
        let first = s.post_raw(&key, path, Some(&k), body).await;
        assert_eq!(first.status, StatusCode::OK, "{path}: {:?}", first.body);
        assert!(!first.replayed(), "{path}");
        let after_first = s.balance(&key).await;
        assert!(after_first < before, "{path} charged nothing");
        for _ in 0..2 {
            let again = s.post_raw(&key, path, Some(&k), body).await;
            assert_eq!(again.status, StatusCode::OK, "{path}");
            assert!(again.replayed(), "{path}: a repeat must be marked a replay");
            assert_eq!(again.body, first.body, "{path}: the replay differs");
            assert_eq!(lasting_headers(&again), lasting_headers(&first), "{path}");
        }
        assert_eq!(s.balance(&key).await, after_first, "{path}: charged twice");

        // The same request but for one word of its text.
        let other: Value = serde_json::from_str(
            &body
                .to_string()
                .replacen("\"a fox", "\"another fox", 1)
                .replacen("\"say", "\"do not say", 1)
                .replacen("\"once", "\"twice", 1)
                .replacen("\"hello", "\"goodbye", 1),
        )
        .unwrap();
        assert_ne!(&other, body);
        let refused = s.post_raw(&key, path, Some(&k), &other).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            refused.json()
        );
        assert_eq!(refused.json()["error"]["code"], "idempotency_key_reused");
        before = after_first;
    }
    let (_, h) = s.get(&key, "/api/history/requests").await;
    assert_eq!(h["items"].as_array().unwrap().len(), calls.len());
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

/// Two keys whose bodies differ only in spacing and key order are the same
/// request: the second is a replay, not a 422.
#[tokio::test]
async fn v1_bodies_are_compared_as_parsed_not_as_spelled() {
    let s = TestServer::start();
    let (_, key) = s.user("wes", "100").await;
    let send = |text: &'static str| {
        s.http
            .post(format!("{}/v1/completions", s.url))
            .bearer_auth(&key)
            .header("Idempotency-Key", "spelled")
            .header("content-type", "application/json")
            .body(text)
            .send()
    };
    let a = send(r#"{"model":"gpt","prompt":"hi there","max_tokens":4}"#)
        .await
        .unwrap();
    assert_eq!(a.status(), StatusCode::OK);
    let a = a.bytes().await.unwrap();
    let b = send("{ \"max_tokens\": 4,\n  \"prompt\": \"hi there\", \"model\": \"gpt\" }")
        .await
        .unwrap();
    assert_eq!(b.status(), StatusCode::OK);
    assert!(b.headers().get("idempotent-replayed").is_some());
    assert_eq!(b.bytes().await.unwrap(), a);
    s.stop().await;
}

/// A whole answer larger than `idempotency.max_answer_bytes` is not kept:
/// the repeat is not run again (it was charged once) and says so with a
/// 409, while the native API still replays the outcome.
#[tokio::test]
async fn an_answer_too_large_to_keep_is_refused_on_replay_not_charged_again() {
    let s = TestServer::start_with(|c| c.idempotency.max_answer_bytes = 16);
    let (_, key) = s.user("xan", "100").await;
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "a long answer please"}], "max_tokens": 40});
    let first = s
        .post_raw(&key, "/v1/chat/completions", Some("big"), &body)
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let charged = s.balance(&key).await;
    let again = s
        .post_raw(&key, "/v1/chat/completions", Some("big"), &body)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let v = again.json();
    assert_eq!(v["error"]["code"], "idempotency_answer_not_kept", "{v}");
    let id = first.headers["x-oneflow-request-id"].to_str().unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains(id), "{v}");
    assert_eq!(s.balance(&key).await, charged);

    let native = json!({"model": "gpt", "prompt": "a long answer please", "max_tokens": 40});
    let (st1, r1, v1) = s.idempotent(&key, "big-native", &native).await;
    let (st2, r2, v2) = s.idempotent(&key, "big-native", &native).await;
    assert_eq!(
        (st1, r1, st2, r2),
        (StatusCode::OK, false, StatusCode::OK, true)
    );
    assert_eq!(v1, v2);
    s.stop().await;
}

/// A stream cannot be replayed as it came, so a key on a streamed request
/// is refused before anything is held.
#[tokio::test]
async fn a_streamed_request_with_a_key_is_refused_and_holds_nothing() {
    let s = TestServer::start();
    let (_, key) = s.user("yul", "100").await;
    let body =
        json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = s
        .post_raw(&key, "/v1/chat/completions", Some("s-1"), &body)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    assert_eq!(s.balance(&key).await, Credits::from_credits(100));
    let (_, st) = s.get(&key, "/api/status").await;
    assert_eq!(
        credits(&st["available"]),
        Credits::from_credits(100),
        "{st}"
    );
    s.stop().await;
}

/// A retried top-up credits once, concurrent retries too; the same key with
/// another amount is 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_top_up_credits_once() {
    let s = TestServer::start();
    let (id, key) = s.user("zed", "0").await;
    let body = json!({"user_id": id, "amount": "25", "note": "invoice 9"});
    let first = s
        .post_raw(ADMIN_KEY, "/api/credits/add", Some("inv-9"), &body)
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert!(!first.replayed());
    let again =
        join_all((0..8).map(|_| s.post_raw(ADMIN_KEY, "/api/credits/add", Some("inv-9"), &body)))
            .await;
    for r in &again {
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.replayed());
        assert_eq!(r.body, first.body);
    }
    assert_eq!(s.balance(&key).await, Credits::from_credits(25));

    // Concurrent first tries of a new key: one credit.
    let body2 = json!({"user_id": id, "amount": "5"});
    let racing =
        join_all((0..8).map(|_| s.post_raw(ADMIN_KEY, "/api/credits/add", Some("inv-10"), &body2)))
            .await;
    assert!(racing.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(racing.iter().filter(|r| !r.replayed()).count(), 1);
    assert_eq!(s.balance(&key).await, Credits::from_credits(30));

    let other = json!({"user_id": id, "amount": "250", "note": "invoice 9"});
    let r = s
        .post_raw(ADMIN_KEY, "/api/credits/add", Some("inv-9"), &other)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["code"], "idempotency_key_reused");
    assert_eq!(s.balance(&key).await, Credits::from_credits(30));
    let ledger = s.ledger(&key).await;
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    assert_ledger_balances(&ledger, Credits::from_credits(30));
    s.stop().await;
}

/// Records older than `idempotency.retention_hours` are purged from the
/// store (counted in `oneflow_idempotency_purged_total`), and their key
/// then runs as a new request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_record_is_purged_and_its_key_runs_again() {
    let tmp = tempfile::tempdir().unwrap();
    let second = 1.0 / 3600.0;
    let s = TestServer::start_in(tmp.path(), |c| c.idempotency.retention_hours = second);
    let (id, key) = s.user("abe", "100").await;
    let body = json!({"model": "video", "prompt": "a film"});
    let (st, replayed, first) = s.idempotent(&key, "old", &body).await;
    assert_eq!((st, replayed), (StatusCode::OK, false), "{first}");
    let mut purged = 0.0;
    for _ in 0..100 {
        purged = s
            .metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix("oneflow_idempotency_purged_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if purged >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(purged, 1.0, "the expired record was not purged");
    s.stop().await;
    {
        use oneflow_actors::store::{RedbStore, Store};
        let store = RedbStore::open(&tmp.path().join("oneflow.redb")).unwrap();
        assert_eq!(store.idempotency(&id, "old").unwrap(), None);
    }
    let s = TestServer::start_in(tmp.path(), |c| c.idempotency.retention_hours = second);
    let (st, replayed, again) = s.idempotent(&key, "old", &body).await;
    assert_eq!((st, replayed), (StatusCode::OK, false), "{again}");
    assert_ne!(again["request_id"], first["request_id"]);
    assert_eq!(s.balance(&key).await, Credits::from_credits(60));
    s.stop().await;
}
