//! The OpenAPI document tells the truth: schemathesis reads
//! `/api/openapi.json` from the running server and drives every operation
//! with data the schema allows and data it forbids, with all its checks
//! (no 5xx, every status and header documented, answers match their
//! schemas, valid input taken, invalid input refused, undeclared methods
//! answered 405, auth not ignored, ...) and a fixed seed. Zero failures
//! are required, and the ledgers still balance afterwards.
//!
//! It runs with a user's key (what most callers see) and with the admin
//! key (the user administration and top-ups only an admin reaches). No
//! operation and no check is left out: rules no JSON Schema can say (a
//! range's `from` before its `to`) are answered 422, which the settings
//! file lists among the answers to valid data a server may give.

use std::process::Command;
use std::time::{Duration, Instant};

use oneflow_actors::store::{RedbStore, Store};

use crate::support::{ADMIN_KEY, TestServer, assert_ledger_balances};

/// Fixed, so that a failure reproduces; change it only with a reason.
const SEED: &str = "20260611";
/// Test cases per operation and phase: enough to reach every constraint,
/// few enough that both runs take well under a minute on two cores.
const MAX_EXAMPLES: &str = "25";
/// One run's limit: it takes well under a minute; past this it is stuck.
const LIMIT: Duration = Duration::from_secs(300);

/// The schemathesis command line for one run: everything in it is what the
/// report quotes as "the options used".
fn args(url: &str, key: &str) -> Vec<String> {
    [
        "-m",
        "schemathesis.cli",
        // Which statuses answer a schema-valid request the server cannot
        // serve now (402, 422): see the file for why each.
        "--config-file",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/e2e/schemathesis.toml"
        ),
        "run",
        &format!("{url}/api/openapi.json"),
        "--checks",
        "all",
        "--seed",
        SEED,
        "--max-examples",
        MAX_EXAMPLES,
        // One worker: the stateful phase's order, and so its outcome, is
        // the same every run.
        "--workers",
        "1",
        // No example database: a run never depends on what an earlier one
        // found, and writes nothing outside its temporary directory.
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
        "--header",
        &format!("Authorization: Bearer {key}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(python: &std::path::Path, url: &str, key: &str, who: &str) {
    let dir = tempfile::tempdir().unwrap();
    // Output to files, not pipes: a full pipe cannot stall the run, and
    // the files are read once it has ended.
    let (out_path, err_path) = (dir.path().join("out.txt"), dir.path().join("err.txt"));
    let started = Instant::now();
    let mut child = Command::new(python)
        .args(args(url, key))
        .current_dir(dir.path())
        // Only loopback: the server is on 127.0.0.1, and no proxy may
        // stand in between.
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // It stops by itself; should it hang, it is ended here, not left over.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("schemathesis with the {who} key ran over {LIMIT:?}:\n{stdout}\n{stderr}")
    });
    assert!(
        status.success(),
        "schemathesis with the {who} key failed ({status}):\n{stdout}\n{stderr}"
    );
    let summary: Vec<&str> = stdout.lines().rev().take(25).collect();
    println!(
        "schemathesis with the {who} key passed in {:?}:\n{}",
        started.elapsed(),
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// The schemathesis module of the test virtualenv's Python.
fn schemathesis_python() -> std::path::PathBuf {
    let python = crate::tools::sdk_python();
    let found = Command::new(&python)
        .args(["-c", "import schemathesis"])
        .output();
    match found {
        Ok(o) if o.status.success() => python,
        other => panic!(
            "{} cannot import schemathesis ({other:?}): run `{}`, which installs \
             scripts/test-requirements.txt in the virtualenv",
            python.display(),
            crate::tools::SETUP
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_and_the_ledgers_balance() {
    let python = schemathesis_python();
    let s = TestServer::start_with(|c| {
        // `ignored_auth` sends wrong keys on purpose; at the default 20 a
        // minute the throttle would then answer everything from 127.0.0.1
        // with 429 and the rest of the run would test nothing. The
        // throttle itself is tested in tests/e2e/auth.rs.
        c.server.auth_failures_per_minute = 1_000_000;
    });
    let (_, key) = s.user("schemathesis", "1000000").await;
    // The runs below may revoke this key (and any other): the checks at
    // the end read the store.

    for (who, k) in [("user", key.clone()), ("admin", ADMIN_KEY.to_string())] {
        let (python, url) = (python.clone(), s.url.clone());
        tokio::task::spawn_blocking(move || run(&python, &url, &k, who))
            .await
            .unwrap();
    }

    // Whatever was requested, charged, refunded or topped up (and whatever
    // keys the runs revoked), every wallet in the store, the ones the
    // fuzzer made too, still adds up: its ledger replays to its balance and
    // no hold is left open.
    let dir = s.stop().await.expect("the server's own directory");
    let store = RedbStore::open(&dir.path().join("oneflow.redb")).unwrap();
    assert!(
        store.open_holds().unwrap().is_empty(),
        "a hold was left open"
    );
    let users = store.users().unwrap();
    assert!(users.len() >= 2, "{users:?}");
    for u in users {
        let Some(wallet) = store.wallet(&u.id).unwrap() else {
            continue;
        };
        let mut entries = Vec::new();
        let mut before = None;
        loop {
            let page = store.transactions_page(&u.id, before, 1000).unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.seq);
            entries.extend(page);
        }
        entries.reverse();
        assert_ledger_balances(&entries, wallet.balance);
    }
}
