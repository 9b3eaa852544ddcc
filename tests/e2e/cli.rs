//! The `oneflow` binary as a client: the real executable against a real
//! server. `--json` output is parsed and checked against the API to the
//! micro-credit; tables carry the expected rows; errors exit non-zero with
//! a clear message; `oneflow shell` is driven through its stdin.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use oneflow::Credits;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{ADMIN_KEY, TestServer, credits};

/// A `oneflow` command with no ONEFLOW_* from the test's environment.
fn oneflow(url: &str, key: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oneflow"));
    c.env_remove("ONEFLOW_URL")
        .env_remove("ONEFLOW_KEY")
        .args(["--url", url, "--key", key])
        .stdin(Stdio::null());
    c
}

fn run(url: &str, key: &str, args: &[&str]) -> Output {
    oneflow(url, key).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs with `--json`, expects success, parses stdout.
fn json(url: &str, key: &str, args: &[&str]) -> Value {
    let o = run(url, key, &[&["--json"], args].concat());
    assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&o)))
}

/// Runs without `--json`, expects success, returns the table text.
fn table(url: &str, key: &str, args: &[&str]) -> String {
    let o = run(url, key, args);
    assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// Feeds `script` to `oneflow shell` on a pipe.
fn shell(url: &str, key: &str, json: bool, script: &str) -> Output {
    let mut cmd = oneflow(url, key);
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd
        .arg("shell")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn json_output_agrees_with_the_api_to_the_micro_credit() {
    let s = TestServer::start();
    let url = s.url.clone();

    let user = json(
        &url,
        ADMIN_KEY,
        &[
            "user",
            "create",
            "--name",
            "cleo",
            "--email",
            "cleo@example.com",
        ],
    );
    let id = user["id"].as_str().unwrap().to_string();
    let first_key = user["api_key"].as_str().unwrap().to_string();
    assert_eq!(credits(&user["balance"]), Credits::ZERO);

    let key = json(&url, ADMIN_KEY, &["key", "create", "--user", &id]);
    assert_eq!(key["user_id"], id.as_str());
    let k2 = key["api_key"].as_str().unwrap().to_string();
    assert_ne!(k2, first_key);

    let added = json(
        &url,
        ADMIN_KEY,
        &["credits", "add", &id, "123.456789", "--note", "cli"],
    );
    assert_eq!(credits(&added["added"]), Credits(123_456_789));
    assert_eq!(credits(&added["balance"]), Credits(123_456_789));

    let out = json(
        &url,
        &k2,
        &[
            "request",
            "--model",
            "gpt",
            "--max-tokens",
            "40",
            "hello",
            "from",
            "the",
            "cli",
        ],
    );
    assert_eq!(out["status"], "succeeded", "{out}");
    let cost = credits(&out["cost"]);
    assert!(cost > Credits::ZERO);
    let balance = Credits(123_456_789) - cost;
    assert_eq!(credits(&out["balance"]), balance);
    assert_eq!(s.balance(&first_key).await, balance);
    let ledger = s.ledger(&first_key).await;
    let charges: Vec<_> = ledger
        .iter()
        .filter(|e| e.kind == oneflow::ledger::EntryKind::Charge)
        .collect();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].amount, cost);
    assert_eq!(charges[0].request_id.as_deref(), out["request_id"].as_str());

    // History and analytics: the CLI's JSON is the API's JSON.
    let history = json(&url, &k2, &["history", "--limit", "10"]);
    let (st, api) = s.get(&first_key, "/api/history/requests?limit=10").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(history, api);
    assert_eq!(history["items"][0]["id"], out["request_id"]);
    assert_eq!(credits(&history["items"][0]["cost"]), cost);
    assert_eq!(history["items"][0]["prompt_preview"], "hello from the cli");

    let analytics = json(&url, &k2, &["analytics"]);
    let (st, api) = s.get(&first_key, "/api/analytics").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(analytics, api);
    assert_eq!(analytics["total_requests"], 1);
    assert_eq!(credits(&analytics["total_cost"]), cost);
    assert_eq!(credits(&analytics["providers"]["gpt"]["cost"]), cost);

    let tx = json(&url, &k2, &["history", "--transactions"]);
    let (st, api) = s
        .get(&first_key, "/api/history/transactions?limit=20")
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tx, api);
    assert_eq!(credits(&tx["items"][0]["balance_after"]), balance);

    // Tables carry the same figures, as the API wrote them.
    let users = table(&url, ADMIN_KEY, &["user", "list"]);
    let row = users.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        row.contains("cleo@example.com") && row.contains("member"),
        "{users}"
    );
    let rows = table(&url, &k2, &["history"]);
    let row = rows
        .lines()
        .find(|l| l.starts_with(out["request_id"].as_str().unwrap()))
        .unwrap_or_else(|| panic!("{rows}"));
    let cost_text = out["cost"].to_string();
    assert!(
        row.contains("succeeded") && row.contains(&cost_text) && row.contains("hello from the cli"),
        "{rows}"
    );
    let stats = table(&url, &k2, &["analytics"]);
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("gpt ") && l.contains(&cost_text)),
        "{stats}"
    );
    let status = table(&url, &k2, &["status"]);
    let balance_text = serde_json::to_value(balance).unwrap().to_string();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("balance") && l.ends_with(&balance_text)),
        "{status}"
    );

    // The same through ONEFLOW_URL and ONEFLOW_KEY instead of flags.
    let o = Command::new(env!("CARGO_BIN_EXE_oneflow"))
        .env("ONEFLOW_URL", &url)
        .env("ONEFLOW_KEY", &k2)
        .args(["status", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(credits(&v["balance"]), balance);

    // Revoked through the CLI: the key fails at once.
    let listed = json(&url, &k2, &["key", "list"]);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    let revoked = json(
        &url,
        &first_key,
        &["key", "revoke", key["id"].as_str().unwrap()],
    );
    assert_eq!(revoked["key"]["id"], key["id"]);
    let o = run(&url, &k2, &["status"]);
    assert_eq!(o.status.code(), Some(1));
}

#[tokio::test]
async fn errors_exit_non_zero_with_a_clear_message() {
    let s = TestServer::start();
    let url = s.url.clone();
    let (_, ann) = s.user("ann", "1").await;

    let o = run(&url, "of_wrong", &["history"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    let msg = stderr(&o);
    assert!(
        msg.contains("invalid API key") && msg.contains("401") && msg.contains("ONEFLOW_KEY"),
        "{msg}"
    );

    // --json also prints the broker's error body for scripts.
    let o = run(&url, &ann, &["--json", "user", "list"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["error"]["code"], "forbidden");
    assert!(stderr(&o).contains("administrators"), "{}", stderr(&o));

    // Refused for money: the reason, and nothing charged.
    let o = run(&url, &ann, &["request", "--model", "video", "a long film"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("insufficient_credits"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.balance(&ann).await, Credits(1_000_000));

    let o = run(&url, ADMIN_KEY, &["credits", "add", "nobody", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("user not found"), "{}", stderr(&o));
    let o = run(&url, ADMIN_KEY, &["credits", "add", "admin", "0.0000001"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("400"), "{}", stderr(&o));

    // Nothing listens on port 1; no key at all; a bad URL.
    let o = run("http://127.0.0.1:1", &ann, &["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach the broker"),
        "{}",
        stderr(&o)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_oneflow"))
        .env_remove("ONEFLOW_KEY")
        .args(["--url", &url, "status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no API key"), "{}", stderr(&o));
    let o = run("127.0.0.1:8080", &ann, &["status"]);
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test]
async fn the_shell_answers_commands_read_from_stdin() {
    let s = TestServer::start();
    let url = s.url.clone();

    // As the admin, on the admin's own wallet: one JSON answer a line.
    let script = "status\n\
                  add-credits 100.000001\n\
                  status\n\
                  request --model gpt --max-tokens 30 hello from the shell\n\
                  history --limit 5\n\
                  quit\n\
                  status\n";
    let o = shell(&url, ADMIN_KEY, true, script);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let answers: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(answers.len(), 5, "nothing runs after quit: {}", stdout(&o));
    let before = credits(&answers[0]["balance"]);
    assert_eq!(credits(&answers[1]["added"]), Credits(100_000_001));
    assert_eq!(
        credits(&answers[2]["balance"]),
        before + Credits(100_000_001)
    );
    let req = &answers[3];
    assert_eq!(req["status"], "succeeded", "{req}");
    let cost = credits(&req["cost"]);
    assert_eq!(answers[4]["items"][0]["id"], req["request_id"]);
    assert_eq!(credits(&answers[4]["items"][0]["cost"]), cost);
    let expected = before + Credits(100_000_001) - cost;
    assert_eq!(credits(&req["balance"]), expected);
    assert_eq!(s.balance(ADMIN_KEY).await, expected);

    // As a user, with tables; a bad line is reported and the session goes
    // on, and the exit status says a command failed.
    let (_, ann) = s.user("ann", "50").await;
    let script = "request --modality image a red fox\n\
                  \n\
                  history\n\
                  frobnicate\n\
                  add-credits 5\n\
                  status\n\
                  exit\n";
    let o = shell(&url, &ann, false, script);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("request").map(str::trim))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    assert!(id.starts_with("req_"), "{text}");
    let history_row = text
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        history_row.contains("image") && history_row.contains("a red fox"),
        "{text}"
    );
    let balance = s.balance(&ann).await;
    let balance_text = serde_json::to_value(balance).unwrap().to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("balance") && l.ends_with(&balance_text)),
        "{text}"
    );
    let errors = stderr(&o);
    assert!(errors.contains("frobnicate"), "{errors}");
    // No spinner when stderr is not a terminal.
    assert!(!errors.contains("waiting"), "{errors}");
    assert!(errors.contains("administrators"), "{errors}");

    // End of input ends the session like quit.
    let o = shell(&url, &ann, false, "status\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("providers up"), "{}", stdout(&o));
    let o = shell(&url, &ann, false, "help\nquit\n");
    assert!(o.status.success(), "{}", stderr(&o));
    for cmd in [
        "request",
        "history",
        "status",
        "analytics",
        "add-credits",
        "quit",
    ] {
        assert!(stdout(&o).contains(cmd), "{}", stdout(&o));
    }
}

/// Whether the `n`th `marker` (1-based) is on the screen with a prompt
/// after it: the answer is printed and the shell reads again.
fn answered(screen: &str, marker: &str, n: usize) -> bool {
    let Some((at, _)) = screen.match_indices(marker).nth(n - 1) else {
        return false;
    };
    screen[at..].contains("oneflow> ")
}

/// On a terminal (a pseudo-terminal from util-linux `script`): Tab
/// completes a command, the Up arrow recalls the last line, `quit` ends
/// the session with status 0. Each line is typed once the prompt is back,
/// as a person would: a line editor drops what is typed ahead of it.
#[tokio::test]
async fn the_shell_completes_and_recalls_lines_on_a_terminal() {
    use std::io::Read;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let s = TestServer::start();
    let (_, ann) = s.user("ann", "50").await;
    let bin = env!("CARGO_BIN_EXE_oneflow");
    let mut child = Command::new(crate::tools::script())
        .args(["-qec", &format!("{bin} shell"), "/dev/null"])
        .env("ONEFLOW_URL", &s.url)
        .env("ONEFLOW_KEY", &ann)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = out.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // A hang fails the test instead of stalling the run.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut screen = String::new();
    let mut wait = |done: &dyn Fn(&str) -> bool| -> String {
        while !done(&screen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => screen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("the shell stopped answering: {screen}"),
            }
        }
        screen.clone()
    };
    let mut typed = |text: &str| {
        keys.write_all(text.as_bytes()).unwrap();
        keys.flush().unwrap();
    };

    wait(&|s| s.contains("oneflow> "));
    typed("sta\t\r"); // Tab completes `status`
    wait(&|s| answered(s, "providers up", 1));
    typed("request --model gpt --max-tokens 20 hi from a tty\r");
    wait(&|s| answered(s, "status    succeeded", 1));
    typed("\x1b[A\r"); // Up: the request again
    wait(&|s| answered(s, "status    succeeded", 2));
    typed("quit\r");
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the shell did not quit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(keys);
    reader.join().unwrap();
    let screen = wait(&|_| true);
    assert!(status.success(), "{screen}");
    // On a terminal the request shows a spinner while it waits.
    assert!(screen.contains("waiting for the broker"), "{screen}");
    let (st, v) = s.get(&ann, "/api/history/requests").await;
    assert_eq!(st, StatusCode::OK);
    let prompts: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prompt_preview"].as_str().unwrap())
        .collect();
    assert_eq!(prompts, ["hi from a tty", "hi from a tty"], "{screen}");
}
