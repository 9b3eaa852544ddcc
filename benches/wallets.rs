//! Memory with many wallets: the resident set of a broker after 100,000
//! users' wallets have each been touched once (every wallet in memory, as
//! they are until `wallets.idle_stop_secs` passes).
//!
//! The users are written straight into a real redb file first (one batch
//! commit), then a real broker starts on it and reads every user's wallet
//! through its API, 256 at a time. Prints RSS before and after, the peak,
//! and the bytes per wallet.
//!
//! `cargo bench -p oneflow-actors --bench wallets` (`ONEFLOW_BENCH_WALLETS`
//! sets another count).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use futures_util::StreamExt;

use oneflow::config::Config;
use oneflow_actors::Broker;
use oneflow_actors::store::{RedbStore, Role, Store, User, WriteOp};

/// The allocator the `oneflow` binary uses, so the figures are its figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A figure of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("ONEFLOW_BENCH_WALLETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("usr_bench{i:07}")).collect();
    {
        let store = RedbStore::open(&dir.path().join("oneflow.redb")).unwrap();
        for chunk in ids.chunks(10_000) {
            store
                .commit(
                    chunk
                        .iter()
                        .map(|id| {
                            WriteOp::PutUser(User {
                                id: id.clone(),
                                name: "bench".into(),
                                email: "bench@example.com".into(),
                                role: Role::Member,
                                created_at: 0,
                                strategy: None,
                            })
                        })
                        .collect(),
                )
                .unwrap();
        }
    }

    let mut config = Config::default();
    config.server.data_dir = dir.path().to_string_lossy().into_owned();
    let system = actix_rt::System::new();
    system.block_on(async move {
        let (broker, _) = Broker::start(config, Some("bench-admin-key-0123456789")).unwrap();
        let before = status_kib("VmRSS:");
        let started = Instant::now();
        let touched = futures_util::stream::iter(ids.iter())
            .map(|id| {
                let b = broker.clone();
                async move { b.wallet(id).await.is_ok() }
            })
            .buffer_unordered(256)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        let took = started.elapsed();
        let (alive, _) = broker.runtime_figures();
        let after = status_kib("VmRSS:");
        let peak = status_kib("VmHWM:");
        println!("wallets touched:   {touched} of {n} in {took:.2?} ({alive} wallets in memory)");
        println!("RSS before:        {:.1} MiB", before as f64 / 1024.0);
        println!("RSS after:         {:.1} MiB", after as f64 / 1024.0);
        println!("peak RSS:          {:.1} MiB", peak as f64 / 1024.0);
        println!(
            "per wallet:        {:.0} bytes",
            (after.saturating_sub(before) * 1024) as f64 / touched.max(1) as f64
        );
        assert_eq!(touched, n, "every wallet answered");
        broker.shutdown().await;
    });
}
