//! `GET /metrics` after real traffic: the named series exist with their
//! labels, the credits-charged counter equals the ledger's charges to the
//! micro-credit, and `promtool check metrics` accepts the text.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;

use oneflow::Credits;
use oneflow::config::{Config, ProviderConfig};
use oneflow::ledger::EntryKind;
use oneflow_actors::metrics as m;

use crate::support::{ADMIN_KEY, TestServer, credits};

/// One sample: metric name, labels, value.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed from the text format (enough of it for our output:
/// `name{k="v",...} value` lines, comments skipped).
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {l}"));
                let (name, labels) = match series.split_once('{') {
                    None => (series.to_string(), BTreeMap::new()),
                    Some((name, rest)) => (name.to_string(), parse_labels(rest)),
                };
                Sample {
                    name,
                    labels,
                    value,
                }
            })
            .collect();
        Scrape { text, samples }
    }

    /// The sum over samples of `name` whose labels include all of `want`.
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.matching(name, want).map(|s| s.value).sum()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        want: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Like `sum`, but the series must exist.
    fn get(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        assert!(
            self.matching(name, want).next().is_some(),
            "no series {name} with {want:?} in\n{}",
            self.text
        );
        self.sum(name, want)
    }
}

/// `k="v",k2="v2"}` -> map; values may hold escaped quotes.
fn parse_labels(rest: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').to_string();
        if key.is_empty() || key == "}" {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap()),
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key, value);
        if chars.peek() == Some(&'}') {
            break;
        }
    }
    out
}

async fn scrape(s: &TestServer) -> Scrape {
    let res = s
        .http
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    Scrape::parse(res.text().await.unwrap())
}

/// Runs `promtool check metrics` on the text (promtool comes with
/// `scripts/test.sh`; without it the test fails and says so).
fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::tools::promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- input ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// A simulated text provider named `name`, built from the default one.
fn text_provider(c: &Config, name: &str) -> ProviderConfig {
    let mut p = c.providers[0].clone();
    p.name = name.into();
    p.models = Vec::new();
    p
}

/// Adds `flaky` (every call fails) and `limited` (one call a second, a
/// queue of one); a single provider failure opens a circuit.
fn with_test_providers(c: &mut Config) {
    let mut flaky = text_provider(c, "flaky");
    flaky.simulated.failure_rate = 1.0;
    let mut limited = text_provider(c, "limited");
    limited.limits.requests_per_second = 1;
    limited.limits.burst = 1;
    limited.limits.queue = 1;
    c.providers.push(flaky);
    c.providers.push(limited);
    c.circuit.failures = 1;
    c.circuit.open_ms = 600_000;
}

#[tokio::test]
async fn metrics_follow_traffic_and_match_the_ledger() {
    let s = TestServer::start_with(with_test_providers);
    let before = scrape(&s).await;
    let (ann_id, ann) = s.user("ann", "100").await;
    let (bob_id, bob) = s.user("bob", "1").await;

    // Successes of every modality (costs as in ledger_flow: 5, 20, 5, 20).
    for body in [
        json!({"model": "gpt", "prompt": "hello brave world", "max_tokens": 10}),
        json!({"model": "image", "prompt": "a cat", "n": 2}),
        json!({"model": "audio", "prompt": "a song"}),
        json!({"model": "video", "prompt": "a film"}),
    ] {
        let (st, v) = s.post(&ann, "/api/request", body).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    // A refusal: video costs 20, bob has 1.
    let (st, v) = s
        .post(
            &bob,
            "/api/request",
            json!({"model": "video", "prompt": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
    // A model nobody serves: refused before routing.
    let (st, v) = s
        .post(
            &ann,
            "/api/request",
            json!({"model": "nope-7b", "prompt": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // A provider that fails: the hold is released, the circuit opens.
    let (st, v) = s
        .post(
            &ann,
            "/api/request",
            json!({"model": "flaky", "prompt": "x"}),
        )
        .await;
    assert_eq!(v["request"]["status"], "failed", "{st} {v}");
    // A provider whose queue fills: three at once, one a second admitted.
    let limited = json!({"model": "limited", "prompt": "hi", "max_tokens": 4});
    let calls = (0..3).map(|_| s.post(&ann, "/api/request", limited.clone()));
    let answers = futures_util::future::join_all(calls).await;
    let overloaded = answers
        .iter()
        .filter(|(st, v)| {
            *st == StatusCode::TOO_MANY_REQUESTS && v["error"]["code"] == "provider_overloaded"
        })
        .count();
    assert!(overloaded >= 1, "no call was turned away: {answers:?}");

    let after = scrape(&s).await;
    let delta = |name: &str, want: &[(&str, &str)]| after.get(name, want) - before.sum(name, want);

    // Requests by provider, model, modality, status and code.
    for (provider, modality) in [
        ("gpt", "text"),
        ("image", "image"),
        ("audio", "audio"),
        ("video", "video"),
    ] {
        let want = [
            ("provider", provider),
            ("model", provider),
            ("modality", modality),
            ("status", "ok"),
            ("code", "none"),
        ];
        assert_eq!(delta(m::REQUESTS, &want), 1.0, "{provider}");
    }
    let refused = [
        ("provider", "video"),
        ("modality", "video"),
        ("status", "refused"),
        ("code", "insufficient_credits"),
    ];
    assert_eq!(delta(m::REQUESTS, &refused), 1.0);
    let unrouted = [
        ("provider", "none"),
        ("model", "none"),
        ("status", "refused"),
        ("code", "unknown_model"),
    ];
    assert_eq!(delta(m::REQUESTS, &unrouted), 1.0);
    assert_eq!(
        delta(m::REQUESTS, &[("provider", "flaky"), ("status", "error")]),
        1.0
    );
    assert_eq!(
        delta(
            m::REQUESTS,
            &[("provider", "limited"), ("code", "provider_overloaded")]
        ),
        overloaded as f64
    );
    assert!(
        !after.text.contains("user=\""),
        "user labels are off by default"
    );

    // Latency histograms: one observation per settled request.
    let count = |n: &str| format!("{n}_count");
    assert_eq!(
        delta(&count(m::REQUEST_DURATION), &[("provider", "gpt")]),
        1.0
    );
    assert_eq!(
        after.get(
            &format!("{}_bucket", m::REQUEST_DURATION),
            &[("provider", "gpt"), ("le", "+Inf")]
        ),
        after.get(&count(m::REQUEST_DURATION), &[("provider", "gpt")])
    );
    assert!(delta(&count(m::UPSTREAM_DURATION), &[("provider", "image")]) >= 1.0);
    // Settled: 4 successes, 1 failure, the `limited` calls.
    assert_eq!(
        delta(&count(m::ADDED_LATENCY), &[]),
        (4 + 1 + answers.len()) as f64
    );
    assert!(after.get(&format!("{}_sum", m::ADDED_LATENCY), &[]) >= 0.0);

    // Tokens: "hello brave world" is 3 in, the answer 5 out.
    assert_eq!(
        delta(m::TOKENS, &[("provider", "gpt"), ("direction", "in")]),
        3.0
    );
    assert_eq!(
        delta(m::TOKENS, &[("provider", "gpt"), ("direction", "out")]),
        5.0
    );

    // Credits charged equals the ledger's charges, to the micro-credit,
    // in total and for a provider with a known price.
    let mut charged = Credits::ZERO;
    for key in [&ann, &bob] {
        charged += s
            .ledger(key)
            .await
            .iter()
            .filter(|e| e.kind == EntryKind::Charge)
            .map(|e| e.amount)
            .sum::<Credits>();
    }
    assert!(charged > Credits::from_credits(50), "{charged:?}");
    assert_eq!(delta(m::CREDITS_CHARGED, &[]), charged.0 as f64);
    assert_eq!(
        delta(m::CREDITS_CHARGED, &[("provider", "video")]),
        Credits::from_credits(20).0 as f64
    );
    // ... and what the API reports as spent.
    let (_, status) = s
        .get(ADMIN_KEY, &format!("/api/status?user_id={ann_id}"))
        .await;
    assert_eq!(
        Credits::from_credits(100) - credits(&status["balance"]),
        charged
    );
    let _ = bob_id;

    // Gauges: nothing held now, the wallets are alive, queues empty, the
    // failing provider's circuit open and the others closed.
    assert_eq!(after.get(m::HOLDS_OPEN, &[]), 0.0);
    assert!(after.get(m::WALLETS_ALIVE, &[]) >= 2.0);
    assert_eq!(after.get(m::QUEUE_DEPTH, &[("provider", "gpt")]), 0.0);
    assert_eq!(after.get(m::CIRCUIT_STATE, &[("provider", "flaky")]), 2.0);
    assert_eq!(after.get(m::CIRCUIT_STATE, &[("provider", "gpt")]), 0.0);
    assert_eq!(
        delta(m::RATE_LIMITED, &[("provider", "limited")]),
        overloaded as f64
    );
    assert_eq!(after.get(m::RATE_LIMITED, &[("provider", "gpt")]), 0.0);

    // Persistence: commits happened, each of at least one write.
    assert!(delta(&count(m::COMMIT_DURATION), &[]) >= 1.0);
    assert!(
        after.get(&format!("{}_sum", m::BATCH_SIZE), &[]) >= after.get(&count(m::BATCH_SIZE), &[])
    );

    // Every named series is there, described.
    for name in m::ALL {
        assert!(
            after.text.contains(&format!("# HELP {name} ")),
            "{name} missing or without HELP"
        );
    }
    promtool_accepts(&after.text);
    s.stop().await;
}

/// The metric names a text mentions (`oneflow_...`), histogram suffixes
/// taken off.
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in text.match_indices("oneflow_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        out.insert(base.to_string());
    }
    out
}

/// The Grafana dashboard and the docs use exactly the names the code
/// exports: none unknown, none left out.
#[test]
fn dashboard_and_docs_use_the_exported_names() {
    let all: std::collections::BTreeSet<String> = m::ALL.iter().map(|s| s.to_string()).collect();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dash = std::fs::read_to_string(format!("{root}/grafana/oneflow.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&dash).unwrap();
    let exprs: String = v["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_string() + "\n")
        .collect();
    assert_eq!(names_in(&exprs), all, "dashboard queries");
    let docs = std::fs::read_to_string(format!("{root}/docs/metrics.md")).unwrap();
    let in_docs: std::collections::BTreeSet<String> = names_in(&docs)
        .into_iter()
        .filter(|n| n != "oneflow_")
        .collect();
    assert_eq!(in_docs, all, "docs/metrics.md");
}

/// A streamed chat is counted once, when it settles, and its charge shows
/// in the counter like any other.
#[tokio::test]
async fn streamed_requests_are_counted_at_settlement() {
    let s = TestServer::start();
    let before = scrape(&s).await;
    let (_, key) = s.user("dan", "100").await;
    let res = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(&key)
        .json(&json!({
            "model": "gpt",
            "stream": true,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "one two three four"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.text().await.unwrap();
    assert!(body.contains("[DONE]"), "{body}");
    let after = scrape(&s).await;
    let want = [("provider", "gpt"), ("status", "ok"), ("code", "none")];
    assert_eq!(
        after.get(m::REQUESTS, &want) - before.sum(m::REQUESTS, &want),
        1.0
    );
    let charges: Credits = s
        .ledger(&key)
        .await
        .iter()
        .filter(|e| e.kind == EntryKind::Charge)
        .map(|e| e.amount)
        .sum();
    assert!(charges > Credits::ZERO);
    let charged = after.get(m::CREDITS_CHARGED, &[]) - before.sum(m::CREDITS_CHARGED, &[]);
    assert_eq!(charged, charges.0 as f64);
    assert_eq!(after.get(m::HOLDS_OPEN, &[]), 0.0);
    s.stop().await;
}

#[tokio::test]
async fn per_user_labels_only_when_configured() {
    let s = TestServer::start_with(|c| c.metrics.per_user_labels = true);
    let (id, key) = s.user("cat", "100").await;
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "gpt", "prompt": "hi", "max_tokens": 4}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let after = scrape(&s).await;
    assert_eq!(
        after.get(
            m::REQUESTS,
            &[("user", id.as_str()), ("provider", "gpt"), ("status", "ok")]
        ),
        1.0
    );
    promtool_accepts(&after.text);
    s.stop().await;
}
