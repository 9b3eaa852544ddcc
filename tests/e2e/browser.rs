//! The dashboard in a real browser: Debian's `chromium`, headless, driven
//! through `chromedriver` (WebDriver) on a loopback port.
//!
//! A person signs in with a user key, sends a request through the form, and
//! sees the balance fall by exactly what the ledger charged, the request in
//! the history table and the charts drawn with data. A screenshot is saved
//! under `<target>/browser-artifacts/` and its path printed as
//! `screenshot: <path>`. The browser may reach nothing but 127.0.0.1.
//!
//! Without chromium or chromedriver the test fails and names
//! `scripts/test.sh`, which installs them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use oneflow::Credits;

use crate::support::{ADMIN_KEY, TestServer};

/// How often and how long to poll the page for something to appear.
const POLL: Duration = Duration::from_millis(100);
const POLLS: usize = 300;

/// Where screenshots go: `<target>/browser-artifacts`, the target directory
/// taken from `CARGO_TARGET_DIR` or from where this test binary lives
/// (`<target>/<profile>/deps/e2e-*`).
fn artifacts_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        Some(t) => {
            let t = PathBuf::from(t);
            if t.is_absolute() {
                t
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(t)
            }
        }
        None => {
            let exe = std::env::current_exe().unwrap();
            exe.ancestors()
                .nth(3)
                .map(Path::to_path_buf)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        }
    };
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// The chromedriver this test started. The scenario closes its session
/// (which quits chromium) before the driver is dropped; dropping kills
/// chromedriver itself, by its own pid only.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(chromedriver: &Path, log: &Path) -> Driver {
        // A free loopback port: bind, read, release.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        Driver { child, port }
    }

    async fn wait_ready(&self) {
        for _ in 0..POLLS {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("chromedriver did not listen on 127.0.0.1:{}", self.port);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// Polls `expr` (a JavaScript expression) until it is truthy; returns it.
async fn wait_js(c: &Client, expr: &str, what: &str) -> Value {
    let script = format!("return ({expr});");
    let mut last = Value::Null;
    for _ in 0..POLLS {
        last = js(c, &script).await;
        let done = match &last {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        };
        if done {
            return last;
        }
        tokio::time::sleep(POLL).await;
    }
    let page = js(c, "return document.body.innerText.slice(0, 3000);").await;
    panic!("waited in vain for {what} (`{expr}`, last {last}); page:\n{page}");
}

async fn text_of(c: &Client, id: &str) -> String {
    js(
        c,
        &format!("return document.getElementById('{id}').textContent;"),
    )
    .await
    .as_str()
    .unwrap()
    .to_string()
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = artifacts_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_sends_a_request_and_sees_it_charged() {
    let chromium = crate::tools::chromium();
    let chromedriver = crate::tools::chromedriver();

    // The server and a user with a balance that is not a whole number.
    let s = TestServer::start();
    let (uid, key) = s.user("dana", "100").await;
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": uid, "amount": "0.123457"}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    let start_balance = s.balance(&key).await;
    assert_eq!(start_balance, Credits::parse("100.123457").unwrap());

    let tmp = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver, &tmp.path().join("chromedriver.log"));
    driver.wait_ready().await;
    let profile = tmp.path().join("profile");
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--metrics-recording-only",
                // Belt and braces: no host but loopback resolves at all.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--window-size=1280,2400",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let c = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap();

    let result = drive(&c, &s, &uid, &key, start_balance).await;
    let _ = c.close().await;
    drop(driver);
    result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    s.stop().await;
}

type Outcome = Result<(), Box<dyn std::any::Any + Send>>;

/// The scenario itself; a panic is caught so the browser is closed first.
async fn drive(c: &Client, s: &TestServer, uid: &str, key: &str, start: Credits) -> Outcome {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(scenario(c, s, uid, key, start))
        .catch_unwind()
        .await
}

async fn scenario(c: &Client, s: &TestServer, uid: &str, key: &str, start: Credits) {
    c.goto(&format!("{}/", s.url)).await.unwrap();
    type_into(c, "#key", key).await;
    c.find(Locator::Css("#signin-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Signed in: the balance shows, exactly as the ledger has it.
    let shown = wait_js(
        c,
        "document.getElementById('balance').textContent",
        "the balance",
    )
    .await;
    assert_eq!(shown, json!("100.123457"));
    assert_eq!(text_of(c, "who").await, format!("{uid} (member)"));
    // Providers are listed with their health.
    wait_js(
        c,
        "document.querySelector('#providers-table tr[data-provider=\"gpt\"]')",
        "the gpt provider row",
    )
    .await;

    // The form: a text request. The quote shows first and matches the API's.
    wait_js(
        c,
        "document.getElementById('model').value",
        "a default model",
    )
    .await;
    type_into(c, "#model", "gpt").await;
    type_into(c, "#prompt", "hello from the dashboard browser test").await;
    type_into(c, "#max_tokens", "40").await;
    c.find(Locator::Css("#quote-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let quoted = wait_js(
        c,
        "document.getElementById('quote-amount') && document.getElementById('quote-amount').textContent",
        "the quote",
    )
    .await;
    let body = json!({"model": "gpt", "prompt": "hello from the dashboard browser test", "max_tokens": 40});
    let (st, q) = s.post(key, "/api/quote", body).await;
    assert_eq!(st, reqwest::StatusCode::OK, "{q}");
    assert_eq!(quoted, json!(format!("{} credits", q["quote"])));

    c.find(Locator::Css("#send-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let rid = wait_js(
        c,
        "document.getElementById('answer-out').dataset.requestId",
        "the answer",
    )
    .await;
    let rid = rid.as_str().unwrap().to_string();
    assert_eq!(text_of(c, "answer-status").await, "succeeded");
    assert!(!text_of(c, "answer-text").await.is_empty());

    // The ledger's charge for this request is what the page says it cost...
    let ledger = s.ledger(key).await;
    let charge = ledger
        .iter()
        .find(|e| {
            e.kind == oneflow::ledger::EntryKind::Charge && e.request_id.as_deref() == Some(&rid)
        })
        .unwrap_or_else(|| panic!("no charge for {rid}"))
        .amount;
    assert!(charge > Credits::ZERO);
    assert_eq!(text_of(c, "answer-cost").await, format!("{charge} credits"));

    // ...and the balance on the page falls by exactly that.
    let expected = start - charge;
    let shown = wait_js(
        c,
        &format!("document.getElementById('balance').textContent === '{expected}' && document.getElementById('balance').textContent"),
        "the balance to fall by the charge",
    )
    .await;
    let shown = Credits::parse(shown.as_str().unwrap()).unwrap();
    assert_eq!(start - shown, charge);
    assert_eq!(shown, s.balance(key).await);

    // The request is in the history table, the charge in the ledger table.
    wait_js(
        c,
        &format!("document.querySelector('#history-table tr[data-request-id=\"{rid}\"]')"),
        "the request in history",
    )
    .await;
    wait_js(
        c,
        "document.querySelector('#ledger-table tr[data-kind=\"charge\"]')",
        "the charge in the ledger",
    )
    .await;

    // The charts are drawn with data: one request, costing the charge.
    let requests = wait_js(
        c,
        "Number(document.getElementById('chart-requests').dataset.total) > 0 && document.querySelectorAll('#chart-requests rect').length && document.getElementById('chart-requests').dataset.total",
        "the requests chart",
    )
    .await;
    assert_eq!(requests, json!("1"));
    let cost = wait_js(
        c,
        "document.querySelectorAll('#chart-cost rect').length && document.getElementById('chart-cost').dataset.total",
        "the cost chart",
    )
    .await;
    assert_eq!(
        Credits::parse(cost.as_str().unwrap()).unwrap(),
        charge,
        "cost chart total"
    );
    wait_js(
        c,
        "document.querySelectorAll('#chart-latency circle').length",
        "latency points",
    )
    .await;
    let path = screenshot(c, "dashboard").await;
    assert!(std::fs::metadata(&path).unwrap().len() > 10_000);

    // Phone width: everything still fits without sideways scrolling.
    c.set_window_size(375, 812).await.unwrap();
    let fits = wait_js(
        c,
        "window.innerWidth <= 400 && document.documentElement.scrollWidth <= window.innerWidth",
        "the page to fit a phone-sized window",
    )
    .await;
    assert_eq!(fits, json!(true));
    screenshot(c, "dashboard-phone").await;

    // Nothing was loaded from anywhere but this server, and nothing was
    // blocked by the policy.
    let urls = js(
        c,
        "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
    )
    .await;
    let urls: Vec<String> = serde_json::from_value(urls).unwrap();
    assert!(
        urls.iter().any(|u| u.ends_with("/assets/app.js")),
        "{urls:?}"
    );
    assert!(urls.iter().any(|u| u.contains("/api/status")), "{urls:?}");
    let origin = format!("{}/", s.url);
    assert!(origin.starts_with("http://127.0.0.1:"));
    for u in &urls {
        assert!(u.starts_with(&origin), "left 127.0.0.1: {u}");
    }
    let violations = js(c, "return window.__oneflowCspViolations;").await;
    assert_eq!(violations, json!([]));

    // Money in the page is exact past a float's 15-16 digits.
    let exact = js(
        c,
        "return OneFlowMoney.format(OneFlowMoney.parseJson('{\"balance\": 9007199254.740993}').balance);",
    )
    .await;
    assert_eq!(exact, json!("9007199254.740993"));

    admin_tops_up(c, s, uid, key).await;
}

/// The admin signs in, finds the user with the balance the ledger has, and
/// tops it up through the form by an amount with every decimal place used.
async fn admin_tops_up(c: &Client, s: &TestServer, uid: &str, key: &str) {
    c.set_window_size(1280, 2400).await.unwrap();
    c.find(Locator::Css("#signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Signed out: the key is gone and nothing of the account is left.
    let left = js(
        c,
        "return [sessionStorage.length, document.getElementById('answer-out').textContent, document.getElementById('app').hidden];",
    )
    .await;
    assert_eq!(left, json!([0, "", true]));
    type_into(c, "#key", ADMIN_KEY).await;
    c.find(Locator::Css("#signin-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let before = s.balance(key).await;
    let cell = format!("document.querySelector('#users-table tr[data-user-id=\"{uid}\"]')");
    let shown = wait_js(
        c,
        &format!("{cell} && {cell}.cells[4].textContent"),
        "the user in the admin's table",
    )
    .await;
    assert_eq!(shown, json!(before.to_string()));

    js(
        c,
        &format!("document.getElementById('topup-user').value = '{uid}'; return null;"),
    )
    .await;
    type_into(c, "#topup-amount", "1.000001").await;
    c.find(Locator::Css("#topup-btn"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let after = before + Credits::parse("1.000001").unwrap();
    let msg = wait_js(
        c,
        "document.getElementById('topup-msg').textContent",
        "the top-up message",
    )
    .await;
    assert_eq!(
        msg,
        json!(format!("Added 1.000001 to {uid}; balance now {after}."))
    );
    assert_eq!(s.balance(key).await, after);
    wait_js(
        c,
        &format!("{cell}.cells[4].textContent === '{after}'"),
        "the users table to show the new balance",
    )
    .await;
    screenshot(c, "dashboard-admin").await;
}
