//! Roles against routes: every operation of the OpenAPI document, called
//! with a credential of each role, answers as the table in `docs/auth.md`
//! says — 403 `forbidden` where the role lacks the operation's
//! `x-oneflow-permission`, something other than 401/403 where it has it —
//! and no operation is left without a permission.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN_KEY, TestServer};

/// docs/auth.md's roles table: role -> permission -> allowed.
fn table() -> BTreeMap<String, BTreeMap<String, bool>> {
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/auth.md"))
        .expect("docs/auth.md");
    let rows: Vec<Vec<String>> = md
        .lines()
        .skip_while(|l| !l.starts_with("| role |"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert!(rows.len() > 2, "docs/auth.md has no roles table");
    let head = &rows[0];
    rows[2..]
        .iter()
        .map(|r| {
            let cells = head[1..]
                .iter()
                .zip(&r[1..])
                .map(|(p, c)| {
                    assert!(c == "yes" || c == "no", "cell {c:?} in docs/auth.md");
                    (p.clone(), c == "yes")
                })
                .collect();
            (r[0].clone(), cells)
        })
        .collect()
}

#[tokio::test]
async fn every_documented_route_answers_each_role_as_the_table_says() {
    let table = table();
    let server = TestServer::start();
    let (_, member) = server.user("carol", "5").await;
    let mut keys: BTreeMap<&str, String> = BTreeMap::new();
    keys.insert("admin", ADMIN_KEY.into());
    keys.insert("member", member.clone());
    for role in ["viewer", "billing"] {
        let (s, v) = server
            .post(&member, "/api/keys", json!({"role": role}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["role"], role, "{v}");
        keys.insert(role, v["api_key"].as_str().unwrap().to_string());
    }
    let doc = server
        .http
        .get(format!("{}/api/openapi.json", server.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let need = op["x-oneflow-permission"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no x-oneflow-permission"));
            // Path parameters name nothing that exists: an allowed call
            // answers 404 or 400, a forbidden one 403 before looking.
            let url = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "none" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            for (role, key) in &keys {
                let allowed = table[*role][need];
                let mut rb = server
                    .http
                    .request(m.clone(), format!("{}{url}", server.url))
                    .bearer_auth(key);
                if m == Method::POST || m == Method::PUT {
                    // An empty object: a forbidden caller must be refused
                    // before the body is read, whatever it holds.
                    rb = rb.json(&json!({}));
                }
                let res = rb.send().await.unwrap();
                let status = res.status();
                let body = res.bytes().await.unwrap();
                if allowed {
                    assert!(
                        status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                        "{role} may {need}: {method} {path} answered {status}"
                    );
                } else {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{role} {method} {path}");
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let code = v["error"]["code"].as_str().or(v["error"]["type"].as_str());
                    assert!(
                        code.is_some_and(|c| c.contains("forbidden") || c == "permission_error"),
                        "{role} {method} {path}: {v}"
                    );
                    assert!(
                        op["responses"]["403"].is_object(),
                        "{method} {path} answers 403 and does not document it"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 4 * 40, "only {checked} calls were checked");
    server.stop().await;
}

#[tokio::test]
async fn a_viewer_cannot_spend_and_no_key_outranks_its_maker() {
    let server = TestServer::start();
    let (_, member) = server.user("dan", "5").await;
    let (s, v) = server
        .post(&member, "/api/keys", json!({"role": "viewer"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let viewer = v["api_key"].as_str().unwrap().to_string();
    let before = server.balance(&member).await;
    let ask = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});
    let (s, v) = server
        .post(&viewer, "/v1/chat/completions", ask.clone())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = server
        .post(
            &viewer,
            "/api/request",
            json!({"model": "gpt", "prompt": "hi"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        server.balance(&member).await,
        before,
        "nothing was held or charged"
    );
    // It still reads what its user may read.
    let (s, v) = server.get(&viewer, "/api/history/requests").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A member makes no admin key, a viewer no key at all, and nobody an
    // account key of a team role.
    for (key, role, want) in [
        (&member, "admin", StatusCode::FORBIDDEN),
        (&member, "team_admin", StatusCode::BAD_REQUEST),
        (&viewer, "viewer", StatusCode::FORBIDDEN),
    ] {
        let (s, v) = server.post(key, "/api/keys", json!({"role": role})).await;
        assert_eq!(s, want, "{role}: {v}");
    }
    let (s, v) = server
        .call(Method::GET, Some(&member), "/api/keys", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["keys"].as_array().unwrap().len(),
        2,
        "the refused keys were not made: {v}"
    );
    server.stop().await;
}
