//! Provider limits shared by two nodes through Redis: the machine's Redis
//! (a key prefix per test) for the shared rate, and a Redis of the test's
//! own, killed half way, for the fallback to each node's share.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use oneflow::config::{Config, ProviderKind};
use oneflow::pricing::Modality;

use crate::pg::PgSchema;
use crate::providers::provider;
use crate::support::{ADMIN_KEY, TestServer};
use crate::upstream::{Kind, MockUpstream};

const RATE: u32 = 50;
const BURST: u32 = 10;

/// A node on `pg` whose one provider is the OpenAI mock `up`, limited to
/// `RATE` requests a second (burst `BURST`), sharing limits through
/// `redis` under `prefix`.
fn node(pg: &PgSchema, name: &str, up: &MockUpstream, redis: &str, prefix: &str) -> TestServer {
    let mut p = provider(
        "oai",
        ProviderKind::Openai,
        Modality::Text,
        up,
        &["mock-chat"],
    );
    p.limits.requests_per_second = RATE;
    p.limits.burst = BURST;
    p.limits.max_concurrency = 64;
    p.limits.queue = 1024;
    let (redis, prefix) = (redis.to_string(), prefix.to_string());
    TestServer::start_with(move |c: &mut Config| {
        pg.apply(c, name);
        c.providers = vec![p];
        c.coordination.redis_url = Some(redis);
        c.coordination.prefix = prefix;
    })
}

fn prefix() -> String {
    let mut r = [0u8; 6];
    getrandom::fill(&mut r).unwrap();
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("t{hex}:")
}

/// Clients on both nodes until `until`: each answer's status.
async fn load(
    a: &TestServer,
    b: &TestServer,
    key: &str,
    clients: usize,
    until: Instant,
) -> Vec<StatusCode> {
    let body = json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    let futs = (0..clients).map(|i| {
        let node = if i % 2 == 0 { a } else { b };
        let body = body.clone();
        async move {
            let mut seen = Vec::new();
            while Instant::now() < until {
                let (st, _) = node.post(key, "/v1/chat/completions", body.clone()).await;
                seen.push(st);
            }
            seen
        }
    });
    join_all(futs).await.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_send_the_upstream_no_more_than_its_one_rate() {
    let pg = PgSchema::new();
    let up = MockUpstream::start(Kind::OpenAi);
    let prefix = prefix();
    let redis = std::env::var("ONEFLOW_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let a = node(&pg, "a", &up, &redis, &prefix);
    let b = node(&pg, "b", &up, &redis, &prefix);
    let (_, key) = a.user("rl", "1000000").await;
    // A node admits on its own until Redis first answers it (a moment
    // after its start); the window begins once both share.
    for node in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, v) = node.get(ADMIN_KEY, "/api/status").await;
            if v["cluster"]["limits"] == "shared" {
                break;
            }
            assert!(Instant::now() < deadline, "Redis never answered: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let secs = 10;
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    // Counted at the end of the window, while the clients' last requests
    // still wait in the queues: those are admitted after it. Whatever was
    // admitted within it has reached the mock or is on its way (which only
    // lowers the count).
    let count = async {
        tokio::time::sleep_until(end.into()).await;
        up.request_count()
    };
    let (statuses, received) = tokio::join!(load(&a, &b, &key, 32, end), count);
    // A Redis call slower than its timeout (a loaded machine can starve
    // one) admits that call on the node's own share instead, by design,
    // and counts it: each such admission may be one past the shared rate.
    let fallbacks = fallbacks(&a).await;
    assert!(
        received <= (RATE as u64 * secs + BURST as u64) as usize + fallbacks,
        "the upstream got {received} requests in {secs} s at a shared {RATE}/s (burst {BURST}), \
         {fallbacks} admitted on a node's own share"
    );
    assert!(
        received > (RATE + BURST) as usize,
        "hardly any traffic went through: {received}"
    );
    let served = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(served > 0);
    let (_, v) = a.get(ADMIN_KEY, "/api/status").await;
    assert_eq!(v["cluster"]["limits"], "shared", "{v}");
    a.stop().await;
    b.stop().await;
}

/// Calls admitted on a node's own share while Redis did not answer in
/// time (`oneflow_coordination_fallbacks_total`; the test's nodes share one
/// process, hence one recorder).
async fn fallbacks(node: &TestServer) -> usize {
    let text = node.metrics_text().await;
    text.lines()
        .filter(|l| l.starts_with("oneflow_coordination_fallbacks_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

/// A Redis of the test's own on a free port, killed when dropped.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start_on(port: u16) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package) must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis { child, port }
    }

    fn start() -> OwnRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        OwnRedis::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_nodes_keep_serving_on_their_share_when_redis_goes_away() {
    let pg = PgSchema::new();
    let up = MockUpstream::start(Kind::OpenAi);
    let redis = OwnRedis::start();
    let a = node(&pg, "a", &up, &redis.url(), "t:");
    let b = node(&pg, "b", &up, &redis.url(), "t:");
    let (_, key) = a.user("fb", "1000000").await;
    let before = load(&a, &b, &key, 4, Instant::now() + Duration::from_secs(1)).await;
    assert!(before.iter().all(|s| *s == StatusCode::OK), "{before:?}");
    drop(redis);
    // Neither node answers a 5xx while it finds Redis gone and falls back.
    let after = load(&a, &b, &key, 8, Instant::now() + Duration::from_secs(3)).await;
    assert!(
        after
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS),
        "{after:?}"
    );
    assert!(after.contains(&StatusCode::OK));
    for node in [&a, &b] {
        let (_, v) = node.get(ADMIN_KEY, "/api/status").await;
        assert_eq!(v["cluster"]["limits"], "fallback", "{v}");
        let text = node.metrics_text().await;
        assert!(
            text.lines().any(|l| l == "oneflow_coordination_up 0"),
            "{text}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_authentications_are_counted_by_both_nodes_together() {
    let pg = PgSchema::new();
    let up = MockUpstream::start(Kind::OpenAi);
    let prefix = prefix();
    let redis = std::env::var("ONEFLOW_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let limit = 5;
    let start = |name: &'static str| {
        let mut p = provider(
            "oai",
            ProviderKind::Openai,
            Modality::Text,
            &up,
            &["mock-chat"],
        );
        p.limits = Default::default();
        let (redis, prefix, pg) = (redis.clone(), prefix.clone(), &pg);
        TestServer::start_with(move |c: &mut Config| {
            pg.apply(c, name);
            c.providers = vec![p];
            c.coordination.redis_url = Some(redis);
            c.coordination.prefix = prefix;
            c.server.auth_failures_per_minute = limit;
        })
    };
    let (a, b) = (start("a"), start("b"));
    let wrong = "sk-0123456789abcdef0123456789abcdef";
    // Three wrong keys on A, two on B: five from this address in all.
    for (node, times) in [(&a, 3), (&b, 2)] {
        for _ in 0..times {
            let (st, v) = node.get(wrong, "/api/status").await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
        }
    }
    // B has seen two itself, but the nodes together saw five: refused,
    // even with a good key, before the key is looked at.
    let (st, v) = b.get(wrong, "/api/status").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "too_many_auth_failures");
    let (st, _) = b.get(ADMIN_KEY, "/api/status").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    // A learns it at its next failure.
    let (st, _) = a.get(wrong, "/api/status").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = a.get(wrong, "/api/status").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    a.stop().await;
    b.stop().await;
}

#[test]
fn a_node_that_must_share_its_limits_refuses_to_start_without_redis() {
    let pg = PgSchema::new();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("oneflow.toml"), "").unwrap();
    // A port nothing listens on: Redis is configured but does not answer.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead_url = format!("redis://127.0.0.1:{dead}/");
    for redis in [None, Some(dead_url.as_str())] {
        let mut env = pg.env("strict");
        env.push(("ONEFLOW__COORDINATION__REQUIRED".into(), "true".into()));
        if let Some(url) = redis {
            env.push(("ONEFLOW__COORDINATION__REDIS_URL".into(), url.into()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let Err((_, stderr)) = crate::process::Proc::try_spawn_with(tmp.path(), &env) else {
            panic!("a node started with coordination.required and no Redis ({redis:?})");
        };
        assert!(stderr.contains("coordination.required"), "{stderr}");
    }
}
