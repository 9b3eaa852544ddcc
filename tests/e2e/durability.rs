//! Durability and analytics under load, against the real `oneflow` binary
//! (a child process on its own data directory):
//!
//! - a `kill -9` while 64 clients spend on 8 wallets loses no acknowledged
//!   request, charges none twice and leaves no hold open. A request the
//!   kill cut off is recorded as `interrupted` (free), or not at all, or,
//!   if it was settled and only its answer was lost, as charged once; a
//!   retry with its Idempotency-Key then replays it instead of paying again;
//! - after 10,000 mixed requests (every modality, both APIs, provider
//!   failures and refusals), with and without a `kill -9` half way, the
//!   analytics (totals, per provider, series, burn-down) equal what the
//!   request records say, exactly.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use oneflow::Credits;
use oneflow::ledger::{EntryKind, LedgerEntry};
use oneflow::records::{RequestRecord, RequestStatus};

use crate::process::Proc;
use crate::support::{ADMIN_KEY, Api, assert_ledger_balances, credits};

// ---- the binary -------------------------------------------------------------

/// Recovery released exactly the holds of the `interrupted` requests, and
/// said so in its log line.
fn assert_recovery_released(server: &Proc, interrupted: usize) {
    let log = server.stderr_text();
    if interrupted > 0 {
        assert!(
            log.contains(&format!(
                "released {interrupted} holds left open by an earlier stop; {interrupted} requests marked interrupted"
            )),
            "{log}"
        );
    } else {
        assert!(!log.contains("released"), "{log}");
    }
}

/// The request id and charge an answer names in its `x-oneflow-*` headers.
fn id_and_cost(res: &reqwest::Response) -> (Option<String>, Option<String>) {
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    (header("x-oneflow-request-id"), header("x-oneflow-cost"))
}

/// SIGKILL from a blocking thread, so the clients keep running meanwhile.
async fn kill9(server: Proc) {
    tokio::task::spawn_blocking(move || server.kill9())
        .await
        .unwrap();
}

/// The four default providers (text priced per input token too, so costs
/// have fractions) and `flaky`, a text provider whose calls fail 40% of the
/// time (each request gets two tries, so 16% of requests fail). The circuit
/// never opens, so `flaky` keeps failing at that rate.
fn config(text_latency_ms: u64) -> String {
    format!(
        r#"
[server]
workers = 2
shutdown_timeout_secs = 1

[retry]
attempts_per_provider = 2
backoff_base_ms = 1
backoff_max_ms = 2

[circuit]
failures = 1000

[[providers]]
name = "gpt"
kind = "simulated"
modality = "text"
[providers.rates]
per_input_token = "0.013"
per_output_token = 1
[providers.simulated]
latency_ms = {text_latency_ms}

[[providers]]
name = "image"
kind = "simulated"
modality = "image"
[providers.rates]
per_image = 10
[providers.rates.per_image_size]
"256x256" = "4.5"
"512x512" = 7
[providers.simulated]
latency_ms = 0

[[providers]]
name = "audio"
kind = "simulated"
modality = "audio"
[providers.rates]
per_request = 5
per_second = "0.25"
[providers.simulated]
latency_ms = 0

[[providers]]
name = "video"
kind = "simulated"
modality = "video"
[providers.rates]
per_request = 20
[providers.simulated]
latency_ms = 0

[[providers]]
name = "flaky"
kind = "simulated"
modality = "text"
[providers.rates]
per_output_token = "1.5"
[providers.simulated]
latency_ms = 0
failure_rate = 0.4
seed = 7
"#
    )
}

const PROVIDERS: [&str; 5] = ["gpt", "image", "audio", "video", "flaky"];

// ---- reading what the broker stored ------------------------------------------

async fn get(api: &Api, key: &str, path: &str) -> Value {
    let (s, v) = api.get(key, path).await;
    assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
    v
}

/// Every request record of the caller, newest first, read `limit` a page.
pub(crate) async fn history(api: &Api, key: &str, limit: usize) -> Vec<RequestRecord> {
    let mut out: Vec<RequestRecord> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/history/requests?limit={limit}&cursor={c}"),
            None => format!("/api/history/requests?limit={limit}"),
        };
        let v = get(api, key, &path).await;
        let items: Vec<RequestRecord> = serde_json::from_value(v["items"].clone()).unwrap();
        out.extend(items);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(out.len() <= 100_000, "request paging does not end");
    }
    out
}

/// Sum of the ledger's entries of `kind`, by request id.
fn by_request(ledger: &[LedgerEntry], kind: EntryKind) -> HashMap<String, Credits> {
    let mut out: HashMap<String, Credits> = HashMap::new();
    for e in ledger.iter().filter(|e| e.kind == kind) {
        let rid = e.request_id.clone().unwrap_or_else(|| panic!("{e:?}"));
        *out.entry(rid).or_default() += e.amount;
    }
    out
}

/// The ledger agrees with the records: it replays to `balance`, which is
/// `top_up` minus what the records cost; each request has one hold, charged
/// exactly its record's cost, and closed (charged and released in full);
/// no hold belongs to a request without a record.
fn assert_ledger_matches(
    who: &str,
    ledger: &[LedgerEntry],
    records: &[RequestRecord],
    top_up: Credits,
    balance: Credits,
) {
    assert_ledger_balances(ledger, balance);
    let spent: Credits = records.iter().map(|r| r.cost).sum();
    assert_eq!(balance, top_up - spent, "{who}: balance vs records");
    let tops: Credits = ledger
        .iter()
        .filter(|e| e.kind == EntryKind::TopUp)
        .map(|e| e.amount)
        .sum();
    assert_eq!(tops, top_up, "{who}: top-ups");
    let charges = by_request(ledger, EntryKind::Charge);
    let releases = by_request(ledger, EntryKind::Release);
    let mut holds: HashMap<String, Vec<&LedgerEntry>> = HashMap::new();
    for e in ledger.iter().filter(|e| e.kind == EntryKind::Hold) {
        let rid = e.request_id.clone().unwrap_or_else(|| panic!("{e:?}"));
        holds.entry(rid).or_default().push(e);
    }
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    for rid in holds.keys().chain(charges.keys()).chain(releases.keys()) {
        assert!(
            ids.contains(rid.as_str()),
            "{who}: the ledger has entries of {rid}, which has no record"
        );
    }
    for r in records {
        let h = holds.get(&r.id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(h.len(), 1, "{who}: holds of {}: {h:?}", r.id);
        let charged = charges.get(&r.id).copied().unwrap_or_default();
        let released = releases.get(&r.id).copied().unwrap_or_default();
        assert_eq!(charged, r.cost, "{who}: charged for {r:?}");
        assert_eq!(
            charged + released,
            h[0].amount,
            "{who}: hold of {} not closed in full",
            r.id
        );
        assert_eq!(h[0].amount, r.quote, "{who}: hold vs quote of {}", r.id);
    }
}

/// An interrupted record: free, no usage, saying why.
fn assert_interrupted(r: &RequestRecord) {
    assert_eq!(r.status, RequestStatus::Interrupted, "{r:?}");
    assert_eq!(r.cost, Credits::ZERO, "{r:?}");
    assert_eq!(r.usage, Default::default(), "{r:?}");
    assert!(
        r.error.as_deref().unwrap_or("").contains("interrupted"),
        "{r:?}"
    );
}

// ---- 1. kill -9 under load ---------------------------------------------------

const WALLETS: usize = 8;
const CLIENTS_PER_WALLET: usize = 8;
const START_BALANCE: i64 = 1_000_000;
/// Kill once this many requests were acknowledged...
const ACKED_BEFORE_KILL: usize = 300;
/// ...or after this long, whichever comes first.
const MOST_BEFORE_KILL: Duration = Duration::from_secs(10);
/// Requests one client sends at most (it stops at the kill long before).
const MOST_PER_CLIENT: usize = 5_000;

/// A 2xx answer: the request it acknowledged and what it charged.
#[derive(Clone, Debug)]
struct Ack {
    wallet: usize,
    id: String,
    cost: Credits,
}

/// A request the kill cut off: sent (or about to be), never answered.
#[derive(Clone, Copy, Debug)]
struct Cut {
    wallet: usize,
    client: usize,
    n: usize,
}

/// What the clients saw.
struct Load {
    acks: Mutex<Vec<Ack>>,
    /// How many acknowledgements so far (the kill waits on it).
    acked: watch::Sender<usize>,
    killed: AtomicBool,
    /// Answers that were not 2xx, and transport errors before the kill.
    unexpected: Mutex<Vec<String>>,
    cut: Mutex<Vec<Cut>>,
}

/// The `n`th request of client `c`: a small native text request with an
/// Idempotency-Key, or, every third one, `/v1/chat/completions` (which
/// takes no key; its prompts start with "chat").
fn spend_request(c: usize, n: usize) -> (Option<String>, &'static str, Value) {
    let words: Vec<String> = (0..1 + n % 6).map(|k| format!("word{k}")).collect();
    let max_tokens = 4 + n % 9;
    if n % 3 == 2 {
        let prompt = format!("chat {}", words.join(" "));
        let body = json!({"model": "gpt", "max_tokens": max_tokens,
                          "messages": [{"role": "user", "content": prompt}]});
        (None, "/v1/chat/completions", body)
    } else {
        let body = json!({"model": "gpt", "prompt": words.join(" "), "max_tokens": max_tokens});
        (Some(format!("client-{c}-{n}")), "/api/request", body)
    }
}

/// Sends request `n` of client `c`. `Ok(Ok)` is a 2xx answer (request id
/// and cost), `Ok(Err)` any other answer, `Err` no answer.
async fn spend_once(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    c: usize,
    n: usize,
) -> Result<Result<(String, Credits), String>, reqwest::Error> {
    let (idem, path, body) = spend_request(c, n);
    let mut rb = http
        .post(format!("{url}{path}"))
        .bearer_auth(key)
        .json(&body);
    if let Some(k) = &idem {
        rb = rb.header("Idempotency-Key", k);
    }
    let res = rb.send().await?;
    let status = res.status();
    let (id, cost) = id_and_cost(&res);
    let text = res.text().await?;
    if !status.is_success() {
        return Ok(Err(format!("{path}: {status}: {text}")));
    }
    if idem.is_none() {
        return Ok(Ok((id.unwrap(), cost.unwrap().parse().unwrap())));
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], "succeeded", "{v}");
    Ok(Ok((
        v["request_id"].as_str().unwrap().to_string(),
        credits(&v["cost"]),
    )))
}

/// Client `c`: spends on `wallet` until the server goes away.
async fn client(load: Arc<Load>, http: reqwest::Client, url: String, key: String, c: usize) {
    let wallet = c % WALLETS;
    for n in 0..MOST_PER_CLIENT {
        match spend_once(&http, &url, &key, c, n).await {
            Ok(Ok((id, cost))) => {
                load.acks.lock().unwrap().push(Ack { wallet, id, cost });
                load.acked.send_modify(|a| *a += 1);
            }
            Ok(Err(answer)) => load.unexpected.lock().unwrap().push(answer),
            Err(e) => {
                if !load.killed.load(Ordering::SeqCst) {
                    let what = format!("no answer before the kill: {e}");
                    load.unexpected.lock().unwrap().push(what);
                }
                load.cut.lock().unwrap().push(Cut {
                    wallet,
                    client: c,
                    n,
                });
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_request() {
    let tmp = tempfile::tempdir().unwrap();
    // Text answers take 10 ms, so many holds are open at any moment.
    std::fs::write(tmp.path().join("oneflow.toml"), config(10)).unwrap();
    let server = Proc::spawn(tmp.path());
    let api = Api::new(&server.url);
    let mut keys = Vec::new();
    for w in 0..WALLETS {
        let (_, key) = api.user(&format!("w{w}"), &START_BALANCE.to_string()).await;
        keys.push(key);
    }
    let top_up = Credits::from_credits(START_BALANCE);

    let load = Arc::new(Load {
        acks: Mutex::new(Vec::new()),
        acked: watch::channel(0).0,
        killed: AtomicBool::new(false),
        unexpected: Mutex::new(Vec::new()),
        cut: Mutex::new(Vec::new()),
    });
    let mut acked = load.acked.subscribe();
    let clients: Vec<_> = (0..WALLETS * CLIENTS_PER_WALLET)
        .map(|c| {
            tokio::spawn(client(
                load.clone(),
                api.http.clone(),
                server.url.clone(),
                keys[c % WALLETS].clone(),
                c,
            ))
        })
        .collect();
    // Kill while every client is still sending.
    let reached = tokio::time::timeout(
        MOST_BEFORE_KILL,
        acked.wait_for(|n| *n >= ACKED_BEFORE_KILL),
    )
    .await
    .is_ok();
    load.killed.store(true, Ordering::SeqCst);
    kill9(server).await;
    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("a client did not stop after the kill")
            .unwrap();
    }
    drop(api);

    let unexpected = load.unexpected.lock().unwrap().clone();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    let acks = load.acks.lock().unwrap().clone();
    let cut = load.cut.lock().unwrap().clone();
    assert!(!acks.is_empty(), "nothing was acknowledged before the kill");
    // Every client was cut off by the kill, none ran out of requests.
    assert_eq!(cut.len(), WALLETS * CLIENTS_PER_WALLET, "{cut:?}");
    let ack_ids: HashSet<&str> = acks.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ack_ids.len(),
        acks.len(),
        "one request id acknowledged twice"
    );

    let server = Proc::spawn(tmp.path());
    let api = Api::new(&server.url);
    let mut interrupted = 0;
    // Per wallet: requests settled before the kill whose answer it cut off.
    let mut settled_unanswered: Vec<HashMap<String, RequestRecord>> = Vec::new();
    let mut known: HashSet<String> = HashSet::new();
    let mut count_before = Vec::new();
    for (w, key) in keys.iter().enumerate() {
        let who = format!("wallet {w}");
        let records = history(&api, key, 16).await;
        let by_id: HashMap<&str, &RequestRecord> =
            records.iter().map(|r| (r.id.as_str(), r)).collect();
        assert_eq!(by_id.len(), records.len(), "{who}: a request listed twice");
        known.extend(records.iter().map(|r| r.id.clone()));
        count_before.push(records.len());

        // Every acknowledged request is there once, as answered.
        let mine: Vec<&Ack> = acks.iter().filter(|a| a.wallet == w).collect();
        for a in &mine {
            let r = by_id
                .get(a.id.as_str())
                .unwrap_or_else(|| panic!("{who}: acknowledged request {} was lost", a.id));
            assert_eq!(r.status, RequestStatus::Succeeded, "{r:?}");
            assert_eq!(
                r.cost, a.cost,
                "{who}: {} was answered with another cost",
                a.id
            );
        }
        // The rest were in flight: at most one per client cut off, each
        // either interrupted (free) or settled just before the kill (its
        // answer lost on the way).
        let rest: Vec<&RequestRecord> = records
            .iter()
            .filter(|r| !ack_ids.contains(r.id.as_str()))
            .collect();
        let cut_here = cut.iter().filter(|c| c.wallet == w).count();
        assert!(
            rest.len() <= cut_here,
            "{who}: {} records nobody was answered for, {cut_here} requests cut off: {rest:#?}",
            rest.len()
        );
        let mut settled = HashMap::new();
        for r in &rest {
            match r.status {
                RequestStatus::Interrupted => {
                    assert_interrupted(r);
                    interrupted += 1;
                }
                RequestStatus::Succeeded => {
                    settled.insert(r.id.clone(), (*r).clone());
                }
                RequestStatus::Failed => panic!("{who}: a request failed: {r:?}"),
            }
        }
        settled_unanswered.push(settled);
        assert_eq!(records.len(), mine.len() + rest.len());

        // No hold is open; the money is what the records say, in the
        // status, the ledger and the analytics.
        let status = get(&api, key, "/api/status").await;
        let balance = credits(&status["balance"]);
        assert_eq!(credits(&status["held"]), Credits::ZERO, "{who}: {status}");
        assert_eq!(credits(&status["available"]), balance, "{who}: {status}");
        let ledger = api.ledger(key).await;
        assert_ledger_matches(&who, &ledger, &records, top_up, balance);
        for r in rest
            .iter()
            .filter(|r| r.status == RequestStatus::Interrupted)
        {
            let release = ledger
                .iter()
                .find(|e| e.kind == EntryKind::Release && e.request_id.as_ref() == Some(&r.id))
                .unwrap();
            assert!(
                release
                    .note
                    .as_deref()
                    .unwrap_or("")
                    .contains("released on restart"),
                "{release:?}"
            );
        }
        let a = get(&api, key, "/api/analytics").await;
        assert_eq!(a["total_requests"].as_u64(), Some(records.len() as u64));
        assert_eq!(credits(&a["total_cost"]), top_up - balance, "{who}: {a}");
    }
    assert_recovery_released(&server, interrupted);

    // Clients retry what the kill cut off with the same Idempotency-Key: a
    // request settled before the kill is replayed (its id and cost, no new
    // charge); any other runs now, once.
    let mut replayed_ids = HashSet::new();
    let mut ran = [0; WALLETS];
    for c in &cut {
        let (Some(idem), _, body) = spend_request(c.client, c.n) else {
            continue;
        };
        let (s, replayed, v) = api.idempotent(&keys[c.wallet], &idem, &body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let id = v["request_id"].as_str().unwrap().to_string();
        if replayed {
            let r = settled_unanswered[c.wallet].get(&id).unwrap_or_else(|| {
                panic!("{idem} replayed {id}, not a request settled unanswered")
            });
            assert_eq!(credits(&v["cost"]), r.cost, "{v}");
            assert!(replayed_ids.insert(id), "{idem}: replayed twice");
        } else {
            assert!(!known.contains(&id), "{idem}: ran again as {id}");
            ran[c.wallet] += 1;
        }
    }
    for (w, settled) in settled_unanswered.iter().enumerate() {
        for r in settled
            .values()
            .filter(|r| !r.prompt_preview.starts_with("chat"))
        {
            assert!(
                replayed_ids.contains(&r.id),
                "wallet {w}: {} settled, but its retry did not replay it",
                r.id
            );
        }
        let who = format!("wallet {w} after the retries");
        let records = history(&api, &keys[w], 64).await;
        let kept = records.iter().filter(|r| known.contains(&r.id)).count();
        assert_eq!(kept, count_before[w], "{who}: records lost");
        assert_eq!(
            records.len(),
            kept + ran[w],
            "{who}: one record per retry that ran"
        );
        let balance = api.balance(&keys[w]).await;
        let ledger = api.ledger(&keys[w]).await;
        assert_ledger_matches(&who, &ledger, &records, top_up, balance);
    }

    // The same keys work and every wallet is charged exactly again:
    // 3 input tokens at 0.013 and 5 output tokens at 1.
    for key in &keys {
        let before = api.balance(key).await;
        let (s, v) = api
            .post(
                key,
                "/api/request",
                json!({"model": "gpt", "prompt": "after the crash", "max_tokens": 10}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let cost: Credits = "5.039".parse().unwrap();
        assert_eq!(credits(&v["cost"]), cost, "{v}");
        assert_eq!(credits(&v["balance"]), before - cost, "{v}");
        assert_ledger_balances(&api.ledger(key).await, before - cost);
    }
    let settled: usize = settled_unanswered.iter().map(HashMap::len).sum();
    eprintln!(
        "kill -9 under load: {} acknowledged before the kill (target {ACKED_BEFORE_KILL} reached: {reached}), \
         {} requests cut off; after restart {interrupted} interrupted, {settled} settled but unanswered \
         ({} replayed by an idempotent retry), {} retries ran anew",
        acks.len(),
        cut.len(),
        replayed_ids.len(),
        ran.iter().sum::<usize>()
    );
}

// ---- 2. analytics equal the records after 10,000 mixed requests -------------

const MIXED: usize = 10_000;
const CONCURRENCY: usize = 32;
const USERS: usize = 8;
/// The last user can afford only a few requests: the rest are refused.
const POOR: usize = USERS - 1;

fn balance_of(user: usize) -> Credits {
    if user == POOR {
        Credits::from_credits(150)
    } else {
        Credits::from_credits(1_000_000)
    }
}

/// Who sends the `i`th request.
fn user_of(i: usize) -> usize {
    i % USERS
}

/// Where the `i`th request goes and what it asks.
fn mixed(i: usize) -> (&'static str, Value) {
    let words = |n: usize| {
        (0..n)
            .map(|k| format!("w{}", (i + k) % 97))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let sizes = ["256x256", "512x512", "1024x1024"];
    match (i / USERS) % 20 {
        // Text: max_tokens sometimes below the answer's length.
        0..=5 => (
            "/api/request",
            json!({"model": "gpt", "prompt": words(1 + i % 7), "max_tokens": 2 + i % 11}),
        ),
        6..=8 => (
            "/v1/chat/completions",
            json!({"model": "gpt", "max_tokens": 3 + i % 9,
                   "messages": [{"role": "user", "content": words(1 + i % 5)}]}),
        ),
        9 => (
            "/v1/completions",
            json!({"model": "gpt", "prompt": words(2 + i % 4), "max_tokens": 6}),
        ),
        10 | 11 => (
            "/api/request",
            json!({"model": "image", "prompt": words(2), "n": 1 + i % 3, "size": sizes[i % 3]}),
        ),
        12 => (
            "/v1/images/generations",
            json!({"model": "image", "prompt": words(3), "n": 1, "size": "512x512"}),
        ),
        13 | 14 => (
            "/api/request",
            json!({"model": "audio", "prompt": words(4), "seconds": 1 + i % 30}),
        ),
        15 => (
            "/v1/audio/speech",
            json!({"model": "audio", "input": words(5)}),
        ),
        16 => (
            "/api/request",
            json!({"model": "video", "prompt": words(2), "seconds": 1 + i % 10}),
        ),
        // Fails 16% of the time (502, recorded as failed).
        17 | 18 => (
            "/api/request",
            json!({"model": "flaky", "prompt": words(1 + i % 4), "max_tokens": 5}),
        ),
        _ => match (i / (USERS * 20)) % 3 {
            // Refused before anything is held: 422 over_max_price, 400.
            0 => (
                "/api/request",
                json!({"model": "gpt", "prompt": "too dear", "max_tokens": 50, "max_price": "1"}),
            ),
            1 => (
                "/api/request",
                json!({"model": "nonesuch", "prompt": "who?"}),
            ),
            _ => (
                "/v1/chat/completions",
                json!({"model": "flaky", "max_tokens": 4,
                       "messages": [{"role": "user", "content": words(2)}]}),
            ),
        },
    }
}

/// How the broker answered one request.
#[derive(Clone, Debug)]
enum Answer {
    /// 2xx: the request and its charge.
    Ok { id: String, cost: Credits },
    /// Every try failed: the request was recorded, nothing charged.
    Failed { id: String },
    /// Refused before a hold (402, 400, 422...): nothing recorded.
    Refused(StatusCode),
}

/// Sends request `i`; `Err` when no answer came (the kill).
async fn send(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    i: usize,
) -> Result<Answer, reqwest::Error> {
    let (path, body) = mixed(i);
    let res = http
        .post(format!("{url}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?;
    let status = res.status();
    let (id, cost) = id_and_cost(&res);
    let v1 = path.starts_with("/v1/");
    if status.is_success() {
        if v1 {
            // The body (an audio clip for speech) must arrive whole too.
            res.bytes().await?;
            return Ok(Answer::Ok {
                id: id.unwrap(),
                cost: cost.unwrap().parse().unwrap(),
            });
        }
        let v: Value = res.json().await?;
        assert_eq!(v["status"], "succeeded", "{v}");
        return Ok(Answer::Ok {
            id: v["request_id"].as_str().unwrap().to_string(),
            cost: credits(&v["cost"]),
        });
    }
    let v: Value = res.json().await?;
    // A request that was held and failed names its record.
    let failed = if v1 {
        v["error"]["message"]
            .as_str()
            .and_then(|m| m.split("(request ").nth(1))
            .and_then(|m| m.split(')').next())
            .map(str::to_string)
    } else {
        v["error"]["request_id"].as_str().map(str::to_string)
    };
    Ok(match failed {
        Some(id) => {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}: {v}");
            Answer::Failed { id }
        }
        None => {
            assert!(status.is_client_error(), "{path}: {status}: {v}");
            Answer::Refused(status)
        }
    })
}

/// Requests handed out to the workers, and what came back.
struct Mixed {
    queue: Mutex<VecDeque<usize>>,
    answers: Mutex<Vec<(usize, Answer)>>,
    answered: watch::Sender<usize>,
    /// Requests the kill cut off; they are sent again after the restart.
    cut_off: Mutex<Vec<usize>>,
    killed: AtomicBool,
    unexpected: Mutex<Vec<String>>,
}

async fn worker(m: Arc<Mixed>, http: reqwest::Client, url: String, keys: Arc<Vec<String>>) {
    loop {
        let Some(i) = m.queue.lock().unwrap().pop_front() else {
            return;
        };
        match send(&http, &url, &keys[user_of(i)], i).await {
            Ok(a) => {
                m.answers.lock().unwrap().push((i, a));
                m.answered.send_modify(|n| *n += 1);
            }
            Err(e) => {
                if !m.killed.load(Ordering::SeqCst) {
                    let what = format!("request {i} got no answer before the kill: {e}");
                    m.unexpected.lock().unwrap().push(what);
                }
                m.cut_off.lock().unwrap().push(i);
                return;
            }
        }
    }
}

/// Starts the workers on what is queued, against `url`.
fn workers(m: &Arc<Mixed>, url: &str, keys: &Arc<Vec<String>>) -> Vec<tokio::task::JoinHandle<()>> {
    let http = Api::new(url).http;
    (0..CONCURRENCY)
        .map(|_| {
            tokio::spawn(worker(
                m.clone(),
                http.clone(),
                url.to_string(),
                keys.clone(),
            ))
        })
        .collect()
}

/// Waits (bounded) for workers that stop by themselves.
async fn join(workers: Vec<tokio::task::JoinHandle<()>>) {
    for w in workers {
        tokio::time::timeout(Duration::from_secs(600), w)
            .await
            .expect("a worker did not finish")
            .unwrap();
    }
}

/// Sends what is queued until `n` requests are answered in all, then
/// kills the server with requests in flight; the rest stay queued or are
/// cut off.
async fn drive_until_killed(m: &Arc<Mixed>, server: Proc, keys: &Arc<Vec<String>>, n: usize) {
    let running = workers(m, &server.url, keys);
    let mut answered = m.answered.subscribe();
    tokio::time::timeout(Duration::from_secs(240), answered.wait_for(|a| *a >= n))
        .await
        .expect("the requests stopped making progress")
        .unwrap();
    m.killed.store(true, Ordering::SeqCst);
    kill9(server).await;
    join(running).await;
}

/// Figures summed from request records, as analytics should show them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Fig {
    requests: u64,
    successes: u64,
    cost: Credits,
    input_tokens: u64,
    output_tokens: u64,
    latency_sum: u64,
    latency_max: u64,
}

impl Fig {
    fn add(&mut self, r: &RequestRecord) {
        self.requests += 1;
        self.successes += u64::from(r.status == RequestStatus::Succeeded);
        self.cost += r.cost;
        self.input_tokens += r.usage.input_tokens;
        self.output_tokens += r.usage.output_tokens;
        self.latency_sum += r.latency_ms;
        self.latency_max = self.latency_max.max(r.latency_ms);
    }

    fn of<'a>(records: impl IntoIterator<Item = &'a RequestRecord>) -> Fig {
        let mut f = Fig::default();
        for r in records {
            f.add(r);
        }
        f
    }
}

/// Analytics figures (`totals`, a provider, a series point) equal `f`:
/// counts, cost and tokens exactly, rates and mean latency as the same
/// division, percentiles ordered and never above the slowest request.
fn assert_figures(v: &Value, f: &Fig, what: &str) {
    let n = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{what}: {k} in {v}"))
    };
    assert_eq!(n("requests"), f.requests, "{what}: requests in {v}");
    assert_eq!(n("successes"), f.successes, "{what}: successes in {v}");
    assert_eq!(
        n("failures"),
        f.requests - f.successes,
        "{what}: failures in {v}"
    );
    assert_eq!(credits(&v["cost"]), f.cost, "{what}: cost in {v}");
    assert_eq!(
        n("input_tokens"),
        f.input_tokens,
        "{what}: input tokens in {v}"
    );
    assert_eq!(
        n("output_tokens"),
        f.output_tokens,
        "{what}: output tokens in {v}"
    );
    let ratio = |x: u64| {
        if f.requests == 0 {
            0.0
        } else {
            x as f64 / f.requests as f64
        }
    };
    assert_eq!(
        v["success_rate"].as_f64(),
        Some(ratio(f.successes)),
        "{what}: {v}"
    );
    assert_eq!(
        v["mean_latency_ms"].as_f64(),
        Some(ratio(f.latency_sum)),
        "{what}: {v}"
    );
    let p: Vec<Option<u64>> = ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
        .iter()
        .map(|k| v[*k].as_u64())
        .collect();
    if f.requests == 0 {
        assert_eq!(p, [None, None, None], "{what}: {v}");
    } else {
        let p: Vec<u64> = p.into_iter().map(Option::unwrap).collect();
        assert!(
            p[0] <= p[1] && p[1] <= p[2] && p[2] <= f.latency_max,
            "{what}: percentiles {p:?}, slowest {}",
            f.latency_max
        );
    }
}

/// `GET /api/analytics` (all time, and the last 24 h by minute) equals the
/// records: totals, the flat `total_*` fields and every provider.
fn assert_summary(a: &Value, records: &[&RequestRecord], what: &str) {
    let all = Fig::of(records.iter().copied());
    assert_eq!(
        a["total_requests"].as_u64(),
        Some(all.requests),
        "{what}: {a}"
    );
    assert_eq!(
        a["total_successes"].as_u64(),
        Some(all.successes),
        "{what}: {a}"
    );
    assert_eq!(credits(&a["total_cost"]), all.cost, "{what}: {a}");
    assert_eq!(a["success_rate"], a["totals"]["success_rate"], "{what}");
    assert_figures(&a["totals"], &all, &format!("{what}: totals"));
    let mut per: BTreeMap<&str, Fig> = BTreeMap::new();
    for r in records {
        per.entry(r.provider.as_str()).or_default().add(r);
    }
    let providers = a["providers"].as_object().unwrap();
    let listed: Vec<&str> = providers.keys().map(String::as_str).collect();
    assert_eq!(listed, per.keys().copied().collect::<Vec<_>>(), "{what}");
    for (name, f) in &per {
        assert_figures(&providers[*name], f, &format!("{what}: provider {name}"));
    }
}

/// A series equals the records bucket by bucket: every bucket of
/// `[from, to)` is there once, in order, holding exactly its requests.
fn assert_series(s: &Value, bucket_ms: i64, records: &[&RequestRecord], what: &str) {
    let (from, to) = (s["from"].as_i64().unwrap(), s["to"].as_i64().unwrap());
    let mut want: BTreeMap<i64, Fig> = BTreeMap::new();
    for r in records {
        assert!(
            (from..to).contains(&r.created_at),
            "{what}: {} at {} is outside [{from}, {to})",
            r.id,
            r.created_at
        );
        want.entry(r.created_at.div_euclid(bucket_ms) * bucket_ms)
            .or_default()
            .add(r);
    }
    let points = s["points"].as_array().unwrap();
    assert_eq!(points.len() as i64, (to - from) / bucket_ms, "{what}");
    for (k, p) in points.iter().enumerate() {
        let start = p["start"].as_i64().unwrap();
        assert_eq!(start, from + k as i64 * bucket_ms, "{what}: point {k}");
        let f = want.remove(&start).unwrap_or_default();
        assert_figures(p, &f, &format!("{what}: bucket {start}"));
    }
    assert!(want.is_empty(), "{what}: buckets missing: {want:?}");
}

const BUCKETS: [(&str, i64); 3] = [("minute", 60_000), ("hour", 3_600_000), ("day", 86_400_000)];

/// The burn-down's spend is the records' cost (all within its window); its
/// rate and run-out time follow from it; balance and available are the
/// wallet's, with nothing held.
fn assert_burndown(b: &Value, records: &[RequestRecord], balance: Credits, what: &str) {
    let (start, end) = (
        b["window_start"].as_i64().unwrap(),
        b["window_end"].as_i64().unwrap(),
    );
    let window = end - start;
    assert_eq!(window, 24 * 3_600_000, "{what}: default window: {b}");
    assert!(
        records.iter().all(|r| (start..end).contains(&r.created_at)),
        "{what}: a request outside the window: {b}"
    );
    let spent: Credits = records.iter().map(|r| r.cost).sum();
    assert_eq!(credits(&b["window_spent"]), spent, "{what}: {b}");
    let rate = i128::from(spent.micros()) * 3_600_000 / i128::from(window);
    assert_eq!(
        credits(&b["rate_per_hour"]),
        Credits(i64::try_from(rate).unwrap()),
        "{what}: {b}"
    );
    assert_eq!(credits(&b["balance"]), balance, "{what}: {b}");
    assert_eq!(credits(&b["available"]), balance, "{what}: {b}");
    let now = b["now"].as_i64().unwrap();
    let runs_out = if spent == Credits::ZERO {
        None
    } else if balance <= Credits::ZERO {
        Some(now)
    } else {
        let (num, den) = (
            i128::from(balance.micros()) * i128::from(window),
            i128::from(spent.micros()),
        );
        Some(now + i64::try_from((num + den - 1) / den).unwrap())
    };
    assert_eq!(b["balance_runs_out_at"].as_i64(), runs_out, "{what}: {b}");
    assert_eq!(b["budgets"], json!([]), "{what}: no budgets were set");
}

/// Sends the 10,000 requests with at most `CONCURRENCY` in flight; with
/// `kill`, kills the server with `kill -9` once half are answered (others
/// in flight), restarts it on the same file and sends the rest (the cut-off
/// ones again). Then checks the answers against the records, the records
/// against the ledger, and every analytics figure against the records.
async fn mixed_requests_then_compare(kill: bool) {
    let tmp = tempfile::tempdir().unwrap();
    // Text answers take 5 ms, so a kill finds holds open.
    std::fs::write(tmp.path().join("oneflow.toml"), config(5)).unwrap();
    let server = Proc::spawn(tmp.path());
    let api = Api::new(&server.url);
    let mut keys = Vec::new();
    for u in 0..USERS {
        let (_, key) = api.user(&format!("m{u}"), &balance_of(u).to_string()).await;
        keys.push(key);
    }
    let keys = Arc::new(keys);
    drop(api);
    let m = Arc::new(Mixed {
        queue: Mutex::new((0..MIXED).collect()),
        answers: Mutex::new(Vec::new()),
        answered: watch::channel(0).0,
        cut_off: Mutex::new(Vec::new()),
        killed: AtomicBool::new(false),
        unexpected: Mutex::new(Vec::new()),
    });
    let server = if kill {
        drive_until_killed(&m, server, &keys, MIXED / 2).await;
        let cut: Vec<usize> = m.cut_off.lock().unwrap().clone();
        assert!(!cut.is_empty(), "the kill cut off no request");
        // Requests cut off by the kill go again, first.
        {
            let mut q = m.queue.lock().unwrap();
            for &i in cut.iter().rev() {
                q.push_front(i);
            }
        }
        let server = Proc::spawn(tmp.path());
        m.killed.store(false, Ordering::SeqCst);
        join(workers(&m, &server.url, &keys)).await;
        server
    } else {
        join(workers(&m, &server.url, &keys)).await;
        server
    };
    let unexpected = m.unexpected.lock().unwrap().clone();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    let answers = m.answers.lock().unwrap().clone();
    let cut_off = m.cut_off.lock().unwrap().clone();
    assert_eq!(kill, !cut_off.is_empty());
    // Every request was answered exactly once in the end.
    let mut seen = vec![0u8; MIXED];
    for (i, _) in &answers {
        seen[*i] += 1;
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "a request answered twice or never"
    );

    let api = Api::new(&server.url);
    let mut everyone: Vec<RequestRecord> = Vec::new();
    let (mut oks, mut failures, mut refusals, mut unanswered) = (0, 0, 0, 0);
    let mut interrupted = 0;
    let mut refused_with: BTreeMap<u16, usize> = BTreeMap::new();
    for (u, key) in keys.iter().enumerate() {
        let who = format!("user {u}");
        let records = history(&api, key, 400).await;
        let by_id: HashMap<&str, &RequestRecord> =
            records.iter().map(|r| (r.id.as_str(), r)).collect();
        assert_eq!(by_id.len(), records.len(), "{who}: a request listed twice");

        // Answers against records.
        let mut answered: HashSet<&str> = HashSet::new();
        for (i, a) in answers.iter().filter(|(i, _)| user_of(*i) == u) {
            match a {
                Answer::Ok { id, cost } => {
                    let r = by_id.get(id.as_str()).unwrap_or_else(|| {
                        panic!("{who}: answered request {i} ({id}) has no record")
                    });
                    assert_eq!(r.status, RequestStatus::Succeeded, "{r:?}");
                    assert_eq!(
                        r.cost, *cost,
                        "{who}: request {i} answered another cost: {r:?}"
                    );
                    assert!(answered.insert(id), "{who}: {id} answered twice");
                    oks += 1;
                }
                Answer::Failed { id } => {
                    let r = by_id.get(id.as_str()).unwrap_or_else(|| {
                        panic!("{who}: failed request {i} ({id}) has no record")
                    });
                    assert_eq!(r.status, RequestStatus::Failed, "{r:?}");
                    assert_eq!(r.cost, Credits::ZERO, "{r:?}");
                    assert!(
                        !r.attempts.is_empty() && r.attempts.iter().all(|t| !t.ok),
                        "{r:?}"
                    );
                    assert!(answered.insert(id), "{who}: {id} answered twice");
                    failures += 1;
                }
                Answer::Refused(status) => {
                    *refused_with.entry(status.as_u16()).or_default() += 1;
                    refusals += 1;
                }
            }
        }
        // Records nobody was answered for: only requests the kill cut off.
        let rest: Vec<&RequestRecord> = records
            .iter()
            .filter(|r| !answered.contains(r.id.as_str()))
            .collect();
        let cut_here = cut_off.iter().filter(|&&i| user_of(i) == u).count();
        assert!(
            rest.len() <= cut_here,
            "{who}: {} records nobody was answered for, {cut_here} requests cut off: {rest:#?}",
            rest.len()
        );
        for r in &rest {
            if r.status == RequestStatus::Interrupted {
                assert_interrupted(r);
                interrupted += 1;
            }
        }
        unanswered += rest.len();

        // Money: nothing held, balance = top-up - what the records cost.
        let status = get(&api, key, "/api/status").await;
        let balance = credits(&status["balance"]);
        assert_eq!(credits(&status["held"]), Credits::ZERO, "{who}: {status}");
        assert_eq!(credits(&status["available"]), balance, "{who}: {status}");
        let ledger = api.ledger(key).await;
        assert_ledger_matches(&who, &ledger, &records, balance_of(u), balance);

        // Analytics against the records.
        let mine: Vec<&RequestRecord> = records.iter().collect();
        let a = get(&api, key, "/api/analytics").await;
        assert_summary(&a, &mine, &format!("{who}: all time"));
        // The latest requests and entries, newest first.
        let recent: Vec<RequestRecord> =
            serde_json::from_value(a["recent_requests"].clone()).unwrap();
        assert_eq!(recent[..], records[..records.len().min(10)], "{who}");
        let recent: Vec<LedgerEntry> =
            serde_json::from_value(a["recent_transactions"].clone()).unwrap();
        let newest: Vec<LedgerEntry> = ledger.iter().rev().take(10).cloned().collect();
        assert_eq!(recent, newest, "{who}");
        let day = get(&api, key, "/api/analytics?bucket=minute").await;
        assert_summary(&day, &mine, &format!("{who}: last 24 h"));
        for (bucket, ms) in BUCKETS {
            let s = get(&api, key, &format!("/api/analytics/series?bucket={bucket}")).await;
            assert_series(&s, ms, &mine, &format!("{who}: {bucket} series"));
        }
        let b = get(&api, key, "/api/analytics/burndown").await;
        assert_burndown(&b, &records, balance, &who);
        everyone.extend(records);
    }

    // The admin's figures cover every user.
    let all: Vec<&RequestRecord> = everyone.iter().collect();
    let ids: HashSet<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "one request id for two users");
    let a = get(&api, ADMIN_KEY, "/api/analytics").await;
    assert_summary(&a, &all, "everyone: all time");
    let day = get(&api, ADMIN_KEY, "/api/analytics?bucket=hour").await;
    assert_summary(&day, &all, "everyone: last 24 h");
    for (bucket, ms) in BUCKETS {
        let s = get(
            &api,
            ADMIN_KEY,
            &format!("/api/analytics/series?bucket={bucket}"),
        )
        .await;
        assert_series(&s, ms, &all, &format!("everyone: {bucket} series"));
    }
    for p in PROVIDERS {
        let s = get(
            &api,
            ADMIN_KEY,
            &format!("/api/analytics/series?bucket=minute&provider={p}"),
        )
        .await;
        let theirs: Vec<&RequestRecord> = all.iter().copied().filter(|r| r.provider == p).collect();
        assert!(!theirs.is_empty(), "no request went to {p}");
        assert_series(&s, 60_000, &theirs, &format!("everyone: {p} series"));
    }

    // The mix had what it was meant to have.
    assert_eq!(oks + failures + refusals, MIXED);
    // Unknown model, over max_price, and the poor user's empty wallet.
    assert_eq!(
        refused_with.keys().copied().collect::<Vec<_>>(),
        [400, 402, 422],
        "{refused_with:?}"
    );
    assert!(
        oks > 0 && failures > 0 && refusals > 0,
        "{oks} {failures} {refusals}"
    );
    assert_eq!(all.len(), oks + failures + unanswered);
    if !kill {
        assert_eq!(unanswered, 0);
    }
    assert_recovery_released(&server, interrupted);
    eprintln!(
        "{MIXED} mixed requests{}: {oks} succeeded, {failures} failed, {refusals} refused; \
         {} cut off by the kill and sent again, {unanswered} of them recorded \
         ({interrupted} interrupted)",
        if kill { " with a kill -9 half way" } else { "" },
        cut_off.len()
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_equal_the_records_after_10000_mixed_requests() {
    mixed_requests_then_compare(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_equal_the_records_after_10000_mixed_requests_and_a_kill_9() {
    mixed_requests_then_compare(true).await;
}
