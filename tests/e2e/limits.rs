//! Provider rate limits and routing constraints, seen from outside.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use oneflow::Credits;

use crate::support::{TestServer, assert_ledger_balances, credits};

/// A provider limited to N requests a second, hit by a burst of 10N: the
/// queue takes what fits, the rest get 429 with Retry-After at once, and the
/// served requests are admitted no faster than N a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_is_served_at_the_rate_limit_and_the_overflow_gets_429() {
    const N: u32 = 5;
    const QUEUE: u32 = 12;
    let s = TestServer::start_with(|c| {
        let gpt = &mut c.providers[0];
        gpt.limits.requests_per_second = N;
        gpt.limits.burst = 1;
        gpt.limits.queue = QUEUE;
        // One try per provider: a full queue is answered, not retried.
        c.retry.attempts_per_provider = 1;
    });
    let (_, key) = s.user("burst", "100000").await;
    let body = json!({"model": "gpt", "prompt": "one two three", "max_tokens": 2});
    let start = Instant::now();
    let sends = (0..10 * N).map(|_| {
        let req = s
            .http
            .post(format!("{}/api/request", s.url))
            .bearer_auth(&key)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            let done = start.elapsed();
            let status = r.status();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let v: serde_json::Value = r.json().await.unwrap();
            (status, retry_after, v, done)
        }
    });
    let results = join_all(sends).await;

    let mut served: Vec<Duration> = Vec::new();
    let mut charged = Credits::ZERO;
    let mut rejected = 0;
    for (status, retry_after, v, done) in &results {
        match *status {
            StatusCode::OK => {
                served.push(*done);
                charged += credits(&v["cost"]);
            }
            StatusCode::TOO_MANY_REQUESTS => {
                rejected += 1;
                assert_eq!(v["error"]["code"], "provider_overloaded", "{v}");
                assert!(retry_after.is_some_and(|s| s >= 1), "no Retry-After: {v}");
                assert_eq!(credits(&v["request"]["cost"]), Credits::ZERO);
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    // The queue bound decides how many wait; at least that many are served
    // and the rest are refused rather than queued without limit.
    assert!(served.len() >= QUEUE as usize, "served {}", served.len());
    assert!(rejected > 0, "nothing was refused");
    assert_eq!(served.len() + rejected, (10 * N) as usize);

    // Never faster than the limit: the k-th answer cannot come before k-1
    // intervals of 1/N s have passed (burst 1).
    served.sort();
    let interval = Duration::from_secs(1) / N;
    for (k, t) in served.iter().enumerate().skip(1) {
        let earliest = interval * (k as u32 - 1);
        assert!(
            *t >= earliest,
            "answer {k} came after {t:?}, earlier than the limit allows ({earliest:?})"
        );
    }

    // Refused requests released their holds; served ones were charged.
    let balance = s.balance(&key).await;
    assert_eq!(balance, Credits::from_credits(100_000) - charged);
    assert_ledger_balances(&s.ledger(&key).await, balance);
    s.stop().await;
}

/// Constraints no provider meets refuse the request before anything is
/// held: no ledger entry, the balance untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_provider_can_serve_within_its_constraints_is_refused_before_a_hold() {
    let s = TestServer::start();
    let (_, key) = s.user("picky", "500").await;
    let before = s.ledger(&key).await.len();

    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "gpt", "prompt": "hello there", "region": "EU"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "no_provider_in_region", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("gpt"),
        "{v}"
    );

    // The quote for 16 output tokens at 1 credit each is 16 credits.
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "gpt", "prompt": "hello there", "max_price": "15.999999"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "over_max_price", "{v}");

    // Within the price it goes through, and the route names the provider.
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "gpt", "prompt": "hello there", "max_price": "16", "region": "US"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["route"].as_str().unwrap().contains("gpt"), "{v}");

    let ledger = s.ledger(&key).await;
    // Only the successful request wrote to the ledger (hold, charge and
    // the release of the unused rest).
    assert!(ledger.len() > before);
    for e in &ledger[before..] {
        assert_eq!(e.request_id.as_deref(), v["request_id"].as_str(), "{e:?}");
    }
    assert_eq!(
        s.balance(&key).await,
        Credits::from_credits(500) - credits(&v["cost"])
    );
    s.stop().await;
}

/// Two simulated providers of one model: cheap and plain, dear and good.
fn two_of_a_kind(c: &mut oneflow::config::Config) {
    let mut cheap = c.providers[0].clone();
    cheap.name = "cheap".into();
    cheap.models = vec!["chat".into()];
    cheap.quality = 10;
    let mut good = cheap.clone();
    good.name = "good".into();
    good.quality = 90;
    good.rates.per_output_token = Credits::from_credits(2);
    c.providers = vec![cheap, good];
}

/// The strategy comes from the request if it names one, else from the
/// user's stored default, else from the global default; the user's default
/// survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_default_strategy_sits_between_the_request_and_the_global_default() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path(), two_of_a_kind);
    let (_, key) = s.user("router", "1000").await;
    let ask = |body: serde_json::Value| {
        let s = &s;
        let key = key.clone();
        async move {
            let (st, v) = s.post(&key, "/api/request", body).await;
            assert_eq!(st, StatusCode::OK, "{v}");
            v["provider"].as_str().unwrap().to_string()
        }
    };
    let plain = json!({"model": "chat", "prompt": "hi"});
    // Global default: cost.
    assert_eq!(ask(plain.clone()).await, "cheap");
    let (st, v) = s.get(&key, "/api/routing").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["strategy"], serde_json::Value::Null);
    assert_eq!(v["effective"], "cost");

    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            Some(&key),
            "/api/routing",
            Some(&json!({"strategy": "quality"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["effective"], "quality");
    assert_eq!(ask(plain.clone()).await, "good");
    // The request's own choice wins.
    assert_eq!(
        ask(json!({"model": "chat", "prompt": "hi", "strategy": "cost"})).await,
        "cheap"
    );
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            Some(&key),
            "/api/routing",
            Some(&json!({"strategy": "fastest"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    s.stop().await;
    let s = TestServer::start_in(tmp.path(), two_of_a_kind);
    let (_, v) = s.get(&key, "/api/routing").await;
    assert_eq!(v["strategy"], "quality", "{v}");
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "chat", "prompt": "hi"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["provider"], "good");
    s.stop().await;
}

/// Per-minute request and token limits: once a minute's quota is used, the
/// next call waits for room; with a short attempt timeout it gives up with
/// 504 and is not charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_request_and_token_limits_hold_calls_back() {
    for (rpm, tpm) in [(2, 0), (0, 30)] {
        let s = TestServer::start_with(|c| {
            c.providers[0].limits.requests_per_minute = rpm;
            c.providers[0].limits.tokens_per_minute = tpm;
            c.retry.attempts_per_provider = 1;
            c.retry.attempt_timeout_ms = 500;
        });
        let (_, key) = s.user("minute", "100").await;
        // Each call may use 2 prompt + 10 answer tokens: two fit in 30.
        let body = json!({"model": "gpt", "prompt": "one two", "max_tokens": 10});
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let (st, v) = s.post(&key, "/api/request", body.clone()).await;
            if st != StatusCode::OK {
                assert_eq!(v["error"]["code"], "provider_timeout", "{v}");
                assert_eq!(credits(&v["request"]["cost"]), Credits::ZERO);
            }
            statuses.push(st);
        }
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::OK, StatusCode::GATEWAY_TIMEOUT],
            "rpm {rpm} tpm {tpm}"
        );
        assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
        s.stop().await;
    }
}
