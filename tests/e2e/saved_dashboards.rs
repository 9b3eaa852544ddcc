//! Saved dashboards (`/api/dashboards`): a dashboard comes back exactly as
//! it was saved; each panel's data equals what `GET /api/analytics/groups`
//! answers for the same query, after real requests through two real test
//! upstreams and two keys, and the groups equal the request records; the
//! CSV holds the same values; a team's dashboards follow the team's roles;
//! bad input is refused with the field named, and nothing changes.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::ProviderKind;
use oneflow::pricing::Modality;

use crate::providers::provider;
use crate::support::{ADMIN_KEY, TestServer, credits};
use crate::upstream::{Kind, MockUpstream};

/// Two providers on two mock OpenAI upstreams, one model each.
pub fn two_upstreams() -> (MockUpstream, MockUpstream, TestServer) {
    let a = MockUpstream::start(Kind::OpenAi);
    let b = MockUpstream::start(Kind::OpenAi);
    let pa = provider(
        "oai",
        ProviderKind::Openai,
        Modality::Text,
        &a,
        &["mock-chat"],
    );
    let pb = provider(
        "oai2",
        ProviderKind::Openai,
        Modality::Text,
        &b,
        &["mock-mini"],
    );
    let s = TestServer::start_with(move |c| c.providers = vec![pa, pb]);
    (a, b, s)
}

pub async fn chat(s: &TestServer, key: &str, model: &str, prompt: &str) {
    let (st, v) = s
        .post(
            key,
            "/v1/chat/completions",
            json!({"model": model, "messages": [{"role": "user", "content": prompt}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn put(s: &TestServer, key: &str, path: &str, body: &Value) -> (StatusCode, Value) {
    s.call(Method::PUT, Some(key), path, Some(body)).await
}

/// DELETE; its status (a 204 has no body to read).
async fn del(s: &TestServer, key: &str, path: &str) -> StatusCode {
    s.http
        .delete(format!("{}{path}", s.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
}

/// Every request of `key`'s wallet (`user_id` for a team), from history.
async fn records(s: &TestServer, key: &str, user_id: Option<&str>) -> Vec<Value> {
    let q = user_id.map(|u| format!("&user_id={u}")).unwrap_or_default();
    let (st, v) = s
        .get(key, &format!("/api/history/requests?limit=100{q}"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["items"].as_array().unwrap().clone()
}

/// Checks panel `i` of dashboard `name` against the analytics API asked
/// the same query, and returns the panel's data.
pub async fn panel_equals_analytics(
    s: &TestServer,
    key: &str,
    name: &str,
    i: usize,
    owner: Option<&str>,
) -> Value {
    let q = owner.map(|u| format!("?user_id={u}")).unwrap_or_default();
    let (st, p) = s
        .get(key, &format!("/api/dashboards/{name}/panels/{i}{q}"))
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let user = owner.map(|u| format!("&user_id={u}")).unwrap_or_default();
    let (st, a) = s
        .get(
            key,
            &format!(
                "/api/analytics/groups?group_by={}&from={}&to={}&bucket={}{user}",
                p["group_by"].as_str().unwrap(),
                p["from"],
                p["to"],
                p["bucket"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    assert_eq!(a["from"], p["from"]);
    assert_eq!(a["to"], p["to"]);
    let metric = p["metric"].as_str().unwrap();
    let (pg, ag) = (
        p["groups"].as_array().unwrap(),
        a["groups"].as_array().unwrap(),
    );
    assert_eq!(pg.len(), ag.len(), "{p}\n{a}");
    assert!(!pg.is_empty(), "the panel shows the requests: {p}");
    for (pg, ag) in pg.iter().zip(ag) {
        assert_eq!(pg["group"], ag["group"]);
        assert_eq!(
            pg["total"], ag["totals"][metric],
            "{metric} of {}",
            pg["group"]
        );
        let (pp, ap) = (
            pg["points"].as_array().unwrap(),
            ag["points"].as_array().unwrap(),
        );
        assert_eq!(pp.len(), ap.len());
        for (pp, ap) in pp.iter().zip(ap) {
            assert_eq!(pp["start"], ap["start"]);
            assert_eq!(pp["value"], ap[metric], "{metric} at {}", pp["start"]);
        }
    }
    p
}

/// The panel's groups' totals by group name.
fn totals(p: &Value) -> BTreeMap<String, Value> {
    p["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["group"].as_str().unwrap().to_string(), g["total"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saved_dashboard_comes_back_the_same_and_its_panels_equal_the_analytics_api() {
    let (_a, _b, s) = two_upstreams();
    let (user_id, key1) = s.user("dana", "100").await;
    let (st, k) = s.post(&key1, "/api/keys", json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    let key2 = k["api_key"].as_str().unwrap().to_string();
    let key2_id = k["id"].as_str().unwrap().to_string();
    for i in 0..3 {
        chat(&s, &key1, "mock-chat", &format!("first key asks {i}")).await;
    }
    for i in 0..2 {
        chat(
            &s,
            &key2,
            "mock-mini",
            &format!("second key asks a longer thing {i}"),
        )
        .await;
    }
    chat(&s, &key2, "mock-chat", "second key on the first model").await;

    // Saved, then read back exactly as it was written.
    const DAY: i64 = 86_400_000;
    let now = oneflow_actors::ids::now_ms();
    let body = json!({
        "title": "Spend and speed",
        "panels": [
            {"title": "Cost by model", "metric": "cost", "group_by": "model", "window": "24h", "chart": "bar"},
            {"metric": "requests", "group_by": "key", "window": "7d", "bucket": "day", "chart": "line"},
            {"metric": "input_tokens", "group_by": "provider", "window": "1h", "chart": "table"},
            {"metric": "latency_p95_ms", "group_by": "member", "window": "range",
             "from": now - 5 * DAY, "to": now + DAY, "bucket": "day", "chart": "area"},
        ]
    });
    let (st, saved) = put(&s, &key1, "/api/dashboards/spend", &body).await;
    assert_eq!(st, StatusCode::CREATED, "{saved}");
    let (st, got) = s.get(&key1, "/api/dashboards/spend").await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got, saved);
    assert_eq!(got["title"], body["title"]);
    assert_eq!(got["panels"], body["panels"]);
    assert_eq!(got["name"], "spend");
    assert_eq!(got["user_id"], user_id.as_str());
    let (st, list) = s.get(&key1, "/api/dashboards").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["dashboards"], json!([got]));

    // Each panel equals the analytics API's answer to the same query ...
    let by_model = panel_equals_analytics(&s, &key1, "spend", 0, None).await;
    let by_key = panel_equals_analytics(&s, &key1, "spend", 1, None).await;
    let by_provider = panel_equals_analytics(&s, &key1, "spend", 2, None).await;
    let by_member = panel_equals_analytics(&s, &key1, "spend", 3, None).await;

    // ... and the records: cost per model, requests per key, the rollups'
    // per-provider figures, one member.
    let recs = records(&s, &key1, None).await;
    assert_eq!(recs.len(), 6);
    let mut cost: BTreeMap<String, Credits> = BTreeMap::new();
    for r in &recs {
        *cost.entry(r["model"].as_str().unwrap().into()).or_default() += credits(&r["cost"]);
    }
    let model_totals = totals(&by_model);
    assert_eq!(model_totals.len(), 2);
    for (m, c) in &cost {
        assert_eq!(credits(&model_totals[m]), *c, "cost of {m}");
    }
    let (_, keys) = s.get(&key1, "/api/keys").await;
    let key1_id = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .find(|id| *id != key2_id)
        .unwrap();
    assert_eq!(
        totals(&by_key),
        BTreeMap::from([(key1_id.clone(), json!(3)), (key2_id.clone(), json!(3))])
    );
    for r in &recs {
        let id = r["key_id"].as_str().unwrap();
        assert!(id == key1_id || id == key2_id, "{r}");
    }
    let (_, summary) = s.get(&key1, "/api/analytics?bucket=hour").await;
    let t = totals(&by_provider);
    for p in ["oai", "oai2"] {
        assert_eq!(t[p], summary["providers"][p]["input_tokens"], "{p}");
    }
    assert_eq!(
        totals(&by_member).keys().collect::<Vec<_>>(),
        vec![&user_id]
    );

    // CSV: a header, then one row per group and bucket, the same values.
    let res = s
        .http
        .get(format!(
            "{}/api/dashboards/spend/panels/0?format=csv",
            s.url
        ))
        .bearer_auth(&key1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "start,time,group,cost");
    let mut rows = 1;
    for g in by_model["groups"].as_array().unwrap() {
        for p in g["points"].as_array().unwrap() {
            let cells: Vec<&str> = lines[rows].split(',').collect();
            assert_eq!(cells[0], p["start"].to_string());
            assert_eq!(cells[2], g["group"].as_str().unwrap());
            assert_eq!(cells[3], p["value"].to_string());
            rows += 1;
        }
    }
    assert_eq!(lines.len(), rows);
    let by_accept = s
        .http
        .get(format!("{}/api/dashboards/spend/panels/0", s.url))
        .bearer_auth(&key1)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(by_accept, csv);

    // Replaced: 200, and read back as replaced.
    let mut changed = body.clone();
    changed["title"] = json!("Spend only");
    changed["panels"] = json!([body["panels"][0]]);
    let (st, v) = put(&s, &key1, "/api/dashboards/spend", &changed).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, got) = s.get(&key1, "/api/dashboards/spend").await;
    assert_eq!(got["panels"], changed["panels"]);
    assert_eq!(got["title"], "Spend only");

    // Bad input: 4xx naming the field; the dashboard stays as it was.
    for (field, value) in [
        ("metric", "profit"),
        ("group_by", "colour"),
        ("window", "2w"),
        ("chart", "pie"),
        ("bucket", "week"),
    ] {
        let mut bad = changed.clone();
        bad["panels"][0][field] = json!(value);
        let (st, v) = put(&s, &key1, "/api/dashboards/spend", &bad).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&format!("panels[0].{field}")), "{msg}");
    }
    let mut too_many = changed.clone();
    too_many["panels"] = json!(vec![body["panels"][0].clone(); 17]);
    let mut no_range = changed.clone();
    no_range["panels"][0]["window"] = json!("range");
    let mut minutes = changed.clone();
    minutes["panels"][0]["window"] = json!("30d");
    minutes["panels"][0]["bucket"] = json!("minute");
    for bad in [
        too_many,
        no_range,
        minutes,
        json!({"title": "", "panels": []}),
    ] {
        let (st, v) = put(&s, &key1, "/api/dashboards/spend", &bad).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    let (st, v) = put(&s, &key1, "/api/dashboards/spend", &json!({"title": 5})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    for name in ["Spend", "a%20b", "-x", &"n".repeat(65)] {
        let (st, v) = put(&s, &key1, &format!("/api/dashboards/{name}"), &changed).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {v}");
    }
    let (_, after) = s.get(&key1, "/api/dashboards").await;
    assert_eq!(after["dashboards"], json!([got]), "nothing changed");

    // Bounded: 50 dashboards, then 409, and the 51st is not stored.
    for i in 1..50 {
        let (st, v) = put(&s, &key1, &format!("/api/dashboards/d{i}"), &changed).await;
        assert_eq!(st, StatusCode::CREATED, "{i}: {v}");
    }
    let (st, v) = put(&s, &key1, "/api/dashboards/one-more", &changed).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, _) = s.get(&key1, "/api/dashboards/one-more").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Another user sees none of them; a panel that is not there is 404.
    let (_, other) = s.user("otto", "0").await;
    let (_, v) = s.get(&other, "/api/dashboards").await;
    assert_eq!(v["dashboards"], json!([]));
    let (st, _) = s.get(&other, "/api/dashboards/spend").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.get(&key1, "/api/dashboards/spend/panels/1").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Deleted: gone, and deleting again is 404.
    let st = del(&s, &key1, "/api/dashboards/spend").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.get(&key1, "/api/dashboards/spend").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let st = del(&s, &key1, "/api/dashboards/spend").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_teams_dashboards_are_written_by_its_admins_and_read_by_its_readers() {
    let (_a, _b, s) = two_upstreams();
    let (_, admin) = s.user("ada", "0").await;
    let (member_id, member) = s.user("mel", "0").await;
    let (viewer_id, viewer) = s.user("vic", "0").await;
    let (_, outsider) = s.user("oz", "0").await;
    let (st, t) = s.post(&admin, "/api/teams", json!({"name": "lab"})).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let team = t["id"].as_str().unwrap().to_string();
    for (user, role) in [(&member_id, "member"), (&viewer_id, "viewer")] {
        let (st, v) = put(
            &s,
            &admin,
            &format!("/api/teams/{team}/members/{user}"),
            &json!({"role": role}),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": team, "amount": "100"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(&member, &format!("/api/teams/{team}/keys"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let team_key = v["api_key"].as_str().unwrap().to_string();
    chat(&s, &team_key, "mock-chat", "for the team").await;
    chat(&s, &team_key, "mock-mini", "for the team again").await;

    let body = json!({"title": "Lab", "panels": [
        {"metric": "cost", "group_by": "member", "window": "24h", "chart": "bar"},
        {"metric": "requests", "group_by": "model", "window": "24h", "chart": "table"},
    ]});
    let path = format!("/api/dashboards/lab?user_id={team}");
    // Only the team's admin writes it.
    for (who, want) in [
        (&viewer, StatusCode::FORBIDDEN),
        (&member, StatusCode::FORBIDDEN),
        (&outsider, StatusCode::NOT_FOUND),
    ] {
        let (st, v) = put(&s, who, &path, &body).await;
        assert_eq!(st, want, "{v}");
    }
    let (st, saved) = put(&s, &admin, &path, &body).await;
    assert_eq!(st, StatusCode::CREATED, "{saved}");
    assert_eq!(saved["user_id"], team.as_str());

    // Its readers read it, and its panels, equal to the team's analytics.
    for who in [&admin, &viewer] {
        let (st, got) = s.get(who, &path).await;
        assert_eq!(st, StatusCode::OK, "{got}");
        assert_eq!(got, saved);
        let p = panel_equals_analytics(&s, who, "lab", 0, Some(&team)).await;
        let recs = records(&s, who, Some(&team)).await;
        let spent: Credits = recs.iter().map(|r| credits(&r["cost"])).sum();
        assert_eq!(
            totals(&p)
                .into_iter()
                .map(|(g, c)| (g, credits(&c)))
                .collect::<Vec<_>>(),
            vec![(member_id.clone(), spent)]
        );
        panel_equals_analytics(&s, who, "lab", 1, Some(&team)).await;
    }
    // A plain member: 403; an outsider learns nothing (404).
    for (who, want) in [
        (&member, StatusCode::FORBIDDEN),
        (&outsider, StatusCode::NOT_FOUND),
    ] {
        for p in [
            path.clone(),
            format!("/api/dashboards?user_id={team}"),
            format!("/api/dashboards/lab/panels/0?user_id={team}"),
        ] {
            let (st, v) = s.get(who, &p).await;
            assert_eq!(st, want, "{p}: {v}");
        }
        let st = del(&s, who, &path).await;
        assert_eq!(st, want);
    }
    let st = del(&s, &viewer, &path).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The team's are not the admin's own.
    let (_, own) = s.get(&admin, "/api/dashboards").await;
    assert_eq!(own["dashboards"], json!([]));
    // Bad input from the admin changes nothing.
    let mut bad = body.clone();
    bad["panels"][1]["metric"] = json!("mood");
    let (st, v) = put(&s, &admin, &path, &bad).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (_, got) = s.get(&viewer, &path).await;
    assert_eq!(got, saved);
    let st = del(&s, &admin, &path).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.get(&viewer, &path).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgresql_a_dashboard_saved_through_one_node_is_read_through_another() {
    let pg = crate::pg::PgSchema::new();
    let up = MockUpstream::start(Kind::OpenAi);
    let p = provider(
        "oai",
        ProviderKind::Openai,
        Modality::Text,
        &up,
        &["mock-chat"],
    );
    let p2 = p.clone();
    let one = TestServer::start_with(|c| {
        c.providers = vec![p];
        pg.apply(c, "one");
    });
    let two = TestServer::start_with(|c| {
        c.providers = vec![p2];
        pg.apply(c, "two");
    });
    let (_, key) = one.user("pat", "100").await;
    chat(&one, &key, "mock-chat", "through the first node").await;
    chat(&two, &key, "mock-chat", "through the second node").await;
    let body = json!({"title": "Keys", "panels": [
        {"metric": "requests", "group_by": "key", "window": "24h", "chart": "bar"},
    ]});
    let (st, saved) = put(&one, &key, "/api/dashboards/keys", &body).await;
    assert_eq!(st, StatusCode::CREATED, "{saved}");
    let (st, got) = two.get(&key, "/api/dashboards/keys").await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got, saved);
    let p = panel_equals_analytics(&two, &key, "keys", 0, None).await;
    let (_, keys) = two.get(&key, "/api/keys").await;
    let id = keys["keys"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(totals(&p), BTreeMap::from([(id, json!(2))]));
    assert_eq!(
        del(&two, &key, "/api/dashboards/keys").await,
        StatusCode::NO_CONTENT
    );
    let (st, _) = one.get(&key, "/api/dashboards/keys").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
