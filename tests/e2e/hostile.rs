//! Upstreams the operator does not control, and configurations that point
//! the broker where it should not go: no request (nor its key) follows an
//! upstream's redirect, and no provider reaches this host or a metadata
//! address unless it says `allow_private`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::ProviderKind;
use oneflow::ledger::EntryKind;
use oneflow::pricing::Modality;

use crate::providers::provider;
use crate::support::{TestServer, assert_ledger_balances};
use crate::upstream::{Behavior, Kind, MockUpstream};

async fn chat(s: &TestServer, key: &str) -> (StatusCode, Value) {
    let res = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(key)
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

/// Every hold the user opened was released, nothing was charged, and the
/// balance is where it started.
async fn nothing_charged(s: &TestServer, key: &str, balance: Credits) {
    let ledger = s.ledger(key).await;
    let count = |k: EntryKind| ledger.iter().filter(|e| e.kind == k).count();
    assert!(count(EntryKind::Hold) >= 1);
    assert_eq!(count(EntryKind::Hold), count(EntryKind::Release));
    assert_eq!(count(EntryKind::Charge), 0);
    assert_eq!(s.balance(key).await, balance);
    assert_ledger_balances(&ledger, balance);
}

/// A streamed chat request, read to its end (a bounded guard against a
/// hang, not a measure of speed).
async fn streamed_chat(s: &TestServer, key: &str) -> (StatusCode, String) {
    let res = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(key)
        .json(&json!({"model": "chat", "stream": true,
            "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body = tokio::time::timeout(std::time::Duration::from_secs(30), res.text())
        .await
        .expect("the stream never ended")
        .unwrap();
    (status, body)
}

/// No hold of the user's is open and the ledger balances.
async fn no_hold_left(s: &TestServer, key: &str) {
    let (_, v) = s.get(key, "/api/status").await;
    assert_eq!(v["held"], json!(0), "{v}");
    assert_ledger_balances(&s.ledger(key).await, s.balance(key).await);
}

/// Sends `request` (a whole HTTP/1.1 request) on a socket with a tiny
/// receive buffer, and gives the socket back for the caller never to read:
/// a client that stopped taking data.
async fn unread(s: &TestServer, request: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr: std::net::SocketAddr = s.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let mut conn = socket.connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    conn
}

/// A provider answering 307 towards another local server: the broker does
/// not follow it, so that server receives nothing (not the request, not
/// the key); the client gets a 502 and the hold is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_redirect_is_never_followed() {
    let elsewhere = MockUpstream::start(Kind::OpenAi);
    let up = MockUpstream::start(Kind::OpenAi);
    let target = format!("{}/v1/chat/completions", elsewhere.base_url());
    up.set_default(Behavior::Redirect(target));
    let p = provider("chat", ProviderKind::Openai, Modality::Text, &up, &["chat"]);
    let s = TestServer::start_with(move |c| {
        c.providers = vec![p];
        c.retry.attempts_per_provider = 1;
    });
    let (_, key) = s.user("redirected", "100").await;
    let (st, v) = chat(&s, &key).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("307"),
        "{v}"
    );
    assert!(up.request_count() >= 1, "the provider was asked");
    assert_eq!(elsewhere.request_count(), 0, "the redirect was followed");
    nothing_charged(&s, &key, Credits::from_credits(100)).await;
    s.stop().await;
}

/// A provider whose host name resolves to loopback is not connected to
/// without `allow_private`: the mock behind it is never reached. With it,
/// the same provider answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_name_resolving_to_loopback_needs_allow_private() {
    let up = MockUpstream::start(Kind::OpenAi);
    let mut p = provider("chat", ProviderKind::Openai, Modality::Text, &up, &["chat"]);
    p.base_url = format!("http://localhost:{}/v1", up.addr().port());
    p.allow_private = false;
    let strict = p.clone();
    let s = TestServer::start_with(move |c| {
        c.providers = vec![strict];
        c.retry.attempts_per_provider = 1;
    });
    let (_, key) = s.user("strict", "100").await;
    let (st, v) = chat(&s, &key).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(up.request_count(), 0, "a loopback upstream was reached");
    nothing_charged(&s, &key, Credits::from_credits(100)).await;
    s.stop().await;

    p.allow_private = true;
    let s = TestServer::start_with(move |c| c.providers = vec![p]);
    let (_, key) = s.user("allowed", "100").await;
    let (st, v) = chat(&s, &key).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(up.request_count(), 1);
    s.stop().await;
}

/// Addresses written out in `base_url` are checked when the configuration
/// loads, and the server refuses to start with a clear reason.
#[test]
fn a_private_or_credentialed_base_url_is_refused_at_load() {
    let refused = [
        ("http://127.0.0.1:9/v1", "allow_private"),
        ("http://169.254.169.254/latest", "metadata"),
        ("http://[::1]:9/v1", "allow_private"),
        ("http://user:secret@api.example.com/v1", "credentials"),
        ("ftp://api.example.com/v1", "http or https"),
    ];
    for (url, why) in refused {
        let mut c = oneflow::config::Config::default();
        let mut p = c.providers[0].clone();
        p.kind = ProviderKind::Openai;
        p.base_url = url.into();
        c.providers = vec![p];
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("base_url") && err.contains(why),
            "{url}: {err}"
        );
    }
}

/// The process's peak resident memory, in KiB (the broker and the mock
/// both live in this test's process).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A 512 MiB answer, and a stream whose first event never ends: the broker
/// reads no more than `limits.max_response_bytes` of either (16 MiB by
/// default), answers `upstream_too_large`, keeps no hold open, and the
/// process grows by far less than the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_upstream_answer_or_event_is_refused_without_being_held() {
    let up = MockUpstream::start(Kind::OpenAi);
    up.set_default(Behavior::Huge(512 << 20));
    let p = provider("chat", ProviderKind::Openai, Modality::Text, &up, &["chat"]);
    let s = TestServer::start_with(move |c| {
        c.providers = vec![p];
        c.retry.attempts_per_provider = 1;
    });
    let (_, key) = s.user("flooded", "100").await;
    let before = peak_rss_kib();

    let (st, v) = chat(&s, &key).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"]["code"], "upstream_too_large", "{v}");

    let (status, body) = streamed_chat(&s, &key).await;
    assert!(
        status == StatusCode::BAD_GATEWAY || status == StatusCode::OK,
        "{status}"
    );
    assert!(body.contains("upstream_too_large"), "{status}: {body}");

    let grown_mib = (peak_rss_kib() - before) / 1024;
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB");
    no_hold_left(&s, &key).await;
    s.stop().await;
}

/// An upstream reporting usage of 2^64-1 tokens, or of -5: the answer is
/// still charged (more than 0, at most its quote), and the record and the
/// metrics say the usage was out of line. Whole and streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn absurd_usage_is_held_to_the_quote_and_flagged() {
    let up = MockUpstream::start(Kind::OpenAi);
    let p = provider("chat", ProviderKind::Openai, Modality::Text, &up, &["chat"]);
    let s = TestServer::start_with(move |c| c.providers = vec![p]);
    let (_, key) = s.user("absurd", "1000").await;
    let max = u64::MAX;
    let reports = [
        json!({"prompt_tokens": max, "completion_tokens": max, "total_tokens": max}),
        json!({"prompt_tokens": -5, "completion_tokens": -5, "total_tokens": -10}),
    ];
    for usage in reports {
        for stream in [false, true] {
            up.push(Behavior::Usage(usage.clone()));
            let res = s
                .http
                .post(format!("{}/v1/chat/completions", s.url))
                .bearer_auth(&key)
                .json(&json!({"model": "chat", "stream": stream, "max_tokens": 20,
                    "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "two words"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{usage} stream={stream}");
            let id = res.headers()["x-oneflow-request-id"]
                .to_str()
                .unwrap()
                .to_string();
            let _ = res.bytes().await.unwrap();
            let record = record_when_settled(&s, &key, &id).await;
            let quote = crate::support::credits(&record["quote"]);
            let cost = crate::support::credits(&record["cost"]);
            assert!(
                cost > Credits::ZERO && cost <= quote,
                "{usage} stream={stream}: {cost:?} of {quote:?}"
            );
            assert_eq!(record["usage_anomaly"], true, "{record}");
        }
    }
    let metrics = s.metrics_text().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("oneflow_usage_anomalies_total{provider=\"chat\"}"))
        .unwrap_or_else(|| panic!("no anomaly counter in {metrics}"));
    assert!(line.ends_with(" 4"), "{line}");
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

/// The stored record of a request, once its (detached) settle committed.
async fn record_when_settled(s: &TestServer, key: &str, id: &str) -> Value {
    for _ in 0..100 {
        let (st, v) = s.get(key, &format!("/api/history/requests/{id}")).await;
        if st == StatusCode::OK {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("request {id} was never recorded");
}

/// Opens a streamed chat request on a socket with a tiny receive buffer and
/// never reads from it: a client that stopped taking data.
async fn stalled_stream(s: &TestServer, key: &str) -> tokio::net::TcpStream {
    let body = json!({"model": "chat", "stream": true, "max_tokens": 1_000_000,
        "messages": [{"role": "user", "content": "go on"}]})
    .to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    unread(s, &request).await
}

/// Two streams whose clients never read, on a provider that takes two
/// calls at once: after `server.client_stall_secs` both are ended
/// (`client_stalled`), their slots freed and their holds settled, so a
/// third user's request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_whose_clients_stop_reading_give_back_their_slots() {
    let up = MockUpstream::start(Kind::OpenAi);
    let mut p = provider("chat", ProviderKind::Openai, Modality::Text, &up, &["chat"]);
    p.limits.max_concurrency = 2;
    p.request.max_tokens = 1_000_000;
    let s = TestServer::start_with(move |c| {
        c.providers = vec![p];
        c.server.client_stall_secs = 1;
    });
    let (_, a) = s.user("stalled-a", "100000").await;
    let (_, b) = s.user("stalled-b", "100000").await;
    let (_, c) = s.user("waiting", "100").await;
    // Words as fast as the mock can write them, for as long as it is read.
    up.push(Behavior::Endless {
        delay: std::time::Duration::ZERO,
    });
    up.push(Behavior::Endless {
        delay: std::time::Duration::ZERO,
    });
    let held_a = stalled_stream(&s, &a).await;
    let held_b = stalled_stream(&s, &b).await;
    // Both are at the upstream, holding its two slots, before the third.
    assert!(
        up.wait_for_requests(2, std::time::Duration::from_secs(10))
            .await
    );
    // A bounded guard against a hang, not a measure of speed.
    let (st, v) = tokio::time::timeout(std::time::Duration::from_secs(60), chat(&s, &c))
        .await
        .expect("the third request never got a slot");
    assert_eq!(st, StatusCode::OK, "{v}");
    for key in [&a, &b] {
        let mut settled = None;
        for _ in 0..200 {
            let (_, h) = s.get(key, "/api/history/requests").await;
            let first = h["items"][0].clone();
            if first.is_object() {
                settled = Some(first);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let r = settled.expect("the stalled stream was never settled");
        assert_eq!(r["error"], "the client took no data for 1s", "{r}");
        no_hold_left(&s, key).await;
    }
    // Closed now, so the graceful stop need not wait for their writes.
    drop((held_a, held_b));
    s.stop().await;
}

/// A budget an admin set for a user: the user may lower its caps, never
/// raise or remove them, and cannot unmark it by saying so in the body.
#[tokio::test]
async fn a_user_cannot_loosen_a_budget_an_admin_set() {
    use crate::support::ADMIN_KEY;
    let s = TestServer::start();
    let (id, key) = s.user("capped", "100").await;
    let put = |k: &str, path: String, body: Value| {
        let req = s
            .http
            .put(format!("{}{path}", s.url))
            .bearer_auth(k)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            let st = res.status();
            (st, res.json::<Value>().await.unwrap())
        }
    };
    let admin_path = format!("/api/budget?user_id={id}");
    let cap = json!({"daily": 10, "per_provider": {"gpt": {"weekly": 30}}});
    let (st, v) = put(ADMIN_KEY, admin_path.clone(), cap).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["budget"]["set_by_admin"], true, "{v}");

    for looser in [
        json!({"daily": 20, "per_provider": {"gpt": {"weekly": 30}}}),
        json!({"per_provider": {"gpt": {"weekly": 30}}}),
        json!({"daily": 10}),
        json!({"daily": 10, "per_provider": {"gpt": {"weekly": 31}}, "set_by_admin": false}),
    ] {
        let (st, v) = put(&key, "/api/budget".into(), looser.clone()).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{looser}: {v}");
        assert_eq!(v["error"]["code"], "forbidden");
    }
    // Tighter is fine, and stays the admin's.
    let tighter = json!({"daily": 5, "weekly": 20, "per_provider": {"gpt": {"weekly": 30}},
        "set_by_admin": false});
    let (st, v) = put(&key, "/api/budget".into(), tighter).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["budget"]["set_by_admin"], true, "{v}");
    let (_, v) = s.get(&key, "/api/budget").await;
    assert_eq!(v["budget"]["daily"], json!(5), "{v}");
    // The admin may loosen it again.
    let (st, _) = put(ADMIN_KEY, admin_path, json!({})).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

/// An image `quality` the rate card does not price (it would cost the
/// provider more than the quote) is refused before anything is held;
/// `standard` is served.
#[tokio::test]
async fn an_unpriced_image_quality_is_refused() {
    let s = TestServer::start();
    let (_, key) = s.user("painter", "100").await;
    let ask = |quality: &str| {
        s.http
            .post(format!("{}/v1/images/generations", s.url))
            .bearer_auth(&key)
            .json(&json!({"model": "image", "prompt": "a lighthouse", "quality": quality}))
            .send()
    };
    for q in ["hd", "high", "auto"] {
        let res = ask(q).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{q}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("quality"),
            "{v}"
        );
    }
    assert!(
        s.ledger(&key)
            .await
            .iter()
            .all(|e| e.kind == EntryKind::TopUp)
    );
    let res = ask("standard").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}

/// Writes `n` request records of `user` straight into the server's redb
/// file while it is stopped: a long history, cheaply.
fn long_history(dir: &std::path::Path, user: &str, n: u64) {
    use oneflow::records::{RequestRecord, RequestStatus};
    use oneflow_actors::store::{RedbStore, Store, WriteOp};
    let store = RedbStore::open(&dir.join("oneflow.redb")).unwrap();
    let ops = (0..n)
        .map(|i| {
            WriteOp::PutRequest(Box::new(RequestRecord {
                id: format!("req_{i:028x}"),
                user_id: user.into(),
                model: "audio".into(),
                modality: Modality::Audio,
                provider: "audio".into(),
                status: RequestStatus::Succeeded,
                prompt_preview: "a long history, to make a long export ".repeat(4),
                response: Some("x".repeat(200)),
                usage: Default::default(),
                quote: Credits::ZERO,
                cost: Credits::ZERO,
                shortfall: Credits::ZERO,
                error: None,
                route: "bulk".into(),
                created_at: 1_000 + i as i64,
                latency_ms: 1,
                attempts: Vec::new(),
                usage_anomaly: false,
                member: None,
                cached: false,
                experiment: None,
                key_id: None,
            }))
        })
        .collect();
    store.commit(ops).unwrap();
}

/// Opens an export on a socket with a tiny receive buffer and never reads.
async fn unread_export(s: &TestServer, key: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::AsyncReadExt;
    let request = format!(
        "GET /api/export/requests HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\r\n"
    );
    let mut conn = unread(s, &request).await;
    // Only the status line, to know it started.
    let mut first = [0u8; 12];
    conn.read_exact(&mut first).await.unwrap();
    (conn, String::from_utf8_lossy(&first).to_string())
}

/// Exports each hold a thread and a read transaction while they run, so
/// they are bounded: past `server.max_exports_per_user` a caller's next one
/// is 429 `too_many_exports`; one whose client never reads ends after
/// `server.client_stall_secs` and gives its slot back, and the server
/// answers everything else meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_exports_are_bounded_and_let_go() {
    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(tmp.path(), |_| {});
    let (id, key) = s.user("exporter", "10").await;
    s.stop().await;
    long_history(tmp.path(), &id, 40_000);
    let s = TestServer::start_in(tmp.path(), |c| {
        c.server.max_exports_per_user = 2;
        c.server.client_stall_secs = 1;
    });
    let (a, first) = unread_export(&s, &key).await;
    assert_eq!(first, "HTTP/1.1 200");
    let (b, first) = unread_export(&s, &key).await;
    assert_eq!(first, "HTTP/1.1 200");
    let (st, v) = s.get(&key, "/api/export/requests").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "too_many_exports");
    let (st, _) = s.get(&key, "/api/status").await;
    assert_eq!(st, StatusCode::OK);
    // The stalled two end and give their slots back (bounded wait).
    let mut served = false;
    for _ in 0..100 {
        let res = s
            .http
            .get(format!("{}/api/export/requests?format=ndjson", s.url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::OK {
            let body = res.text().await.unwrap();
            assert_eq!(body.lines().count(), 40_000);
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(served, "the unread exports never gave their slots back");
    drop((a, b));
    s.stop().await;
}

/// An upstream that keeps a stream alive with usage events and never sends
/// text: the stream still ends at the idle timeout (`upstream_timeout`),
/// and its hold is settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_of_nothing_but_usage_events_ends_at_the_idle_timeout() {
    let up = MockUpstream::start(Kind::OpenAi);
    up.set_default(Behavior::UsageForever {
        delay: std::time::Duration::from_millis(50),
    });
    let p = provider("chat", ProviderKind::Openai, Modality::Text, &up, &["chat"]);
    let s = TestServer::start_with(move |c| {
        c.providers = vec![p];
        c.retry.attempt_timeout_ms = 500;
    });
    let (_, key) = s.user("kept-alive", "100").await;
    let (status, body) = streamed_chat(&s, &key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("upstream_timeout"), "{body}");
    no_hold_left(&s, &key).await;
    s.stop().await;
}

/// A slow streamed chat to `model` (an OpenAI upstream sending 50 words,
/// 50 ms apart, usage only at the end) whose client leaves after the first
/// chunk; the request's record once settled, and the server.
async fn cut_after_first_chunk(model: &str, prompt: &str) -> (TestServer, String, Value) {
    use futures_util::StreamExt;
    let up = MockUpstream::start(Kind::OpenAi);
    up.set_default(Behavior::StreamChunks {
        n: 50,
        delay: std::time::Duration::from_millis(50),
    });
    let p = provider("oai", ProviderKind::Openai, Modality::Text, &up, &[model]);
    let s = TestServer::start_with(move |c| c.providers = vec![p]);
    let (_, key) = s.user("cut", "1000").await;
    let res = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(&key)
        .json(&json!({"model": model, "stream": true,
            "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.headers()["x-oneflow-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = res.bytes_stream();
    assert!(!body.next().await.unwrap().unwrap().is_empty());
    drop(body);
    let record = record_when_settled(&s, &key, &id).await;
    // The upstream's mock leaves with the test; the server and key stay.
    drop(up);
    (s, key, record)
}

/// A 20,000-character prompt without spaces, streamed, the client gone
/// after the first chunk (before the upstream's usage came): the prompt is
/// charged as a tokenizer would count it (about four characters a token),
/// not as one word.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_stream_charges_a_spaceless_prompt_by_its_length() {
    let (s, key, record) = cut_after_first_chunk("chat", &"x".repeat(20_000)).await;
    let input = record["usage"]["input_tokens"].as_u64().unwrap();
    assert!(input >= 1_000, "charged as {input} tokens: {record}");
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

/// A stream to an OpenAI model cut before the upstream's usage came: the
/// prompt as sent and the text delivered are charged as that model's own
/// tokenizer (o200k for gpt-4o-mini) counts them, not by words or length.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_stream_to_an_openai_model_is_counted_by_its_tokenizer() {
    let prompt = "Hello, world! ".repeat(100);
    let (s, key, record) = cut_after_first_chunk("gpt-4o-mini", &prompt).await;
    let o200k = tiktoken_rs::o200k_base_singleton();
    let want_in = o200k.encode_ordinary(&prompt).len() as u64;
    let delivered = record["response"].as_str().unwrap_or_default();
    assert!(!delivered.is_empty(), "{record}");
    let want_out = o200k.encode_ordinary(delivered).len() as u64;
    assert_eq!(record["usage"]["input_tokens"], want_in, "{record}");
    assert_eq!(record["usage"]["output_tokens"], want_out, "{record}");
    // Neither words nor a quarter of the length would give this count.
    assert_ne!(want_in, 200);
    assert_ne!(want_in, (prompt.len() as u64).div_ceil(4));
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}
