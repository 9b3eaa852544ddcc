//! Bad input gets a 4xx with our JSON error shape, never a panic or a 5xx.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{ADMIN_KEY, TestServer};

async fn raw(
    s: &TestServer,
    key: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let res = s
        .http
        .post(format!("{}{path}", s.url))
        .bearer_auth(key)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let st = res.status();
    let text = res.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON ({st}): {text}")),
    )
}

fn assert_error(st: StatusCode, v: &Value, want: StatusCode, code: &str) {
    assert_eq!(st, want, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    // A small body limit, so an over-limit body still fits in the socket
    // buffer and the client reads the 413 instead of a broken pipe.
    let s = TestServer::start_with(|c| c.server.max_body_bytes = 16 * 1024);
    let (uid, key) = s.user("val", "10").await;
    let bad_request = StatusCode::BAD_REQUEST;
    let json_ct = "application/json";

    let (st, v) = raw(
        &s,
        &key,
        "/api/request",
        json_ct,
        b"{\"model\": \"gpt\", ".to_vec(),
    )
    .await;
    assert_error(st, &v, bad_request, "invalid_request");
    let (st, v) = raw(&s, &key, "/api/request", "text/plain", b"{}".to_vec()).await;
    assert_error(st, &v, bad_request, "invalid_request");
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "gpt", "prompt": "x", "temprature": 1}),
        )
        .await;
    assert_error(st, &v, bad_request, "invalid_request");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temprature")
    );
    // Request bodies that parse but cannot be served as asked.
    let cases = [
        (
            json!({"model": "no-such-model", "prompt": "x"}),
            "unknown_model",
        ),
        (json!({"model": "gpt", "prompt": "   "}), "invalid_request"),
        (
            json!({"model": "gpt", "prompt": "x", "max_tokens": -1}),
            "invalid_request",
        ),
        (
            json!({"model": "gpt", "prompt": "x", "max_tokens": 1_000_000}),
            "invalid_request",
        ),
        (
            json!({"model": "image", "prompt": "x", "size": "7x7"}),
            "invalid_request",
        ),
        (
            json!({"model": "gpt", "prompt": "x", "seconds": 3}),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let (st, v) = s.post(&key, "/api/request", body).await;
        assert_error(st, &v, bad_request, code);
    }

    // A body over the limit is refused before parsing.
    let huge = format!(
        "{{\"model\":\"gpt\",\"prompt\":\"{}\"}}",
        "a".repeat(64 << 10)
    );
    let (st, v) = raw(&s, &key, "/api/request", json_ct, huge.into_bytes()).await;
    assert_error(st, &v, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Amounts: negative, over-precise, not numbers, absurd.
    for amount in [
        json!(-5),
        json!("1.0000001"),
        json!("NaN"),
        json!(true),
        json!("1e400"),
        json!(1e300),
    ] {
        let (st, v) = s
            .post(
                ADMIN_KEY,
                "/api/credits/add",
                json!({"user_id": uid, "amount": amount}),
            )
            .await;
        assert!(st.is_client_error(), "{amount}: {st} {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": uid, "amount": 0}),
        )
        .await;
    assert_error(st, &v, bad_request, "invalid_request");
    // A top-up that would take the balance past the largest amount is
    // refused, not saturated.
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": uid, "amount": "1000000000000"}),
        )
        .await;
    assert_error(st, &v, bad_request, "invalid_request");
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/users",
            json!({"name": "n", "email": "n@x.y", "initial_balance": "-1"}),
        )
        .await;
    assert_error(st, &v, bad_request, "invalid_request");
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/users",
            json!({"name": "", "email": "n@x.y"}),
        )
        .await;
    assert_error(st, &v, bad_request, "invalid_request");
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            Some(&key),
            "/api/budget",
            Some(&json!({"daily": "-3"})),
        )
        .await;
    assert!(st.is_client_error(), "{v}");
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            Some(&key),
            "/api/budget",
            Some(&json!({"per_provider": {"nope": {"daily": 1}}})),
        )
        .await;
    assert_error(st, &v, bad_request, "invalid_request");
    let (st, v) = s.get(&key, "/api/history/requests?limit=0").await;
    assert_error(st, &v, bad_request, "invalid_request");
    let (st, v) = s.get(&key, "/api/history/requests?cursor=garbage").await;
    assert_error(st, &v, bad_request, "invalid_request");
    let (st, v) = s.get(&key, "/api/history/transactions?limit=abc").await;
    assert_error(st, &v, bad_request, "invalid_request");
    let (st, v) = s.get(&key, "/api/no/such/route").await;
    assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");

    // None of it cost anything, and the server still works.
    let (st, v) = s.get(&key, "/api/status").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["balance"].to_string(), "10");
    s.stop().await;
}

/// A struct's fields sent as a JSON array in order (`["gpt", "hi"]`) are
/// refused everywhere, at the top and nested: serde alone would read them,
/// and no schema of this API allows them.
#[tokio::test]
async fn bodies_are_objects_not_arrays_of_their_fields() {
    let s = TestServer::start();
    let (id, key) = s.user("arr", "100").await;
    let json = "application/json";
    let cases: Vec<(&str, &str, String)> = vec![
        (key.as_str(), "/api/request", r#"["gpt", "hi"]"#.into()),
        (key.as_str(), "/api/quote", r#"["gpt", "hi"]"#.into()),
        (ADMIN_KEY, "/api/credits/add", format!(r#"["{id}", 5]"#)),
        (ADMIN_KEY, "/api/users", r#"["n", "n@example.com"]"#.into()),
        (key.as_str(), "/v1/chat/completions", r#"["gpt", []]"#.into()),
        (
            key.as_str(),
            "/v1/chat/completions",
            r#"{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "oneflow": ["cost"]}"#.into(),
        ),
        (
            key.as_str(),
            "/v1/chat/completions",
            r#"{"model": "gpt", "messages": [["user", "hi"]]}"#.into(),
        ),
        (
            key.as_str(),
            "/v1/chat/completions",
            r#"{"model": "gpt", "messages": [{"role": "user", "content": [["text", "hi"]]}]}"#.into(),
        ),
        (
            key.as_str(),
            "/v1/completions",
            r#"{"model": "gpt", "prompt": "hi", "stream": true, "stream_options": [true]}"#.into(),
        ),
    ];
    for (k, path, body) in cases {
        let (st, v) = raw(&s, k, path, json, body.clone().into_bytes()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
        assert!(v["error"]["message"].is_string(), "{path}: {v}");
    }
    for body in [r#"[5, null]"#, r#"{"per_provider": {"gpt": [1, 2]}}"#] {
        let res = s
            .http
            .put(format!("{}/api/budget", s.url))
            .bearer_auth(&key)
            .header("Content-Type", json)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(s.balance(&key).await, oneflow::Credits::from_credits(100));
    s.stop().await;
}
