//! Scoped API keys: a key limited to some models or providers, with an
//! expiry and a budget of its own, through every kind of route; bad scopes
//! refused with nothing made.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use oneflow::Credits;

use crate::support::{ADMIN_KEY, TestServer};

/// Audio requests cost 5 credits each, quote == cost.
const PRICE: i64 = 5;

async fn key(s: &TestServer, owner: &str, path: &str, body: Value) -> (Value, String) {
    let (st, v) = s.post(owner, path, body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let secret = v["api_key"].as_str().unwrap().to_string();
    (v, secret)
}

fn audio() -> Value {
    json!({"model": "audio", "prompt": "x"})
}

/// Fires `n` audio requests through `k` at once: how many succeeded.
async fn storm(s: &TestServer, k: &str, n: usize) -> usize {
    let futs = (0..n).map(|_| s.post(k, "/api/request", audio()));
    let results = join_all(futs).await;
    results
        .iter()
        .filter(|(st, v)| {
            assert!(
                *st == StatusCode::OK || *st == StatusCode::PAYMENT_REQUIRED,
                "{st}: {v}"
            );
            *st == StatusCode::OK
        })
        .count()
}

#[tokio::test]
async fn a_model_restricted_key_is_refused_other_models_and_charged_nothing() {
    let s = TestServer::start();
    let (_, ann) = s.user("ann", "100").await;
    let (v, k) = key(&s, &ann, "/api/keys", json!({"models": ["audio"]})).await;
    assert_eq!(v["models"], json!(["audio"]));
    let before = s.balance(&ann).await;
    let (st, v) = s
        .post(&k, "/api/request", json!({"model": "gpt", "prompt": "hi"}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "outside_key_scope", "{v}");
    let chat = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});
    let (st, v) = s.post(&k, "/v1/chat/completions", chat.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["type"], "permission_error", "{v}");
    let mut streamed = chat;
    streamed["stream"] = json!(true);
    let (st, _) = s.post(&k, "/v1/chat/completions", streamed).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(s.balance(&ann).await, before, "nothing held or charged");
    // The model it may use works.
    let (st, v) = s.post(&k, "/api/request", audio()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_provider_restricted_key_is_routed_to_that_provider_only() {
    // A second provider answering to `gpt`, so routing has a choice.
    let s = TestServer::start_with(|c| {
        let mut p = c.providers[0].clone();
        p.name = "gpt-b".into();
        p.models = vec!["gpt".into()];
        c.providers.push(p);
    });
    let (_, ann) = s.user("ann", "100").await;
    for only in ["gpt", "gpt-b"] {
        let (_, k) = key(&s, &ann, "/api/keys", json!({"providers": [only]})).await;
        for _ in 0..4 {
            let (st, v) = s
                .post(&k, "/api/request", json!({"model": "gpt", "prompt": "hi"}))
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            assert_eq!(v["provider"], only, "{v}");
        }
        // Naming another provider is outside the key's scope.
        let other = if only == "gpt" { "gpt-b" } else { "gpt" };
        let (st, v) = s
            .post(
                &k,
                "/api/request",
                json!({"model": "gpt", "prompt": "hi", "provider": other}),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    }
    // A model none of its providers serves: refused as out of scope.
    let (_, k) = key(&s, &ann, "/api/keys", json!({"providers": ["audio"]})).await;
    let (st, v) = s
        .post(&k, "/api/request", json!({"model": "gpt", "prompt": "hi"}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "outside_key_scope", "{v}");
}

fn rfc3339_in(ms: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    oneflow::time::rfc3339(now.as_millis() as i64 + ms)
}

#[tokio::test]
async fn an_expired_key_is_refused_on_every_route() {
    let s = TestServer::start();
    let (_, ann) = s.user("ann", "100").await;
    let at = rfc3339_in(2_000);
    let (v, k) = key(&s, &ann, "/api/keys", json!({"expires_at": at})).await;
    assert_eq!(v["expires_at"], at.as_str(), "{v}");
    // Used while valid, so the principal is cached.
    let (st, v) = s.get(&k, "/api/status").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut expired = None;
    for _ in 0..100 {
        let (st, v) = s.get(&k, "/api/status").await;
        if st == StatusCode::UNAUTHORIZED {
            expired = Some(v);
            break;
        }
        assert_eq!(st, StatusCode::OK, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = expired.expect("the key never expired");
    assert_eq!(v["error"]["code"], "key_expired", "{v}");
    let (st, v) = s.post(&k, "/api/request", audio()).await;
    assert_eq!(
        (st, &v["error"]["code"]),
        (StatusCode::UNAUTHORIZED, &json!("key_expired"))
    );
    let (st, v) = s.get(&k, "/v1/models").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["type"], "authentication_error", "{v}");
    let (st, _) = s.get(&k, "/api/keys").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keys_budget_is_exact_under_concurrency() {
    crate::support::avoid_midnight().await;
    let s = TestServer::start();
    let (_, ann) = s.user("ann", "1000").await;
    let body = json!({"budget": {"daily": (10 * PRICE).to_string()}});
    let (v, k) = key(&s, &ann, "/api/keys", body).await;
    assert_eq!(v["budget"]["daily"], json!(10 * PRICE), "{v}");
    assert_eq!(storm(&s, &k, 200).await, 10);
    let (st, v) = s.post(&k, "/api/request", audio()).await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
    assert_eq!(
        s.balance(&ann).await,
        Credits::from_credits(1000 - 10 * PRICE)
    );
    // The wallet's own key is not bound by that key's cap.
    let (st, v) = s.post(&ann, "/api/request", audio()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_team_keys_budget_holds_inside_the_members_cap() {
    crate::support::avoid_midnight().await;
    let s = TestServer::start();
    let (_, ann) = s.user("ann", "0").await;
    let (bob_id, bob) = s.user("bob", "0").await;
    let (_, team) = s.post(&ann, "/api/teams", json!({"name": "lab"})).await;
    let id = team["id"].as_str().unwrap().to_string();
    let path = format!("/api/teams/{id}/members/{bob_id}");
    let (st, v) = s
        .call(
            Method::PUT,
            Some(&ann),
            &path,
            Some(&json!({"role": "member"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.post(
        ADMIN_KEY,
        "/api/credits/add",
        json!({"user_id": id, "amount": "1000"}),
    )
    .await;
    let budget = json!({"spenders": {bob_id.as_str(): {"daily": (10 * PRICE).to_string()}}});
    let (st, v) = s
        .call(
            Method::PUT,
            Some(&ann),
            &format!("/api/teams/{id}/budget"),
            Some(&budget),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let keys = format!("/api/teams/{id}/keys");
    let capped = json!({"budget": {"daily": (4 * PRICE).to_string()}});
    let (_, small) = key(&s, &bob, &keys, capped).await;
    let (_, plain) = key(&s, &bob, &keys, json!({})).await;
    // The key's own cap first; then the member's, shared by his keys.
    assert_eq!(storm(&s, &small, 100).await, 4);
    assert_eq!(storm(&s, &plain, 100).await, 6);
    let (_, w) = s.get(&ann, &format!("/api/teams/{id}/wallet")).await;
    assert_eq!(
        crate::support::credits(&w["balance"]),
        Credits::from_credits(1000 - 10 * PRICE),
        "{w}"
    );
}

#[tokio::test]
async fn bad_scopes_are_refused_and_make_no_key() {
    let s = TestServer::start();
    let (ann_id, ann) = s.user("ann", "100").await;
    let long = "m".repeat(200);
    let many: Vec<String> = (0..65).map(|i| format!("m{i}")).collect();
    for (body, want) in [
        (
            json!({"models": ["nope"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"models": []}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"models": ["gpt", "gpt"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"models": [long]}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"models": many}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"providers": ["nope"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"models": ["gpt"], "providers": ["audio"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"expires_at": "2001-01-01T00:00:00Z"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"expires_at": "2099-02-30T00:00:00Z"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"expires_at": "soon"}), StatusCode::BAD_REQUEST),
        (
            json!({"expires_at": "4102444800000"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"budget": {"per_provider": {"nope": {"daily": 1}}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"budget": {"per_provider": {"gpt": [1, 2, 3]}}}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"budget": {"daily": -1}}), StatusCode::BAD_REQUEST),
        (json!({"budget": {"spenders": {}}}), StatusCode::BAD_REQUEST),
    ] {
        let (st, v) = s.post(&ann, "/api/keys", body.clone()).await;
        assert_eq!(st, want, "{body}: {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let (_, team) = s.post(&ann, "/api/teams", json!({"name": "lab"})).await;
    let keys = format!("/api/teams/{}/keys", team["id"].as_str().unwrap());
    let (st, v) = s.post(&ann, &keys, json!({"models": ["nope"]})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "invalid_key_scope", "{v}");
    let (_, v) = s.get(&ann, &format!("/api/keys?user_id={ann_id}")).await;
    assert_eq!(
        v["keys"].as_array().unwrap().len(),
        1,
        "only ann's first key: {v}"
    );
}
