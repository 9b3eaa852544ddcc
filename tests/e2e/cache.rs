//! The response cache (docs/cache.md) against the real server and a real
//! OpenAI-protocol upstream: a repeated request answered once upstream and
//! charged `[cache] price` through the ledger, marked in history and
//! metrics; bypass, expiry, failed answers, key settings, streams read by
//! the openai SDK, two nodes sharing the cache through Redis, and a bad
//! TTL refused at start.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::{Config, ProviderKind};
use oneflow::ledger::EntryKind;
use oneflow::pricing::Modality;

use crate::pg::PgSchema;
use crate::providers::provider;
use crate::support::{ADMIN_KEY, Api, TestServer, assert_ledger_balances, credits};
use crate::upstream::{Behavior, Kind, MockUpstream};

/// What a hit costs in these tests: not zero, so it shows in the ledger.
const PRICE: Credits = Credits(250_000);

fn chat() -> Value {
    json!({
        "model": "mock-chat",
        "messages": [{"role": "user", "content": "What does the cache keep?"}],
        "max_tokens": 30,
        "temperature": 0.2,
    })
}

/// The cache on, with `tweak` after; one OpenAI provider on `up`.
fn config(c: &mut Config, up: &MockUpstream) {
    c.providers = vec![provider(
        "oai",
        ProviderKind::Openai,
        Modality::Text,
        up,
        &["mock-chat"],
    )];
    c.cache.enabled = true;
    c.cache.price = PRICE;
}

/// `POST path` with `x-oneflow-cache: mode` when given: status, the
/// cache's answer header, the request id header and the body's bytes.
async fn send(
    api: &Api,
    key: &str,
    path: &str,
    mode: Option<&str>,
    body: &Value,
) -> (StatusCode, Option<String>, bytes::Bytes) {
    let mut rb = api
        .http
        .post(format!("{}{path}", api.url))
        .bearer_auth(key)
        .json(body);
    if let Some(m) = mode {
        rb = rb.header("x-oneflow-cache", m);
    }
    let res = rb.send().await.unwrap();
    let status = res.status();
    let cache = res
        .headers()
        .get("x-oneflow-cache")
        .map(|v| v.to_str().unwrap().to_string());
    (status, cache, res.bytes().await.unwrap())
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(b)))
}

/// The value of one series of `oneflow_cache_requests_total`.
async fn cache_count(api: &Api, model: &str, result: &str) -> u64 {
    let text = api.metrics_text().await;
    let series = format!("oneflow_cache_requests_total{{model=\"{model}\",result=\"{result}\"}} ");
    let alt = format!("oneflow_cache_requests_total{{result=\"{result}\",model=\"{model}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series).or_else(|| l.strip_prefix(&alt)))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_chat_is_answered_once_upstream_and_the_hit_is_charged_the_cache_price() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = TestServer::start_with(|c| config(c, &up));
    let (_, key) = s.user("ann", "10").await;

    let (st, cache, first) = send(&s, &key, "/v1/chat/completions", Some("use"), &chat()).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&first));
    assert_eq!(cache.as_deref(), Some("miss"));
    // The same request spelled otherwise (key order, `user`, `stream:
    // false`) is the same request.
    let mut again =
        json!({"temperature": 0.2, "max_tokens": 30, "user": "someone", "stream": false});
    again["messages"] = chat()["messages"].clone();
    again["model"] = json!("mock-chat");
    let (st, cache, second) = send(&s, &key, "/v1/chat/completions", Some("use"), &again).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&second));
    assert_eq!(cache.as_deref(), Some("hit"));
    assert_eq!(up.request_count(), 1, "the hit never reached the upstream");

    // Byte for byte the same answer and usage; a request of its own.
    let (a, b) = (json_of(&first), json_of(&second));
    assert_eq!(
        serde_json::to_vec(&a["choices"]).unwrap(),
        serde_json::to_vec(&b["choices"]).unwrap()
    );
    assert_eq!(a["usage"], b["usage"]);
    assert_eq!(a["model"], b["model"]);
    assert_ne!(a["id"], b["id"]);
    let first_id = a["id"].as_str().unwrap().trim_start_matches("chatcmpl-");
    let hit_id = b["id"].as_str().unwrap().trim_start_matches("chatcmpl-");

    // History: the hit is marked cached, under the provider that answered
    // first, charged the price and no tokens.
    let (_, rec) = s
        .get(&key, &format!("/api/history/requests/{hit_id}"))
        .await;
    assert_eq!(rec["cached"], true, "{rec}");
    assert_eq!(rec["provider"], "oai");
    assert_eq!(rec["status"], "succeeded");
    assert_eq!(credits(&rec["cost"]), PRICE);
    assert_eq!(rec["usage"]["output_tokens"], 0);
    let (_, rec) = s
        .get(&key, &format!("/api/history/requests/{first_id}"))
        .await;
    assert!(rec.get("cached").is_none(), "{rec}");
    let first_cost = credits(&rec["cost"]);
    assert!(first_cost > Credits::ZERO);

    // The ledger: the hit was held and charged exactly the price.
    let ledger = s.ledger(&key).await;
    let charged: Vec<Credits> = ledger
        .iter()
        .filter(|e| e.kind == EntryKind::Charge && e.request_id.as_deref() == Some(hit_id))
        .map(|e| e.amount)
        .collect();
    assert_eq!(charged, [PRICE]);
    assert!(
        ledger
            .iter()
            .any(|e| e.kind == EntryKind::Hold && e.request_id.as_deref() == Some(hit_id))
    );
    let balance = s.balance(&key).await;
    assert_eq!(balance, Credits::from_credits(10) - first_cost - PRICE);
    assert_ledger_balances(&ledger, balance);

    // Metrics: one miss, one hit, for the model.
    assert_eq!(cache_count(&s, "mock-chat", "miss").await, 1);
    assert_eq!(cache_count(&s, "mock-chat", "hit").await, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_and_failed_answers_go_upstream_and_a_bad_header_is_refused() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = TestServer::start_with(|c| config(c, &up));
    let (_, key) = s.user("bob", "10").await;
    let path = "/v1/chat/completions";

    // A failed answer is not stored: the next one goes upstream again.
    up.set_default(Behavior::Status(500, None));
    let (st, cache, _) = send(&s, &key, path, Some("use"), &chat()).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    assert_eq!(cache, None, "an error is an error");
    up.set_default(Behavior::Ok);
    let seen = up.request_count();
    let (st, cache, _) = send(&s, &key, path, Some("use"), &chat()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(up.request_count(), seen + 1);

    // Now stored; `bypass` still goes upstream, and stores nothing.
    let (_, cache, _) = send(&s, &key, path, Some("bypass"), &chat()).await;
    assert_eq!(cache.as_deref(), Some("bypass"));
    assert_eq!(up.request_count(), seen + 2);
    let (_, cache, _) = send(&s, &key, path, Some("use"), &chat()).await;
    assert_eq!(cache.as_deref(), Some("hit"));
    assert_eq!(up.request_count(), seen + 2);

    // With no header and the default `bypass`, the cache is not asked.
    let (_, cache, _) = send(&s, &key, path, None, &chat()).await;
    assert_eq!(cache, None);
    assert_eq!(up.request_count(), seen + 3);
    assert_eq!(cache_count(&s, "mock-chat", "bypass").await, 1);

    // Another parameter that changes the answer is another request.
    let mut warmer = chat();
    warmer["temperature"] = json!(0.9);
    let (_, cache, _) = send(&s, &key, path, Some("use"), &warmer).await;
    assert_eq!(cache.as_deref(), Some("miss"));

    // Another wallet never sees this wallet's answers.
    let (_, other) = s.user("cat", "10").await;
    let (_, cache, _) = send(&s, &other, path, Some("use"), &chat()).await;
    assert_eq!(cache.as_deref(), Some("miss"));

    // A header that is neither: 400 in OpenAI's error shape.
    let (st, _, body) = send(&s, &key, path, Some("always"), &chat()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let v = json_of(&body);
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-oneflow-cache")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_expires_after_its_ttl() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = TestServer::start_with(|c| {
        config(c, &up);
        c.cache.ttl_seconds = 1;
    });
    let (_, key) = s.user("dan", "10").await;
    let path = "/v1/chat/completions";
    let (_, cache, _) = send(&s, &key, path, Some("use"), &chat()).await;
    assert_eq!(cache.as_deref(), Some("miss"));
    let (_, cache, _) = send(&s, &key, path, Some("use"), &chat()).await;
    assert_eq!(cache.as_deref(), Some("hit"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, cache, _) = send(&s, &key, path, Some("use"), &chat()).await;
    assert_eq!(cache.as_deref(), Some("miss"), "expired after its TTL");
    assert_eq!(up.request_count(), 2);
    s.stop().await;
}

/// POSTs `body` with `x-oneflow-cache: use` and `x-oneflow-cache-ttl: ttl`.
async fn send_ttl(
    api: &Api,
    key: &str,
    path: &str,
    ttl: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let res = api
        .http
        .post(format!("{}{path}", api.url))
        .bearer_auth(key)
        .header("x-oneflow-cache", "use")
        .header("x-oneflow-cache-ttl", ttl)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let cache = res.headers().get("x-oneflow-cache").cloned();
    let mut v: Value = res.json().await.unwrap_or(Value::Null);
    if let Some(c) = cache {
        v["x-oneflow-cache"] = json!(c.to_str().unwrap());
    }
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_shortens_its_answers_life_and_a_ttl_of_zero_or_less_is_refused() {
    let up = MockUpstream::start(Kind::OpenAi);
    // The configured life is long: only the request's own can end it.
    let s = TestServer::start_with(|c| {
        config(c, &up);
        c.cache.ttl_seconds = 3600;
    });
    let (_, key) = s.user("ted", "10").await;
    let before = s.balance(&key).await;
    for (path, body) in [
        ("/v1/chat/completions", chat()),
        (
            "/api/request",
            json!({"model": "mock-chat", "prompt": "Short lived", "max_tokens": 20}),
        ),
    ] {
        for bad in ["0", "-5", "1.5", "soon"] {
            let (st, v) = send_ttl(&s, &key, path, bad, &body).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{path} ttl {bad}: {v}");
            assert!(
                v.to_string().contains("x-oneflow-cache-ttl"),
                "{path} ttl {bad}: {v}"
            );
        }
    }
    // Refused before anything was held or sent.
    assert_eq!(up.request_count(), 0);
    assert_eq!(s.balance(&key).await, before);
    let (st, history) = s.get(&key, "/api/history/requests").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(history["items"].as_array().unwrap().len(), 0, "{history}");

    let path = "/v1/chat/completions";
    let (st, v) = send_ttl(&s, &key, path, "1", &chat()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["x-oneflow-cache"], "miss");
    let (_, v) = send_ttl(&s, &key, path, "1", &chat()).await;
    assert_eq!(v["x-oneflow-cache"], "hit");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, v) = send_ttl(&s, &key, path, "1", &chat()).await;
    assert_eq!(
        v["x-oneflow-cache"], "miss",
        "gone after the request's own TTL"
    );
    assert_eq!(up.request_count(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_setting_opts_native_requests_in_or_forbids_the_cache() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = TestServer::start_with(|c| {
        config(c, &up);
        c.cache.price = Credits::ZERO;
    });
    let (_, key) = s.user("eve", "10").await;
    let make = |cache: &str| json!({"cache": cache});
    let (st, k) = s.post(&key, "/api/keys", make("use")).await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    let using = k["api_key"].as_str().unwrap().to_string();
    let (_, k) = s.post(&key, "/api/keys", make("bypass")).await;
    let never = k["api_key"].as_str().unwrap().to_string();

    let req = json!({"model": "mock-chat", "prompt": "Keep this for me", "max_tokens": 20});
    let (st, cache, first) = send(&s, &using, "/api/request", None, &req).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&first));
    assert_eq!(cache.as_deref(), Some("miss"));
    let (st, cache, second) = send(&s, &using, "/api/request", None, &req).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(cache.as_deref(), Some("hit"));
    let (a, b) = (json_of(&first), json_of(&second));
    assert_eq!(a["response"], b["response"]);
    assert_eq!(a["usage"], b["usage"]);
    // A price of 0: a zero-cost record, through the ledger all the same.
    assert_eq!(credits(&b["cost"]), Credits::ZERO);
    let hit = b["request_id"].as_str().unwrap();
    let (_, rec) = s.get(&key, &format!("/api/history/requests/{hit}")).await;
    assert_eq!(rec["cached"], true, "{rec}");
    let ledger = s.ledger(&key).await;
    assert!(
        ledger
            .iter()
            .any(|e| e.kind == EntryKind::Hold && e.request_id.as_deref() == Some(hit))
    );
    assert_ledger_balances(&ledger, s.balance(&key).await);
    assert_eq!(up.request_count(), 1);

    // A key that forbids the cache: `use` in the header does not undo it.
    let (_, cache, _) = send(&s, &never, "/api/request", Some("use"), &req).await;
    assert_eq!(cache.as_deref(), Some("bypass"));
    assert_eq!(up.request_count(), 2);

    // A bad header on the native API: 400 in our shape.
    let (st, _, body) = send(&s, &using, "/api/request", Some("sometimes"), &req).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(json_of(&body)["error"]["code"].is_string());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_hit_is_a_stream_the_openai_sdk_reads() {
    let python = crate::tools::sdk_python();
    let up = MockUpstream::start(Kind::OpenAi);
    let s = TestServer::start_with(|c| config(c, &up));
    let (_, key) = s.user("fay", "10").await;
    let base = format!("{}/v1", s.url);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/sdk/openai_cache_stream.py"
    );
    let out = {
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script)
                .env("ONEFLOW_BASE_URL", base)
                .env("ONEFLOW_KEY", key)
                .env("ONEFLOW_CHAT_MODEL", "mock-chat")
                .env("NO_PROXY", "127.0.0.1")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the SDK script failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs[0]["cache"], "miss", "{report}");
    assert_eq!(runs[1]["cache"], "hit", "{report}");
    assert!(!runs[0]["text"].as_str().unwrap().is_empty());
    assert_eq!(runs[0]["text"], runs[1]["text"], "the same text, replayed");
    assert_eq!(runs[0]["finish_reason"], runs[1]["finish_reason"]);
    assert_eq!(runs[0]["completion_tokens"], runs[1]["completion_tokens"]);
    assert!(runs[1]["chunks"].as_u64().unwrap() > 2, "{report}");
    assert_eq!(
        up.request_count(),
        1,
        "the replay never reached the upstream"
    );
    let hit = runs[1]["request_id"].as_str().unwrap();
    let (_, rec) = s.get(&key, &format!("/api/history/requests/{hit}")).await;
    assert_eq!(rec["cached"], true, "{rec}");
    assert_eq!(credits(&rec["cost"]), PRICE);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_cache_through_redis() {
    let pg = PgSchema::new();
    let up = MockUpstream::start(Kind::OpenAi);
    let mut r = [0u8; 6];
    getrandom::fill(&mut r).unwrap();
    let prefix: String = r.iter().map(|b| format!("{b:02x}")).collect();
    let prefix = format!("c{prefix}:");
    let redis = std::env::var("ONEFLOW_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let node = |name: &str| {
        let (redis, prefix) = (redis.clone(), prefix.clone());
        TestServer::start_with(|c| {
            pg.apply(c, name);
            config(c, &up);
            c.coordination.redis_url = Some(redis);
            c.coordination.prefix = prefix;
        })
    };
    let (a, b) = (node("a"), node("b"));
    for n in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, v) = n.get(ADMIN_KEY, "/api/status").await;
            if v["cluster"]["limits"] == "shared" {
                break;
            }
            assert!(Instant::now() < deadline, "Redis never answered: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (_, key) = a.user("gus", "10").await;
    let path = "/v1/chat/completions";
    let (st, cache, first) = send(&a, &key, path, Some("use"), &chat()).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&first));
    assert_eq!(cache.as_deref(), Some("miss"));
    let (st, cache, second) = send(&b, &key, path, Some("use"), &chat()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        cache.as_deref(),
        Some("hit"),
        "node B served what node A stored"
    );
    assert_eq!(up.request_count(), 1);
    assert_eq!(json_of(&first)["choices"], json_of(&second)["choices"]);
    // One wallet on one store: both nodes' requests in one balanced ledger.
    let ledger = b.ledger(&key).await;
    let balance = b.balance(&key).await;
    assert_ledger_balances(&ledger, balance);
    let charges: Vec<Credits> = ledger
        .iter()
        .filter(|e| e.kind == EntryKind::Charge)
        .map(|e| e.amount)
        .collect();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[1], PRICE);
    a.stop().await;
    b.stop().await;
}

#[test]
fn a_ttl_of_zero_or_less_is_refused_at_start() {
    for ttl in ["0", "-3"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("oneflow.toml"),
            format!("[cache]\nenabled = true\nttl_seconds = {ttl}\n"),
        )
        .unwrap();
        let Err((_, stderr)) = crate::process::Proc::try_spawn_with(dir.path(), &[]) else {
            panic!("a TTL of {ttl} started");
        };
        assert!(stderr.contains("cache.ttl_seconds"), "{stderr}");
        assert!(stderr.contains("positive"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_a_miss_never_an_error() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = TestServer::start_with(|c| {
        config(c, &up);
        // Nothing listens on port 1.
        c.coordination.redis_url = Some("redis://127.0.0.1:1/".into());
    });
    let (_, key) = s.user("hal", "10").await;
    for _ in 0..2 {
        let (st, cache, body) = send(&s, &key, "/v1/chat/completions", Some("use"), &chat()).await;
        assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert_eq!(cache.as_deref(), Some("miss"));
    }
    assert_eq!(up.request_count(), 2);
    let text = s.metrics_text().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("oneflow_cache_errors_total{op=\"get\"} ")),
        "{text}"
    );
    s.stop().await;
}
