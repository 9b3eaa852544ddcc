//! Against a real Redis: the machine's at 127.0.0.1:6379, or one of the
//! tests' own (`TestRedis`) where a test kills it. A missing Redis fails
//! these tests, never skips them. Each test keeps to its own key prefix
//! and deletes its keys at the end.

use std::time::{Duration, Instant};

use super::*;

/// The machine's Redis, or `ONEFLOW_TEST_REDIS_URL`.
pub(crate) fn redis() -> String {
    std::env::var("ONEFLOW_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Short timings, so that leases run out and heartbeats happen within a
/// test.
pub(crate) fn quick() -> Tuning {
    Tuning {
        timeout: Duration::from_millis(200),
        lease: Duration::from_secs(1),
        heartbeat: Duration::from_millis(200),
    }
}

pub(crate) fn fresh_prefix() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    let tag: String = b.iter().map(|b| format!("{b:02x}")).collect();
    format!("oneflow-test:{tag}:")
}

pub(crate) fn config(url: &str, prefix: &str) -> CoordinationConfig {
    CoordinationConfig {
        redis_url: Some(url.to_string()),
        required: true,
        prefix: prefix.to_string(),
    }
}

/// A coordinator that is connected and subscribed, or the test fails.
pub(crate) async fn node(url: &str, prefix: &str, id: &str, tuning: Tuning) -> Coordinator {
    let c = Coordinator::connect_with(&config(url, prefix), id, tuning).unwrap();
    assert!(
        c.ready(Duration::from_secs(10)).await,
        "no Redis answering at {url}"
    );
    c
}

/// Deletes every key under `prefix`. Call after dropping the
/// coordinators: a heartbeat already sent may still land, so this waits a
/// moment first.
pub(crate) async fn clean(url: &str, prefix: &str) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cursor: u64 = 0;
    for _ in 0..10_000 {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: u64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        cursor = next;
        if cursor == 0 {
            return;
        }
    }
    panic!("SCAN did not finish");
}

/// Polls `check` every 20 ms until it holds; false if `within` passes
/// first.
pub(crate) async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

/// A `redis-server` of a test's own on a free loopback port, without
/// persistence, killed when dropped whatever the test's outcome.
pub(crate) struct TestRedis {
    child: Option<std::process::Child>,
    pub(crate) port: u16,
    dir: tempfile::TempDir,
}

impl TestRedis {
    pub(crate) fn start() -> TestRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = TestRedis {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        r.restart();
        r
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port) and waits until it listens.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = std::process::Command::new("/usr/bin/redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn limit(name: &'static str, rate: u32, period: Duration, burst: u32) -> Limit {
    Limit {
        name,
        rate,
        period,
        burst,
    }
}

/// A fresh bucket lets exactly its burst through at once, then names the
/// wait for the next unit: all arithmetic, no timing.
#[tokio::test]
async fn a_fresh_bucket_admits_its_burst_then_says_when() {
    let prefix = fresh_prefix();
    let a = node(&redis(), &prefix, "a", quick()).await;
    let slow = [(limit("rpm", 1, Duration::from_secs(60), 5), 1)];
    for i in 0..5 {
        assert_eq!(a.admit("p", &slow).await.unwrap(), Admit::Go, "call {i}");
    }
    match a.admit("p", &slow).await.unwrap() {
        Admit::RetryIn(d) => assert!(
            d > Duration::from_secs(50) && d <= Duration::from_secs(60),
            "{d:?}"
        ),
        Admit::Go => panic!("admitted past the burst"),
    }
    drop(a);
    clean(&redis(), &prefix).await;
}

/// Two nodes hammering one limit of 20/s with a burst of 5 for a second
/// get at most 20 + 5 between them.
#[tokio::test]
async fn two_nodes_share_one_rate() {
    let prefix = fresh_prefix();
    let a = node(&redis(), &prefix, "a", quick()).await;
    let b = node(&redis(), &prefix, "b", quick()).await;
    let rps = [(limit("rps", 20, Duration::from_secs(1), 5), 1)];
    let window = Duration::from_secs(1);
    let start = Instant::now();
    let run = |c: Coordinator| {
        let rps = rps.clone();
        async move {
            let mut n = 0u32;
            while start.elapsed() < window {
                match c.admit("p", &rps).await.unwrap() {
                    Admit::Go if start.elapsed() < window => n += 1,
                    Admit::Go => {}
                    Admit::RetryIn(d) => tokio::time::sleep(d.min(window)).await,
                }
            }
            n
        }
    };
    let (n1, n2, n3, n4) = tokio::join!(
        run(a.clone()),
        run(a.clone()),
        run(b.clone()),
        run(b.clone())
    );
    drop((a, b));
    clean(&redis(), &prefix).await;
    let total = n1 + n2 + n3 + n4;
    assert!((1..=20 + 5).contains(&total), "{total} admitted");
}

/// A call one limit refuses charges none of the others.
#[tokio::test]
async fn a_refusal_charges_no_limit() {
    let prefix = fresh_prefix();
    let a = node(&redis(), &prefix, "a", quick()).await;
    let minute = Duration::from_secs(60);
    // Two requests and 1000 tokens a minute, none refilled within the test.
    let call = |tokens| {
        [
            (limit("rps", 1, minute, 2), 1),
            (limit("tpm", 1000, minute, 1000), tokens),
        ]
    };
    assert_eq!(a.admit("p", &call(600)).await.unwrap(), Admit::Go);
    // 600 more tokens do not fit: refused, and its request not counted...
    assert!(matches!(
        a.admit("p", &call(600)).await.unwrap(),
        Admit::RetryIn(_)
    ));
    // ...so the second request still has its place.
    assert_eq!(a.admit("p", &call(300)).await.unwrap(), Admit::Go);
    // Now both requests are spent; the tokens refused here stay unspent.
    assert!(matches!(
        a.admit("p", &call(50)).await.unwrap(),
        Admit::RetryIn(_)
    ));
    let tokens_only = [(limit("tpm", 1000, minute, 1000), 100)];
    assert_eq!(a.admit("p", &tokens_only).await.unwrap(), Admit::Go);
    drop(a);
    clean(&redis(), &prefix).await;
}

/// Three slots across two nodes: a fourth is refused on either; a slot
/// dropped comes back (in the background), one released at once.
#[tokio::test]
async fn leases_cap_concurrency_across_nodes() {
    let prefix = fresh_prefix();
    let a = node(&redis(), &prefix, "a", quick()).await;
    let b = node(&redis(), &prefix, "b", quick()).await;
    let a1 = a.acquire("p", 3).await.unwrap().unwrap();
    let _a2 = a.acquire("p", 3).await.unwrap().unwrap();
    let b1 = b.acquire("p", 3).await.unwrap().unwrap();
    assert!(a.acquire("p", 3).await.unwrap().is_none());
    assert!(b.acquire("p", 3).await.unwrap().is_none());
    // Another provider's slots are its own.
    assert!(b.acquire("q", 3).await.unwrap().is_some());
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        if let Some(l) = b.acquire("p", 3).await.unwrap() {
            break l;
        }
        assert!(Instant::now() < deadline, "a dropped lease never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(a.acquire("p", 3).await.unwrap().is_none());
    b1.release().await.unwrap();
    assert!(a.acquire("p", 3).await.unwrap().is_some());
    drop((a, b, got));
    clean(&redis(), &prefix).await;
}

/// A held lease is renewed past its length; the slots of a node that died
/// holding them (its coordinator gone, its leases never given back) come
/// back once their leases end.
#[tokio::test]
async fn a_dead_nodes_slots_come_back_after_their_lease() {
    let prefix = fresh_prefix();
    let a = node(&redis(), &prefix, "a", quick()).await;
    let b = node(&redis(), &prefix, "b", quick()).await;
    let held = a.acquire("p", 2).await.unwrap().unwrap();
    let dead = a.acquire("p", 2).await.unwrap().unwrap();
    // Three lease lengths: renewed all along.
    tokio::time::sleep(quick().lease * 3).await;
    assert!(b.acquire("p", 2).await.unwrap().is_none());
    // The node dies: nothing is given back, nothing renewed.
    std::mem::forget(held);
    std::mem::forget(dead);
    drop(a);
    let back = eventually(Duration::from_secs(10), || {
        let b = b.clone();
        async move {
            match b.acquire("p", 2).await.unwrap() {
                Some(l) => {
                    // Kept, so that the second one is asked for too.
                    std::mem::forget(l);
                    true
                }
                None => false,
            }
        }
    })
    .await;
    assert!(back, "the dead node's slot never came back");
    assert!(
        eventually(Duration::from_secs(10), || {
            let b = b.clone();
            async move { b.acquire("p", 2).await.unwrap().is_some() }
        })
        .await
    );
    drop(b);
    clean(&redis(), &prefix).await;
}

/// A notice reaches the other node and not its sender.
#[tokio::test]
async fn a_notice_reaches_the_others_not_its_sender() {
    let prefix = fresh_prefix();
    let a = node(&redis(), &prefix, "a", quick()).await;
    let b = node(&redis(), &prefix, "b", quick()).await;
    let (mut to_a, mut to_b) = (a.subscribe(), b.subscribe());
    let revoked = Notice::KeyRevoked {
        hash_hex: "ab12".into(),
    };
    a.publish(revoked.clone()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), to_b.recv()).await;
    assert_eq!(got.unwrap().unwrap(), revoked);
    // Published after a's own notice on the same channel, so a sees b's
    // first only if it dropped its own.
    b.publish(Notice::ConfigChanged).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), to_a.recv()).await;
    assert_eq!(got.unwrap().unwrap(), Notice::ConfigChanged);
    assert!(to_b.try_recv().is_err(), "b heard itself");
    drop((a, b));
    clean(&redis(), &prefix).await;
}

/// Failed authentications count across nodes, per key.
#[tokio::test]
async fn auth_failures_are_counted_across_nodes() {
    let prefix = fresh_prefix();
    let a = node(&redis(), &prefix, "a", quick()).await;
    let b = node(&redis(), &prefix, "b", quick()).await;
    assert!(!a.count_failure("192.0.2.1", 3).await.unwrap());
    assert_eq!(b.failure_wait("192.0.2.1", 3).await.unwrap(), None);
    assert!(!b.count_failure("192.0.2.1", 3).await.unwrap());
    assert!(a.count_failure("192.0.2.1", 3).await.unwrap());
    let wait = b.failure_wait("192.0.2.1", 3).await.unwrap().unwrap();
    assert!(wait <= Duration::from_secs(60), "{wait:?}");
    assert_eq!(b.failure_wait("192.0.2.2", 3).await.unwrap(), None);
    drop((a, b));
    clean(&redis(), &prefix).await;
}

/// Nodes count each other; when Redis dies, calls fail within the timeout
/// and the node reports itself degraded, remembering how many nodes there
/// were; when Redis is back, so is the node.
#[tokio::test]
async fn a_dying_redis_degrades_and_recovers() {
    let mut redis = TestRedis::start();
    let url = redis.url();
    let prefix = fresh_prefix();
    let a = node(&url, &prefix, "a", quick()).await;
    let b = node(&url, &prefix, "b", quick()).await;
    assert!(eventually(Duration::from_secs(5), || async { a.node_count() == 2 }).await);
    let rps = [(limit("rps", 10, Duration::from_secs(1), 1), 1)];
    assert_eq!(a.admit("p", &rps).await.unwrap(), Admit::Go);

    redis.kill();
    // The first call after the kill finds out; bounded by the timeout (a
    // generous margin for a loaded machine, still far below a stall).
    let asked = Instant::now();
    assert!(a.admit("p", &rps).await.is_err());
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert!(!a.healthy());
    // Known down: later calls do not even wait.
    assert!(matches!(a.acquire("p", 1).await, Err(CoordError::Degraded)));
    assert_eq!(a.node_count(), 2);
    assert!(eventually(Duration::from_secs(5), || async { !b.healthy() }).await);

    redis.restart();
    assert!(
        eventually(Duration::from_secs(15), || async {
            a.healthy() && b.healthy()
        })
        .await,
        "not healthy again after Redis came back"
    );
    assert_eq!(a.admit("p", &rps).await.unwrap(), Admit::Go);
    assert!(
        a.ready(Duration::from_secs(10)).await,
        "not subscribed again"
    );
    drop((a, b));
}
