//! Reconciliation against provider invoices (docs/reconcile.md): requests
//! over two models through a real OpenAI-protocol upstream make the
//! records (copied to the day before, straight into the redb file while
//! the server is stopped, as `hostile.rs` makes a long history); exports
//! built from `GET /api/export/requests` in each accepted format must show
//! no drift, one day x model with 3% more cost must drift alone by 3%, and
//! broken exports are refused with nothing kept.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::ProviderKind;
use oneflow::pricing::{Modality, RateCard};
use oneflow::time::MS_PER_DAY;

use crate::providers::provider;
use crate::support::{ADMIN_KEY, TestServer, avoid_midnight, credits};
use crate::upstream::{Kind, MockUpstream};

const MODELS: [&str; 2] = ["mock-a", "mock-b"];

/// What the provider should bill for one UTC day and model, from our side.
#[derive(Clone, Debug, Default, PartialEq)]
struct Bill {
    input: u64,
    output: u64,
    cost: Credits,
}

/// A server whose provider `oai` (OpenAI's protocol, serving both models)
/// is `up`, with records of requests on two days. `upstream` prices: the
/// provider's own, when OneFlow marks them up.
async fn with_records(
    up: &MockUpstream,
    upstream: Option<RateCard>,
) -> (TestServer, tempfile::TempDir) {
    avoid_midnight().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = {
        let mut p = provider("oai", ProviderKind::Openai, Modality::Text, up, &MODELS);
        p.upstream_rates = upstream;
        p
    };
    let p = config.clone();
    let s = TestServer::start_in(tmp.path(), move |c| c.providers = vec![p]);
    let (_, key) = s.user("spender", "100").await;
    for (i, model) in ["mock-a", "mock-a", "mock-b", "mock-a", "mock-b"]
        .iter()
        .enumerate()
    {
        let words = "please say something ".repeat(i + 1);
        let (st, v) = s
            .post(
                &key,
                "/v1/chat/completions",
                json!({"model": model, "messages": [{"role": "user", "content": words}]}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    s.stop().await;
    yesterday_too(tmp.path());
    let s = TestServer::start_in(tmp.path(), move |c| c.providers = vec![config]);
    (s, tmp)
}

/// Copies every record to the same time a day earlier, under a new id.
fn yesterday_too(dir: &std::path::Path) {
    use oneflow_actors::store::{RedbStore, Store, WriteOp};
    let store = RedbStore::open(&dir.join("oneflow.redb")).unwrap();
    let mut ops = Vec::new();
    store
        .each_request(None, 0, i64::MAX, &mut |r| {
            let mut copy = r;
            copy.id.push('y');
            copy.created_at -= MS_PER_DAY;
            ops.push(WriteOp::PutRequest(Box::new(copy)));
            Ok(true)
        })
        .unwrap();
    assert_eq!(ops.len(), 5);
    store.commit(ops).unwrap();
}

/// The bills per (day, model) from every record the server exports,
/// priced at `rates` (None: what OneFlow charged): two days x two models.
async fn bills(s: &TestServer, rates: Option<&RateCard>) -> BTreeMap<(String, String), Bill> {
    let out = bills_of(s, rates).await;
    assert_eq!(out.len(), 4, "two days x two models: {out:?}");
    out
}

async fn bills_of(s: &TestServer, rates: Option<&RateCard>) -> BTreeMap<(String, String), Bill> {
    let res = s
        .http
        .get(format!("{}/api/export/requests?format=json", s.url))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let records: Vec<Value> = res.json().await.unwrap();
    let mut out: BTreeMap<(String, String), Bill> = BTreeMap::new();
    for r in records {
        assert_eq!(r["status"], "succeeded", "{r}");
        let day =
            oneflow::reconcile::day_name(r["created_at"].as_i64().unwrap().div_euclid(MS_PER_DAY));
        let b = out
            .entry((day, r["model"].as_str().unwrap().to_string()))
            .or_default();
        let input = r["usage"]["input_tokens"].as_u64().unwrap();
        let output = r["usage"]["output_tokens"].as_u64().unwrap();
        b.input += input;
        b.output += output;
        b.cost += match rates {
            Some(card) => card
                .cost(&serde_json::from_value(r["usage"].clone()).unwrap(), None)
                .unwrap(),
            None => credits(&r["cost"]) + credits(&r["shortfall"]),
        };
    }
    out
}

fn generic_csv(bills: &BTreeMap<(String, String), Bill>) -> String {
    let mut csv = String::from("day,model,input_tokens,output_tokens,cost\r\n");
    for ((day, model), b) in bills {
        csv.push_str(&format!(
            "{day},{model},{},{},{}\r\n",
            b.input, b.output, b.cost
        ));
    }
    csv
}

fn unix_secs(day: &str) -> i64 {
    oneflow::time::parse_time(day).unwrap() / 1000
}

/// OpenAI's usage page and costs page (costs grouped by line item).
fn openai_json(bills: &BTreeMap<(String, String), Bill>) -> Value {
    let mut usage = Vec::new();
    let mut costs = Vec::new();
    for ((day, model), b) in bills {
        let start = unix_secs(day);
        usage.push(json!({"object": "bucket", "start_time": start, "end_time": start + 86_400, "results": [
            {"object": "organization.usage.completions.result", "input_tokens": b.input,
             "output_tokens": b.output, "input_cached_tokens": 0, "num_model_requests": 1,
             "project_id": null, "user_id": null, "api_key_id": null, "model": model, "batch": null}]}));
        let cost: Value = serde_json::from_str(&b.cost.to_string()).unwrap();
        costs.push(
            json!({"object": "bucket", "start_time": start, "end_time": start + 86_400, "results": [
            {"object": "organization.costs.result", "amount": {"value": cost, "currency": "usd"},
             "line_item": format!("{model}, input"), "project_id": null}]}),
        );
    }
    json!([
        {"object": "page", "data": usage, "has_more": false, "next_page": null},
        {"object": "page", "data": costs, "has_more": false, "next_page": null},
    ])
}

fn openai_csv(bills: &BTreeMap<(String, String), Bill>) -> String {
    let mut csv = String::from(
        "start_time,end_time,project_id,model,input_tokens,output_tokens,amount_value,amount_currency\n",
    );
    for ((day, model), b) in bills {
        let start = unix_secs(day);
        csv.push_str(&format!(
            "{start},{},,{model},{},{},{},usd\n",
            start + 86_400,
            b.input,
            b.output,
            b.cost
        ));
    }
    csv
}

/// Anthropic's messages usage report and cost report (amounts in cents).
fn anthropic_json(bills: &BTreeMap<(String, String), Bill>) -> Value {
    let mut usage = Vec::new();
    let mut costs = Vec::new();
    for ((day, model), b) in bills {
        let (start, end) = (format!("{day}T00:00:00Z"), format!("{day}T23:59:59Z"));
        // Part of the input read from the cache: still input, billed.
        let cached = b.input / 3;
        usage.push(json!({"starting_at": start, "ending_at": end, "results": [
            {"uncached_input_tokens": b.input - cached, "cache_read_input_tokens": cached,
             "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
             "output_tokens": b.output, "server_tool_use": {"web_search_requests": 0},
             "api_key_id": null, "workspace_id": null, "model": model, "service_tier": "standard",
             "context_window": "0-200k"}]}));
        let cents = Credits(b.cost.0 * 100).to_string();
        costs.push(json!({"starting_at": start, "ending_at": end, "results": [
            {"currency": "USD", "amount": cents, "workspace_id": null, "description": null,
             "cost_type": "tokens", "context_window": "0-200k", "model": model,
             "service_tier": "standard", "token_type": "uncached_input_tokens"}]}));
    }
    json!([
        {"data": usage, "has_more": false, "next_page": null},
        {"data": costs, "has_more": false, "next_page": null},
    ])
}

/// POSTs an export; the status and the JSON answer.
async fn reconcile(
    s: &TestServer,
    query: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let res = s
        .http
        .post(format!("{}/api/reconcile{query}", s.url))
        .bearer_auth(ADMIN_KEY)
        .body(body)
        .send()
        .await
        .unwrap();
    let st = res.status();
    let text = res.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{st}: {text}")),
    )
}

/// The statuses of a report's cells, by (day, model).
fn statuses(report: &Value) -> BTreeMap<(String, String), String> {
    report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["provider"], "oai");
            (
                (
                    c["day"].as_str().unwrap().to_string(),
                    c["model"].as_str().unwrap().to_string(),
                ),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn all_match(report: &Value) {
    let st = statuses(report);
    assert_eq!(st.len(), 4, "{report}");
    assert!(st.values().all(|s| s == "match"), "{report}");
    for c in report["cells"].as_array().unwrap() {
        for f in ["input_tokens", "output_tokens", "cost"] {
            assert_eq!(c[f]["relative"], json!(0.0), "{c}");
        }
    }
}

/// The acceptance: an export equal to the records is all match; 3% more
/// cost on one day x model makes exactly that cell drift by 3%, which the
/// gauge shows; the reports are kept and come back as JSON and CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_export_has_no_drift_and_three_percent_shows_in_one_cell() {
    let up = MockUpstream::start(Kind::OpenAi);
    let (s, _dir) = with_records(&up, None).await;
    let bills = bills(&s, None).await;
    let (st, v) = reconcile(&s, "?provider=oai", generic_csv(&bills)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    all_match(&v);
    assert_eq!(v["format"], "csv");
    assert_eq!(v["providers"]["oai"], "charged");
    assert_eq!(v["totals"]["matched"], 4);
    let first = v["id"].as_str().unwrap().to_string();

    let target = bills.keys().next().unwrap().clone();
    let mut off = bills.clone();
    let b = off.get_mut(&target).unwrap();
    assert_eq!(b.cost.0 % 100, 0, "3% of it is whole micro-credits");
    b.cost = Credits(b.cost.0 * 103 / 100);
    let (st, v) = reconcile(&s, "?provider=oai", generic_csv(&off)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let st_by_cell = statuses(&v);
    for (cell, status) in &st_by_cell {
        let want = if *cell == target { "drift" } else { "match" };
        assert_eq!(status, want, "{cell:?}: {v}");
    }
    let drifted: Vec<&Value> = v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "drift")
        .collect();
    assert_eq!(drifted.len(), 1);
    assert_eq!(drifted[0]["cost"]["relative"], json!(0.03));
    assert_eq!(
        credits(&drifted[0]["cost"]["drift"]),
        Credits(bills[&target].cost.0 * 3 / 100)
    );
    assert_eq!(drifted[0]["input_tokens"]["relative"], json!(0.0));
    assert_eq!(v["totals"]["drifted"], 1);
    let second = v["id"].as_str().unwrap().to_string();

    // The gauge: the drifting model at 3%, the other at 0.
    let text = s.metrics_text().await;
    let line = |model: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("oneflow_reconcile_drift{")
                    && l.contains("provider=\"oai\"")
                    && l.contains(&format!("model=\"{model}\""))
            })
            .unwrap_or_else(|| panic!("no gauge for {model}:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let other = MODELS.iter().find(|m| **m != target.1).unwrap();
    assert_eq!(line(&target.1), 0.03);
    assert_eq!(line(other), 0.0);

    // Kept, newest first; one comes back whole, as JSON and as CSV.
    let (st, list) = s.get(ADMIN_KEY, "/api/reconcile").await;
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    assert!(list[0].get("cells").is_none());
    let (st, kept) = s.get(ADMIN_KEY, &format!("/api/reconcile/{second}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(kept, v);
    let csv = s
        .http
        .get(format!("{}/api/reconcile/{second}?format=csv", s.url))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[0].starts_with("day,provider,model,status,"));
    assert_eq!(
        lines.iter().filter(|l| l.contains(",drift,")).count(),
        1,
        "{csv}"
    );
    let by_accept = s
        .http
        .post(format!("{}/api/reconcile?provider=oai", s.url))
        .bearer_auth(ADMIN_KEY)
        .header("accept", "text/csv")
        .body(generic_csv(&bills))
        .send()
        .await
        .unwrap();
    assert_eq!(by_accept.status(), StatusCode::OK);
    assert!(
        by_accept
            .text()
            .await
            .unwrap()
            .starts_with("day,provider,model,status,")
    );
    let (st, _) = s.get(ADMIN_KEY, "/api/reconcile/rcn_00").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// Every accepted format is read to the same figures: OpenAI's usage and
/// costs pages, their CSV, Anthropic's usage and cost reports, and the
/// generic CSV with a provider column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_export_format_reads_to_the_same_cells() {
    let up = MockUpstream::start(Kind::OpenAi);
    let (s, _dir) = with_records(&up, None).await;
    let bills = bills(&s, None).await;
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "?provider=oai",
            "openai_json",
            serde_json::to_vec(&openai_json(&bills)).unwrap(),
        ),
        (
            "?provider=oai&format=openai_json",
            "openai_json",
            serde_json::to_vec(&openai_json(&bills)).unwrap(),
        ),
        (
            "?provider=oai",
            "openai_csv",
            openai_csv(&bills).into_bytes(),
        ),
        (
            "?provider=oai",
            "anthropic",
            serde_json::to_vec(&anthropic_json(&bills)).unwrap(),
        ),
        (
            "?provider=oai&format=csv",
            "csv",
            generic_csv(&bills).into_bytes(),
        ),
        (
            "",
            "csv",
            generic_csv(&bills)
                .replacen("day,", "day,provider,", 1)
                .replace(",mock-", ",oai,mock-")
                .into_bytes(),
        ),
    ];
    for (query, format, body) in cases {
        let (st, v) = reconcile(&s, query, body).await;
        assert_eq!(st, StatusCode::OK, "{format}: {v}");
        assert_eq!(v["format"], format, "{v}");
        all_match(&v);
    }
    s.stop().await;
}

/// With `upstream_rates`, our side is priced at the provider's own
/// prices, not at what OneFlow charged with its markup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_markup_is_taken_off_with_the_providers_own_rates() {
    let up = MockUpstream::start(Kind::OpenAi);
    let own = RateCard {
        per_input_token: Credits(400),
        per_output_token: Credits(2_000),
        ..RateCard::default()
    };
    let (s, _dir) = with_records(&up, Some(own.clone())).await;
    let at_cost = bills(&s, Some(&own)).await;
    let (st, v) = reconcile(&s, "?provider=oai", generic_csv(&at_cost)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["providers"]["oai"], "upstream_rates");
    all_match(&v);
    // What users were charged is more than the provider bills: drift.
    let charged = bills(&s, None).await;
    assert!(
        charged
            .values()
            .zip(at_cost.values())
            .all(|(c, o)| c.cost > o.cost)
    );
    let (st, v) = reconcile(&s, "?provider=oai", generic_csv(&charged)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(statuses(&v).values().all(|s| s == "drift"), "{v}");
    s.stop().await;
}

/// Broken or out-of-bounds exports get a clear 4xx in our error shape and
/// nothing is kept; only admins may reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_exports_are_refused_and_nothing_is_kept() {
    let up = MockUpstream::start(Kind::OpenAi);
    let p = provider("oai", ProviderKind::Openai, Modality::Text, &up, &MODELS);
    let s = TestServer::start_with(move |c| c.providers = vec![p]);
    let head = "day,model,input_tokens,output_tokens,cost\n";
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str, &str)> = vec![
        ("?provider=oai", format!("{head}2026-01-01,\"mock-a,1,1,1\n").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_export", "not closed"),
        ("?provider=oai", b"{\"object\": \"page\", \"data\": {\"start_time\": 1}}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_export", "list of buckets"),
        ("?provider=oai", b"[{\"data\": [{\"start_time\": 0, \"results\": [{\"model\": \"mock-a\", \"input_tokens\": -5, \"output_tokens\": 1}]}]}]".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_export", "negative"),
        ("?provider=oai", format!("{head}2026-01-01,mock-a,-1,1,1\n").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_export", "negative"),
        ("?provider=oai", format!("{head}2026-01-01,mock-a,1,1,-0.5\n").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_export", "negative"),
        ("?provider=oai", b"when,what\n1,2\n".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_export", "neither"),
        ("?provider=oai&format=anthropic", format!("{head}2026-01-01,mock-a,1,1,1\n").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_export", "not JSON"),
        ("?provider=oai&format=xlsx", format!("{head}2026-01-01,mock-a,1,1,1\n").into_bytes(), StatusCode::BAD_REQUEST, "invalid_request", "format"),
        ("", format!("{head}2026-01-01,mock-a,1,1,1\n").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_export", "provider"),
        ("?provider=nobody", format!("{head}2026-01-01,mock-a,1,1,1\n").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "inconsistent_request", "nobody"),
        ("?provider=oai", format!("{head}2026-01-01,mock-a,1,1,1\n2026-06-01,mock-a,1,1,1\n").into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_range", "days"),
        ("?provider=oai&cost_tolerance=2", format!("{head}2026-01-01,mock-a,1,1,1\n").into_bytes(), StatusCode::BAD_REQUEST, "invalid_request", "fraction"),
        ("?provider=oai", format!("{head}{}", "2026-01-01,mock-a,1,1,1\n".repeat(100_001)).into_bytes(), StatusCode::PAYLOAD_TOO_LARGE, "export_too_large", "rows"),
    ];
    for (query, body, status, code, says) in cases {
        let (st, v) = reconcile(&s, query, body).await;
        assert_eq!(st, status, "{query}: {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    // Over 16 MiB: refused from its declared length, before it is sent.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = s.url.trim_start_matches("http://");
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /api/reconcile?provider=oai HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_KEY}\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            16 * 1024 * 1024 + 1
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
    }
    // Not an admin: 403 before the body is read.
    let (_, key) = s.user("member", "1").await;
    let res = s
        .http
        .post(format!("{}/api/reconcile?provider=oai", s.url))
        .bearer_auth(&key)
        .body(format!("{head}2026-01-01,mock-a,1,1,1\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (st, list) = s.get(ADMIN_KEY, "/api/reconcile").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list, json!([]), "nothing is kept");
    s.stop().await;
}

/// The example alert rules load in Prometheus (`promtool check rules`),
/// name only our metric, and fire on a 3% drift (`promtool test rules`).
#[test]
fn the_example_alert_rules_pass_promtool() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/alerts.yml"
    );
    let out = std::process::Command::new(crate::tools::promtool())
        .args(["check", "rules", rules])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(rules).unwrap();
    assert!(text.contains(oneflow_actors::metrics::RECONCILE_DRIFT));
    let test = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/alerts_test.yml"
    );
    let out = std::process::Command::new(crate::tools::promtool())
        .args(["test", "rules"])
        .arg(test)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The dashboard's Reconciliation panel in a real browser: an admin
/// uploads an export file with 3% more cost on one day and model, sees
/// exactly that row drift, and downloads the report as CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_uploads_an_export_and_shows_the_drift() {
    use crate::chrome::{click, js, screenshot, type_into, wait_js, with_browser};
    let up = MockUpstream::start(Kind::OpenAi);
    let (s, dir) = with_records(&up, None).await;
    let mut off = bills(&s, None).await;
    let target = off.keys().next().unwrap().clone();
    let b = off.get_mut(&target).unwrap();
    b.cost = Credits(b.cost.0 * 103 / 100);
    let file = dir.path().join("export.csv");
    std::fs::write(&file, generic_csv(&off)).unwrap();
    let (sr, path) = (&s, file.display().to_string());
    with_browser(move |c| async move {
        c.goto(&format!("{}/", sr.url)).await.unwrap();
        type_into(&c, "#key", ADMIN_KEY).await;
        click(&c, "#signin-btn").await;
        wait_js(
            &c,
            "!document.getElementById('reconcile-panel').hidden && document.getElementById('rc-provider').value",
            "the panel with a provider",
        )
        .await;
        let file = c.find(fantoccini::Locator::Css("#rc-file")).await.unwrap();
        file.send_keys(&path).await.unwrap();
        click(&c, "#rc-upload").await;
        let rows = wait_js(
            &c,
            "document.querySelectorAll('#rc-cells tr[data-status]').length === 4 && \
             Array.from(document.querySelectorAll('#rc-cells tr[data-status]')).map((r) => r.dataset.status)",
            "the drift table",
        )
        .await;
        let drifts: Vec<&Value> = rows.as_array().unwrap().iter().filter(|s| *s == "drift").collect();
        assert_eq!(drifts.len(), 1, "{rows}");
        let drifted = js(
            &c,
            "const r = document.querySelector('#rc-cells tr[data-status=\"drift\"]'); \
             return [r.cells[0].textContent, r.cells[2].textContent, r.cells[9].textContent];",
        )
        .await;
        assert_eq!(drifted, json!([target.0, target.1, "3.00%"]));
        wait_js(
            &c,
            "document.querySelectorAll('#rc-reports tr[data-report-id]').length === 1",
            "the kept report listed",
        )
        .await;
        screenshot(&c, "dashboard-reconcile").await;
        // The download: catch the file the page hands the browser.
        js(
            &c,
            "window.__csv = ''; const make = URL.createObjectURL; \
             URL.createObjectURL = (b) => { b.text().then((t) => { window.__csv = t; }); return make(b); }; \
             return null;",
        )
        .await;
        click(&c, "#rc-download").await;
        let csv = wait_js(&c, "window.__csv", "the CSV download").await;
        let csv = csv.as_str().unwrap();
        assert!(csv.starts_with("day,provider,model,status,"), "{csv}");
        assert_eq!(csv.lines().filter(|l| l.contains(",drift,")).count(), 1, "{csv}");
    })
    .await;
    s.stop().await;
}

/// On PostgreSQL, shared by two nodes: records sent through node A are
/// reconciled on node A, and the kept report is read on node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_shared_postgres_store_reports_are_seen_by_every_node() {
    avoid_midnight().await;
    let up = MockUpstream::start(Kind::OpenAi);
    let pg = crate::pg::PgSchema::new();
    let p = provider("oai", ProviderKind::Openai, Modality::Text, &up, &MODELS);
    let node = |name: &str| {
        let (p, pg) = (p.clone(), &pg);
        TestServer::start_with(move |c| {
            pg.apply(c, name);
            c.providers = vec![p];
        })
    };
    let a = node("a");
    let b = node("b");
    let (_, key) = a.user("spender", "100").await;
    for model in ["mock-a", "mock-b", "mock-a"] {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi there"}]});
        let (st, v) = a.post(&key, "/v1/chat/completions", body).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let bills = bills_of(&a, None).await;
    assert_eq!(bills.len(), 2, "{bills:?}");
    let (st, v) = reconcile(&a, "?provider=oai", generic_csv(&bills)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["totals"]["matched"], 2, "{v}");
    let id = v["id"].as_str().unwrap();
    let (st, list) = b.get(ADMIN_KEY, "/api/reconcile").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list[0]["id"], id, "{list}");
    let (st, kept) = b.get(ADMIN_KEY, &format!("/api/reconcile/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(kept, v);
    a.stop().await;
    b.stop().await;
}
