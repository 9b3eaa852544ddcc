//! Property test over the HTTP surface: whatever JSON arrives, the answer is
//! a success or a 4xx in our error shape, never a 5xx, and the ledger still
//! balances afterwards.

use proptest::prelude::*;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::support::{ADMIN_KEY, TestServer, assert_ledger_balances};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        "[a-z0-9 .eE+-]{0,12}".prop_map(Value::String),
        Just(json!("1.0000001")),
        Just(json!("-0")),
        Just(json!(u64::MAX)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "model",
    "prompt",
    "max_tokens",
    "size",
    "n",
    "seconds",
    "provider",
    "region",
    "daily",
    "weekly",
    "monthly",
    "per_provider",
    "user_id",
    "amount",
    "name",
    "email",
    "initial_balance",
    "note",
];

/// An object made mostly of real field names with arbitrary values, so the
/// checks past parsing get exercised too.
fn body() -> impl Strategy<Value = Value> {
    let known = proptest::collection::btree_map(proptest::sample::select(FIELDS), value(), 0..6);
    let good_model = prop_oneof![
        Just("gpt"),
        Just("image"),
        Just("audio"),
        Just("video"),
        Just("nope")
    ];
    (known, good_model, any::<bool>(), value()).prop_map(|(fields, model, keep_model, other)| {
        let mut m: Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        if keep_model {
            m.insert("model".into(), json!(model));
            m.entry("prompt").or_insert(json!("fuzz prompt"));
        }
        if m.is_empty() {
            other
        } else {
            Value::Object(m)
        }
    })
}

#[test]
fn no_body_gets_a_5xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = TestServer::start();
    let (uid, key) = rt.block_on(s.user("fuzz", "100"));
    let endpoints: [(Method, &str, &str); 5] = [
        (Method::POST, "/api/request", key.as_str()),
        (Method::POST, "/api/quote", key.as_str()),
        (Method::PUT, "/api/budget", key.as_str()),
        (Method::POST, "/api/credits/add", ADMIN_KEY),
        (Method::POST, "/api/users", ADMIN_KEY),
    ];
    let config = ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(b in body(), which in 0usize..5)| {
        let (method, path, k) = &endpoints[which];
        let mut b = b;
        // Credits requests aimed at the fuzz user, so they can succeed.
        if *path == "/api/credits/add" {
            if let Value::Object(m) = &mut b {
                m.entry("user_id").or_insert(json!(uid));
            }
        }
        let (st, v) = rt.block_on(s.call(method.clone(), Some(k), path, Some(&b)));
        prop_assert!(!st.is_server_error(), "{method} {path} {b} -> {st} {v}");
        if st.is_client_error() {
            prop_assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "{v}");
        }
    });
    let balance = rt.block_on(s.balance(&key));
    assert_ledger_balances(&rt.block_on(s.ledger(&key)), balance);
    rt.block_on(s.stop());
}
