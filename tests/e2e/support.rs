//! Starts the real server on 127.0.0.1:0 with a real redb file in a temp
//! directory, and talks HTTP to it.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::Config;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// An HTTP client for one server, in this process or another.
pub struct Api {
    pub url: String,
    pub http: reqwest::Client,
}

/// A server running in its own thread and actix system; talk to it through
/// its [`Api`] (it derefs to one).
pub struct TestServer {
    pub api: Api,
    /// The data directory, for restarts on the same file.
    #[allow(dead_code)]
    pub dir: PathBuf,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestServer {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// The default config with zero-latency simulated providers, on `dir`.
pub fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.bind = "127.0.0.1:0".into();
    c.server.data_dir = dir.display().to_string();
    c.server.workers = 2;
    for p in &mut c.providers {
        p.simulated.latency_ms = 0;
    }
    c
}

impl TestServer {
    /// A fresh server on a new temporary directory.
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Self::start_in(tmp.path(), tweak);
        s._tmp = Some(tmp);
        s
    }

    /// A server on `dir` (which outlives it, for restarts).
    pub fn start_in(dir: &Path, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = config(dir);
        tweak(&mut cfg);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let sys = actix_rt::System::new();
            sys.block_on(async move {
                let started = oneflow_web::start(cfg, Some(ADMIN_KEY)).unwrap();
                tx.send((started.addr, started.server.handle())).unwrap();
                oneflow_web::run(started).await.unwrap();
            });
        });
        let (addr, handle) = rx.recv().unwrap();
        TestServer {
            api: Api::new(&format!("http://{addr}")),
            dir: dir.to_path_buf(),
            handle,
            thread: Some(thread),
            _tmp: None,
        }
    }

    /// Graceful stop: in-flight requests finish, the queue is committed.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        // Close our idle keep-alive connections, or the graceful stop waits
        // for them to time out.
        self.api.http = reqwest::Client::new();
        self.handle.stop(true).await;
        if let Some(t) = self.thread.take() {
            tokio::task::spawn_blocking(move || t.join().unwrap())
                .await
                .unwrap();
        }
        self._tmp.take()
    }
}

impl Api {
    pub fn new(url: &str) -> Api {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(60))
            // The server closes a connection idle for 5 s (actix's
            // keep-alive); a client that reuses one just then gets "error
            // sending request" on a loaded machine. Dropping idle
            // connections well before that leaves no such race.
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap();
        Api {
            url: url.to_string(),
            http,
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        key: Option<&str>,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self.http.request(method, format!("{}{path}", self.url));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path}: not JSON ({status}): {text}"));
        (status, v)
    }

    pub async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, Some(key), path, None).await
    }

    pub async fn post(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, Some(key), path, Some(&body))
            .await
    }

    /// Creates a user with `balance` credits; returns (id, key).
    pub async fn user(&self, name: &str, balance: &str) -> (String, String) {
        let email = format!("{name}@example.com");
        let (s, v) = self
            .post(
                ADMIN_KEY,
                "/api/users",
                json!({"name": name, "email": email, "initial_balance": balance}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (
            v["id"].as_str().unwrap().to_string(),
            v["api_key"].as_str().unwrap().to_string(),
        )
    }

    /// Every ledger entry of the caller, oldest first.
    pub async fn ledger(&self, key: &str) -> Vec<oneflow::ledger::LedgerEntry> {
        self.ledger_paged(key, 1000).await
    }

    /// The caller's charges, oldest first.
    pub async fn charges(&self, key: &str) -> Vec<Credits> {
        self.ledger(key)
            .await
            .into_iter()
            .filter(|e| e.kind == oneflow::ledger::EntryKind::Charge)
            .map(|e| e.amount)
            .collect()
    }

    /// The same, read `limit` entries a page (to exercise paging).
    pub async fn ledger_paged(&self, key: &str, limit: usize) -> Vec<oneflow::ledger::LedgerEntry> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/history/transactions?limit={limit}&cursor={c}"),
                None => format!("/api/history/transactions?limit={limit}"),
            };
            let (s, v) = self.get(key, &path).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let items: Vec<oneflow::ledger::LedgerEntry> =
                serde_json::from_value(v["items"].clone()).unwrap();
            out.extend(items);
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        out.reverse();
        out
    }

    pub async fn balance(&self, key: &str) -> Credits {
        let (s, v) = self.get(key, "/api/status").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        credits(&v["balance"])
    }

    /// `POST /api/request` with an `Idempotency-Key`: (status, replayed, body).
    pub async fn idempotent(
        &self,
        key: &str,
        idem: &str,
        body: &Value,
    ) -> (StatusCode, bool, Value) {
        let res = self
            .http
            .post(format!("{}/api/request", self.url))
            .bearer_auth(key)
            .header("Idempotency-Key", idem)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let replayed = res.headers().get("idempotent-replayed").is_some();
        (status, replayed, res.json().await.unwrap())
    }
}

/// A raw answer: status, headers and the body's exact bytes.
pub struct Raw {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Raw {
    pub fn replayed(&self) -> bool {
        self.headers.get("idempotent-replayed").is_some()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl Api {
    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let res = self.http.get(format!("{}/metrics", self.url)).send().await;
        res.unwrap().text().await.unwrap()
    }

    /// `POST path` with an optional `Idempotency-Key`, the answer as sent.
    pub async fn post_raw(&self, key: &str, path: &str, idem: Option<&str>, body: &Value) -> Raw {
        let mut rb = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(key)
            .json(body);
        if let Some(k) = idem {
            rb = rb.header("Idempotency-Key", k);
        }
        let res = rb.send().await.unwrap();
        Raw {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.bytes().await.unwrap(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // A test that failed before `stop`: stop without waiting.
            let h = self.handle.clone();
            std::thread::spawn(move || actix_rt::System::new().block_on(h.stop(false)));
        }
    }
}

/// Reads a credits figure from JSON exactly.
pub fn credits(v: &Value) -> Credits {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not credits: {v}: {e}"))
}

/// Checks the ledger replays cleanly and that the balance equals
/// top-ups - charges + refunds (+ adjustments).
pub fn assert_ledger_balances(entries: &[oneflow::ledger::LedgerEntry], balance: Credits) {
    use oneflow::ledger::EntryKind::*;
    assert_eq!(oneflow::ledger::audit(entries), Ok(balance));
    let sum = |k| {
        entries
            .iter()
            .filter(|e| e.kind == k)
            .map(|e| e.amount)
            .sum::<Credits>()
    };
    assert_eq!(
        balance,
        sum(TopUp) - sum(Charge) + sum(Refund) + sum(Adjustment)
    );
}

/// Budget windows turn over at midnight UTC. A test about them waits (at
/// most 30 s) if it would otherwise straddle one.
pub async fn avoid_midnight() {
    let day = 86_400_000u128;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let left = day - now % day;
    if left < 30_000 {
        tokio::time::sleep(std::time::Duration::from_millis(left as u64 + 100)).await;
    }
}
