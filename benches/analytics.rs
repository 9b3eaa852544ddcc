//! Analytics answer time against the number of stored requests, and export
//! memory against the number of exported rows.
//!
//! Fills real redb files with 1,000 and 1,000,000 requests spread evenly
//! over 30 days (100 users, 4 providers), written through the store's own
//! batch commit so rollups are maintained exactly as in production. Then:
//!
//! * criterion measures four queries on both files: the last 24 h by
//!   minute and the last 30 days by day, for all users and for one user
//!   (summary plus dense series, what the API answers);
//! * a summary table prints both figures and their ratio;
//! * each export (1,000 and 1,000,000 request rows, CSV and JSON) runs in a
//!   fresh child process that reports its peak RSS growth from
//!   /proc/self/status, showing memory stays flat as rows grow.
//!
//! `cargo bench -p oneflow-actors --bench analytics`. The files are kept in
//! `$ONEFLOW_BENCH_DIR` (default: the system temp dir) and reused if present.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::Criterion;

use oneflow::Credits;
use oneflow::analytics::Bucket;
use oneflow::pricing::{Modality, Usage};
use oneflow::records::{RequestRecord, RequestStatus};
use oneflow::time::{MS_PER_DAY, Millis};
use oneflow_actors::export::{ExportKind, ExportQuery, Format, export_blocking};
use oneflow_actors::store::{RedbStore, Store, WriteOp};

/// 2026-11-25T00:00:00Z: the data ends here, queries look back from it.
const END: Millis = 1_764_028_800_000;
const SPAN: Millis = 30 * MS_PER_DAY;
const USERS: u64 = 100;
const PROVIDERS: u64 = 4;
const CACHE: usize = 64 * 1024 * 1024;

fn request(i: u64, n: u64) -> RequestRecord {
    let at = END - SPAN + (i as i128 * SPAN as i128 / n as i128) as Millis;
    RequestRecord {
        id: format!("req_{i:08}"),
        user_id: format!("usr_{:03}", i % USERS),
        model: "gpt".into(),
        modality: Modality::Text,
        provider: format!("provider{}", i % PROVIDERS),
        status: if i % 17 == 0 {
            RequestStatus::Failed
        } else {
            RequestStatus::Succeeded
        },
        prompt_preview: "benchmark prompt".into(),
        response: None,
        usage: Usage {
            input_tokens: 20 + i % 50,
            output_tokens: 40 + i % 90,
            ..Usage::default()
        },
        quote: Credits(2_000),
        cost: Credits((i % 1_000) as i64 + 1),
        shortfall: Credits::ZERO,
        error: None,
        route: "cost".into(),
        created_at: at,
        latency_ms: 5 + (i * 37) % 4_000,
        attempts: Vec::new(),
        usage_anomaly: false,
        member: None,
        cached: false,
        experiment: None,
        key_id: None,
    }
}

fn bench_dir() -> PathBuf {
    std::env::var_os("ONEFLOW_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A store holding `n` requests; filled once, reused afterwards.
fn filled(n: u64) -> (PathBuf, RedbStore) {
    let path = bench_dir().join(format!("oneflow-analytics-bench-{n}.redb"));
    let marker = path.with_extension("done");
    if !marker.exists() {
        let _ = std::fs::remove_file(&path);
        let store = RedbStore::open_with_cache(&path, CACHE).unwrap();
        let started = Instant::now();
        let batch = 25_000;
        let mut i = 0;
        while i < n {
            let end = (i + batch).min(n);
            store
                .commit(
                    (i..end)
                        .map(|j| WriteOp::PutRequest(Box::new(request(j, n))))
                        .collect(),
                )
                .unwrap();
            i = end;
        }
        eprintln!(
            "filled {} with {n} requests in {:.1} s ({} MB)",
            path.display(),
            started.elapsed().as_secs_f64(),
            std::fs::metadata(&path).map(|m| m.len() >> 20).unwrap_or(0)
        );
        drop(store);
        std::fs::write(&marker, b"").unwrap();
    }
    let store = RedbStore::open_with_cache(&path, CACHE).unwrap();
    (path, store)
}

/// What the server does to answer `GET /api/analytics` plus
/// `/api/analytics/series`: the summary over the range, the dense series,
/// and both as JSON.
fn query(store: &RedbStore, scope: &str, bucket: Bucket, span: Millis) {
    let (from, to) = (END - span, END);
    let summary = store.summary(scope, Some((from, to))).unwrap();
    let points = store.series(scope, bucket, from, to, None).unwrap();
    let body = serde_json::to_vec(&(&summary, &points)).unwrap();
    black_box(body);
}

/// Rollup rows the series of `query` reads (not timed).
fn rows_read(store: &RedbStore, scope: &str, bucket: Bucket, span: Millis) -> usize {
    let (from, to) = (END - span, END);
    let mut rows = 0;
    store
        .each_rollup(scope, bucket, from, to, &mut |_, _, _| {
            rows += 1;
            true
        })
        .unwrap();
    rows
}

const QUERIES: [(&str, &str, Bucket, Millis); 4] = [
    ("24h by minute, all users", "", Bucket::Minute, MS_PER_DAY),
    (
        "24h by minute, one user",
        "usr_007",
        Bucket::Minute,
        MS_PER_DAY,
    ),
    ("30d by day, all users", "", Bucket::Day, SPAN),
    ("30d by day, one user", "usr_007", Bucket::Day, SPAN),
];

/// Median time of `runs` calls.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Child mode: export every request of the file at `path` and print
/// "rows bytes rss_before_kb peak_rss_growth_kb".
fn export_child(path: &Path, format: Format, cache: usize) {
    let store = RedbStore::open_with_cache(path, cache).unwrap();
    let before = rss_kb();
    let mut peak = before;
    let mut bytes = 0usize;
    let mut chunks = 0u64;
    let q = ExportQuery {
        kind: ExportKind::Requests,
        format,
        user_id: None,
        from: 0,
        to: Millis::MAX,
    };
    let rows = export_blocking(&store, &q, |chunk| {
        bytes += chunk.len();
        chunks += 1;
        if chunks % 16 == 0 {
            peak = peak.max(rss_kb());
        }
        true
    })
    .unwrap();
    peak = peak.max(rss_kb());
    println!("{rows} {bytes} {before} {}", peak - before);
}

fn export_in_child(path: &Path, format: &str, cache: usize) -> (u64, u64, u64, u64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("ONEFLOW_BENCH_EXPORT", path)
        .env("ONEFLOW_BENCH_CACHE", cache.to_string())
        .env("ONEFLOW_BENCH_FORMAT", format)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(
        v.len(),
        4,
        "child said: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (v[0], v[1], v[2], v[3])
}

fn main() {
    if let Some(path) = std::env::var_os("ONEFLOW_BENCH_EXPORT") {
        let format = match std::env::var("ONEFLOW_BENCH_FORMAT").as_deref() {
            Ok("json") => Format::Json,
            _ => Format::Csv,
        };
        let cache = std::env::var("ONEFLOW_BENCH_CACHE")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(CACHE);
        export_child(Path::new(&path), format, cache);
        return;
    }
    // 100,000 shows where the cost stops growing: once every bucket of a
    // range holds data, more requests add no rows to read.
    let sizes = [1_000u64, 100_000, 1_000_000];
    let stores: Vec<(u64, PathBuf, RedbStore)> = sizes
        .iter()
        .map(|n| {
            let (p, s) = filled(*n);
            (*n, p, s)
        })
        .collect();

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    {
        let mut g = c.benchmark_group("analytics");
        for (name, scope, bucket, span) in QUERIES {
            for (n, _, store) in &stores {
                g.bench_function(format!("{name}/{n} requests"), |b| {
                    b.iter(|| query(store, scope, bucket, span))
                });
            }
        }
        g.finish();
    }
    c.final_summary();

    println!();
    println!("analytics answer time (median of 200) by stored requests; rows = rollup rows read");
    println!(
        "{:<26} {:>10} {:>6} {:>10} {:>6} {:>10} {:>6} {:>8} {:>9}",
        "query", "1k", "rows", "100k", "rows", "1M", "rows", "1M/1k", "1M/100k"
    );
    for (name, scope, bucket, span) in QUERIES {
        let mut cells = Vec::new();
        for (_, _, store) in &stores {
            let rows = rows_read(store, scope, bucket, span);
            let t = median(200, || {
                query(store, scope, bucket, span);
            });
            cells.push((t, rows));
        }
        let us = |i: usize| cells[i].0.as_secs_f64() * 1e6;
        println!(
            "{:<26} {:>8.1}us {:>6} {:>8.1}us {:>6} {:>8.1}us {:>6} {:>7.2}x {:>8.2}x",
            name,
            us(0),
            cells[0].1,
            us(1),
            cells[1].1,
            us(2),
            cells[2].1,
            us(2) / us(0),
            us(2) / us(1)
        );
    }

    // The children open the files themselves: redb allows one opener.
    let paths: Vec<PathBuf> = stores.into_iter().map(|(_, p, _)| p).collect();
    // Growth is the export's own buffers (a few chunks) plus redb's read
    // cache, which fills up to its configured size and no further: shown
    // with the default cache and with a small one.
    for cache in [CACHE, 4 * 1024 * 1024] {
        println!();
        println!(
            "export of every request, peak RSS growth in a fresh process (/proc/self/status), store cache {} MiB",
            cache >> 20
        );
        println!(
            "{:<8} {:>10} {:>12} {:>14} {:>16}",
            "format", "rows", "MB written", "RSS before", "peak growth"
        );
        for format in ["csv", "json"] {
            for path in &paths {
                let (rows, bytes, before, peak) = export_in_child(path, format, cache);
                println!(
                    "{:<8} {:>10} {:>12.1} {:>11} kB {:>13} kB",
                    format,
                    rows,
                    bytes as f64 / 1e6,
                    before,
                    peak
                );
            }
        }
    }
}
