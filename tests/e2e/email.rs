//! E-mailed usage reports against a real SMTP server (aiosmtpd, started by
//! `smtp_sink.py`, which parses what it takes with Python's own e-mail
//! parser): send-now's message carries the analytics' figures and the
//! export's CSV, a server that refuses, is down or never answers gets a
//! 502 in bounded time, and the scheduled task sends each user's report
//! once across runs, restarts and two nodes on one PostgreSQL store,
//! retrying one that failed.
//!
//! The schedule's due-computation (which day or week, from which hour) is
//! a pure function tested in `src/email.rs`: requests cannot be dated in
//! the past without going around the store, so the scheduled test here
//! sends yesterday's (empty, `send_empty = true`) report and the figures
//! are checked through send-now's explicit `from`/`to`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::email::{Period, Reports, TlsMode};
use oneflow::report::credits6;

use crate::support::{ADMIN_KEY, Api, TestServer, credits};

/// The test's SMTP server: a Python process, ended on drop.
pub(crate) struct Sink {
    child: Child,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    pub(crate) fn start(refuse: bool) -> Sink {
        let python = crate::tools::sdk_python();
        let check = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{} lacks aiosmtpd: run scripts/test.sh --setup-only",
            python.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let script = format!("{}/../tests/e2e/smtp_sink.py", env!("CARGO_MANIFEST_DIR"));
        let mut cmd = Command::new(python);
        cmd.arg(script).arg(dir.path());
        if refuse {
            cmd.arg("--refuse");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port: {line:?}"));
        Sink { child, port, dir }
    }

    /// The messages taken so far, in order.
    pub(crate) fn messages(&self) -> Vec<Value> {
        messages_in(self.dir.path())
    }
}

fn messages_in(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect()
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[email]` for the sink on `port`, over plain SMTP on loopback.
pub(crate) fn email_to(port: u16, c: &mut oneflow::config::Config) {
    c.email.smtp_host = Some("127.0.0.1".into());
    c.email.smtp_port = port;
    c.email.tls = TlsMode::None;
    c.email.from = Some("reports@oneflow.test".into());
    c.email.timeout_secs = 2;
}

/// The part of a message of this content type (and, if given, file name).
fn part<'a>(m: &'a Value, content_type: &str) -> &'a Value {
    m["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content_type"] == content_type)
        .unwrap_or_else(|| panic!("no {content_type} part: {m}"))
}

async fn text_of(api: &Api, path: &str) -> String {
    let res = api
        .http
        .get(format!("{}{path}", api.url))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

/// `(id, cost)` of each CSV row, by the header's columns.
fn csv_rows(csv: &str) -> Vec<(String, Credits)> {
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (id, cost) = (at("id"), at("cost"));
    lines
        .map(|l| {
            // The simulated providers' rows have no quoted cells.
            let f: Vec<&str> = l.split(',').collect();
            (f[id].to_string(), f[cost].parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn send_now_mails_the_figures_the_chart_and_the_export() {
    let sink = Sink::start(false);
    let port = sink.port;
    let s = TestServer::start_with(|c| email_to(port, c));
    let (uid, key) = s.user("ada", "100").await;
    for body in [
        json!({"model": "gpt", "prompt": "hello brave world", "max_tokens": 10}),
        json!({"model": "gpt", "prompt": "one two", "max_tokens": 10}),
        json!({"model": "image", "prompt": "a cat", "n": 2}),
    ] {
        let (st, v) = s.post(&key, "/api/request", body).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let now = oneflow_actors::ids::now_ms();
    let (from, to) = (now - 3_600_000, now + 3_600_000);
    let (st, sent) = s
        .post(
            &key,
            "/api/reports/send-now",
            json!({"from": from.to_string(), "to": to.to_string()}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{sent}");
    assert_eq!(sent["sent_to"], "ada@example.com");
    assert_eq!(sent["user_id"], uid.as_str());
    let period = Period::explicit(from, to).unwrap();
    assert_eq!(sent["from"], period.from);
    assert_eq!(sent["to"], period.to);

    let msgs = sink.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = &msgs[0];
    assert_eq!(m["rcpt_tos"], json!(["ada@example.com"]));
    assert_eq!(m["mail_from"], "reports@oneflow.test");
    assert!(
        m["headers"]["From"]
            .as_str()
            .unwrap()
            .contains("reports@oneflow.test")
    );
    assert!(
        m["headers"]["To"]
            .as_str()
            .unwrap()
            .contains("ada@example.com")
    );
    assert_eq!(m["headers"]["Message-ID"], sent["message_id"]);
    let subject = m["headers"]["Subject"].as_str().unwrap();
    assert!(subject.starts_with("OneFlow usage report: "), "{subject}");

    // The figures: the analytics of the same range, which equal the ledger.
    let range = format!("from={}&to={}&bucket=hour", period.from, period.to);
    let (_, a) = s.get(&key, &format!("/api/analytics?{range}")).await;
    let ledger: Credits = s.charges(&key).await.into_iter().sum();
    assert_eq!(credits(&a["total_cost"]), ledger);
    assert_eq!(credits(&sent["spend"]), ledger);
    // Lines end in CRLF on the wire.
    let text = part(m, "text/plain")["text"]
        .as_str()
        .unwrap()
        .replace("\r\n", "\n");
    assert!(
        text.contains(&format!("Spend: {} credits\n", credits6(ledger))),
        "{text}"
    );
    assert!(
        text.contains(&format!("Requests: {}\n", a["total_requests"])),
        "{text}"
    );
    assert!(
        text.contains(&format!("Successes: {}\n", a["total_successes"])),
        "{text}"
    );
    assert_eq!(a["total_requests"], 3);
    for (name, f) in a["providers"].as_object().unwrap() {
        let line = format!(
            "  {name}: {} credits, {} requests\n",
            credits6(credits(&f["cost"])),
            f["requests"]
        );
        assert!(text.contains(&line), "{line} in {text}");
    }
    let html = part(m, "text/html")["text"].as_str().unwrap();
    assert!(html.contains(&credits6(ledger)), "{html}");

    // The chart: an inline SVG part the HTML points at by its Content-ID.
    let chart = part(m, "image/svg+xml");
    assert_eq!(chart["content_id"], "<chart@oneflow>");
    assert_eq!(chart["disposition"], "inline");
    assert!(html.contains("src=\"cid:chart@oneflow\""));
    assert!(chart["text"].as_str().unwrap().starts_with("<svg"));
    // A bar an hour.
    let hours = ((period.to - period.from) / 3_600_000) as usize;
    assert_eq!(
        chart["text"].as_str().unwrap().matches("<title>").count(),
        hours
    );

    // The CSV: byte for byte the export of the same range, whose rows are
    // the history's requests with their costs.
    let csv = part(m, "text/csv");
    assert_eq!(csv["disposition"], "attachment");
    let name = csv["filename"].as_str().unwrap();
    assert!(
        name.starts_with(&format!("oneflow-{uid}-")) && name.ends_with(".csv"),
        "{name}"
    );
    let export = text_of(
        &s,
        &format!(
            "/api/export/requests?user_id={uid}&from={}&to={}",
            period.from, period.to
        ),
    )
    .await;
    assert_eq!(csv["text"].as_str().unwrap(), export);
    let mut rows = csv_rows(&export);
    let (_, h) = s.get(&key, "/api/history/requests?limit=100").await;
    let mut history: Vec<(String, Credits)> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), credits(&r["cost"])))
        .collect();
    rows.sort();
    history.sort();
    assert_eq!(rows, history);
    assert_eq!(rows.iter().map(|r| r.1).sum::<Credits>(), ledger);

    // An admin sends anyone's; a user only their own.
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/reports/send-now",
            json!({"period": "week", "user_id": uid}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["sent_to"], "ada@example.com");
    let (_, other) = s.user("bob", "1").await;
    let (st, v) = s
        .post(&other, "/api/reports/send-now", json!({"user_id": uid}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = s
        .post(
            &key,
            "/api/reports/send-now",
            json!({"period": "day", "from": "2026-01-01"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = s
        .post(&key, "/api/reports/send-now", json!({"period": "month"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(sink.messages().len(), 2);
    s.stop().await;

    // No [email]: a 409 that says so.
    let bare = TestServer::start();
    let (st, v) = bare
        .post(ADMIN_KEY, "/api/reports/send-now", json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "email_not_configured");
    bare.stop().await;
}

#[tokio::test]
async fn a_server_that_refuses_is_down_or_never_answers_gets_a_502() {
    let refusing = Sink::start(true);
    // Nothing listens on a port just let go.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Takes the connection and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            kept.push(c);
        }
    });
    for port in [refusing.port, down, silent_port] {
        let s = TestServer::start_with(|c| {
            email_to(port, c);
            c.email.timeout_secs = 1;
        });
        let (st, v) = s
            .post(ADMIN_KEY, "/api/reports/send-now", json!({"period": "day"}))
            .await;
        assert_eq!(st, StatusCode::BAD_GATEWAY, "port {port}: {v}");
        assert_eq!(v["error"]["code"], "email_failed");
        s.stop().await;
    }
    assert!(refusing.messages().is_empty());
    held.abort();
}

/// A scheduler task's figures from `/api/status`: (runs, failures).
pub(crate) async fn task_runs(api: &Api, task: &str) -> (u64, u64) {
    let (_, v) = api.get(ADMIN_KEY, "/api/status").await;
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == task)
        .map(|t| (t["runs"].as_u64().unwrap(), t["failures"].as_u64().unwrap()))
        .unwrap_or_else(|| panic!("no {task} task: {v}"))
}

/// Waits (polling, at most a minute) until `done` holds.
pub(crate) async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    for _ in 0..600 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn scheduled(port: u16, c: &mut oneflow::config::Config) {
    email_to(port, c);
    c.email.reports = Reports::Daily;
    c.email.send_hour_utc = 0;
    c.email.check_every_secs = 1;
    c.email.send_empty = true;
}

#[tokio::test]
async fn a_scheduled_report_goes_out_once_across_runs_and_restarts() {
    let data = tempfile::tempdir().unwrap();
    // First with a server that refuses: the run fails, nothing is marked
    // sent.
    let refusing = Sink::start(true);
    let port = refusing.port;
    let s = TestServer::start_in(data.path(), |c| scheduled(port, c));
    let (uid, _) = s.user("cy", "1").await;
    let (uid2, _) = s.user("di", "1").await;
    until("a failed run", || async {
        task_runs(&s, "email-reports").await.1 >= 1
    })
    .await;
    s.stop().await;
    assert!(refusing.messages().is_empty());

    // Then with one that takes them: both reports come (the failed one is
    // tried again), once each, however many runs and restarts follow.
    let sink = Sink::start(false);
    let port = sink.port;
    let s = TestServer::start_in(data.path(), |c| scheduled(port, c));
    until("two reports", || async { sink.messages().len() >= 2 }).await;
    let runs = task_runs(&s, "email-reports").await.0;
    until("three more runs", || async {
        task_runs(&s, "email-reports").await.0 >= runs + 3
    })
    .await;
    s.stop().await;
    let s = TestServer::start_in(data.path(), |c| scheduled(port, c));
    until("three runs after a restart", || async {
        task_runs(&s, "email-reports").await.0 >= 3
    })
    .await;
    s.stop().await;

    let yesterday = Period::previous_day(oneflow_actors::ids::now_ms());
    let msgs = sink.messages();
    let mut to: Vec<String> = msgs
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, ["cy@example.com", "di@example.com"], "{msgs:?}");
    for m in &msgs {
        let subject = m["headers"]["Subject"].as_str().unwrap();
        let day = &oneflow::time::rfc3339(yesterday.from)[..10];
        // A run just past midnight may have sent the day before's: the
        // test only knows the date at its end.
        assert!(subject.starts_with("OneFlow usage report: "), "{subject}");
        if !subject.ends_with(day) {
            eprintln!("report for another day than {day}: {subject}");
        }
        let text = part(m, "text/plain")["text"]
            .as_str()
            .unwrap()
            .replace("\r\n", "\n");
        assert!(text.contains("Spend: 0.000000 credits\n"), "{text}");
        assert!(text.contains("Requests: 0\n"), "{text}");
        let name = part(m, "text/csv")["filename"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(name.contains(&uid) || name.contains(&uid2), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_store_send_each_report_once() {
    let pg = crate::pg::PgSchema::new();
    let sink = Sink::start(false);
    let port = sink.port;
    let node = |name: &str| {
        TestServer::start_with(|c| {
            pg.apply(c, name);
            scheduled(port, c);
        })
    };
    let a = node("a");
    let b = node("b");
    let mut expected = Vec::new();
    for i in 0..6 {
        let name = format!("n{i}");
        a.user(&name, "1").await;
        expected.push(format!("{name}@example.com"));
    }
    until("six reports", || async { sink.messages().len() >= 6 }).await;
    // Both nodes run again, each finding every report claimed.
    let (ra, rb) = (
        task_runs(&a, "email-reports").await.0,
        task_runs(&b, "email-reports").await.0,
    );
    until("three more runs on each node", || async {
        task_runs(&a, "email-reports").await.0 >= ra + 3
            && task_runs(&b, "email-reports").await.0 >= rb + 3
    })
    .await;
    a.stop().await;
    b.stop().await;
    let mut to: Vec<String> = sink
        .messages()
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, expected);
}
