//! The dashboard in a real browser (`chrome.rs` starts it).
//!
//! A person signs in with a user key, sends a request through the form, and
//! sees the balance fall by exactly what the ledger charged, the request in
//! the history table and the charts drawn with data. Screenshots are saved
//! under `<target>/browser-artifacts/`.

use fantoccini::{Client, Locator};
use serde_json::json;

use oneflow::Credits;

use crate::chrome::{js, screenshot, text_of, type_into, wait_js, with_browser};
use crate::support::{ADMIN_KEY, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_sends_a_request_and_sees_it_charged() {
    // The server and a user with a balance that is not a whole number.
    let s = TestServer::start();
    let (uid, key) = s.user("dana", "100").await;
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": uid, "amount": "0.123457"}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    let start_balance = s.balance(&key).await;
    assert_eq!(start_balance, Credits::parse("100.123457").unwrap());

    let (sr, u, k) = (&s, uid.as_str(), key.as_str());
    with_browser(move |c| async move { scenario(&c, sr, u, k, start_balance).await }).await;
    s.stop().await;
}

async fn scenario(c: &Client, s: &TestServer, uid: &str, key: &str, start: Credits) {
    c.goto(&format!("{}/", s.url)).await.unwrap();
    type_into(c, "#key", key).await;
    c.find(Locator::Css("#signin-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Signed in: the balance shows, exactly as the ledger has it.
    let shown = wait_js(
        c,
        "document.getElementById('balance').textContent",
        "the balance",
    )
    .await;
    assert_eq!(shown, json!("100.123457"));
    assert_eq!(text_of(c, "who").await, format!("{uid} (member)"));
    // Providers are listed with their health.
    wait_js(
        c,
        "document.querySelector('#providers-table tr[data-provider=\"gpt\"]')",
        "the gpt provider row",
    )
    .await;

    // The form: a text request. The quote shows first and matches the API's.
    wait_js(
        c,
        "document.getElementById('model').value",
        "a default model",
    )
    .await;
    type_into(c, "#model", "gpt").await;
    type_into(c, "#prompt", "hello from the dashboard browser test").await;
    type_into(c, "#max_tokens", "40").await;
    c.find(Locator::Css("#quote-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let quoted = wait_js(
        c,
        "document.getElementById('quote-amount') && document.getElementById('quote-amount').textContent",
        "the quote",
    )
    .await;
    let body = json!({"model": "gpt", "prompt": "hello from the dashboard browser test", "max_tokens": 40});
    let (st, q) = s.post(key, "/api/quote", body).await;
    assert_eq!(st, reqwest::StatusCode::OK, "{q}");
    assert_eq!(quoted, json!(format!("{} credits", q["quote"])));

    c.find(Locator::Css("#send-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let rid = wait_js(
        c,
        "document.getElementById('answer-out').dataset.requestId",
        "the answer",
    )
    .await;
    let rid = rid.as_str().unwrap().to_string();
    assert_eq!(text_of(c, "answer-status").await, "succeeded");
    assert!(!text_of(c, "answer-text").await.is_empty());

    // The ledger's charge for this request is what the page says it cost...
    let ledger = s.ledger(key).await;
    let charge = ledger
        .iter()
        .find(|e| {
            e.kind == oneflow::ledger::EntryKind::Charge && e.request_id.as_deref() == Some(&rid)
        })
        .unwrap_or_else(|| panic!("no charge for {rid}"))
        .amount;
    assert!(charge > Credits::ZERO);
    assert_eq!(text_of(c, "answer-cost").await, format!("{charge} credits"));

    // ...and the balance on the page falls by exactly that.
    let expected = start - charge;
    let shown = wait_js(
        c,
        &format!("document.getElementById('balance').textContent === '{expected}' && document.getElementById('balance').textContent"),
        "the balance to fall by the charge",
    )
    .await;
    let shown = Credits::parse(shown.as_str().unwrap()).unwrap();
    assert_eq!(start - shown, charge);
    assert_eq!(shown, s.balance(key).await);

    // The request is in the history table, the charge in the ledger table.
    wait_js(
        c,
        &format!("document.querySelector('#history-table tr[data-request-id=\"{rid}\"]')"),
        "the request in history",
    )
    .await;
    wait_js(
        c,
        "document.querySelector('#ledger-table tr[data-kind=\"charge\"]')",
        "the charge in the ledger",
    )
    .await;

    // The charts are drawn with data: one request, costing the charge.
    let requests = wait_js(
        c,
        "Number(document.getElementById('chart-requests').dataset.total) > 0 && document.querySelectorAll('#chart-requests rect').length && document.getElementById('chart-requests').dataset.total",
        "the requests chart",
    )
    .await;
    assert_eq!(requests, json!("1"));
    let cost = wait_js(
        c,
        "document.querySelectorAll('#chart-cost rect').length && document.getElementById('chart-cost').dataset.total",
        "the cost chart",
    )
    .await;
    assert_eq!(
        Credits::parse(cost.as_str().unwrap()).unwrap(),
        charge,
        "cost chart total"
    );
    wait_js(
        c,
        "document.querySelectorAll('#chart-latency circle').length",
        "latency points",
    )
    .await;
    let path = screenshot(c, "dashboard").await;
    assert!(std::fs::metadata(&path).unwrap().len() > 10_000);

    // Phone width: everything still fits without sideways scrolling.
    c.set_window_size(375, 812).await.unwrap();
    let fits = wait_js(
        c,
        "window.innerWidth <= 400 && document.documentElement.scrollWidth <= window.innerWidth",
        "the page to fit a phone-sized window",
    )
    .await;
    assert_eq!(fits, json!(true));
    screenshot(c, "dashboard-phone").await;

    // Nothing was loaded from anywhere but this server, and nothing was
    // blocked by the policy.
    let urls = js(
        c,
        "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
    )
    .await;
    let urls: Vec<String> = serde_json::from_value(urls).unwrap();
    assert!(
        urls.iter().any(|u| u.ends_with("/assets/app.js")),
        "{urls:?}"
    );
    assert!(urls.iter().any(|u| u.contains("/api/status")), "{urls:?}");
    let origin = format!("{}/", s.url);
    assert!(origin.starts_with("http://127.0.0.1:"));
    for u in &urls {
        assert!(u.starts_with(&origin), "left 127.0.0.1: {u}");
    }
    let violations = js(c, "return window.__oneflowCspViolations;").await;
    assert_eq!(violations, json!([]));

    // Money in the page is exact past a float's 15-16 digits.
    let exact = js(
        c,
        "return OneFlowMoney.format(OneFlowMoney.parseJson('{\"balance\": 9007199254.740993}').balance);",
    )
    .await;
    assert_eq!(exact, json!("9007199254.740993"));

    admin_tops_up(c, s, uid, key).await;
}

/// The admin signs in, finds the user with the balance the ledger has, and
/// tops it up through the form by an amount with every decimal place used.
async fn admin_tops_up(c: &Client, s: &TestServer, uid: &str, key: &str) {
    c.set_window_size(1280, 2400).await.unwrap();
    c.find(Locator::Css("#signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Signed out: the key is gone and nothing of the account is left.
    let left = js(
        c,
        "return [sessionStorage.length, document.getElementById('answer-out').textContent, document.getElementById('app').hidden];",
    )
    .await;
    assert_eq!(left, json!([0, "", true]));
    type_into(c, "#key", ADMIN_KEY).await;
    c.find(Locator::Css("#signin-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let before = s.balance(key).await;
    let cell = format!("document.querySelector('#users-table tr[data-user-id=\"{uid}\"]')");
    let shown = wait_js(
        c,
        &format!("{cell} && {cell}.cells[4].textContent"),
        "the user in the admin's table",
    )
    .await;
    assert_eq!(shown, json!(before.to_string()));

    js(
        c,
        &format!("document.getElementById('topup-user').value = '{uid}'; return null;"),
    )
    .await;
    type_into(c, "#topup-amount", "1.000001").await;
    c.find(Locator::Css("#topup-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let after = before + Credits::parse("1.000001").unwrap();
    let msg = wait_js(
        c,
        "document.getElementById('topup-msg').textContent",
        "the top-up message",
    )
    .await;
    assert_eq!(
        msg,
        json!(format!("Added 1.000001 to {uid}; balance now {after}."))
    );
    assert_eq!(s.balance(key).await, after);
    wait_js(
        c,
        &format!("{cell}.cells[4].textContent === '{after}'"),
        "the users table to show the new balance",
    )
    .await;
    screenshot(c, "dashboard-admin").await;
}
