//! Webhooks end to end: a real receiver (actix-web on 127.0.0.1, recording
//! what it is sent, told what status to answer, stopped and started again
//! on its port) gets signed events from the real server: a budget
//! threshold once per window, a revoked key, a delivery that outlives a
//! restart of both. Bad subscriptions are refused and leave nothing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN_KEY, Api, TestServer, avoid_midnight};

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    signature: String,
    delivery: String,
    content_type: String,
    user_agent: String,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Got>>>,
    /// What to answer; 0 means 200.
    status: Arc<AtomicU16>,
}

impl Inbox {
    fn all(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn of_type(&self, t: &str) -> Vec<Got> {
        self.all()
            .into_iter()
            .filter(|g| g.json()["type"] == t)
            .collect()
    }

    /// Waits (at most 30 s) until `n` requests of type `t` came.
    async fn wait_for(&self, t: &str, n: usize) -> Vec<Got> {
        for _ in 0..300 {
            let got = self.of_type(t);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no {n} `{t}` deliveries in 30 s: {:?}", self.all());
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, inbox: web::Data<Inbox>) -> HttpResponse {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    inbox.got.lock().unwrap().push(Got {
        signature: h("oneflow-signature"),
        delivery: h("oneflow-delivery"),
        content_type: h("content-type"),
        user_agent: h("user-agent"),
        body: body.to_vec(),
    });
    match inbox.status.load(Ordering::SeqCst) {
        0 => HttpResponse::Ok().finish(),
        s => HttpResponse::build(actix_web::http::StatusCode::from_u16(s).unwrap()).finish(),
    }
}

/// A receiver on `port` (0: any), in its own thread and actix system.
struct Receiver {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(port: u16, inbox: &Inbox) -> Receiver {
        let inbox = inbox.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let data = web::Data::new(inbox);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::to(receive))
                })
                .workers(1)
                .bind(("127.0.0.1", port))
                .unwrap();
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).unwrap();
                server.await.unwrap();
            });
        });
        let (addr, handle) = rx.recv().unwrap();
        Receiver {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(t) = self.thread.take() {
            tokio::task::spawn_blocking(move || t.join().unwrap())
                .await
                .unwrap();
        }
    }
}

/// Fast checks and deliveries, and receivers on loopback allowed.
fn fast(c: &mut oneflow::config::Config) {
    c.webhooks.allow_private = true;
    c.webhooks.check_every_ms = 100;
    c.webhooks.deliver_every_ms = 100;
}

/// How many times the background task `name` has run.
async fn runs(api: &Api, name: &str) -> u64 {
    let (st, v) = api.get(ADMIN_KEY, "/api/status").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let tasks = v["tasks"].as_array().unwrap();
    let t = tasks.iter().find(|t| t["name"] == name);
    t.and_then(|t| t["runs"].as_u64()).unwrap_or(0)
}

/// Waits (at most 30 s) for `n` more whole runs of the task `name`.
async fn periods(api: &Api, name: &str, n: u64) {
    // The run under way may have read its state before now: not counted.
    let target = runs(api, name).await + n + 1;
    for _ in 0..300 {
        if runs(api, name).await >= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} did not run {n} more times in 30 s");
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn subscribe(api: &Api, key: &str, body: Value) -> (String, String) {
    let (st, v) = api.post(key, "/api/webhooks", body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 6 + 64,
        "{secret}"
    );
    (v["id"].as_str().unwrap().to_string(), secret)
}

async fn log(api: &Api, key: &str, id: &str) -> Vec<Value> {
    let (st, v) = api
        .get(key, &format!("/api/webhooks/{id}/deliveries"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["deliveries"].as_array().unwrap().clone()
}

fn assert_signed(g: &Got, secret: &str) {
    assert_eq!(
        oneflow::webhook::verify(&g.signature, secret, &g.body, now_secs(), 300),
        Ok(()),
        "{}",
        g.signature
    );
    assert_eq!(g.content_type, "application/json");
    assert_eq!(g.user_agent, "OneFlow-Webhooks");
    assert!(g.delivery.starts_with("dlv_"), "{}", g.delivery);
}

#[tokio::test]
async fn a_budget_threshold_arrives_once_per_window_signed() {
    avoid_midnight().await;
    let inbox = Inbox::default();
    let rx = Receiver::start(0, &inbox);
    let s = TestServer::start_with(fast);
    let (_, key) = s.user("thrifty", "1000").await;
    let (st, v) = s
        .call(
            Method::PUT,
            Some(&key),
            "/api/budget",
            Some(&json!({"daily": "100"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (hook, secret) = subscribe(
        &s,
        &key,
        json!({"url": rx.url(), "events": ["budget.threshold"]}),
    )
    .await;
    // 4 images at 10 credits each, two at a time: 80 of the 100.
    for _ in 0..4 {
        let (st, v) = s
            .post(
                &key,
                "/api/request",
                json!({"model": "image", "prompt": "a cat", "n": 2}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let first = inbox.wait_for("budget.threshold", 2).await;
    // Many more checker periods: no repeat.
    periods(&s, "webhook-alerts", 5).await;
    periods(&s, "webhook-deliveries", 2).await;
    let got = inbox.of_type("budget.threshold");
    let pct = |p: i64| {
        got.iter()
            .filter(|g| g.json()["data"]["threshold_percent"] == p)
            .count()
    };
    assert_eq!((pct(50), pct(80), pct(100)), (1, 1, 0), "{got:?}");
    assert_eq!(got.len(), 2, "{got:?}");
    for g in &first {
        assert_signed(g, &secret);
        let b = g.json();
        assert!(b["id"].as_str().unwrap().starts_with("evt_"), "{b}");
        assert_eq!(b["data"]["window"], "daily", "{b}");
        assert_eq!(b["data"]["limit"], json!(100), "{b}");
    }
    // A wrong secret does not verify the same delivery.
    assert!(
        oneflow::webhook::verify(
            &first[0].signature,
            "whsec_wrong",
            &first[0].body,
            now_secs(),
            300
        )
        .is_err()
    );
    let entries = log(&s, &key, &hook).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    for e in &entries {
        assert_eq!(e["status"], "delivered", "{e}");
        assert_eq!(e["attempts"], 1, "{e}");
        assert_eq!(e["last_status"], 200, "{e}");
    }
    s.stop().await;
    rx.stop().await;
}

#[tokio::test]
async fn key_revoked_is_retried_until_answered_and_signed_with_both_secrets_after_rotation() {
    let inbox = Inbox::default();
    let rx = Receiver::start(0, &inbox);
    let s = TestServer::start_with(fast);
    let (_, key) = s.user("revoker", "10").await;
    let (hook, old) = subscribe(
        &s,
        &key,
        json!({"url": rx.url(), "events": ["key.revoked"]}),
    )
    .await;
    let (st, v) = s
        .post(
            &key,
            &format!("/api/webhooks/{hook}/rotate-secret"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new = v["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(v["previous_secret_until"].is_i64(), "{v}");
    // The receiver fails at first: the delivery is retried.
    inbox.status.store(500, Ordering::SeqCst);
    let (st, v) = s.post(&key, "/api/keys", json!({})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let spare = v["id"].as_str().unwrap().to_string();
    let (st, v) = s
        .call(
            Method::DELETE,
            Some(&key),
            &format!("/api/keys/{spare}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    inbox.wait_for("key.revoked", 2).await;
    let entries = log(&s, &key, &hook).await;
    assert_eq!(entries[0]["status"], "pending", "{entries:?}");
    assert_eq!(entries[0]["last_status"], 500, "{entries:?}");
    inbox.status.store(0, Ordering::SeqCst);
    let mut delivered = None;
    for _ in 0..300 {
        let e = log(&s, &key, &hook).await;
        if e[0]["status"] == "delivered" {
            delivered = Some(e[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = delivered.expect("delivered within 30 s");
    let got = inbox.of_type("key.revoked");
    assert_eq!(d["attempts"].as_u64().unwrap() as usize, got.len(), "{d}");
    assert!(got.len() >= 2, "{got:?}");
    assert_eq!(d["last_status"], 200, "{d}");
    let last = got.last().unwrap();
    assert_eq!(last.json()["data"]["key_id"], json!(spare));
    assert_eq!(last.delivery, d["id"].as_str().unwrap());
    // Every attempt is the same delivery, signed with both secrets.
    assert!(
        got.iter()
            .all(|g| g.body == last.body && g.delivery == last.delivery)
    );
    assert_eq!(
        last.signature.matches("v1=").count(),
        2,
        "{}",
        last.signature
    );
    assert_signed(last, &new);
    assert_signed(last, &old);
    s.stop().await;
    rx.stop().await;
}

#[tokio::test]
async fn a_pending_delivery_survives_a_restart_and_arrives_once() {
    let inbox = Inbox::default();
    // Learn a free port, then close it: the receiver is down.
    let rx = Receiver::start(0, &inbox);
    let (port, url) = (rx.addr.port(), rx.url());
    rx.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), fast);
    let (_, key) = s.user("patient", "10").await;
    let (hook, secret) = subscribe(&s, &key, json!({"url": url, "events": ["key.revoked"]})).await;
    let (_, v) = s.post(&key, "/api/keys", json!({})).await;
    let spare = v["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .call(
            Method::DELETE,
            Some(&key),
            &format!("/api/keys/{spare}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let mut failed_once = false;
    for _ in 0..300 {
        let e = log(&s, &key, &hook).await;
        if e[0]["attempts"].as_u64() >= Some(1) && e[0]["last_error"].is_string() {
            assert_eq!(e[0]["status"], "pending", "{e:?}");
            failed_once = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed_once, "no failed attempt logged");
    s.stop().await;
    let rx = Receiver::start(port, &inbox);
    let s = TestServer::start_in(dir.path(), fast);
    let got = inbox.wait_for("key.revoked", 1).await;
    periods(&s, "webhook-deliveries", 5).await;
    assert_eq!(inbox.of_type("key.revoked").len(), 1, "{got:?}");
    assert_signed(&got[0], &secret);
    let e = log(&s, &key, &hook).await;
    assert_eq!(e[0]["status"], "delivered", "{e:?}");
    assert!(e[0]["attempts"].as_u64().unwrap() >= 2, "{e:?}");
    s.stop().await;
    rx.stop().await;
}

#[tokio::test]
async fn bad_subscriptions_are_refused_and_nothing_is_stored() {
    let s = TestServer::start();
    let (user, key) = s.user("careless", "10").await;
    let ok_url = "https://hooks.example.com/x";
    for (body, says) in [
        (
            json!({"url": ok_url, "events": ["budget.exceeded"]}),
            "unknown variant",
        ),
        (json!({"url": ok_url, "events": []}), "events"),
        (
            json!({"url": "http://127.0.0.1:9/x", "events": ["key.revoked"]}),
            "loopback",
        ),
        (
            json!({"url": "http://169.254.169.254/x", "events": ["key.revoked"]}),
            "metadata",
        ),
        (
            json!({"url": "http://10.20.30.40:8080/x", "events": ["key.revoked"]}),
            "private-network",
        ),
        (
            json!({"url": "https://[fd12::9]/x", "events": ["key.revoked"]}),
            "private-network",
        ),
        (
            json!({"url": "ftp://example.com/x", "events": ["key.revoked"]}),
            "http or https",
        ),
        (
            json!({"url": ok_url, "events": ["key.revoked"], "colour": 1}),
            "unknown field",
        ),
        (
            json!({"url": ok_url, "events": ["request.failures"], "failure_rate": 0}),
            "failure_rate",
        ),
        (
            json!({"url": ok_url, "events": ["request.failures"], "failure_window_minutes": 2000}),
            "failure_window",
        ),
        (
            json!({"url": "https://example.com/a b", "events": ["key.revoked"]}),
            "URI",
        ),
        (
            json!({"url": "not a url", "events": ["key.revoked"]}),
            "url",
        ),
    ] {
        let (st, v) = s.post(&key, "/api/webhooks", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_request", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{body}: {msg}");
    }
    let (st, v) = s
        .post(
            &key,
            "/api/webhooks",
            json!({"url": ok_url, "events": ["balance.low"]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = s
        .post(
            &key,
            "/api/webhooks",
            json!({"url": ok_url, "events": ["balance.low"], "balance_below": 1e-7}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("balance_below"),
        "{v}"
    );
    let (st, v) = s.get(&key, "/api/webhooks").await;
    assert_eq!((st, v), (StatusCode::OK, json!({"webhooks": []})));

    // A good one: listed without its secret, private to its owner.
    let (hook, _) = subscribe(&s, &key, json!({"url": ok_url, "events": ["key.revoked"]})).await;
    let (st, v) = s.get(&key, &format!("/api/webhooks/{hook}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v.get("secret").is_none(), "{v}");
    assert_eq!(
        (
            v["failure_rate"].as_f64(),
            v["failure_window_minutes"].as_u64()
        ),
        (Some(0.5), Some(5))
    );
    let (_, other) = s.user("nosy", "10").await;
    for (m, path) in [
        (Method::GET, format!("/api/webhooks/{hook}")),
        (Method::GET, format!("/api/webhooks/{hook}/deliveries")),
        (Method::POST, format!("/api/webhooks/{hook}/rotate-secret")),
        (Method::DELETE, format!("/api/webhooks/{hook}")),
    ] {
        let (st, v) = s.call(m, Some(&other), &path, None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    let (_, v) = s.get(&other, "/api/webhooks").await;
    assert_eq!(v["webhooks"], json!([]));
    let (_, v) = s
        .get(ADMIN_KEY, &format!("/api/webhooks?user_id={user}"))
        .await;
    assert_eq!(v["webhooks"][0]["id"], json!(hook));

    // At most 20 a user.
    for _ in 1..20 {
        subscribe(&s, &key, json!({"url": ok_url, "events": ["key.revoked"]})).await;
    }
    let (st, v) = s
        .post(
            &key,
            "/api/webhooks",
            json!({"url": ok_url, "events": ["key.revoked"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let res = s
        .http
        .delete(format!("{}/api/webhooks/{hook}", s.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (st, _) = s.get(&key, &format!("/api/webhooks/{hook}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, v) = s.get(&key, "/api/webhooks").await;
    assert_eq!(v["webhooks"].as_array().unwrap().len(), 19);
    // Room again for one.
    subscribe(&s, &key, json!({"url": ok_url, "events": ["key.revoked"]})).await;
    s.stop().await;
}

#[tokio::test]
async fn balance_low_fires_once_per_drop_and_rearms_when_topped_up() {
    let inbox = Inbox::default();
    let rx = Receiver::start(0, &inbox);
    let s = TestServer::start_with(fast);
    let (user, key) = s.user("spender", "20").await;
    subscribe(
        &s,
        &key,
        json!({"url": rx.url(), "events": ["balance.low"], "balance_below": "10"}),
    )
    .await;
    let spend = |n: usize| {
        let (s, key) = (&s, &key);
        async move {
            for _ in 0..n {
                let body = json!({"model": "image", "prompt": "a cat", "n": 1});
                let (st, v) = s.post(key, "/api/request", body).await;
                assert_eq!(st, StatusCode::OK, "{v}");
            }
        }
    };
    // Images cost 10: 20 -> 10 is not below 10; 10 -> 0 is.
    spend(1).await;
    periods(&s, "webhook-alerts", 2).await;
    assert!(inbox.of_type("balance.low").is_empty(), "{:?}", inbox.all());
    spend(1).await;
    let got = inbox.wait_for("balance.low", 1).await;
    assert_eq!(
        got[0].json()["data"]["balance_below"],
        json!(10),
        "{:?}",
        got[0].json()
    );
    periods(&s, "webhook-alerts", 3).await;
    assert_eq!(inbox.of_type("balance.low").len(), 1);
    // Back above the line, then below again: a second crossing.
    let (st, v) = s
        .post(
            ADMIN_KEY,
            "/api/credits/add",
            json!({"user_id": user, "amount": "20"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    periods(&s, "webhook-alerts", 2).await;
    spend(2).await;
    inbox.wait_for("balance.low", 2).await;
    periods(&s, "webhook-alerts", 3).await;
    assert_eq!(inbox.of_type("balance.low").len(), 2);
    s.stop().await;
    rx.stop().await;
}

#[tokio::test]
async fn a_host_name_that_resolves_to_loopback_is_not_delivered_to() {
    let inbox = Inbox::default();
    let rx = Receiver::start(0, &inbox);
    let s = TestServer::start_with(|c| {
        fast(c);
        c.webhooks.allow_private = false;
    });
    let (_, key) = s.user("sneaky", "10").await;
    // A name is accepted (it is checked when resolved)...
    let url = format!("http://localhost:{}/hook", rx.addr.port());
    let (hook, _) = subscribe(&s, &key, json!({"url": url, "events": ["key.revoked"]})).await;
    let (_, v) = s.post(&key, "/api/keys", json!({})).await;
    let spare = v["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .call(
            Method::DELETE,
            Some(&key),
            &format!("/api/keys/{spare}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // ...but never connected to.
    let mut refused = None;
    for _ in 0..300 {
        let e = log(&s, &key, &hook).await;
        if let Some(err) = e.first().and_then(|d| d["last_error"].as_str()) {
            refused = Some(err.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = refused.expect("an attempt within 30 s");
    assert!(err.contains("loopback"), "{err}");
    assert!(inbox.all().is_empty(), "{:?}", inbox.all());
    s.stop().await;
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_postgres_send_each_delivery_and_each_threshold_once() {
    avoid_midnight().await;
    let inbox = Inbox::default();
    let rx = Receiver::start(0, &inbox);
    let pg = crate::pg::PgSchema::new();
    // Both nodes check and send often, so they contend for the same work.
    let node = |name: &str| {
        TestServer::start_with(|c| {
            pg.apply(c, name);
            fast(c);
            c.webhooks.deliver_every_ms = 20;
            c.webhooks.check_every_ms = 20;
        })
    };
    let (a, b) = (node("a"), node("b"));
    let (_, key) = a.user("shared", "1000").await;
    let (st, v) = b
        .call(
            Method::PUT,
            Some(&key),
            "/api/budget",
            Some(&json!({"daily": "100"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    subscribe(
        &a,
        &key,
        json!({"url": rx.url(), "events": ["key.revoked", "budget.threshold"]}),
    )
    .await;
    const KEYS: usize = 12;
    for i in 0..KEYS {
        let node = if i % 2 == 0 { &a } else { &b };
        let (_, v) = node.post(&key, "/api/keys", json!({})).await;
        let spare = v["id"].as_str().unwrap().to_string();
        let (st, v) = node
            .call(
                Method::DELETE,
                Some(&key),
                &format!("/api/keys/{spare}"),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    for node in [&a, &b] {
        let (st, v) = node
            .post(
                &key,
                "/api/request",
                json!({"model": "image", "prompt": "a cat", "n": 5}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    inbox.wait_for("key.revoked", KEYS).await;
    inbox.wait_for("budget.threshold", 3).await;
    for node in [&a, &b] {
        periods(node, "webhook-alerts", 5).await;
        periods(node, "webhook-deliveries", 5).await;
    }
    let got = inbox.all();
    let mut ids: Vec<&str> = got.iter().map(|g| g.delivery.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "a delivery was sent twice: {got:?}");
    assert_eq!(inbox.of_type("key.revoked").len(), KEYS);
    let pcts: Vec<Value> = inbox
        .of_type("budget.threshold")
        .iter()
        .map(|g| g.json()["data"]["threshold_percent"].clone())
        .collect();
    assert_eq!(pcts.len(), 3, "{pcts:?}");
    for p in [50, 80, 100] {
        assert!(pcts.contains(&json!(p)), "{pcts:?}");
    }
    a.stop().await;
    b.stop().await;
    rx.stop().await;
}

#[tokio::test]
async fn request_failures_fire_once_per_window_past_the_rate() {
    avoid_midnight().await;
    let inbox = Inbox::default();
    let rx = Receiver::start(0, &inbox);
    let s = TestServer::start_with(|c| {
        fast(c);
        c.providers[0].simulated.failure_rate = 1.0;
        c.retry.attempts_per_provider = 1;
        // Every failure reaches the provider and is recorded as one.
        c.circuit.failures = 1000;
    });
    let (_, key) = s.user("unlucky", "100").await;
    subscribe(
        &s,
        &key,
        json!({"url": rx.url(), "events": ["request.failures"],
               "failure_rate": 0.5, "failure_window_minutes": 1440}),
    )
    .await;
    let fail = |n: usize| {
        let (s, key) = (&s, &key);
        async move {
            for _ in 0..n {
                let body = json!({"model": "gpt", "prompt": "fail please", "max_tokens": 4});
                let (st, v) = s.post(key, "/api/request", body).await;
                assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
            }
        }
    };
    // Nine failures are too few to judge.
    fail(9).await;
    periods(&s, "webhook-alerts", 2).await;
    assert!(inbox.all().is_empty(), "{:?}", inbox.all());
    fail(1).await;
    let got = inbox.wait_for("request.failures", 1).await;
    let data = &got[0].json()["data"];
    assert_eq!(
        (data["requests"].as_u64(), data["failed"].as_u64()),
        (Some(10), Some(10)),
        "{data}"
    );
    // More failures in the same window: no second event.
    fail(5).await;
    periods(&s, "webhook-alerts", 3).await;
    assert_eq!(inbox.of_type("request.failures").len(), 1);
    s.stop().await;
    rx.stop().await;
}
