//! The dashboard signed in with an account (e-mail and password) in a real
//! browser (`chrome.rs` starts it): a wrong password is refused in words,
//! the right one opens the dashboard, the person chooses their team and
//! sees its wallet exactly as `GET /api/teams/{id}/wallet` has it, its
//! members and the request they sent through a team key; their webhook's
//! delivery log shows a delivery to a receiver that is not there; the
//! access token is refreshed, and signing out revokes the refresh token.

use std::net::TcpListener;

use fantoccini::Client;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::chrome::{click, js, screenshot, text_of, type_into, wait_js, with_browser};
use crate::support::{ADMIN_KEY, TestServer, credits};

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "a tune of moss and copper";
/// Polls of the API for a delivery attempt (100 ms apart).
const POLLS: usize = 300;

/// What the scenario set up through the API.
struct Setup {
    user_id: String,
    team: String,
    request_id: String,
    hook: String,
}

async fn ok(s: &TestServer, method: Method, key: Option<&str>, path: &str, body: Value) -> Value {
    let (st, v) = s.call(method, key, path, Some(&body)).await;
    assert!(st.is_success(), "{path}: {st} {v}");
    v
}

/// A port on 127.0.0.1 nothing listens on: bound, read, released.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A registered person in a team the admin made and topped up, one request
/// spent through their team key, and a webhook of theirs with a delivery
/// attempted (and failed: nothing listens where it points).
async fn set_up(s: &TestServer) -> Setup {
    let user = ok(
        s,
        Method::POST,
        None,
        "/api/auth/register",
        json!({"name": "Ada", "email": EMAIL, "password": PASSWORD}),
    )
    .await;
    let user_id = user["id"].as_str().unwrap().to_string();
    let pair = ok(
        s,
        Method::POST,
        None,
        "/api/auth/login",
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    let token = pair["access_token"].as_str().unwrap().to_string();

    let team = ok(
        s,
        Method::POST,
        Some(ADMIN_KEY),
        "/api/teams",
        json!({"name": "lab"}),
    )
    .await;
    let team = team["id"].as_str().unwrap().to_string();
    ok(
        s,
        Method::PUT,
        Some(ADMIN_KEY),
        &format!("/api/teams/{team}/members/{user_id}"),
        json!({"role": "member"}),
    )
    .await;
    ok(
        s,
        Method::POST,
        Some(ADMIN_KEY),
        "/api/credits/add",
        json!({"user_id": team, "amount": "50.123457"}),
    )
    .await;
    let key = ok(
        s,
        Method::POST,
        Some(&token),
        &format!("/api/teams/{team}/keys"),
        json!({}),
    )
    .await;
    let team_key = key["api_key"].as_str().unwrap();
    let sent = ok(
        s,
        Method::POST,
        Some(team_key),
        "/api/request",
        json!({"model": "gpt", "prompt": "hello from the team", "max_tokens": 30}),
    )
    .await;
    assert_eq!(sent["status"], "succeeded", "{sent}");
    let request_id = sent["request_id"].as_str().unwrap().to_string();

    // A webhook on a port nothing listens on, and an event for it: a key
    // of the person's own, revoked.
    let url = format!("http://127.0.0.1:{}/hook", closed_port());
    let hook = ok(
        s,
        Method::POST,
        Some(&token),
        "/api/webhooks",
        json!({"url": url, "events": ["key.revoked"]}),
    )
    .await;
    let hook = hook["id"].as_str().unwrap().to_string();
    let own = ok(s, Method::POST, Some(&token), "/api/keys", json!({})).await;
    let own = own["id"].as_str().unwrap();
    let (st, v) = s
        .call(
            Method::DELETE,
            Some(&token),
            &format!("/api/keys/{own}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let path = format!("/api/webhooks/{hook}/deliveries");
    let mut attempted = false;
    for _ in 0..POLLS {
        let (_, v) = s.get(&token, &path).await;
        if v["deliveries"][0]["attempts"].as_u64().unwrap_or(0) >= 1 {
            attempted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(attempted, "no delivery attempt to {url}");
    Setup {
        user_id,
        team,
        request_id,
        hook,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_a_password_and_sees_the_team_wallet() {
    let s = TestServer::start_with(|c| {
        c.auth.open_registration = true;
        // The webhook's receiver is (not) on loopback; try it often.
        c.webhooks.allow_private = true;
        c.webhooks.deliver_every_ms = 100;
    });
    let setup = set_up(&s).await;
    let (sr, su) = (&s, &setup);
    with_browser(move |c| async move { scenario(&c, sr, su).await }).await;
    s.stop().await;
}

async fn sign_in(c: &Client, password: &str) {
    type_into(c, "#email", EMAIL).await;
    type_into(c, "#password", password).await;
    click(c, "#login-btn").await;
}

async fn scenario(c: &Client, s: &TestServer, su: &Setup) {
    c.goto(&format!("{}/", s.url)).await.unwrap();

    // A wrong password is said so, and nothing is kept.
    sign_in(c, "not the password at all").await;
    let said = wait_js(
        c,
        "document.getElementById('signin-error').textContent",
        "the sign-in error",
    )
    .await;
    assert_eq!(said, json!("Wrong e-mail or password."));
    assert_eq!(js(c, "return sessionStorage.length;").await, json!(0));

    sign_in(c, PASSWORD).await;
    wait_js(
        c,
        "!document.getElementById('app').hidden && document.getElementById('balance').textContent",
        "the dashboard",
    )
    .await;
    assert_eq!(text_of(c, "who").await, format!("{} (member)", su.user_id));
    // Their own wallet is empty: the money is the team's.
    assert_eq!(text_of(c, "balance").await, "0");

    // The team is in the menu; choosing it shows its wallet.
    let option = format!("team:{}", su.team);
    wait_js(
        c,
        &format!("!document.getElementById('subject-wrap').hidden && document.querySelector('#subject option[value=\"{option}\"]')"),
        "the team in the menu",
    )
    .await;
    js(
        c,
        &format!("const s = document.getElementById('subject'); s.value = '{option}'; s.dispatchEvent(new Event('change')); return null;"),
    )
    .await;
    let (st, w) = s
        .get(ADMIN_KEY, &format!("/api/teams/{}/wallet", su.team))
        .await;
    assert_eq!(st, StatusCode::OK, "{w}");
    let balance = credits(&w["balance"]);
    assert!(
        balance < oneflow::Credits::parse("50.123457").unwrap(),
        "the request was charged: {w}"
    );
    let team_name = "document.getElementById('team-name').textContent === 'lab'";
    let shown = wait_js(
        c,
        &format!("{team_name} && document.getElementById('balance').textContent"),
        "the team's wallet",
    )
    .await;
    assert_eq!(shown, json!(balance.to_string()));
    assert_eq!(
        text_of(c, "available").await,
        credits(&w["available"]).to_string()
    );
    assert_eq!(text_of(c, "held").await, credits(&w["held"]).to_string());

    // Its request, with who sent it; its members with their roles.
    let req = format!(
        "document.querySelector('#team-requests tr[data-request-id=\"{}\"]')",
        su.request_id
    );
    let member = wait_js(
        c,
        &format!("{req} && {req}.cells[2].textContent"),
        "the team's request",
    )
    .await;
    assert_eq!(member, json!(su.user_id));
    let me = format!(
        "document.querySelector('#team-members tr[data-member=\"{}\"]')",
        su.user_id
    );
    assert_eq!(
        wait_js(
            c,
            &format!("{me} && {me}.dataset.role"),
            "the person in the members"
        )
        .await,
        json!("member")
    );
    assert_eq!(
        js(
            c,
            "return document.querySelectorAll('#team-members tbody tr').length;"
        )
        .await,
        json!(2),
        "the admin who made the team and the person"
    );
    // A member changes neither the members nor the budget; the personal
    // panels step aside.
    let hidden = js(
        c,
        "return ['member-form', 'history-panel', 'send-panel', 'webhooks-panel', 'charts-panel'].map(id => document.getElementById(id).hidden)\
         .concat([document.getElementById('budget-save').disabled, document.getElementById('team-panel').hidden]);",
    )
    .await;
    // A plain member sees the team's requests that are their own, and no
    // charts of the whole team (its analytics are its admins', viewers' and
    // billing members').
    assert_eq!(hidden, json!([true, true, true, true, true, true, false]));
    screenshot(c, "dashboard-team").await;

    // Made a viewer of the team, the person sees the whole team's
    // activity: the charts come back, their cost the team's to the
    // micro-credit.
    let (st, v) = s
        .call(
            Method::PUT,
            Some(ADMIN_KEY),
            &format!("/api/teams/{}/members/{}", su.team, su.user_id),
            Some(&json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, figures) = s
        .get(ADMIN_KEY, &format!("/api/analytics?user_id={}", su.team))
        .await;
    let cost = wait_js(
        c,
        "!document.getElementById('charts-panel').hidden && document.querySelectorAll('#chart-cost rect').length && document.getElementById('chart-cost').dataset.total",
        "the team's charts",
    )
    .await;
    assert_eq!(
        oneflow::Credits::parse(cost.as_str().unwrap()).unwrap(),
        credits(&figures["total_cost"]),
        "{figures}"
    );

    // Back to their own account: the webhook's delivery log.
    js(
        c,
        "const s = document.getElementById('subject'); s.value = ''; s.dispatchEvent(new Event('change')); return null;",
    )
    .await;
    let hook = format!(
        "document.querySelector('#webhooks-table tr[data-webhook-id=\"{}\"]')",
        su.hook
    );
    wait_js(c, &hook, "the webhook").await;
    let (_, log) = s
        .get(ADMIN_KEY, &format!("/api/webhooks/{}/deliveries", su.hook))
        .await;
    let d = &log["deliveries"][0];
    let row = format!(
        "document.querySelector('#deliveries-table tr[data-delivery-id=\"{}\"]')",
        d["id"].as_str().unwrap()
    );
    let cells = wait_js(
        c,
        &format!("{row} && Array.from({row}.cells).map(td => td.textContent)"),
        "the delivery in the log",
    )
    .await;
    assert_eq!(cells[1], json!("key.revoked"), "{cells}");
    // Nothing listens there: it is retried, or given up.
    assert!(
        ["pending", "failed"].contains(&cells[2].as_str().unwrap()),
        "{cells}"
    );
    assert!(
        cells[3].as_str().unwrap().parse::<u64>().unwrap() >= 1,
        "{cells}"
    );
    assert!(
        !cells[4].as_str().unwrap().is_empty(),
        "the last error: {cells}"
    );
    screenshot(c, "dashboard-webhooks").await;

    // The access token is renewed with the refresh token, which rotates;
    // the page goes on working with the new one.
    let stored = "return JSON.parse(sessionStorage.getItem('oneflow.tokens')).refresh;";
    let first = js(c, stored).await;
    let live = text_of(c, "live").await;
    let renewed = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; OneFlowSession.renew().then(done);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(renewed, json!(true));
    let second = js(c, stored).await;
    assert_ne!(first, second);
    wait_js(
        c,
        &format!("document.getElementById('live').textContent !== {} && document.getElementById('live').textContent.startsWith('live ·') && !document.getElementById('app').hidden", json!(live)),
        "a refresh with the new token",
    )
    .await;

    // Signing out revokes the session's refresh tokens on the server. (The
    // timing buffer is emptied first: it holds only so many of the page's
    // calls, and the logout's entry must fit.)
    js(c, "performance.clearResourceTimings(); return null;").await;
    click(c, "#signout").await;
    assert_eq!(js(c, "return sessionStorage.length;").await, json!(0));
    // (Once the page's logout call has been answered: a refresh before it
    // would spend the token itself.)
    wait_js(
        c,
        "performance.getEntriesByType('resource').some(e => e.name.endsWith('/api/auth/logout') && e.responseEnd > 0)",
        "the logout call",
    )
    .await;
    let (st, v) = s
        .call(
            Method::POST,
            None,
            "/api/auth/refresh",
            Some(&json!({"refresh_token": second})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "after signing out: {v}");
}
