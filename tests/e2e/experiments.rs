//! A/B experiments of providers (docs/experiments.md): the real server in
//! front of two OpenAI mock upstreams serving one model; experiments made,
//! stopped and promoted through the API; every figure checked against the
//! request records `GET /api/history/requests` gives.

use futures_util::stream::{self, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::ProviderKind;
use oneflow::pricing::Modality;

use crate::providers::provider;
use crate::support::{ADMIN_KEY, TestServer, credits};
use crate::upstream::{DEFAULT_ANSWER_WORDS, Kind, MockUpstream};

const MODEL: &str = "exp-model";

/// Two upstreams and three providers: `prov-a` and `prov-b` serve
/// [`MODEL`] (b at half a's rates), `prov-c` only `other-model`.
struct Bench {
    server: TestServer,
    _ups: [MockUpstream; 3],
    tmp: Option<tempfile::TempDir>,
}

fn bench() -> Bench {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = bench_in(tmp.path());
    b.tmp = Some(tmp);
    b
}

fn spec(weights: [u32; 2], sticky: &str) -> Value {
    json!({
        "model": MODEL,
        "sticky": sticky,
        "variants": [
            {"name": "A", "provider": "prov-a", "weight": weights[0]},
            {"name": "B", "provider": "prov-b", "weight": weights[1]},
        ],
    })
}

async fn create(s: &TestServer, body: Value) -> String {
    let (st, v) = s.post(ADMIN_KEY, "/api/experiments", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "running");
    v["id"].as_str().unwrap().to_string()
}

/// Sends `n` native requests with `key`, 16 at a time; the route headers.
async fn send(s: &TestServer, key: &str, n: usize, extra: Value) -> Vec<String> {
    stream::iter(0..n)
        .map(|i| {
            let mut body =
                json!({"model": MODEL, "prompt": format!("question number {i}"), "max_tokens": 8});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            async move {
                let raw = s.post_raw(key, "/api/request", None, &body).await;
                assert_eq!(raw.status, StatusCode::OK, "{}", raw.json());
                raw.headers["x-oneflow-route"].to_str().unwrap().to_string()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Every request record of `key`'s caller, newest first.
async fn records(s: &TestServer, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/history/requests?limit=1000&cursor={c}"),
            None => "/api/history/requests?limit=1000".to_string(),
        };
        let (st, v) = s.get(key, &path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn variant_of(r: &Value) -> Option<&str> {
    r["experiment"]["variant"].as_str()
}

fn nearest_rank(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Checks a variant's figures against the records tagged with it.
fn check_figures(fig: &Value, recs: &[&Value]) {
    let n = recs.len() as u64;
    let ok: Vec<&&Value> = recs.iter().filter(|r| r["status"] == "succeeded").collect();
    let mut lat: Vec<u64> = ok
        .iter()
        .map(|r| r["latency_ms"].as_u64().unwrap())
        .collect();
    lat.sort_unstable();
    let cost: i64 = recs.iter().map(|r| credits(&r["cost"]).0).sum();
    let tokens = |f: &str| -> u64 { recs.iter().map(|r| r["usage"][f].as_u64().unwrap()).sum() };
    assert_eq!(fig["requests"].as_u64(), Some(n), "{fig}");
    assert_eq!(fig["succeeded"].as_u64(), Some(ok.len() as u64), "{fig}");
    assert_eq!(
        fig["latency_p50_ms"].as_u64(),
        nearest_rank(&lat, 0.5),
        "{fig}"
    );
    assert_eq!(
        fig["latency_p95_ms"].as_u64(),
        nearest_rank(&lat, 0.95),
        "{fig}"
    );
    assert_eq!(credits(&fig["cost"]), Credits(cost), "{fig}");
    assert_eq!(
        credits(&fig["cost_per_request"]),
        Credits(cost / n.max(1) as i64),
        "{fig}"
    );
    assert_eq!(
        fig["input_tokens"].as_u64(),
        Some(tokens("input_tokens")),
        "{fig}"
    );
    assert_eq!(
        fig["output_tokens"].as_u64(),
        Some(tokens("output_tokens")),
        "{fig}"
    );
}

#[tokio::test]
async fn seventy_thirty_over_a_thousand_requests_and_figures_equal_the_records() {
    let b = bench();
    let s = &b.server;
    let (_, key) = s.user("abtester", "1000").await;
    let id = create(s, spec([70, 30], "request")).await;
    let routes = send(s, &key, 1000, json!({})).await;
    let header_a = routes
        .iter()
        .filter(|r| r.contains(&format!("experiment={id} variant=A")))
        .count();

    let recs = records(s, &key).await;
    assert_eq!(recs.len(), 1000);
    let of = |v: &str| {
        recs.iter()
            .filter(|r| variant_of(r) == Some(v))
            .collect::<Vec<_>>()
    };
    let (a, bb) = (of("A"), of("B"));
    assert_eq!(
        a.len() + bb.len(),
        1000,
        "every request is in the experiment"
    );
    assert!((655..=745).contains(&a.len()), "A got {}", a.len());
    assert_eq!(header_a, a.len(), "the route header says what history says");
    assert!(a.iter().all(|r| r["provider"] == "prov-a"));
    assert!(bb.iter().all(|r| r["provider"] == "prov-b"));
    assert!(a.iter().all(|r| r["experiment"]["id"] == id.as_str()));

    // Ratings: five of A's requests get 5, five of B's get 1, then one of
    // B's is rated again (the second replaces the first).
    for r in a.iter().take(5) {
        let body = json!({"request_id": r["id"], "score": 5});
        let (st, v) = s.post(&key, "/api/feedback", body).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    for r in bb.iter().take(5) {
        let (st, _) = s
            .post(
                &key,
                "/api/feedback",
                json!({"request_id": r["id"], "score": 1}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let again = json!({"request_id": bb[0]["id"], "score": 4});
    let (st, v) = s.post(&key, "/api/feedback", again).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let (st, rep) = s.get(ADMIN_KEY, &format!("/api/experiments/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{rep}");
    let figs = rep["figures"]["variants"].as_array().unwrap();
    check_figures(&figs[0], &a);
    check_figures(&figs[1], &bb);
    assert_eq!(figs[0]["requests"].as_u64(), Some(a.len() as u64));
    assert_eq!(
        (
            figs[0]["ratings"].as_u64(),
            figs[0]["positive_ratings"].as_u64()
        ),
        (Some(5), Some(5))
    );
    assert_eq!(
        (
            figs[1]["ratings"].as_u64(),
            figs[1]["positive_ratings"].as_u64()
        ),
        (Some(5), Some(1))
    );
    assert_eq!(figs[1]["rating_mean"].as_f64(), Some(8.0 / 5.0));
    // B is at half A's rates and the mocks answer alike: exactly cheaper.
    let cost = rep["figures"]["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == "cost_per_request")
        .unwrap();
    assert_eq!(
        cost["verdict"], "B is cheaper than A by 50% ± 0% (p < 0.001)",
        "{cost}"
    );
    b.server.stop().await;
}

#[tokio::test]
async fn sticky_per_user_and_a_clients_pin_wins() {
    let b = bench();
    let s = &b.server;
    // B asks its provider for at most 2 tokens (an override).
    let mut body = spec([50, 50], "user");
    body["variants"][1]["overrides"] = json!({"max_tokens": 2});
    let id = create(s, body).await;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..8 {
        let (_, key) = s.user(&format!("sticky{i}"), "10").await;
        send(s, &key, 6, json!({})).await;
        let recs = records(s, &key).await;
        let variants: std::collections::BTreeSet<_> = recs
            .iter()
            .map(|r| variant_of(r).map(str::to_string))
            .collect();
        assert_eq!(variants.len(), 1, "user {i} saw {variants:?}");
        seen.extend(variants);
        for r in &recs {
            let out = r["usage"]["output_tokens"].as_u64().unwrap();
            match variant_of(r) {
                Some("B") => assert_eq!(out, 2, "{r}"),
                _ => assert_eq!(out, DEFAULT_ANSWER_WORDS as u64, "{r}"),
            }
        }
    }
    assert_eq!(seen.len(), 2, "eight users land on both variants: {seen:?}");
    // The client's own pin is obeyed and not counted.
    let (_, key) = s.user("pinner", "10").await;
    let routes = send(s, &key, 4, json!({"provider": "prov-a"})).await;
    assert!(
        routes.iter().all(|r| !r.contains("experiment=")),
        "{routes:?}"
    );
    let recs = records(s, &key).await;
    assert!(
        recs.iter()
            .all(|r| r["provider"] == "prov-a" && r.get("experiment").is_none())
    );
    let (_, rep) = s.get(ADMIN_KEY, &format!("/api/experiments/{id}")).await;
    let total: u64 = rep["figures"]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 48, "pinned requests are not in the figures");
    b.server.stop().await;
}

#[tokio::test]
async fn promote_sends_all_traffic_to_the_winner_until_the_pin_is_removed() {
    let b = bench();
    let s = &b.server;
    let (_, key) = s.user("promoter", "100").await;
    let id = create(s, spec([50, 50], "request")).await;
    send(s, &key, 20, json!({})).await;
    let (st, v) = s
        .post(
            ADMIN_KEY,
            &format!("/api/experiments/{id}/promote"),
            json!({"variant": "nope"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = s
        .post(
            ADMIN_KEY,
            &format!("/api/experiments/{id}/promote"),
            json!({"variant": "B"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["promoted"].as_str()),
        (Some("promoted"), Some("B"))
    );
    let routes = send(s, &key, 50, json!({})).await;
    assert!(
        routes.iter().all(|r| r.contains("pinned=prov-b")),
        "{routes:?}"
    );
    let recs = records(s, &key).await;
    let after: Vec<_> = recs.iter().take(50).collect();
    assert!(
        after
            .iter()
            .all(|r| r["provider"] == "prov-b" && r.get("experiment").is_none())
    );
    // The figures are the experiment's 20 requests, kept.
    let (_, rep) = s.get(ADMIN_KEY, &format!("/api/experiments/{id}")).await;
    let n: u64 = rep["figures"]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(n, 20);
    // The pin is listed, blocks a new experiment, and survives a restart.
    let (_, list) = s.get(ADMIN_KEY, "/api/experiments").await;
    assert_eq!(list["pins"][0]["provider"], "prov-b", "{list}");
    let (st, _) = s
        .post(ADMIN_KEY, "/api/experiments", spec([1, 1], "user"))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = s
        .post(ADMIN_KEY, &format!("/api/experiments/{id}/stop"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "no longer running");
    let dir = b.server.dir.clone();
    b.server.stop().await;
    let b2 = bench_in(&dir);
    let s = &b2.server;
    let routes = send(s, &key, 10, json!({})).await;
    assert!(
        routes.iter().all(|r| r.contains("pinned=prov-b")),
        "after a restart: {routes:?}"
    );
    // Removing the pin gives the model back to ordinary routing.
    let (st, v) = s
        .call(
            reqwest::Method::DELETE,
            Some(ADMIN_KEY),
            &format!("/api/experiments/{id}/promotion"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let routes = send(s, &key, 10, json!({})).await;
    assert!(
        routes
            .iter()
            .all(|r| !r.contains("pinned=") && !r.contains("experiment=")),
        "{routes:?}"
    );
    let id2 = create(s, spec([1, 1], "user")).await;
    let (st, v) = s
        .post(
            ADMIN_KEY,
            &format!("/api/experiments/{id2}/stop"),
            json!({}),
        )
        .await;
    assert_eq!((st, v["state"].as_str()), (StatusCode::OK, Some("stopped")));
    let routes = send(s, &key, 5, json!({})).await;
    assert!(
        routes.iter().all(|r| !r.contains("experiment=")),
        "stopped: {routes:?}"
    );
    b2.server.stop().await;
}

fn bench_in(dir: &std::path::Path) -> Bench {
    let ups = [
        MockUpstream::start(Kind::OpenAi),
        MockUpstream::start(Kind::OpenAi),
        MockUpstream::start(Kind::OpenAi),
    ];
    let a = provider(
        "prov-a",
        ProviderKind::Openai,
        Modality::Text,
        &ups[0],
        &[MODEL],
    );
    let mut b = provider(
        "prov-b",
        ProviderKind::Openai,
        Modality::Text,
        &ups[1],
        &[MODEL],
    );
    b.rates.per_input_token = Credits(a.rates.per_input_token.0 / 2);
    b.rates.per_output_token = Credits(a.rates.per_output_token.0 / 2);
    let c = provider(
        "prov-c",
        ProviderKind::Openai,
        Modality::Text,
        &ups[2],
        &["other-model"],
    );
    let server = TestServer::start_in(dir, move |cfg| {
        cfg.providers = vec![a, b, c];
        cfg.wallets.max_in_flight = 64;
    });
    Bench {
        server,
        _ups: ups,
        tmp: None,
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_changes() {
    let b = bench();
    let s = &b.server;
    let (_, key) = s.user("badinput", "10").await;
    let refused = [
        (spec([0, 0], "user"), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"model": MODEL, "variants": [
                {"name": "A", "provider": "prov-a", "weight": 1},
                {"name": "B", "provider": "nowhere", "weight": 1}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"model": MODEL, "variants": [
                {"name": "A", "provider": "prov-a", "weight": 1},
                {"name": "B", "provider": "prov-c", "weight": 1}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"model": MODEL, "variants": [
                {"name": "A", "provider": "prov-a", "weight": 1},
                {"name": "B", "provider": "prov-b", "weight": 1, "overrides": {"temperature": 9}}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"model": MODEL, "variants": "A"}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, want) in refused {
        let (st, v) = s.post(ADMIN_KEY, "/api/experiments", body.clone()).await;
        assert_eq!(st, want, "{body}: {v}");
    }
    let (st, _) = s.post(&key, "/api/experiments", spec([1, 1], "user")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "members may not create");
    let (st, _) = s.get(&key, "/api/experiments").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "nor read");
    let (_, list) = s.get(ADMIN_KEY, "/api/experiments").await;
    assert_eq!(list["experiments"], json!([]), "nothing stored: {list}");
    let routes = send(s, &key, 3, json!({})).await;
    assert!(routes.iter().all(|r| !r.contains("experiment=")));

    let id = create(s, spec([1, 1], "user")).await;
    let (st, _) = s
        .post(ADMIN_KEY, "/api/experiments", spec([2, 1], "request"))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "one running experiment per model");
    send(s, &key, 2, json!({})).await;
    let rec = records(s, &key).await[0].clone();
    for score in [0, 6, -1] {
        let (st, _) = s
            .post(
                &key,
                "/api/feedback",
                json!({"request_id": rec["id"], "score": score}),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "score {score}");
    }
    let (st, _) = s
        .post(
            &key,
            "/api/feedback",
            json!({"request_id": rec["id"], "score": 2.5}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, other) = s.user("stranger", "1").await;
    let (st, _) = s
        .post(
            &other,
            "/api/feedback",
            json!({"request_id": rec["id"], "score": 5}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "someone else's request");
    let (st, _) = s
        .post(
            &key,
            "/api/feedback",
            json!({"request_id": "req_nope", "score": 5}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, rep) = s.get(ADMIN_KEY, &format!("/api/experiments/{id}")).await;
    let ratings: u64 = rep["figures"]["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["ratings"].as_u64().unwrap())
        .sum();
    assert_eq!(ratings, 0, "no rating was stored: {rep}");
    let (_, list) = s.get(ADMIN_KEY, "/api/experiments").await;
    assert_eq!(list["experiments"].as_array().unwrap().len(), 1);
    b.server.stop().await;
}
