//! 500 requests at once against a wallet (or a budget) that affords exactly
//! 37 of them: exactly 37 succeed, and the ledger never goes negative.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use oneflow::Credits;

use crate::support::{TestServer, assert_ledger_balances, credits};

const N: usize = 500;
const AFFORDABLE: i64 = 37;

/// Fires N audio requests (5 credits each, cost == quote) at once.
async fn storm(s: &TestServer, key: &str) -> (usize, usize) {
    let body = json!({"model": "audio", "prompt": "x"});
    let futs = (0..N).map(|_| s.post(key, "/api/request", body.clone()));
    let results = join_all(futs).await;
    let ok = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::OK)
        .count();
    let refused = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::PAYMENT_REQUIRED)
        .count();
    for (st, v) in &results {
        assert!(
            *st == StatusCode::OK || *st == StatusCode::PAYMENT_REQUIRED,
            "{st}: {v}"
        );
    }
    (ok, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wallet_for_37_serves_exactly_37_of_500() {
    let s = TestServer::start();
    let (_, key) = s.user("dee", &(AFFORDABLE * 5 + 3).to_string()).await;
    let (ok, refused) = storm(&s, &key).await;
    assert_eq!(
        (ok, refused),
        (AFFORDABLE as usize, N - AFFORDABLE as usize)
    );
    let balance = s.balance(&key).await;
    assert_eq!(balance, Credits::from_credits(3));
    // Every entry's running balance and available are non-negative.
    let ledger = s.ledger(&key).await;
    assert!(
        ledger
            .iter()
            .all(|e| !e.balance_after.is_negative() && !e.available_after.is_negative())
    );
    assert_ledger_balances(&ledger, balance);
    // Analytics (from rollups) agree with the ledger to the micro-credit.
    let charged: Credits = ledger
        .iter()
        .filter(|e| e.kind == oneflow::ledger::EntryKind::Charge)
        .map(|e| e.amount)
        .sum();
    let (_, a) = s.get(&key, "/api/analytics").await;
    assert_eq!(credits(&a["total_cost"]), charged);
    assert_eq!(a["providers"]["audio"]["successes"], AFFORDABLE);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daily_budget_for_37_serves_exactly_37_of_500() {
    crate::support::avoid_midnight().await;
    let s = TestServer::start();
    let (_, key) = s.user("eve", "100000").await;
    let budget = json!({"daily": (AFFORDABLE * 5).to_string()});
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            Some(&key),
            "/api/budget",
            Some(&budget),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (ok, _) = storm(&s, &key).await;
    assert_eq!(ok, AFFORDABLE as usize);
    let (_, b) = s.get(&key, "/api/budget").await;
    let daily = &b["windows"][0];
    assert_eq!(daily["window"], "daily");
    assert_eq!(
        credits(&daily["spent"]),
        Credits::from_credits(AFFORDABLE * 5)
    );
    assert_eq!(credits(&daily["remaining"]), Credits::ZERO);
    let balance = s.balance(&key).await;
    assert_eq!(balance, Credits::from_credits(100_000 - AFFORDABLE * 5));
    assert_ledger_balances(&s.ledger(&key).await, balance);
    s.stop().await;
}
