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
