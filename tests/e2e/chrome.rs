//! What the browser tests share: Debian's `chromium`, headless, driven
//! through `chromedriver` (WebDriver) on a free loopback port with a fresh
//! profile, and the helpers that poll the page. The browser may reach
//! nothing but 127.0.0.1. Screenshots go to `<target>/browser-artifacts/`,
//! each path printed as `screenshot: <path>`.
//!
//! Without chromium or chromedriver a test fails and names
//! `scripts/test.sh`, which installs them.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

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

/// The chromedriver a test started. The session is closed (which quits
/// chromium) before the driver is dropped; dropping kills chromedriver
/// itself, by its own pid only.
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

/// Starts chromedriver and a headless chromium session, runs `scenario`
/// with it, and closes both whatever happens: a panic in the scenario is
/// caught, the browser closed, then the panic resumed.
pub async fn with_browser<F, Fut>(scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()>,
{
    use futures_util::FutureExt;
    let chromium = crate::tools::chromium();
    let chromedriver = crate::tools::chromedriver();
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
    let result = std::panic::AssertUnwindSafe(scenario(c.clone()))
        .catch_unwind()
        .await;
    let _ = c.close().await;
    drop(driver);
    result.unwrap_or_else(|e| std::panic::resume_unwind(e));
}

pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// Polls `expr` (a JavaScript expression) until it is truthy; returns it.
pub async fn wait_js(c: &Client, expr: &str, what: &str) -> Value {
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

pub async fn text_of(c: &Client, id: &str) -> String {
    js(
        c,
        &format!("return document.getElementById('{id}').textContent;"),
    )
    .await
    .as_str()
    .unwrap()
    .to_string()
}

pub async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = artifacts_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
    path
}
