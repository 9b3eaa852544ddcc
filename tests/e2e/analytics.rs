//! Analytics from the rollups agree with the ledger to the micro-credit,
//! split by provider, keep users apart, honour bucket edges, project
//! burn-down from known figures, survive a restart, and exports parse and
//! match history.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::ledger::EntryKind;

use crate::support::{ADMIN_KEY, Api, TestServer, credits};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;

/// (status, body text) of a GET.
async fn raw(api: &Api, key: &str, path: &str) -> (StatusCode, String) {
    let res = api
        .http
        .get(format!("{}{path}", api.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn ok(api: &Api, key: &str, path: &str) -> Value {
    let (s, v) = api.get(key, path).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    v
}

/// Sends a request that must succeed; returns (request id, cost).
async fn spend(api: &Api, key: &str, body: Value) -> (String, Credits) {
    let (s, v) = api.post(key, "/api/request", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (
        v["request_id"].as_str().unwrap().to_string(),
        credits(&v["cost"]),
    )
}

fn charges(ledger: &[oneflow::ledger::LedgerEntry]) -> Credits {
    ledger
        .iter()
        .filter(|e| e.kind == EntryKind::Charge)
        .map(|e| e.amount)
        .sum()
}

/// Every request of the caller, newest first.
async fn history(api: &Api, key: &str) -> Vec<Value> {
    let v = ok(api, key, "/api/history/requests?limit=1000").await;
    v["items"].as_array().unwrap().clone()
}

/// A user who used every modality, and what each cost.
async fn busy_user(s: &TestServer, name: &str) -> (String, String) {
    let (id, key) = s.user(name, "1000").await;
    for body in [
        json!({"model": "gpt", "prompt": "hello brave world", "max_tokens": 10}),
        json!({"model": "gpt", "prompt": "one two", "max_tokens": 10}),
        json!({"model": "image", "prompt": "a cat", "n": 2}),
        json!({"model": "audio", "prompt": "a song"}),
        json!({"model": "video", "prompt": "a film"}),
    ] {
        spend(s, &key, body).await;
    }
    (id, key)
}

fn sum_series(points: &Value) -> (u64, Credits) {
    let pts = points.as_array().unwrap();
    (
        pts.iter().map(|p| p["requests"].as_u64().unwrap()).sum(),
        pts.iter().map(|p| credits(&p["cost"])).sum(),
    )
}

#[tokio::test]
async fn figures_equal_the_ledger_and_split_by_provider() {
    let s = TestServer::start();
    let (_, key) = busy_user(&s, "ann").await;
    let ledger = s.ledger(&key).await;
    let hist = history(&s, &key).await;

    let all = ok(&s, &key, "/api/analytics").await;
    assert_eq!(all["total_requests"], 5);
    assert_eq!(credits(&all["total_cost"]), charges(&ledger));
    assert_eq!(credits(&all["totals"]["cost"]), charges(&ledger));
    // Per provider: the sum of that provider's requests in history.
    let mut per: BTreeMap<String, (u64, Credits, u64)> = BTreeMap::new();
    for r in &hist {
        let e = per
            .entry(r["provider"].as_str().unwrap().into())
            .or_default();
        e.0 += 1;
        e.1 += credits(&r["cost"]);
        e.2 += r["usage"]["output_tokens"].as_u64().unwrap();
    }
    let providers = all["providers"].as_object().unwrap();
    assert_eq!(providers.len(), per.len(), "{all}");
    for (name, (n, cost, out)) in &per {
        let p = &providers[name];
        assert_eq!(p["requests"], *n, "{name}");
        assert_eq!(p["successes"], *n, "{name}");
        assert_eq!(p["success_rate"], 1.0);
        assert_eq!(credits(&p["cost"]), *cost, "{name}");
        assert_eq!(p["output_tokens"], *out, "{name}");
        assert!(p["latency_p50_ms"].is_u64(), "{p}");
        assert!(p["latency_p99_ms"].as_u64() >= p["latency_p50_ms"].as_u64());
    }

    // A range covering now gives the same figures; so does each series.
    let ranged = ok(&s, &key, "/api/analytics?bucket=minute").await;
    assert_eq!(ranged["providers"], all["providers"]);
    assert!(ranged["from"].is_i64() && ranged["to"].is_i64());
    for b in ["minute", "hour", "day"] {
        let series = ok(&s, &key, &format!("/api/analytics/series?bucket={b}")).await;
        assert_eq!(series["bucket"], b);
        assert_eq!(
            sum_series(&series["points"]),
            (5, charges(&ledger)),
            "{b}: {series}"
        );
    }
    let gpt = ok(&s, &key, "/api/analytics/series?bucket=hour&provider=gpt").await;
    assert_eq!(sum_series(&gpt["points"]), (2, per["gpt"].1));
    s.stop().await;
}

#[tokio::test]
async fn users_see_their_own_figures_and_the_admin_sees_everyones() {
    let s = TestServer::start();
    let (ann_id, ann) = busy_user(&s, "ann").await;
    let (bob_id, bob) = s.user("bob", "100").await;
    spend(&s, &bob, json!({"model": "audio", "prompt": "a tune"})).await;
    let ann_cost = charges(&s.ledger(&ann).await);
    let bob_cost = charges(&s.ledger(&bob).await);

    let b = ok(&s, &bob, "/api/analytics").await;
    assert_eq!(
        (b["total_requests"].as_u64(), credits(&b["total_cost"])),
        (Some(1), bob_cost)
    );
    assert_eq!(b["user_id"], bob_id);
    // Bob cannot read Ann's figures in any form.
    for path in [
        format!("/api/analytics?user_id={ann_id}"),
        format!("/api/analytics/series?user_id={ann_id}"),
        format!("/api/analytics/burndown?user_id={ann_id}"),
        format!("/api/export/requests?user_id={ann_id}"),
    ] {
        let (st, v) = s.get(&bob, &path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    // Bob's own export holds only his request.
    let (st, csv) = raw(&s, &bob, "/api/export/requests").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(parse_csv(&csv).len(), 2, "{csv}");

    let everyone = ok(&s, ADMIN_KEY, "/api/analytics").await;
    assert!(everyone.get("user_id").is_none());
    assert_eq!(everyone["total_requests"], 6);
    assert_eq!(credits(&everyone["total_cost"]), ann_cost + bob_cost);
    assert_eq!(
        credits(&everyone["providers"]["audio"]["cost"]),
        Credits::from_credits(10)
    );
    let as_ann = ok(&s, ADMIN_KEY, &format!("/api/analytics?user_id={ann_id}")).await;
    assert_eq!(credits(&as_ann["total_cost"]), ann_cost);
    let series = ok(&s, ADMIN_KEY, "/api/analytics/series?bucket=day").await;
    assert_eq!(sum_series(&series["points"]), (6, ann_cost + bob_cost));
    s.stop().await;
}

#[tokio::test]
async fn ranges_include_a_request_exactly_from_its_bucket_on() {
    let s = TestServer::start();
    let (_, key) = s.user("cat", "100").await;
    let (id, cost) = spend(
        &s,
        &key,
        json!({"model": "gpt", "prompt": "edge", "max_tokens": 5}),
    )
    .await;
    let rec = ok(&s, &key, &format!("/api/history/requests/{id}")).await;
    let at = rec["created_at"].as_i64().unwrap();
    for (bucket, width) in [("minute", MINUTE), ("hour", HOUR), ("day", 24 * HOUR)] {
        let start = at.div_euclid(width) * width;
        // [start, start + width) holds it; the bucket before does not.
        let inside = ok(
            &s,
            &key,
            &format!(
                "/api/analytics?bucket={bucket}&from={start}&to={}",
                start + width
            ),
        )
        .await;
        assert_eq!(inside["total_requests"], 1, "{bucket}: {inside}");
        assert_eq!(credits(&inside["total_cost"]), cost);
        assert_eq!(
            (inside["from"].as_i64(), inside["to"].as_i64()),
            (Some(start), Some(start + width))
        );
        let before = ok(
            &s,
            &key,
            &format!(
                "/api/analytics?bucket={bucket}&from={}&to={start}",
                start - width
            ),
        )
        .await;
        assert_eq!(before["total_requests"], 0, "{bucket}: {before}");
        // A range inside the bucket is widened to the whole bucket.
        let widened = ok(
            &s,
            &key,
            &format!(
                "/api/analytics?bucket={bucket}&from={}&to={}",
                start + 1,
                start + 2
            ),
        )
        .await;
        assert_eq!(widened["from"].as_i64(), Some(start));
        assert_eq!(widened["total_requests"], 1);
        // The series puts it in the point that starts at its bucket.
        let series = ok(
            &s,
            &key,
            &format!(
                "/api/analytics/series?bucket={bucket}&from={}&to={}",
                start - 2 * width,
                start + 2 * width
            ),
        )
        .await;
        let pts = series["points"].as_array().unwrap();
        assert_eq!(pts.len(), 4);
        let starts: Vec<i64> = pts.iter().map(|p| p["start"].as_i64().unwrap()).collect();
        assert_eq!(
            starts,
            [start - 2 * width, start - width, start, start + width]
        );
        let counts: Vec<u64> = pts
            .iter()
            .map(|p| p["requests"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, [0, 0, 1, 0], "{bucket}");
    }
    // RFC 3339 works as well as milliseconds.
    let day = oneflow::time::rfc3339(at.div_euclid(24 * HOUR) * 24 * HOUR);
    let v = ok(&s, &key, &format!("/api/analytics?bucket=day&from={day}")).await;
    assert_eq!(v["total_requests"], 1);
    s.stop().await;
}

#[tokio::test]
async fn burn_down_projects_from_the_recent_rate() {
    crate::support::avoid_midnight().await;
    let s = TestServer::start();
    let (_, key) = s.user("dan", "100").await;
    // Nothing spent: the rate is zero and nothing runs out.
    let idle = ok(&s, &key, "/api/analytics/burndown").await;
    assert_eq!(credits(&idle["rate_per_hour"]), Credits::ZERO);
    assert!(idle["balance_runs_out_at"].is_null(), "{idle}");

    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            Some(&key),
            "/api/budget",
            Some(&json!({"daily": "60", "per_provider": {"audio": {"weekly": "12"}}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    spend(&s, &key, json!({"model": "audio", "prompt": "a song"})).await;
    spend(
        &s,
        &key,
        json!({"model": "image", "prompt": "a cat", "n": 1}),
    )
    .await;
    let spent = charges(&s.ledger(&key).await);
    assert_eq!(spent, Credits::from_credits(15));

    let b = ok(&s, &key, "/api/analytics/burndown?window_hours=6").await;
    let now = b["now"].as_i64().unwrap();
    let window = 6 * HOUR;
    assert_eq!(
        b["window_end"].as_i64().unwrap() - b["window_start"].as_i64().unwrap(),
        window
    );
    assert_eq!(credits(&b["window_spent"]), spent);
    // 15 credits in 6 h: 2.5 an hour.
    assert_eq!(credits(&b["rate_per_hour"]), Credits(2_500_000));
    // 85 available at 15 per 6 h: 34 h.
    assert_eq!(credits(&b["available"]), Credits::from_credits(85));
    assert_eq!(b["balance_runs_out_at"].as_i64(), Some(now + 34 * HOUR));
    let budgets = b["budgets"].as_array().unwrap();
    let daily = budgets
        .iter()
        .find(|p| p["window"] == "daily" && p["provider"].is_null())
        .unwrap();
    // 45 of 60 left at 15 per 6 h: 18 h, which is after midnight or not.
    assert_eq!(credits(&daily["remaining"]), Credits::from_credits(45));
    assert_eq!(daily["runs_out_at"].as_i64(), Some(now + 18 * HOUR));
    assert_eq!(
        daily["runs_out_before_reset"].as_bool(),
        Some(now + 18 * HOUR < daily["resets_at"].as_i64().unwrap())
    );
    // Audio: 5 of 12 spent this week, 5 in 6 h: 7 left lasts 8.4 h.
    let audio = budgets.iter().find(|p| p["provider"] == "audio").unwrap();
    assert_eq!(audio["window"], "weekly");
    assert_eq!(credits(&audio["spent"]), Credits::from_credits(5));
    assert_eq!(credits(&audio["remaining"]), Credits::from_credits(7));
    assert_eq!(
        audio["runs_out_at"].as_i64(),
        Some(now + 8 * HOUR + 24 * MINUTE)
    );
    s.stop().await;
}

/// A small CSV reader (quoted fields, doubled quotes, CRLF), enough to
/// check what the export writes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "CSV does not end with a line end"
    );
    rows
}

/// CSV rows as maps from the header's names.
fn csv_records(text: &str) -> Vec<BTreeMap<String, String>> {
    let rows = parse_csv(text);
    let (head, body) = rows.split_first().unwrap();
    body.iter()
        .map(|r| {
            assert_eq!(r.len(), head.len());
            head.iter().cloned().zip(r.iter().cloned()).collect()
        })
        .collect()
}

#[tokio::test]
async fn exports_parse_and_match_history_and_the_ledger() {
    let s = TestServer::start();
    let (_, key) = busy_user(&s, "eve").await;
    // A prompt with a comma, a quote and a line break survives CSV.
    let tricky = "say \"hi\",\nthen stop";
    spend(
        &s,
        &key,
        json!({"model": "gpt", "prompt": tricky, "max_tokens": 8}),
    )
    .await;
    let hist = history(&s, &key).await;
    let ledger = s.ledger(&key).await;

    // Requests: CSV, JSON array and NDJSON all hold exactly history.
    let (st, csv) = raw(&s, &key, "/api/export/requests?format=csv").await;
    assert_eq!(st, StatusCode::OK);
    let recs = csv_records(&csv);
    let mut want: Vec<(String, Credits)> = hist
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), credits(&r["cost"])))
        .collect();
    want.sort();
    let mut got: Vec<(String, Credits)> = recs
        .iter()
        .map(|r| (r["id"].clone(), r["cost"].parse().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, want);
    let (st, json_text) = raw(&s, &key, "/api/export/requests?format=json").await;
    assert_eq!(st, StatusCode::OK);
    let arr: Vec<Value> = serde_json::from_str(&json_text).unwrap();
    let mut from_json: Vec<Value> = arr;
    let mut from_hist = hist.clone();
    let by_id = |a: &Value, b: &Value| a["id"].as_str().cmp(&b["id"].as_str());
    from_json.sort_by(by_id);
    from_hist.sort_by(by_id);
    assert_eq!(from_json, from_hist);
    assert!(from_json.iter().any(|r| r["prompt_preview"] == tricky));
    let (_, nd) = raw(&s, &key, "/api/export/requests?format=ndjson").await;
    assert_eq!(nd.lines().count(), hist.len());
    for line in nd.lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }

    // Transactions: the ledger, entry for entry.
    let (_, csv) = raw(&s, &key, "/api/export/transactions").await;
    let recs = csv_records(&csv);
    assert_eq!(recs.len(), ledger.len());
    for (r, e) in recs.iter().zip(&ledger) {
        assert_eq!(r["seq"], e.seq.to_string());
        assert_eq!(r["amount"].parse::<Credits>().unwrap(), e.amount);
        assert_eq!(
            r["balance_after"].parse::<Credits>().unwrap(),
            e.balance_after
        );
    }
    let (_, js) = raw(&s, &key, "/api/export/transactions?format=json").await;
    let entries: Vec<oneflow::ledger::LedgerEntry> = serde_json::from_str(&js).unwrap();
    assert_eq!(entries, ledger);

    // Analytics rows add up to the ledger's charges.
    for b in ["minute", "hour", "day"] {
        let (st, csv) = raw(&s, &key, &format!("/api/export/analytics?bucket={b}")).await;
        assert_eq!(st, StatusCode::OK);
        let rows = csv_records(&csv);
        let cost: Credits = rows
            .iter()
            .map(|r| r["cost"].parse::<Credits>().unwrap())
            .sum();
        assert_eq!(cost, charges(&ledger), "{b}");
        let n: u64 = rows
            .iter()
            .map(|r| r["requests"].parse::<u64>().unwrap())
            .sum();
        assert_eq!(n, hist.len() as u64);
    }
    let (_, js) = raw(&s, &key, "/api/export/analytics?format=json&bucket=day").await;
    let rows: Vec<Value> = serde_json::from_str(&js).unwrap();
    let cost: Credits = rows.iter().map(|r| credits(&r["cost"])).sum();
    assert_eq!(cost, charges(&ledger));

    // A range that ends before everything exports just the header.
    let (_, csv) = raw(&s, &key, "/api/export/requests?to=1000").await;
    assert_eq!(parse_csv(&csv).len(), 1);
    let (_, js) = raw(&s, &key, "/api/export/requests?format=json&to=1000").await;
    assert_eq!(js, "[]");
    s.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_4xx_json_errors() {
    let s = TestServer::start();
    let (_, key) = s.user("fay", "10").await;
    for path in [
        "/api/analytics?bucket=week",
        "/api/analytics?from=yesterday",
        "/api/analytics?nonsense=1",
        "/api/analytics?provider=gpt",
        "/api/analytics/series?bucket=second",
        "/api/analytics/burndown?window_hours=0",
        "/api/analytics/burndown?window_hours=-3",
        "/api/analytics/burndown?window_hours=99999",
        "/api/export/users",
        "/api/export/requests?format=xml",
        "/api/export/requests?bucket=hour",
        "/api/export/analytics?bucket=year",
        "/api/analytics?from=%205",
        "/api/analytics?to=2026-11-25T13:00:00",
        "/api/export/requests?to=tomorrow",
    ] {
        let (st, v) = s.get(&key, path).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
    }
    // Well-formed parameters that make no range: what no schema can say,
    // answered 422 so that a 400 always means the request broke the
    // documented schema.
    for path in [
        "/api/analytics?from=2000&to=1000",
        "/api/analytics?from=2026-02-30",
        "/api/analytics/series?bucket=minute&from=0&to=86400000000",
        "/api/analytics/series?from=5&to=5",
        "/api/export/transactions?from=5&to=5",
        "/api/export/analytics?from=2026-11-25&to=2026-11-24T23:00:00Z",
    ] {
        let (st, v) = s.get(&key, path).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
        assert_eq!(v["error"]["code"], "invalid_range", "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
    }
    // No key: 401; an admin naming a missing user: 404.
    let (st, v) = s
        .call(reqwest::Method::GET, None, "/api/export/requests", None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, v) = s
        .get(ADMIN_KEY, "/api/export/requests?user_id=nobody")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn rollups_survive_a_restart_and_still_agree_with_the_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path(), |_| {});
    let (_, key) = busy_user(&s, "gus").await;
    let (_, key2) = busy_user(&s, "hal").await;
    let paths = [
        "/api/analytics",
        "/api/analytics?bucket=minute",
        "/api/analytics/series?bucket=minute",
        "/api/analytics/series?bucket=day",
    ];
    let mut before = Vec::new();
    for k in [&key, &key2, &ADMIN_KEY.to_string()] {
        for p in paths {
            before.push(ok(&s, k, p).await);
        }
    }
    let charged = charges(&s.ledger(&key).await) + charges(&s.ledger(&key2).await);
    s.stop().await;

    let s = TestServer::start_in(tmp.path(), |_| {});
    let mut after = Vec::new();
    for k in [&key, &key2, &ADMIN_KEY.to_string()] {
        for p in paths {
            after.push(ok(&s, k, p).await);
        }
    }
    for (b, a) in before.iter().zip(&after) {
        // A range that defaults to "now" may have moved on by a minute;
        // what it holds must not have changed.
        assert_eq!(b["providers"], a["providers"]);
        assert_eq!(b["total_cost"], a["total_cost"]);
        if let (Some(pb), Some(pa)) = (b["points"].as_array(), a["points"].as_array()) {
            assert_eq!(sum_series(&b["points"]), sum_series(&a["points"]));
            assert_eq!(pb.len(), pa.len());
        }
    }
    let everyone = ok(&s, ADMIN_KEY, "/api/analytics").await;
    assert_eq!(credits(&everyone["total_cost"]), charged);
    // And they keep counting after the restart.
    let (_, cost) = spend(&s, &key, json!({"model": "audio", "prompt": "again"})).await;
    let everyone = ok(&s, ADMIN_KEY, "/api/analytics").await;
    assert_eq!(credits(&everyone["total_cost"]), charged + cost);
    s.stop().await;
}
