//! Providers whose limits are shared through Redis (see
//! `coordination::tests` for the Redis the tests use).

use std::sync::Arc;
use std::time::{Duration, Instant};

use oneflow::config::{CircuitConfig, ProviderConfig, default_providers};

use super::ProviderHandle;
use crate::coordination::tests::{TestRedis, clean, eventually, fresh_prefix, node, quick, redis};
use crate::coordination::{CoordError, Coordinator};

fn limited(rps: u32, burst: u32) -> ProviderConfig {
    let mut cfg = default_providers()[0].clone();
    cfg.limits.requests_per_second = rps;
    cfg.limits.burst = burst;
    cfg.limits.max_concurrency = 64;
    cfg.limits.queue = 1024;
    cfg
}

fn start(cfg: &ProviderConfig, c: &Coordinator) -> ProviderHandle {
    let adapter = Arc::new(crate::adapters::simulated::Simulated::new(
        &cfg.name,
        cfg.simulated.clone(),
    ));
    ProviderHandle::start(
        cfg.clone(),
        adapter,
        CircuitConfig::default(),
        Some(c.clone()),
    )
}

/// Callers that take a slot and give it back at once, as fast as the
/// provider lets them, for `window`: how many got one within it.
async fn hammer(providers: &[ProviderHandle], callers: usize, window: Duration) -> u32 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in providers {
        for _ in 0..callers {
            let p = p.clone();
            tasks.push(actix_rt::spawn(async move {
                let mut n = 0;
                loop {
                    let left = window.saturating_sub(start.elapsed());
                    if left.is_zero() {
                        return n;
                    }
                    if let Ok(permit) = tokio::time::timeout(left, p.acquire(1)).await {
                        if permit.is_ok() && start.elapsed() < window {
                            n += 1;
                        }
                    }
                }
            }));
        }
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

/// Two nodes each allowed 10/s with a burst of 2 on their own: sharing,
/// they get 10/s and one burst between them.
#[actix_rt::test]
async fn two_nodes_keep_to_one_rate_between_them() {
    let prefix = fresh_prefix();
    let a = node(&redis(), &prefix, "a", quick()).await;
    let b = node(&redis(), &prefix, "b", quick()).await;
    let cfg = limited(10, 2);
    let providers = [start(&cfg, &a), start(&cfg, &b)];
    let admitted = hammer(&providers, 4, Duration::from_secs(1)).await;
    assert!((1..=10 + 2).contains(&admitted), "{admitted} admitted");
    // Every shared slot was given back with its permit.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut slots = Vec::new();
    while slots.len() < 64 {
        match a.acquire(&cfg.name, 64).await.unwrap() {
            Some(l) => slots.push(l),
            None => {
                assert!(
                    Instant::now() < deadline,
                    "slots left taken: {}",
                    64 - slots.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    drop(slots);
    drop(providers);
    drop((a, b));
    clean(&redis(), &prefix).await;
}

/// Redis dies under two nodes: a provider keeps serving at its node's
/// half of the limit, and shares the whole again once Redis is back.
#[actix_rt::test]
async fn without_redis_a_node_serves_its_share() {
    let mut redis = TestRedis::start();
    let url = redis.url();
    let prefix = fresh_prefix();
    let a = node(&url, &prefix, "a", quick()).await;
    let b = node(&url, &prefix, "b", quick()).await;
    assert!(eventually(Duration::from_secs(5), || async { a.node_count() == 2 }).await);
    let cfg = limited(10, 4);
    let p = start(&cfg, &a);
    let permit = p.acquire(1).await.unwrap();
    assert!(permit.lease.is_some(), "not shared while Redis is up");
    drop(permit);

    redis.kill();
    assert!(a.admit(&cfg.name, &[]).await.is_ok(), "no limits: no call");
    assert!(matches!(
        a.acquire(&cfg.name, 1).await,
        Err(CoordError::Redis(_) | CoordError::Timeout(_))
    ));
    assert!(!a.healthy());
    // Half of 10/s with half the burst: at most 2 + 5 in a second.
    let admitted = hammer(std::slice::from_ref(&p), 4, Duration::from_secs(1)).await;
    assert!((1..=2 + 5).contains(&admitted), "{admitted} admitted");
    let permit = p.acquire(1).await.unwrap();
    assert!(permit.lease.is_none());
    drop(permit);

    redis.restart();
    assert!(eventually(Duration::from_secs(15), || async { a.healthy() }).await);
    let permit = p.acquire(1).await.unwrap();
    assert!(
        permit.lease.is_some(),
        "not shared again after Redis came back"
    );
    drop(permit);
    drop(p);
    drop((a, b));
}
