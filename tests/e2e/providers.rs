//! The broker against real HTTP upstreams that speak OpenAI's, Anthropic's
//! and Stability's protocols (`upstream/`): adapters, `/v1`, streaming,
//! retries, fallbacks and the circuit breaker, with the ledger checked
//! against the usage each upstream reported.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::{Config, ProviderConfig, ProviderKind};
use oneflow::ledger::EntryKind;
use oneflow::pricing::Modality;

use crate::support::{TestServer, assert_ledger_balances, credits};
use crate::upstream::{Behavior, Kind, MOCK_API_KEY, MockUpstream, answer_text, words};

/// The environment variable the providers below read their key from; the
/// workspace's cargo config sets it to the mocks' key for test runs.
pub const KEY_ENV: &str = "ONEFLOW_TEST_UPSTREAM_KEY";

/// Micro-credits per input and output token of the providers below.
const IN_RATE: i64 = 1_000;
const OUT_RATE: i64 = 3_000;

/// A provider of `kind` in front of `up`, answering to `models`.
pub fn provider(
    name: &str,
    kind: ProviderKind,
    modality: Modality,
    up: &MockUpstream,
    models: &[&str],
) -> ProviderConfig {
    let mut p = oneflow::config::default_providers()[0].clone();
    p.name = name.into();
    p.kind = kind;
    p.modality = modality;
    p.models = models.iter().map(|m| m.to_string()).collect();
    p.base_url = match kind {
        ProviderKind::Openai => format!("{}/v1", up.base_url()),
        _ => up.base_url(),
    };
    p.api_key_env = KEY_ENV.into();
    // The mocks listen on loopback.
    p.allow_private = true;
    p.rates = Default::default();
    match modality {
        Modality::Text => {
            p.rates.per_input_token = Credits(IN_RATE);
            p.rates.per_output_token = Credits(OUT_RATE);
        }
        Modality::Image => p.rates.per_image = Credits::from_credits(2),
        _ => p.rates.per_request = Credits::from_credits(1),
    }
    p
}

/// A broker whose one provider, `oai`, is the OpenAI mock `up` serving
/// `mock-chat`.
fn broker_for(up: &MockUpstream) -> TestServer {
    let p = provider(
        "oai",
        ProviderKind::Openai,
        Modality::Text,
        up,
        &["mock-chat"],
    );
    TestServer::start_with(move |c| c.providers = vec![p])
}

/// Fast retries so failure tests do not wait out real backoffs.
fn quick_retries(c: &mut Config) {
    c.retry.attempts_per_provider = 2;
    c.retry.backoff_base_ms = 5;
    c.retry.backoff_max_ms = 20;
}

fn text_cost(prompt_tokens: u64, completion_tokens: u64) -> Credits {
    Credits(prompt_tokens as i64 * IN_RATE + completion_tokens as i64 * OUT_RATE)
}

/// POST with the caller's key; the whole response.
async fn post(s: &TestServer, key: &str, path: &str, body: Value) -> reqwest::Response {
    s.http
        .post(format!("{}{path}", s.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The stored record of a request, once its finish is committed.
async fn record(s: &TestServer, key: &str, id: &str) -> Value {
    let (st, v) = s.get(key, &format!("/api/history/requests/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// Reads a server-sent event stream to its end: the `data:` payloads.
async fn sse(res: reqwest::Response) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(d) = line.strip_prefix("data: ") {
                    out.push(d.to_string());
                }
            }
        }
    }
    out
}

/// The text, usage chunk and OneFlow's closing note of a chat stream.
fn read_chat_stream(events: &[String]) -> (String, Option<Value>, Value) {
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let mut text = String::new();
    let mut usage = None;
    let mut note = Value::Null;
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk", "{v}");
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if !v["usage"].is_null() {
            usage = Some(v["usage"].clone());
        }
        if !v["oneflow"].is_null() {
            note = v["oneflow"].clone();
        }
    }
    (text, usage, note)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openai_chat_plain_and_streamed_is_charged_what_the_upstream_reported() {
    let up = MockUpstream::start(Kind::OpenAi);
    let s = broker_for(&up);
    let (_, key) = s.user("chat", "100").await;

    // Plain.
    let prompt = "tell me about the sea";
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "mock-chat", "messages": [{"role": "user", "content": prompt}]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let route = res.headers()["x-oneflow-route"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(route.contains("oai"), "{route}");
    let request_id = res.headers()["x-oneflow-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], answer_text(6));
    assert_eq!(v["usage"]["prompt_tokens"], words(prompt));
    assert_eq!(v["usage"]["completion_tokens"], 6);

    // The upstream saw our key and its own model name, and nothing of ours.
    let seen = &up.requests()[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {MOCK_API_KEY}").as_str())
    );
    assert_eq!(seen.body["model"], "mock-chat");
    assert_eq!(seen.body["messages"][0]["content"], prompt);

    let r = record(&s, &key, &request_id).await;
    assert_eq!(r["provider"], "oai");
    assert_eq!(r["route"], route.as_str());
    assert_eq!(r["attempts"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["attempts"][0]["ok"], true);
    let plain_cost = text_cost(words(prompt), 6);
    assert_eq!(credits(&r["cost"]), plain_cost);

    // Streamed, with the usage chunk asked for.
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "mock-chat", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "one two"}]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let (text, usage, note) = read_chat_stream(&sse(res).await);
    assert_eq!(text, answer_text(6));
    let usage = usage.expect("a usage chunk");
    assert_eq!(usage["prompt_tokens"], 2);
    assert_eq!(usage["completion_tokens"], 6);
    assert!(note["stopped"].is_null(), "{note}");
    let stream_cost = text_cost(2, 6);
    assert_eq!(credits(&note["cost"]), stream_cost);
    assert_eq!(up.requests()[1].body["stream"], true);

    // Without include_usage no usage chunk is sent.
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "mock-chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let (text, usage, _) = read_chat_stream(&sse(res).await);
    assert_eq!(text, answer_text(6));
    assert!(usage.is_none());

    // The ledger holds exactly those charges, and balances.
    let want = vec![plain_cost, stream_cost, text_cost(1, 6)];
    assert_eq!(s.charges(&key).await, want);
    let balance = s.balance(&key).await;
    assert_eq!(
        balance,
        Credits::from_credits(100) - want.iter().fold(Credits::ZERO, |a, b| a + *b)
    );
    assert_ledger_balances(&s.ledger(&key).await, balance);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anthropic_messages_are_translated_both_ways_including_streams() {
    let up = MockUpstream::start(Kind::Anthropic);
    let s = TestServer::start_with(|c| {
        c.providers = vec![provider(
            "claude",
            ProviderKind::Anthropic,
            Modality::Text,
            &up,
            &["mock-claude"],
        )];
    });
    let (_, key) = s.user("anth", "100").await;
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "mock-claude", "max_tokens": 50, "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what is rust"}]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], answer_text(6));
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // System and user words, as the upstream counted them.
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 6);
    let seen = &up.requests()[0];
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(MOCK_API_KEY));
    assert!(seen.header("anthropic-version").is_some());
    assert_eq!(seen.body["system"], "be brief");
    assert_eq!(seen.body["max_tokens"], 50);
    assert_eq!(seen.body["messages"][0]["role"], "user");

    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "mock-claude", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "stream it please"}]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (text, usage, _) = read_chat_stream(&sse(res).await);
    assert_eq!(text, answer_text(6));
    let usage = usage.expect("usage chunk");
    assert_eq!(usage["prompt_tokens"], 3);
    assert_eq!(usage["completion_tokens"], 6);

    assert_eq!(
        s.charges(&key).await,
        vec![text_cost(5, 6), text_cost(3, 6)]
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_embeddings_speech_and_models_through_v1() {
    let oa = MockUpstream::start(Kind::OpenAi);
    let st = MockUpstream::start(Kind::Stability);
    let s = TestServer::start_with(|c| {
        let mut embed = provider(
            "oai-embed",
            ProviderKind::Openai,
            Modality::Text,
            &oa,
            &["mock-embed"],
        );
        embed.rates.per_output_token = Credits::ZERO;
        c.providers = vec![
            embed,
            provider(
                "oai-image",
                ProviderKind::Openai,
                Modality::Image,
                &oa,
                &["mock-image"],
            ),
            provider(
                "stability",
                ProviderKind::Stability,
                Modality::Image,
                &st,
                &["mock-sdxl"],
            ),
            provider(
                "oai-tts",
                ProviderKind::Openai,
                Modality::Audio,
                &oa,
                &["mock-tts"],
            ),
        ];
    });
    let (_, key) = s.user("media", "100").await;

    let res = post(
        &s,
        &key,
        "/v1/embeddings",
        json!({"model": "mock-embed", "input": ["alpha beta", "gamma"]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert!(v["data"][0]["embedding"].as_array().unwrap().len() > 1);
    assert_eq!(v["usage"]["prompt_tokens"], 3);

    for model in ["mock-image", "mock-sdxl"] {
        let res = post(
            &s,
            &key,
            "/v1/images/generations",
            json!({"model": model, "prompt": "a red fox", "n": 2, "size": "512x512", "response_format": "b64_json"}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{model}");
        let v: Value = res.json().await.unwrap();
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "{model}: {v}");
        assert!(!data[0]["b64_json"].as_str().unwrap().is_empty());
    }
    let stab = &st.requests()[0];
    assert!(stab.path.contains("text-to-image"), "{}", stab.path);
    assert_eq!(
        stab.header("authorization"),
        Some(format!("Bearer {MOCK_API_KEY}").as_str())
    );

    let res = post(
        &s,
        &key,
        "/v1/audio/speech",
        json!({"model": "mock-tts", "input": "hello world", "voice": "alloy"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let audio = res.bytes().await.unwrap();
    assert_eq!(audio.len(), 10 + 16 * "hello world".len());

    let (code, v) = s.get(&key, "/v1/models").await;
    assert_eq!(code, StatusCode::OK);
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for m in ["mock-embed", "mock-image", "mock-sdxl", "mock-tts"] {
        assert!(ids.contains(&m), "{m} missing from {ids:?}");
    }

    // Embedding: 3 input tokens; two images twice at 2 credits; one speech.
    let want = vec![
        text_cost(3, 0),
        Credits::from_credits(4),
        Credits::from_credits(4),
        Credits::from_credits(1),
    ];
    assert_eq!(s.charges(&key).await, want);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_whose_hold_runs_out_stops_at_the_limit() {
    let up = MockUpstream::start(Kind::OpenAi);
    up.set_default(Behavior::Endless {
        delay: Duration::from_millis(2),
    });
    let s = broker_for(&up);
    let (_, key) = s.user("endless", "100").await;
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "mock-chat", "stream": true, "max_tokens": 20,
               "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "go on forever"}]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let quote: Credits = res.headers()["x-oneflow-quote"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (text, usage, note) = read_chat_stream(&sse(res).await);
    assert_eq!(note["stopped"], "hold_exhausted", "{note}");
    let usage = usage.unwrap();
    let delivered = words(&text);
    assert_eq!(usage["completion_tokens"], delivered);
    assert!(delivered >= 20, "stopped early after {delivered} words");
    let cost = credits(&note["cost"]);
    assert!(cost <= quote, "charged {cost} for a hold of {quote}");
    assert_eq!(s.charges(&key).await, vec![cost]);
    // The upstream connection was closed when the stream stopped.
    assert!(up.wait_for_disconnects(1, Duration::from_secs(10)).await);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_leaves_mid_stream_pays_for_what_was_delivered() {
    let up = MockUpstream::start(Kind::OpenAi);
    up.set_default(Behavior::Endless {
        delay: Duration::from_millis(20),
    });
    let s = broker_for(&up);
    let (_, key) = s.user("leaver", "100").await;
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "mock-chat", "stream": true, "max_tokens": 1000,
               "messages": [{"role": "user", "content": "talk a while"}]}),
    )
    .await;
    let request_id = res.headers()["x-oneflow-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = res.bytes_stream();
    let mut seen = String::new();
    while seen.matches("chat.completion.chunk").count() < 5 {
        seen.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    drop(body);
    let read_words = seen.matches("\"content\":\"").count() as u64;

    // The broker notices, cancels the upstream call, and settles.
    assert!(up.wait_for_disconnects(1, Duration::from_secs(10)).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let (st, v) = s
            .get(&key, &format!("/api/history/requests/{request_id}"))
            .await;
        if st == StatusCode::OK {
            break v;
        }
        assert!(Instant::now() < deadline, "never settled: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let out = r["usage"]["output_tokens"].as_u64().unwrap();
    // What the client read was delivered; what was charged was at most what
    // the upstream had sent, and far below the hold for 1000 tokens.
    assert!(out >= read_words.saturating_sub(1), "{out} < {read_words}");
    assert!(out < 1000, "charged as if the whole answer came");
    let cost = credits(&r["cost"]);
    assert_eq!(
        cost,
        text_cost(r["usage"]["input_tokens"].as_u64().unwrap(), out)
    );
    assert!(cost < credits(&r["quote"]));
    assert_eq!(s.charges(&key).await, vec![cost]);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

/// Two OpenAI-speaking upstreams; the cheaper one ranks first.
fn pair(a: &MockUpstream, b: &MockUpstream) -> impl FnOnce(&mut Config) {
    let mut first = provider("first", ProviderKind::Openai, Modality::Text, a, &["chat"]);
    let mut second = provider("second", ProviderKind::Openai, Modality::Text, b, &["chat"]);
    first.rates.per_output_token = Credits(OUT_RATE);
    second.rates.per_output_token = Credits(OUT_RATE * 2);
    move |c: &mut Config| {
        c.providers = vec![first, second];
        quick_retries(c);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_first_provider_falls_back_and_is_not_charged() {
    let a = MockUpstream::start(Kind::OpenAi);
    let b = MockUpstream::start(Kind::OpenAi);
    a.set_default(Behavior::Status(500, None));
    let s = TestServer::start_with(pair(&a, &b));
    let (_, key) = s.user("fb", "100").await;
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "chat", "messages": [{"role": "user", "content": "hello there"}]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.headers()["x-oneflow-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let route = res.headers()["x-oneflow-route"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(route.find("first") < route.find("second"), "{route}");
    let r = record(&s, &key, &id).await;
    assert_eq!(r["provider"], "second");
    let attempts = r["attempts"].as_array().unwrap();
    // Two tries on the first (500 is worth a retry), then the fallback.
    assert_eq!(attempts.len(), 3, "{r}");
    for a in &attempts[..2] {
        assert_eq!(a["provider"], "first");
        assert_eq!(a["ok"], false);
        assert_eq!(a["error_code"], "upstream_server_error");
    }
    assert_eq!(attempts[2]["provider"], "second");
    assert_eq!(attempts[2]["ok"], true);
    assert_eq!(a.request_count(), 2);
    assert_eq!(b.request_count(), 1);
    // One charge, at the fallback's rates.
    let want = Credits(2 * IN_RATE + 6 * OUT_RATE * 2);
    assert_eq!(s.charges(&key).await, vec![want]);
    assert_eq!(credits(&r["cost"]), want);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_every_upstream_fails_the_hold_is_released_and_the_error_is_clear() {
    let a = MockUpstream::start(Kind::OpenAi);
    let b = MockUpstream::start(Kind::OpenAi);
    a.set_default(Behavior::Status(503, None));
    b.set_default(Behavior::Malformed);
    let s = TestServer::start_with(pair(&a, &b));
    let (_, key) = s.user("allfail", "100").await;
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "chat", "messages": [{"role": "user", "content": "anyone?"}]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let v: Value = res.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
    assert!(v["error"]["type"].is_string(), "{v}");
    assert!(v["error"]["code"].is_string(), "{v}");
    assert!(!v.to_string().contains(MOCK_API_KEY));

    // Native API: the same, in our shape, with the request attached.
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "chat", "prompt": "anyone there"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(credits(&v["request"]["cost"]), Credits::ZERO);
    let r = record(&s, &key, v["request"]["request_id"].as_str().unwrap()).await;
    assert_eq!(r["status"], "failed");
    assert!(r["attempts"].as_array().unwrap().len() >= 3, "{r}");

    // Nothing charged; every hold released.
    assert!(s.charges(&key).await.is_empty());
    assert_eq!(s.balance(&key).await, Credits::from_credits(100));
    let ledger = s.ledger(&key).await;
    let held = ledger.iter().filter(|e| e.kind == EntryKind::Hold).count();
    let released = ledger
        .iter()
        .filter(|e| e.kind == EntryKind::Release)
        .count();
    assert_eq!((held, released), (2, 2));
    assert_ledger_balances(&ledger, Credits::from_credits(100));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_with_retry_after_is_waited_out_then_retried() {
    let a = MockUpstream::start(Kind::OpenAi);
    let b = MockUpstream::start(Kind::OpenAi);
    a.push(Behavior::Status(429, Some(1)));
    let s = TestServer::start_with(pair(&a, &b));
    let (_, key) = s.user("ra", "100").await;
    let started = Instant::now();
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "chat", "messages": [{"role": "user", "content": "patience"}]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // The second try waited the second the upstream asked for.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(a.request_count(), 2);
    assert_eq!(b.request_count(), 0);
    assert_eq!(s.charges(&key).await, vec![text_cost(1, 6)]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_reset_upstreams_count_as_failed_attempts() {
    let a = MockUpstream::start(Kind::OpenAi);
    let b = MockUpstream::start(Kind::OpenAi);
    a.push(Behavior::Slow(Duration::from_secs(5)));
    a.push(Behavior::ResetMidStream { after: 2 });
    let s = TestServer::start_with(|c| {
        pair(&a, &b)(c);
        c.retry.attempt_timeout_ms = 300;
    });
    let (_, key) = s.user("slow", "100").await;
    let (st, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "chat", "prompt": "hi"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = record(&s, &key, v["request_id"].as_str().unwrap()).await;
    let codes: Vec<&str> = r["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error_code"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(codes[0], "upstream_timeout", "{r}");
    assert_eq!(codes.last(), Some(&"ok"), "{r}");
    assert_eq!(r["provider"], "second");
    assert_eq!(s.charges(&key).await.len(), 1);

    // A stream cut by the upstream ends with a final event saying so and
    // charges only what arrived (the prompt as counted here: the upstream
    // never got to report usage).
    b.push(Behavior::ResetMidStream { after: 3 });
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "chat", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "cut me"}], "oneflow": {"providers": ["second"]}}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (text, usage, note) = read_chat_stream(&sse(res).await);
    assert_eq!(note["stopped"], "upstream_error", "{note}");
    assert_eq!(
        text,
        answer_text(6)
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // What arrived, counted as no public tokenizer fits this model: the
    // larger of its words and a quarter of its characters.
    let out = ((text.chars().count() as u64).div_ceil(4) as i64).max(3);
    assert_eq!(usage.unwrap()["completion_tokens"], out);
    let cost = credits(&note["cost"]);
    assert_eq!(cost, Credits(2 * IN_RATE + out * OUT_RATE * 2));
    assert_eq!(s.charges(&key).await.last(), Some(&cost));
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_circuit_opens_after_failures_and_closes_after_a_probe() {
    let a = MockUpstream::start(Kind::OpenAi);
    let b = MockUpstream::start(Kind::OpenAi);
    a.set_default(Behavior::Status(500, None));
    let s = TestServer::start_with(|c| {
        pair(&a, &b)(c);
        c.retry.attempts_per_provider = 1;
        c.circuit.failures = 3;
        c.circuit.open_ms = 2_000;
    });
    let (_, key) = s.user("cb", "1000").await;
    let ask = || async {
        let (st, v) = s
            .post(
                &key,
                "/api/request",
                json!({"model": "chat", "prompt": "hi"}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v
    };
    for _ in 0..3 {
        assert_eq!(ask().await["provider"], "second");
    }
    assert_eq!(a.request_count(), 3);
    let circuit = |v: &Value, name: &str| {
        v["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["circuit"].clone())
            .unwrap()
    };
    let (_, providers) = s.get(&key, "/api/providers").await;
    assert_eq!(circuit(&providers, "first"), "open", "{providers}");

    // While open, routing passes the first over: it hears nothing.
    for _ in 0..3 {
        let v = ask().await;
        assert_eq!(v["provider"], "second");
        assert!(!v["route"].as_str().unwrap().contains("first"), "{v}");
    }
    assert_eq!(a.request_count(), 3);

    // The upstream recovers; once the open time is over one probe goes
    // through, succeeds, and closes the circuit.
    a.set_default(Behavior::Ok);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = ask().await;
        if v["provider"] == "first" {
            break;
        }
        assert!(Instant::now() < deadline, "never probed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.request_count(), 4);
    let (_, providers) = s.get(&key, "/api/providers").await;
    assert_eq!(circuit(&providers, "first"), "closed", "{providers}");
    assert_eq!(ask().await["provider"], "first");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_keys_never_leave_the_process() {
    let up = MockUpstream::start(Kind::OpenAi);
    up.set_default(Behavior::Status(401, None));
    let s = broker_for(&up);
    let (_, key) = s.user("k", "10").await;
    let (_, config) = s.get(crate::support::ADMIN_KEY, "/api/config").await;
    assert!(config.to_string().contains(KEY_ENV), "{config}");
    let (_, v) = s
        .post(
            &key,
            "/api/request",
            json!({"model": "mock-chat", "prompt": "hi"}),
        )
        .await;
    let res = post(
        &s,
        &key,
        "/v1/chat/completions",
        json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let text = res.text().await.unwrap();
    for shown in [config.to_string(), v.to_string(), text] {
        assert!(!shown.contains(MOCK_API_KEY), "{shown}");
    }
    let dir = s.dir.clone();
    let _kept = s.stop().await;
    let mut found = false;
    for f in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap_or_default();
        found |= bytes
            .windows(MOCK_API_KEY.len())
            .any(|w| w == MOCK_API_KEY.as_bytes());
    }
    assert!(!found, "the key was written to the data directory");
}
