//! `oneflow backup` while clients spend, and `oneflow restore`: the real
//! binary downloads a copy from a live server under load; the copy opens
//! with every ledger replaying to its balance and every balance equal to
//! the top-up minus the costs of the copy's own request records (ledger and
//! records from one instant); restored into a new directory, a server
//! there shows those balances and those records.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::json;

use oneflow::Credits;
use oneflow::records::RequestStatus;
use oneflow_actors::store::backup::audit_ledgers;
use oneflow_actors::store::{RedbStore, Store};

use crate::support::{ADMIN_KEY, TestServer};

const USERS: usize = 8;
const CLIENTS: usize = 32;
/// Each client's bound: the load stops by itself even if a backup hangs.
const PER_CLIENT: usize = 150;

fn oneflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oneflow"))
        .env_remove("ONEFLOW_URL")
        .env_remove("ONEFLOW_KEY")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Each user's balance and settled records' cost in a store, by user id.
fn money(store: &dyn Store) -> BTreeMap<String, (Credits, Credits, usize)> {
    let mut out: BTreeMap<String, (Credits, Credits, usize)> = BTreeMap::new();
    for u in store.users().unwrap() {
        let balance = store.wallet(&u.id).unwrap().map(|w| w.balance);
        out.insert(u.id, (balance.unwrap_or_default(), Credits::ZERO, 0));
    }
    store
        .each_request(None, 0, i64::MAX, &mut |r| {
            if r.status == RequestStatus::Succeeded {
                let e = out.entry(r.user_id.clone()).or_default();
                e.1 += r.cost;
                e.2 += 1;
            }
            Ok(true)
        })
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_made_under_load_opens_balanced_and_restores_into_a_new_directory() {
    let server = TestServer::start();
    let top_up: Credits = "100000".parse().unwrap();
    let mut keys = Vec::new();
    for i in 0..USERS {
        keys.push(server.user(&format!("backup{i}"), "100000").await.1);
    }
    let url = server.url.clone();

    // Clients spend until told to stop, each at most PER_CLIENT times.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for c in 0..CLIENTS {
        let (api, key) = (server.api.http.clone(), keys[c % USERS].clone());
        let (url, stop, done) = (url.clone(), stop.clone(), done.clone());
        load.push(tokio::spawn(async move {
            for n in 0..PER_CLIENT {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let res = api
                    .post(format!("{url}/api/request"))
                    .bearer_auth(&key)
                    .json(
                        &json!({"model": "gpt", "prompt": format!("c{c} n{n}"), "max_tokens": 10}),
                    )
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::OK);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the load get going, then back up twice while it runs.
    while done.load(Ordering::Relaxed) < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let backups = tempfile::tempdir().unwrap();
    let first = backups.path().join("first.redb");
    let second = backups.path().join("second.redb");
    for file in [&first, &second] {
        let (u, f) = (url.clone(), file.display().to_string());
        let o = tokio::task::spawn_blocking(move || {
            oneflow(&["--url", &u, "--key", ADMIN_KEY, "backup", &f])
        })
        .await
        .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("wallets replay to their balance"),
            "{}",
            text(&o)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let after = done.load(Ordering::Relaxed);

    // A backup never overwrites; a user's key may not make one.
    let o = oneflow(&[
        "--url",
        &url,
        "--key",
        ADMIN_KEY,
        "backup",
        &first.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let (st, v) = server.get(&keys[0], "/api/backup").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

    // The copies: balanced, and ledger and records from one instant.
    let mut seen = Vec::new();
    for file in [&first, &second] {
        let store = RedbStore::open(file).unwrap();
        let audited = audit_ledgers(&store).unwrap();
        assert!(audited.mismatches.is_empty(), "{:?}", audited.mismatches);
        // The admin's wallet and each user's.
        assert!(audited.wallets >= USERS as u64, "{audited:?}");
        let m = money(&store);
        let mut records = 0;
        for (user, (balance, cost, n)) in &m {
            if *n > 0 {
                assert_eq!(
                    *balance,
                    top_up - *cost,
                    "user {user} in {}",
                    file.display()
                );
            }
            records += n;
        }
        seen.push(records);
        drop(store);
    }
    // Taken while clients spent: not empty, and the later copy holds more.
    assert!(seen[0] > 0 && seen[0] <= seen[1], "{seen:?}");
    assert!(seen[1] <= after, "{seen:?} of {after}");

    // Restoring over a running broker's file is refused, its file untouched.
    let live = server.dir.display().to_string();
    let o = oneflow(&[
        "restore",
        &second.display().to_string(),
        "--data-dir",
        &live,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("stop it first"), "{}", text(&o));
    let (st, _) = server.get(&keys[0], "/api/status").await;
    assert_eq!(st, StatusCode::OK);
    server.stop().await;

    // Restored into a new directory, a broker there shows the copy.
    let expected = money(&RedbStore::open(&second).unwrap());
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().display().to_string();
    let o = oneflow(&["restore", &second.display().to_string(), "--data-dir", &dir]);
    assert!(o.status.success(), "{}", text(&o));
    // Restoring again keeps the file it replaces.
    let o = oneflow(&["restore", &first.display().to_string(), "--data-dir", &dir]);
    assert!(o.status.success(), "{}", text(&o));
    let kept: Vec<_> = std::fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("oneflow.redb.before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    std::fs::rename(
        target.path().join(&kept[0]),
        target.path().join("oneflow.redb"),
    )
    .unwrap();
    let restored = TestServer::start_in(target.path(), |_| {});
    for key in &keys {
        let (st, status) = restored.get(key, "/api/status").await;
        assert_eq!(st, StatusCode::OK, "{status}");
        let user = status["user_id"].as_str().unwrap().to_string();
        let (balance, _, n) = expected[&user];
        assert_eq!(
            crate::support::credits(&status["balance"]),
            balance,
            "{status}"
        );
        let history = crate::durability::history(&restored, key, 500).await;
        let completed = history
            .iter()
            .filter(|r| r.status == RequestStatus::Succeeded)
            .count();
        assert_eq!(completed, n, "user {user}");
    }
    restored.stop().await;
    assert_nothing_left_behind(Path::new(&dir));
}

/// The restored directory holds only the broker's file and the kept one:
/// no temporary file is left behind.
fn assert_nothing_left_behind(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "oneflow.redb" || n.starts_with("oneflow.redb.before-restore-")),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneflow_health_says_whether_the_broker_answers() {
    let server = TestServer::start();
    let url = server.url.clone();
    let o = tokio::task::spawn_blocking(move || oneflow(&["--url", &url, "health"]))
        .await
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let url = server.url.clone();
    server.stop().await;
    let o = tokio::task::spawn_blocking(move || oneflow(&["--url", &url, "health"]))
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
