//! Load bench of the real `oneflow` binary over loopback HTTP.
//!
//! Starts the release binary on a fresh data directory with zero-latency
//! simulated providers, creates users, then drives `POST /api/request` with
//! C concurrent keep-alive clients for a fixed time and reports requests/s,
//! p50, p99 and errors. `GET /health` is measured the same way in the same
//! run as a baseline: it is the cost of HTTP alone, so the ratio shows what
//! auth, wallets, routing and the group-committed settle add.
//!
//! A second pair of phases measures a real adapter: a mock OpenAI upstream
//! (`tests/e2e/upstream/`, a real HTTP server speaking OpenAI's protocol)
//! is driven directly with `POST /v1/chat/completions`, then through the
//! broker's `/v1/chat/completions` and its OpenAI adapter, in the same run;
//! the difference of the two is what the broker adds (auth, quote, hold,
//! routing, the upstream call over HTTP, settle with its fsync'd commit).
//!
//! Run via `bash benches/load.sh` (builds the release binary first), or
//! `cargo bench -p oneflow-web --bench load` when it is already built.
//!
//! Environment:
//! - `ONEFLOW_BIN`: the server binary (default `<workspace>/target/release/oneflow`)
//! - `LOAD_SECS`: measured seconds per endpoint (default 10)
//! - `LOAD_WARMUP_SECS`: unmeasured seconds before each measurement (default 2)
//! - `LOAD_CONCURRENCY`: concurrent clients (default 64)
//! - `LOAD_USERS`: users the clients are spread over (default = concurrency)
//! - `LOAD_THREADS`: load generator threads (default: number of cores)

// A bench should stop loudly on a broken setup; the workspace denies
// unwrap/expect for production code, not for measurement harnesses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[allow(dead_code, unused_imports)]
#[path = "../tests/e2e/upstream/mod.rs"]
mod upstream;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

/// Long enough to pass the server's 16-character minimum with room.
const ADMIN_KEY: &str = "load-bench-admin-key-0123456789";
const REQUEST_BODY: &str = r#"{"model":"gpt","prompt":"hello world","max_tokens":4}"#;
/// The same small chat for the mock upstream, directly and through the broker.
const CHAT_BODY: &str =
    r#"{"model":"mock-chat","messages":[{"role":"user","content":"hello world"}],"max_tokens":8}"#;
/// The variable the bench's OpenAI provider reads its key from.
const UPSTREAM_KEY_ENV: &str = "ONEFLOW_BENCH_UPSTREAM_KEY";
/// Enough for every request of a long run (each costs at most 4 credits).
const INITIAL_BALANCE: &str = "1000000000";
/// A hard cap on requests per phase, so a misconfigured duration cannot run
/// away; at the defaults it is never reached.
const MAX_REQUESTS_PER_PHASE: u64 = 20_000_000;
/// One stalled request must not stall the bench.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; a harness-less bench ignores its args.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Settings read from the environment.
struct Settings {
    bin: PathBuf,
    secs: u64,
    warmup_secs: u64,
    concurrency: usize,
    users: usize,
    threads: usize,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid number")),
        _ => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let bin = match std::env::var_os("ONEFLOW_BIN") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/oneflow"),
        };
        if !bin.is_file() {
            return Err(format!(
                "server binary {} not found; build it with \
                 `cargo build --release -p oneflow-web --bin oneflow` \
                 (or run `bash benches/load.sh`), or set ONEFLOW_BIN",
                bin.display()
            ));
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let concurrency: usize = env_num("LOAD_CONCURRENCY", 64)?;
        let s = Settings {
            bin,
            secs: env_num("LOAD_SECS", 10)?,
            warmup_secs: env_num("LOAD_WARMUP_SECS", 2)?,
            concurrency,
            users: env_num("LOAD_USERS", concurrency)?,
            threads: env_num("LOAD_THREADS", cores)?,
        };
        // Bounded by design: refuse settings that would not be a short bench.
        if !(1..=600).contains(&s.secs) || s.warmup_secs > 60 {
            return Err("LOAD_SECS must be 1..=600 and LOAD_WARMUP_SECS at most 60".into());
        }
        if !(1..=4096).contains(&s.concurrency) || !(1..=4096).contains(&s.users) {
            return Err("LOAD_CONCURRENCY and LOAD_USERS must be 1..=4096".into());
        }
        if s.threads == 0 {
            return Err("LOAD_THREADS must be at least 1".into());
        }
        Ok(s)
    }
}

/// The server's config: the default providers spelled out (setting
/// `providers` replaces the whole list) with zero latency, so the bench
/// measures the broker, not a simulated sleep.
fn config_toml(data_dir: &Path, upstream: &str) -> String {
    let providers = [
        ("gpt", "text", "per_output_token = 1"),
        ("image", "image", "per_image = 10"),
        ("audio", "audio", "per_request = 5"),
        ("video", "video", "per_request = 20"),
    ];
    // TOML basic strings take the path as JSON would escape it.
    let dir = serde_json::to_string(&data_dir.display().to_string()).unwrap();
    let mut s = format!(
        "[server]\nbind = \"127.0.0.1:0\"\ndata_dir = {dir}\n\
         # A short graceful stop, so the bench ends promptly.\n\
         shutdown_timeout_secs = 5\n"
    );
    for (name, modality, rate) in providers {
        s.push_str(&format!(
            "\n[[providers]]\nname = \"{name}\"\nkind = \"simulated\"\nmodality = \"{modality}\"\n\
             [providers.rates]\n{rate}\n[providers.simulated]\nlatency_ms = 0\n"
        ));
    }
    s.push_str(&format!(
        "\n[[providers]]\nname = \"mock-openai\"\nkind = \"openai\"\nmodality = \"text\"\n\
         models = [\"mock-chat\"]\nbase_url = \"{upstream}/v1\"\nallow_private = true\napi_key_env = \"{UPSTREAM_KEY_ENV}\"\n\
         [providers.rates]\nper_input_token = 0.001\nper_output_token = 0.002\n"
    ));
    s
}

/// The running server. Dropping it stops the server on every exit path,
/// including errors half-way through the bench.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(bin: &Path, config: &Path) -> Result<Server, String> {
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("ONEFLOW_ADMIN_KEY", ADMIN_KEY)
            .env(UPSTREAM_KEY_ENV, upstream::MOCK_API_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // The reader keeps draining stdout after the address line, so the
        // server can never block on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("oneflow listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let mut server = Server {
            child,
            url: String::new(),
        };
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(url) => server.url = url,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                return Err(match status {
                    Some(s) => format!("server exited before listening ({s})"),
                    None => format!("server did not listen within {STARTUP_TIMEOUT:?}"),
                });
            }
        }
        Ok(server)
    }

    /// SIGTERM first (a graceful stop commits queued writes), then a kill if
    /// it does not exit in time.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("load bench: server did not stop on SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One endpoint to drive.
#[derive(Clone, Copy)]
enum Target {
    Health,
    Request,
    /// Straight to the mock upstream.
    UpstreamDirect,
    /// The broker's `/v1`, through its OpenAI adapter to the mock.
    UpstreamViaBroker,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Health => "GET /health",
            Target::Request => "POST /api/request",
            Target::UpstreamDirect => "upstream direct",
            Target::UpstreamViaBroker => "upstream via /v1",
        }
    }
}

/// Where the phases send: the broker, and the mock upstream.
struct Bases {
    broker: Arc<str>,
    upstream: Arc<str>,
}

/// What one client saw during the measured window.
#[derive(Default)]
struct ClientStats {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// One request; `Err` carries a short description for the report.
async fn send(
    http: &reqwest::Client,
    bases: &Bases,
    target: Target,
    key: &str,
) -> Result<(), String> {
    let base = &bases.broker;
    let rb = match target {
        Target::Health => http.get(format!("{base}/health")),
        Target::Request => http
            .post(format!("{base}/api/request"))
            .bearer_auth(key)
            .header(CONTENT_TYPE, "application/json")
            .body(REQUEST_BODY),
        Target::UpstreamDirect => http
            .post(format!("{}/v1/chat/completions", bases.upstream))
            .bearer_auth(upstream::MOCK_API_KEY)
            .header(CONTENT_TYPE, "application/json")
            .body(CHAT_BODY),
        Target::UpstreamViaBroker => http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .header(CONTENT_TYPE, "application/json")
            .body(CHAT_BODY),
    };
    let res = rb.send().await.map_err(|e| e.to_string())?;
    let status = res.status();
    // Reading the whole body is part of the latency, and lets the
    // connection be reused.
    let body = res.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

/// A closed loop: the next request goes as soon as the previous answers.
/// Requests before `measure_from` are warm-up and not counted.
async fn client_loop(
    http: reqwest::Client,
    base: Arc<Bases>,
    target: Target,
    key: Arc<str>,
    measure_from: Instant,
    until: Instant,
    issued: Arc<AtomicU64>,
) -> ClientStats {
    let mut stats = ClientStats::default();
    loop {
        let start = Instant::now();
        if start >= until || issued.fetch_add(1, Ordering::Relaxed) >= MAX_REQUESTS_PER_PHASE {
            break;
        }
        let result = send(&http, &base, target, &key).await;
        if start < measure_from {
            continue;
        }
        match result {
            Ok(()) => {
                let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                stats.latencies_us.push(us);
            }
            Err(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(e);
            }
        }
    }
    stats
}

/// The figures of one phase.
struct PhaseResult {
    target: Target,
    ok: u64,
    errors: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    first_error: Option<String>,
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

async fn run_phase(
    http: &reqwest::Client,
    base: &Arc<Bases>,
    target: Target,
    keys: &[Arc<str>],
    s: &Settings,
) -> PhaseResult {
    let measure_from = Instant::now() + Duration::from_secs(s.warmup_secs);
    let until = measure_from + Duration::from_secs(s.secs);
    let issued = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..s.concurrency)
        .map(|i| {
            tokio::spawn(client_loop(
                http.clone(),
                base.clone(),
                target,
                keys[i % keys.len()].clone(),
                measure_from,
                until,
                issued.clone(),
            ))
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in futures_util::future::join_all(tasks).await {
        match t {
            Ok(c) => {
                all.extend(c.latencies_us);
                errors += c.errors;
                if first_error.is_none() {
                    first_error = c.first_error;
                }
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("client task failed: {e}"));
            }
        }
    }
    // Throughput over the nominal window: the last requests may finish a
    // little after `until`, which this slightly understates, never inflates
    // much.
    let measured = Instant::now().saturating_duration_since(measure_from);
    all.sort_unstable();
    PhaseResult {
        target,
        ok: all.len() as u64,
        errors,
        rps: all.len() as f64 / measured.as_secs_f64(),
        p50_ms: percentile_ms(&all, 50.0),
        p99_ms: percentile_ms(&all, 99.0),
        max_ms: all.last().map_or(f64::NAN, |&m| m as f64 / 1000.0),
        first_error,
    }
}

/// Creates one user; returns its API key.
async fn create_user(http: &reqwest::Client, base: &str, i: usize) -> Result<String, String> {
    let res = http
        .post(format!("{base}/api/users"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({
            "name": format!("load-{i}"),
            "email": format!("load-{i}@example.com"),
            "initial_balance": INITIAL_BALANCE,
        }))
        .send()
        .await
        .map_err(|e| format!("POST /api/users: {e}"))?;
    let status = res.status();
    let v: Value = res
        .json()
        .await
        .map_err(|e| format!("POST /api/users: {e}"))?;
    if status != StatusCode::CREATED {
        return Err(format!("POST /api/users answered {status}: {v}"));
    }
    v["api_key"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("POST /api/users: no api_key in {v}"))
}

async fn bench(s: &Settings, base: &str, upstream: &str) -> Result<(), String> {
    let http = reqwest::Client::builder()
        // Loopback only: never route through a proxy from the environment.
        .no_proxy()
        .pool_max_idle_per_host(s.concurrency)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let bases = Arc::new(Bases {
        broker: Arc::from(base),
        upstream: Arc::from(upstream),
    });
    let base: Arc<str> = Arc::from(base);

    // Several users, so requests spread over many wallets as real
    // traffic does, instead of queueing on one mailbox.
    let mut keys = Vec::with_capacity(s.users);
    for i in 0..s.users {
        keys.push(Arc::<str>::from(create_user(&http, &base, i).await?));
    }
    // Fail early, with the server's answer, if the request path is broken.
    for t in [
        Target::Request,
        Target::UpstreamDirect,
        Target::UpstreamViaBroker,
    ] {
        send(&http, &bases, t, &keys[0])
            .await
            .map_err(|e| format!("a first {} failed: {e}", t.label()))?;
    }

    println!(
        "load bench: {} clients over {} users, {} s warm-up + {} s measured per endpoint, \
         {} load threads, server {}",
        s.concurrency, s.users, s.warmup_secs, s.secs, s.threads, base
    );
    let mut results = Vec::new();
    let mut commits = (0.0, 0.0, 0.0);
    for target in [
        Target::Health,
        Target::Request,
        Target::UpstreamDirect,
        Target::UpstreamViaBroker,
    ] {
        println!("  running {} ...", target.label());
        let before = commit_figures(&http, &base).await?;
        results.push(run_phase(&http, &bases, target, &keys, s).await);
        let after = commit_figures(&http, &base).await?;
        if matches!(target, Target::Request) {
            commits = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
        }
    }

    println!();
    println!(
        "{:<18} {:>10} {:>7} {:>10} {:>9} {:>9} {:>9}",
        "endpoint", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    for r in &results {
        println!(
            "{:<18} {:>10} {:>7} {:>10.0} {:>9.3} {:>9.3} {:>9.3}",
            r.target.label(),
            r.ok,
            r.errors,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.max_ms
        );
    }
    if let [health, request, direct, via] = &results[..] {
        println!();
        println!(
            "/api/request vs /health: throughput ratio {:.3} ({:.1}% of baseline), \
             p50 +{:.3} ms, p99 +{:.3} ms",
            request.rps / health.rps,
            100.0 * request.rps / health.rps,
            request.p50_ms - health.p50_ms,
            request.p99_ms - health.p99_ms
        );
        println!(
            "OpenAI upstream via broker vs direct: throughput ratio {:.3}, \
             added latency p50 +{:.3} ms, p99 +{:.3} ms",
            via.rps / direct.rps,
            via.p50_ms - direct.p50_ms,
            via.p99_ms - direct.p99_ms
        );
    }
    // Of the added latency, one fsync'd group commit is the price of
    // "acknowledged means committed"; the rest is the broker's own.
    let (n, writes, micros) = commits;
    if n > 0.0 {
        println!(
            "group commits during POST /api/request: {n:.0}, {:.1} writes each, mean commit {:.3} ms",
            writes / n,
            micros / n / 1000.0
        );
    }
    for r in &results {
        if let Some(e) = &r.first_error {
            println!("first error on {}: {e}", r.target.label());
        }
    }
    Ok(())
}

/// (commits, writes, commit microseconds) so far, from the admin's status.
async fn commit_figures(http: &reqwest::Client, base: &str) -> Result<(f64, f64, f64), String> {
    let v: Value = http
        .get(format!("{base}/api/status"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let p = &v["persistence"];
    let num = |k: &str| {
        p[k].as_f64()
            .ok_or(format!("status has no persistence.{k}: {v}"))
    };
    Ok((
        num("commits")?,
        num("writes")?,
        num("commits")? * num("mean_commit_us")?,
    ))
}

fn run() -> Result<(), String> {
    let s = Settings::from_env()?;
    // Declared before the server so it is removed after the server stops.
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let config = dir.path().join("oneflow.toml");
    let data_dir = dir.path().join("data");
    // The mock upstream runs on its own thread for the whole bench.
    let mock = upstream::MockUpstream::start(upstream::Kind::OpenAi);
    std::fs::write(&config, config_toml(&data_dir, &mock.base_url()))
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;

    let mut server = Server::start(&s.bin, &config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the tokio runtime: {e}"))?;
    let result = rt.block_on(bench(&s, &server.url, &mock.base_url()));
    // Shutting the runtime down closes the client's keep-alive connections
    // before the graceful stop, which would otherwise wait on them.
    drop(rt);
    server.stop();
    result
}
