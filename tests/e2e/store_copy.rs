//! `oneflow export-store`: a single node's redb file, 10,000 requests
//! deep, copied into PostgreSQL by the real binary; a node started on
//! PostgreSQL then shows the same balances, history and analytics.

use std::process::Command;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::pg::PgSchema;
use crate::support::{ADMIN_KEY, Api, TestServer};

const REQUESTS: usize = 10_000;
const USERS: usize = 4;

/// Everything a user can see of their money and their requests.
async fn figures(api: &Api, key: &str) -> (Value, Vec<oneflow::records::RequestRecord>, Value) {
    let (st, status) = api.get(key, "/api/status").await;
    assert_eq!(st, StatusCode::OK, "{status}");
    let wallet = json!({
        "balance": status["balance"],
        "available": status["available"],
        "held": status["held"],
    });
    let history = crate::durability::history(api, key, 1000).await;
    let (st, analytics) = api.get(key, "/api/analytics").await;
    assert_eq!(st, StatusCode::OK, "{analytics}");
    (wallet, history, analytics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_on_postgres_shows_what_the_exported_redb_file_held() {
    crate::support::avoid_midnight().await;
    let pg = PgSchema::new();
    let single = TestServer::start();
    let mut keys = Vec::new();
    for i in 0..USERS {
        keys.push(single.user(&format!("copy{i}"), "1000000").await.1);
    }
    let models = ["audio", "gpt", "image"];
    for chunk in (0..REQUESTS).collect::<Vec<_>>().chunks(100) {
        let futs = chunk.iter().map(|&i| {
            let mut body = json!({"model": models[i % 3], "prompt": format!("request {i}")});
            if i % 3 == 1 {
                body["max_tokens"] = json!(1 + i % 7);
            }
            single.post(&keys[i % USERS], "/api/request", body)
        });
        for (st, v) in join_all(futs).await {
            assert_eq!(st, StatusCode::OK, "{v}");
        }
    }
    let mut before = Vec::new();
    for key in &keys {
        before.push(figures(&single, key).await);
    }
    let (_, admin_analytics) = single.get(ADMIN_KEY, "/api/analytics").await;
    let tmp = single.stop().await.unwrap();

    // The schema first, by hand (a start would make it too); a second
    // migrate has nothing to do.
    let (ok, said) = oneflow(&["migrate"], tmp.path(), &pg).await;
    assert!(ok && said.contains("applied schema versions 1"), "{said}");
    let (ok, said) = oneflow(&["migrate"], tmp.path(), &pg).await;
    assert!(ok && said.contains("no migration applied"), "{said}");
    let dir = tmp.path().to_str().unwrap();
    let (ok, said) = oneflow(&["export-store", "--data-dir", dir], tmp.path(), &pg).await;
    assert!(ok, "export-store failed: {said}");
    // Into a store that is not empty, never.
    let (ok, said) = oneflow(&["export-store", "--data-dir", dir], tmp.path(), &pg).await;
    assert!(!ok, "a second export went into a filled store: {said}");

    let node = TestServer::start_with(|c| pg.apply(c, "after"));
    for (key, was) in keys.iter().zip(&before) {
        let now = figures(&node, key).await;
        assert_eq!(now.0, was.0, "the wallet");
        assert_eq!(now.1.len(), REQUESTS / USERS);
        assert!(now.1 == was.1, "the history differs");
        assert_eq!(now.2, was.2, "the analytics");
    }
    let (_, copied) = node.get(ADMIN_KEY, "/api/analytics").await;
    assert_eq!(copied, admin_analytics);
    // The copy is a live ledger: it takes new requests.
    let (st, v) = node
        .post(
            &keys[0],
            "/api/request",
            json!({"model": "audio", "prompt": "after"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut after_pg = Vec::new();
    for key in &keys {
        after_pg.push(figures(&node, key).await);
    }
    node.stop().await;

    // And back: PostgreSQL into a new redb file, which a single node reads
    // as the PostgreSQL node left it.
    let back = tempfile::tempdir().unwrap();
    let dir = back.path().to_str().unwrap();
    let (ok, said) = oneflow(&["import-store", "--data-dir", dir], back.path(), &pg).await;
    assert!(ok, "import-store failed: {said}");
    let single = TestServer::start_in(back.path(), |_| {});
    for (key, was) in keys.iter().zip(&after_pg) {
        let now = figures(&single, key).await;
        assert_eq!(now.0, was.0, "the wallet");
        assert!(now.1 == was.1, "the history differs");
        assert_eq!(now.2, was.2, "the analytics");
    }
    single.stop().await;
}

/// Runs the binary with `args` on `pg`'s schema: whether it succeeded, and
/// what it said.
async fn oneflow(args: &[&str], dir: &std::path::Path, pg: &PgSchema) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oneflow"));
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ONEFLOW__") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(pg.env("copy"));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}
