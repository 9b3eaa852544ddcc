//! Keys and isolation: 401 without a valid key, 403 for users on admin
//! endpoints, 404 (not 403) for another user's objects.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{ADMIN_KEY, TestServer};

#[tokio::test]
async fn users_see_only_their_own_and_admins_only_admin_endpoints() {
    let s = TestServer::start();
    let (a_id, a) = s.user("ann", "50").await;
    let (b_id, b) = s.user("bob", "50").await;
    let (st, v) = s
        .post(
            &b,
            "/api/request",
            json!({"model": "audio", "prompt": "bob's"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let b_req = v["request_id"].as_str().unwrap();

    // A cannot read B's request, history, budget or analytics.
    let (st, v) = s.get(&a, &format!("/api/history/requests/{b_req}")).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    for path in [
        "/api/history/requests",
        "/api/history/transactions",
        "/api/budget",
        "/api/analytics",
        "/api/status",
    ] {
        let (st, _) = s.get(&a, &format!("{path}?user_id={b_id}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
    }
    // A's own history does not contain B's request.
    let (_, h) = s.get(&a, "/api/history/requests").await;
    assert!(h["items"].as_array().unwrap().is_empty());
    // The admin can read it.
    let (st, _) = s
        .get(ADMIN_KEY, &format!("/api/history/requests/{b_req}"))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s
        .get(ADMIN_KEY, &format!("/api/status?user_id={a_id}"))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["user_id"], a_id);

    // Users get 403 on admin endpoints.
    let (st, v) = s.get(&a, "/api/users").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (st, _) = s
        .post(&a, "/api/users", json!({"name": "x", "email": "x@y.z"}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(
            &a,
            "/api/credits/add",
            json!({"user_id": a_id, "amount": 1000}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Missing, malformed or wrong keys get 401.
    let (st, v) = s.call(Method::GET, None, "/api/status", None).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (st, _) = s
        .get(
            "of_0000000000000000000000000000000000000000000000000000000000000000",
            "/api/status",
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let res = s
        .http
        .get(format!("{}/api/status", s.url))
        .header("Authorization", format!("Basic {a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // /health needs no key.
    let (st, _) = s.call(Method::GET, None, "/health", None).await;
    assert_eq!(st, StatusCode::OK);

    // The admin lists users and tops up; keys are never shown again.
    let (st, v) = s.get(ADMIN_KEY, "/api/users").await;
    assert_eq!(st, StatusCode::OK);
    let text = v.to_string();
    assert!(text.contains(&a_id) && text.contains(&b_id));
    assert!(
        !text.contains(&a) && !text.contains(&b),
        "keys leaked in the user list"
    );
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": a_id, "amount": "0.5"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["balance"].to_string(), "50.5");
    let (st, _) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": "usr_nope", "amount": 1}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// Least exposure: the configuration maps the deployment and the broker's
/// runtime figures tell one user about the others, so a user gets neither;
/// an admin gets both. Every answer says its type is not to be sniffed.
#[tokio::test]
async fn a_user_sees_neither_the_config_nor_the_brokers_own_figures() {
    let s = TestServer::start();
    let (_, key) = s.user("curious", "5").await;
    let (st, v) = s.get(&key, "/api/config").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (st, v) = s.get(ADMIN_KEY, "/api/config").await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["server"]["data_dir"].is_string(), "{v}");

    let system = [
        "uptime_secs",
        "wallets_alive",
        "writes_queued",
        "persistence",
    ];
    let (st, v) = s.get(&key, "/api/status").await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["balance"].is_number(), "{v}");
    for f in system {
        assert!(v.get(f).is_none(), "a user sees {f}: {v}");
    }
    let (_, v) = s.get(ADMIN_KEY, "/api/status").await;
    for f in system {
        assert!(v.get(f).is_some(), "an admin misses {f}: {v}");
    }

    for (path, k) in [
        ("/api/status", Some(key.as_str())),
        ("/api/config", Some(key.as_str())),
        ("/health", None),
    ] {
        let mut r = s.http.get(format!("{}{path}", s.url));
        if let Some(k) = k {
            r = r.bearer_auth(k);
        }
        let res = r.send().await.unwrap();
        assert_eq!(
            res.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{path}"
        );
    }
    s.stop().await;
}

/// Guessing keys: after 20 wrong keys in a minute from one address, that
/// address gets 429 with Retry-After (and its keys are no longer looked
/// up), while a client at another address still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_from_one_address_are_throttled_and_others_are_not() {
    let s = TestServer::start();
    let (_, key) = s.user("honest", "5").await;
    let guesser = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 1]))
        .build()
        .unwrap();
    let mut codes = Vec::new();
    for i in 0..300 {
        let res = guesser
            .get(format!("{}/api/status", s.url))
            .bearer_auth(format!("of_{i:064x}"))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        if status == 429 {
            let wait: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&wait), "{wait}");
            let v: serde_json::Value = res.json().await.unwrap();
            assert_eq!(v["error"]["code"], "too_many_auth_failures");
        }
        codes.push(status);
    }
    assert!(codes[..20].iter().all(|&c| c == 401), "{:?}", &codes[..20]);
    assert!(
        codes[20..].iter().all(|&c| c == 429),
        "{:?}",
        &codes[20..40]
    );
    // Even the right key waits out the window from that address...
    let res = guesser
        .get(format!("{}/api/status", s.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // ...but another address is not held up by it.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let res = other
        .get(format!("{}/api/status", s.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // And the document says so for every operation that takes a key.
    let (_, doc) = s.call(Method::GET, None, "/api/openapi.json", None).await;
    for (path, m) in [("/api/status", "get"), ("/v1/chat/completions", "post")] {
        let why = doc["paths"][path][m]["responses"]["429"]["description"].as_str();
        assert!(
            why.is_some_and(|d| d.contains("too_many_auth_failures")),
            "{path}"
        );
    }
    // Their idle connections would hold up the graceful stop.
    drop((guesser, other));
    s.stop().await;
}
