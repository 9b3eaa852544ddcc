//! A user with 100 credits uses every modality; each request is charged
//! exactly its usage, and history, analytics and the ledger agree.

use reqwest::StatusCode;
use serde_json::json;

use oneflow::Credits;

use crate::support::{TestServer, assert_ledger_balances, credits};

#[tokio::test]
async fn every_modality_is_charged_its_usage_and_shows_everywhere() {
    let s = TestServer::start();
    let (_, key) = s.user("ann", "100").await;
    let requests = [
        // 3 prompt words -> "Simulated answer:" + 3 reversed words = 5 words.
        (
            json!({"model": "gpt", "prompt": "hello brave world", "max_tokens": 10}),
            Credits::from_credits(5),
        ),
        (
            json!({"model": "image", "prompt": "a cat", "n": 2}),
            Credits::from_credits(20),
        ),
        (
            json!({"model": "audio", "prompt": "a song"}),
            Credits::from_credits(5),
        ),
        (
            json!({"model": "video", "prompt": "a film"}),
            Credits::from_credits(20),
        ),
    ];
    let mut ids = Vec::new();
    let mut expected = Credits::from_credits(100);
    for (body, cost) in &requests {
        let (q, quote) = s.post(&key, "/api/quote", body.clone()).await;
        assert_eq!(q, StatusCode::OK, "{quote}");
        let (st, v) = s.post(&key, "/api/request", body.clone()).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "succeeded");
        assert_eq!(credits(&v["cost"]), *cost, "{v}");
        assert!(
            credits(&quote["quote"]) >= credits(&v["cost"]),
            "quote below charge: {quote} {v}"
        );
        expected -= *cost;
        assert_eq!(credits(&v["balance"]), expected);
        ids.push(v["request_id"].as_str().unwrap().to_string());
    }
    // The text answer and usage are real figures of the simulated provider.
    let (_, first) = s
        .get(&key, &format!("/api/history/requests/{}", ids[0]))
        .await;
    assert_eq!(first["usage"]["output_tokens"], 5);
    assert_eq!(first["response"], "Simulated answer: world brave hello");

    let (st, hist) = s.get(&key, "/api/history/requests").await;
    assert_eq!(st, StatusCode::OK);
    let listed: Vec<&str> = hist["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);

    let (_, a) = s.get(&key, "/api/analytics").await;
    assert_eq!(a["total_requests"], 4);
    assert_eq!(credits(&a["total_cost"]), Credits::from_credits(50));
    for (name, (_, cost)) in ["gpt", "image", "audio", "video"].iter().zip(&requests) {
        let p = &a["providers"][name];
        assert_eq!(p["requests"], 1, "{name}: {a}");
        assert_eq!(p["successes"], 1);
        assert_eq!(p["success_rate"], 1.0);
        assert_eq!(credits(&p["cost"]), *cost);
    }
    assert_eq!(a["recent_requests"].as_array().unwrap().len(), 4);

    let balance = s.balance(&key).await;
    assert_eq!(balance, Credits::from_credits(50));
    let ledger = s.ledger(&key).await;
    assert_ledger_balances(&ledger, balance);
    s.stop().await;
}

#[tokio::test]
async fn refusals_name_the_reason_and_charge_nothing() {
    crate::support::avoid_midnight().await;
    let s = TestServer::start();
    let (_, key) = s.user("bob", "12").await;
    let calls_before = provider_calls(&s, &key, "video").await;
    // Video costs 20: more than the balance.
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "video", "prompt": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(v["error"]["code"], "insufficient_credits");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("20"),
        "{v}"
    );
    assert_eq!(
        provider_calls(&s, &key, "video").await,
        calls_before,
        "a refused request reached the provider"
    );

    // A daily budget below the quote refuses too, with the window named.
    let (st, b) = s
        .call(
            reqwest::Method::PUT,
            Some(&key),
            "/api/budget",
            Some(&json!({"daily": "4"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let audio_calls = provider_calls(&s, &key, "audio").await;
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "audio", "prompt": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(v["error"]["code"], "budget_exceeded");
    assert_eq!(
        provider_calls(&s, &key, "audio").await,
        audio_calls,
        "a refused request reached the provider"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("daily"),
        "{v}"
    );
    // A per-provider budget is separate from the overall one.
    let body = json!({"per_provider": {"gpt": {"monthly": "2"}}});
    let (st, _) = s
        .call(reqwest::Method::PUT, Some(&key), "/api/budget", Some(&body))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "gpt", "prompt": "x", "max_tokens": 3}),
        )
        .await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("provider gpt"),
        "{v}"
    );
    let (st, _) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "gpt", "prompt": "x", "max_tokens": 2}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    let ledger = s.ledger(&key).await;
    let charged: Credits = ledger
        .iter()
        .filter(|e| e.kind == oneflow::ledger::EntryKind::Charge)
        .map(|e| e.amount)
        .sum();
    assert!(charged <= Credits::from_credits(2));
    assert_ledger_balances(&ledger, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn a_provider_failure_releases_the_whole_hold_and_is_recorded() {
    let s = TestServer::start_with(|c| c.providers[0].simulated.failure_rate = 1.0);
    let (_, key) = s.user("cy", "30").await;
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "gpt", "prompt": "fail please", "max_tokens": 8}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"]["code"], "provider_error");
    let id = v["error"]["request_id"].as_str().unwrap();
    assert_eq!(credits(&v["request"]["cost"]), Credits::ZERO);

    let (_, rec) = s.get(&key, &format!("/api/history/requests/{id}")).await;
    assert_eq!(rec["status"], "failed");
    assert!(
        rec["error"].as_str().unwrap().contains("simulated failure"),
        "{rec}"
    );
    let (_, st_) = s.get(&key, "/api/status").await;
    assert_eq!(credits(&st_["balance"]), Credits::from_credits(30));
    assert_eq!(credits(&st_["available"]), Credits::from_credits(30));
    let ledger = s.ledger(&key).await;
    let kinds: Vec<_> = ledger.iter().map(|e| e.kind).collect();
    use oneflow::ledger::EntryKind::*;
    assert_eq!(kinds, [TopUp, Hold, Release]);
    assert_eq!(ledger[2].amount, Credits::from_credits(8));
    assert_ledger_balances(&ledger, Credits::from_credits(30));
    let (_, a) = s.get(&key, "/api/analytics").await;
    assert_eq!(a["providers"]["gpt"]["failures"], 1);
    assert_eq!(a["providers"]["gpt"]["success_rate"], 0.0);
    s.stop().await;
}

async fn provider_calls(s: &TestServer, key: &str, name: &str) -> u64 {
    let (_, v) = s.get(key, "/api/providers").await;
    v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()["calls"]
        .as_u64()
        .unwrap()
}
