//! The mock upstreams checked on their own: protocol shapes as a client sees
//! them, scripted failures, and the broker's own adapters talking to them.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::{Config, ProviderConfig, ProviderKind};
use oneflow::pricing::{Modality, Usage};
use oneflow::request::Plan;
use oneflow_actors::adapters::{
    Adapter, CallRequest, Chunk, Operation, Output, anthropic, openai, stability,
};

use crate::upstream::{
    Behavior, DEFAULT_ANSWER_WORDS, Kind, MOCK_API_KEY, MockUpstream, PNG_1X1, answer_text, base64,
};

const WAIT: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post(up: &MockUpstream, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", up.base_url()))
        .bearer_auth(MOCK_API_KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A whole SSE body as (event name, data) pairs.
fn frames(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut name = None;
            let mut data = Vec::new();
            for line in f.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d);
                }
            }
            (name, data.join("\n"))
        })
        .collect()
}

fn chat_body(prompt: &str) -> Value {
    json!({"model": "mock-gpt", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": prompt},
    ]})
}

#[tokio::test]
async fn openai_refuses_a_missing_or_wrong_key_in_its_error_shape() {
    let up = MockUpstream::start(Kind::OpenAi);
    let url = format!("{}/v1/chat/completions", up.base_url());
    for auth in [None, Some("Bearer wrong-key")] {
        let mut req = client().post(&url).json(&chat_body("hi"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 5);
    }
    // Refused requests are recorded but take no behaviour.
    up.push(Behavior::Status(500, None));
    let res = client()
        .post(&url)
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        post(&up, "/v1/chat/completions", &chat_body("hi"))
            .await
            .status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(up.request_count(), 4);
    let last = up.requests().pop().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(
        last.header("Authorization"),
        Some("Bearer mock-upstream-key")
    );
    assert_eq!(last.body["model"], "mock-gpt");
}

#[tokio::test]
async fn openai_chat_answers_deterministically_and_counts_words() {
    let up = MockUpstream::start(Kind::OpenAi);
    let res = post(
        &up,
        "/v1/chat/completions",
        &chat_body("three little words"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "mock-gpt");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        answer_text(DEFAULT_ANSWER_WORDS)
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // "be brief" + "three little words"
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], DEFAULT_ANSWER_WORDS);
    assert_eq!(v["usage"]["total_tokens"], 5 + DEFAULT_ANSWER_WORDS);

    // max_tokens caps the answer, and says so.
    let mut body = chat_body("x");
    body["max_tokens"] = json!(2);
    let v: Value = post(&up, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "mock answer");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);

    // Bodies the real API refuses are 400s in its shape.
    let res = post(
        &up,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": []}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let res = post(&up, "/v1/nothing-here", &json!({"model": "m"})).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn openai_chat_stream_sends_a_word_per_chunk_then_usage_then_done() {
    let up = MockUpstream::start(Kind::OpenAi);
    let mut body = chat_body("count these four");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let res = post(&up, "/v1/chat/completions", &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = res.text().await.unwrap();
    let f = frames(&text);
    assert_eq!(f.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = f[..f.len() - 1]
        .iter()
        .map(|(name, d)| {
            assert!(name.is_none());
            serde_json::from_str(d).unwrap()
        })
        .collect();
    // role chunk, 6 words, finish chunk, usage chunk
    assert_eq!(chunks.len(), 1 + DEFAULT_ANSWER_WORDS + 2, "{text}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let words: Vec<&str> = chunks[1..=DEFAULT_ANSWER_WORDS]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(words.concat(), answer_text(DEFAULT_ANSWER_WORDS));
    assert!(words.iter().all(|w| w.split_whitespace().count() == 1));
    for c in &chunks[..chunks.len() - 1] {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c["usage"].is_null() && c.get("usage").is_some(), "{c}");
    }
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 5);
    assert_eq!(usage["usage"]["completion_tokens"], DEFAULT_ANSWER_WORDS);

    // Without include_usage there is no usage chunk and no usage field.
    body["stream_options"] = json!({"include_usage": false});
    up.push(Behavior::StreamChunks {
        n: 3,
        delay: Duration::ZERO,
    });
    let text = post(&up, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let f = frames(&text);
    assert_eq!(f.len(), 1 + 3 + 1 + 1, "{text}");
    assert!(!f[1].1.contains("usage"));
}

#[tokio::test]
async fn openai_completions_plain_and_streamed() {
    let up = MockUpstream::start(Kind::OpenAi);
    let body = json!({"model": "mock-gpt", "prompt": "once upon a time", "max_tokens": 4});
    let v: Value = post(&up, "/v1/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], answer_text(4));
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 4);

    let mut body = body;
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = post(&up, "/v1/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let f = frames(&text);
    assert_eq!(f.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = f[..f.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, answer_text(4));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 4);
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));
}

#[tokio::test]
async fn openai_embeddings_images_speech_and_models() {
    let up = MockUpstream::start(Kind::OpenAi);
    // Embeddings, as floats and as base64 little-endian f32s.
    let body = json!({"model": "mock-embed", "input": ["a b c", "d"], "dimensions": 4});
    let v: Value = post(&up, "/v1/embeddings", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    let floats: Vec<f32> = v["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(floats.len(), 4);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 4);
    let mut b64 = body.clone();
    b64["encoding_format"] = json!("base64");
    let v: Value = post(&up, "/v1/embeddings", &b64)
        .await
        .json()
        .await
        .unwrap();
    let bytes: Vec<u8> = floats.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(v["data"][0]["embedding"], base64(&bytes));

    // Images: base64 PNGs, or URLs the mock also serves.
    let body = json!({"model": "mock-image", "prompt": "a cat", "n": 2, "size": "256x256",
                      "response_format": "b64_json"});
    let v: Value = post(&up, "/v1/images/generations", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["b64_json"], base64(PNG_1X1));
    let body = json!({"model": "mock-image", "prompt": "a cat"});
    let v: Value = post(&up, "/v1/images/generations", &body)
        .await
        .json()
        .await
        .unwrap();
    let url = v["data"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&up.base_url()));
    let png = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&png[..], PNG_1X1);

    // Speech: bytes, sized by the input.
    let body = json!({"model": "mock-tts", "input": "hello", "voice": "alloy"});
    let res = post(&up, "/v1/audio/speech", &body).await;
    assert_eq!(res.headers()["content-type"], "audio/mpeg");
    assert_eq!(res.bytes().await.unwrap().len(), 10 + 16 * 5);

    // Models.
    let v: Value = client()
        .get(format!("{}/v1/models", up.base_url()))
        .bearer_auth(MOCK_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "mock-gpt")
    );
}

fn anthropic_post(up: &MockUpstream, body: &Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/v1/messages", up.base_url()))
        .header("x-api-key", MOCK_API_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
}

#[tokio::test]
async fn anthropic_messages_plain_and_the_real_event_sequence() {
    let up = MockUpstream::start(Kind::Anthropic);
    let body = json!({"model": "mock-claude", "max_tokens": 100, "system": "be kind",
                      "messages": [{"role": "user", "content": "hello there"}]});
    let v: Value = anthropic_post(&up, &body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], answer_text(DEFAULT_ANSWER_WORDS));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 4);
    assert_eq!(v["usage"]["output_tokens"], DEFAULT_ANSWER_WORDS);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["max_tokens"] = json!(3);
    let text = anthropic_post(&up, &streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let f = frames(&text);
    let names: Vec<&str> = f.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let data: Vec<Value> = f
        .iter()
        .map(|(n, d)| {
            let v: Value = serde_json::from_str(d).unwrap();
            assert_eq!(v["type"], n.as_deref().unwrap());
            v
        })
        .collect();
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], 4);
    let joined: String = data[3..6]
        .iter()
        .map(|d| d["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, answer_text(3));
    assert_eq!(data[7]["delta"]["stop_reason"], "max_tokens");
    assert_eq!(data[7]["usage"]["output_tokens"], 3);

    // Auth, version and required fields, in Anthropic's error shape.
    let res = client()
        .post(format!("{}/v1/messages", up.base_url()))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    let res = client()
        .post(format!("{}/v1/messages", up.base_url()))
        .header("x-api-key", MOCK_API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let mut no_max = body.clone();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let res = anthropic_post(&up, &no_max).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");

    // Anthropic's overloaded status keeps its own error type.
    up.push(Behavior::Status(529, None));
    let res = anthropic_post(&up, &body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 529);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn stability_text_to_image_returns_artifacts() {
    let up = MockUpstream::start(Kind::Stability);
    let url = format!("{}/v1/generation/mock-sdxl/text-to-image", up.base_url());
    let body = json!({"text_prompts": [{"text": "a red fox", "weight": 1}],
                      "samples": 2, "width": 1024, "height": 1024});
    let res = client()
        .post(&url)
        .bearer_auth(MOCK_API_KEY)
        .header("accept", "application/json")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    let artifacts = v["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2);
    assert_eq!(artifacts[0]["finishReason"], "SUCCESS");
    assert_eq!(artifacts[0]["base64"], base64(PNG_1X1));

    let res = client()
        .post(&url)
        .bearer_auth(MOCK_API_KEY)
        .header("accept", "image/png")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(&res.bytes().await.unwrap()[..], PNG_1X1);

    let mut odd = body.clone();
    odd["width"] = json!(1000);
    let res = client()
        .post(&url)
        .bearer_auth(MOCK_API_KEY)
        .json(&odd)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["name"], "bad_request");
    assert!(v["message"].as_str().unwrap().contains("width"));

    let res = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["name"], "unauthorized");
}

#[tokio::test]
async fn a_scripted_429_carries_retry_after_and_is_used_once() {
    let up = MockUpstream::start(Kind::OpenAi);
    up.push(Behavior::Status(429, Some(7)));
    let res = post(&up, "/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "7");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        post(&up, "/v1/chat/completions", &chat_body("hi"))
            .await
            .status(),
        StatusCode::OK
    );

    // A default applies to every request until changed.
    up.set_default(Behavior::Status(503, None));
    for _ in 0..2 {
        let res = post(&up, "/v1/embeddings", &json!({"model": "e", "input": "x"})).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().get("retry-after").is_none());
    }
    up.set_default(Behavior::Ok);
    assert_eq!(
        post(&up, "/v1/embeddings", &json!({"model": "e", "input": "x"}))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_reset_mid_stream_is_an_error_for_the_client() {
    let up = MockUpstream::start(Kind::OpenAi);
    up.push(Behavior::ResetMidStream { after: 2 });
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    let res = post(&up, "/v1/chat/completions", &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = res.bytes_stream();
    let mut got = Vec::new();
    let mut failed = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the cut must surface as an error");
    let text = String::from_utf8(got).unwrap();
    assert!(text.contains("\"mock\""), "{text}");
    assert!(text.contains("\" answer\""), "{text}");
    assert!(!text.contains("[DONE]"));
    // A plain answer cut in half fails too.
    up.push(Behavior::ResetMidStream { after: 0 });
    let res = post(&up, "/v1/chat/completions", &chat_body("hi")).await;
    assert!(res.bytes().await.is_err());
    assert_eq!(up.client_disconnects(), 0);
}

#[tokio::test]
async fn a_client_leaving_an_endless_stream_is_counted() {
    let up = MockUpstream::start(Kind::Anthropic);
    up.push(Behavior::Endless {
        delay: Duration::from_millis(5),
    });
    let body = json!({"model": "m", "max_tokens": 5, "stream": true,
                      "messages": [{"role": "user", "content": "go"}]});
    let res = anthropic_post(&up, &body).send().await.unwrap();
    let mut stream = res.bytes_stream();
    let mut seen = String::new();
    // Read well past max_tokens: an endless stream does not stop at it.
    while seen.matches("content_block_delta").count() < 20 {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    drop(stream);
    assert!(up.wait_for_disconnects(1, WAIT).await);

    // A plain request held forever: the client's timeout ends it.
    up.push(Behavior::Endless {
        delay: Duration::ZERO,
    });
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let res = quick
        .post(format!("{}/v1/messages", up.base_url()))
        .header("x-api-key", MOCK_API_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "m", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "go"}]}))
        .send()
        .await;
    assert!(res.unwrap_err().is_timeout());
    assert!(up.wait_for_disconnects(2, WAIT).await);
    assert_eq!(up.client_disconnects(), 2);
}

#[tokio::test]
async fn malformed_answers_are_200s_that_do_not_parse() {
    let up = MockUpstream::start(Kind::OpenAi);
    up.push(Behavior::Malformed);
    let res = post(&up, "/v1/chat/completions", &chat_body("hi")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err());

    up.push(Behavior::Malformed);
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    let text = post(&up, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let f = frames(&text);
    assert!(
        f.iter()
            .any(|(_, d)| serde_json::from_str::<Value>(d).is_err())
    );
    assert!(!text.contains("[DONE]"));
}

// ---- The broker's own adapters against the mocks ----

fn provider(kind: ProviderKind, base_url: String) -> ProviderConfig {
    let mut p = Config::default().providers[0].clone();
    p.name = "mock".into();
    p.kind = kind;
    p.base_url = base_url;
    p.allow_private = true;
    p
}

fn call(model: &str, op: Operation) -> CallRequest {
    CallRequest {
        request_id: "req-1".into(),
        model: model.into(),
        op,
        plan: Plan {
            provider: "mock".into(),
            modality: Modality::Text,
            max_usage: Usage::default(),
            size: None,
            quote: Credits::ZERO,
        },
    }
}

fn chat_op(prompt: &str, max_tokens: u32) -> Operation {
    Operation::ask(prompt.into(), max_tokens)
}

async fn collect(adapter: &dyn Adapter, req: CallRequest) -> (String, Usage, Vec<String>) {
    let mut s = adapter.stream(req).await.unwrap();
    let (mut text, mut usage, mut finish) = (String::new(), Usage::default(), Vec::new());
    while let Some(c) = s.next().await {
        match c.unwrap() {
            Chunk::Delta(t) => text.push_str(&t),
            Chunk::Usage(u) => usage = u,
            Chunk::Finish(f) => finish.push(f),
            Chunk::ToolCall(c) => panic!("no tools were offered, yet: {c}"),
            Chunk::Thinking(t) => panic!("no thinking was asked for, yet: {t:?}"),
        }
    }
    (text, usage, finish)
}

#[tokio::test]
async fn the_broker_adapters_read_the_mocks() {
    let http = oneflow_actors::adapters::http_client(oneflow::reach::Reach::Anywhere).unwrap();
    let key = Some(MOCK_API_KEY.to_string());

    let up = MockUpstream::start(Kind::OpenAi);
    let cfg = provider(ProviderKind::Openai, format!("{}/v1", up.base_url()));
    let a = openai::OpenAi::new(&cfg, http.clone(), key.clone());
    let r = a
        .call(call("mock-gpt", chat_op("two words", 50)))
        .await
        .unwrap();
    assert_eq!(r.usage.input_tokens, 2);
    assert_eq!(r.usage.output_tokens, DEFAULT_ANSWER_WORDS as u64);
    let (text, usage, finish) = collect(&a, call("mock-gpt", chat_op("two words", 3))).await;
    assert_eq!(text, answer_text(3));
    assert_eq!((usage.input_tokens, usage.output_tokens), (2, 3));
    assert_eq!(finish, ["length"]);
    let img = Operation::Image {
        prompt: "a fox".into(),
        n: 2,
        size: "256x256".into(),
        extra: Default::default(),
    };
    let r = a.call(call("mock-image", img)).await.unwrap();
    assert_eq!(r.usage.images, 2);
    let emb = Operation::Embedding {
        input: vec!["one two".into(), "three".into()],
        extra: Default::default(),
    };
    let r = a.call(call("mock-embed", emb)).await.unwrap();
    assert_eq!(r.usage.input_tokens, 3);
    let speech = Operation::Speech {
        input: "hi".into(),
        voice: "alloy".into(),
        extra: Default::default(),
    };
    let r = a.call(call("mock-tts", speech)).await.unwrap();
    assert!(matches!(r.output, Output::Audio { ref bytes, .. } if bytes.len() == 42));
    // A scripted 429 reaches the adapter with its Retry-After.
    up.push(Behavior::Status(429, Some(4)));
    let e = a.call(call("mock-gpt", chat_op("x", 5))).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(4));
    assert_eq!(e.code(), "upstream_rate_limited");

    let up = MockUpstream::start(Kind::Anthropic);
    let cfg = provider(ProviderKind::Anthropic, up.base_url());
    let a = anthropic::Anthropic::new(&cfg, http.clone(), key.clone());
    let r = a
        .call(call("mock-claude", chat_op("a b c", 50)))
        .await
        .unwrap();
    assert_eq!(
        (r.usage.input_tokens, r.usage.output_tokens),
        (3, DEFAULT_ANSWER_WORDS as u64)
    );
    let (text, usage, finish) = collect(&a, call("mock-claude", chat_op("a b c", 4))).await;
    assert_eq!(text, answer_text(4));
    assert_eq!((usage.input_tokens, usage.output_tokens), (3, 4));
    assert_eq!(finish, ["length"]);

    let up = MockUpstream::start(Kind::Stability);
    let cfg = provider(ProviderKind::Stability, up.base_url());
    let a = stability::Stability::new(&cfg, http, key);
    let img = Operation::Image {
        prompt: "a fox".into(),
        n: 3,
        size: "512x512".into(),
        extra: Default::default(),
    };
    let r = a.call(call("mock-sdxl", img)).await.unwrap();
    assert_eq!(r.usage.images, 3);
    assert_eq!(
        up.requests()[0].path,
        "/v1/generation/mock-sdxl/text-to-image"
    );
}

/// Runs `tests/sdk/openai_sdk.py` (the official OpenAI Python SDK) against
/// the OpenAI mock, proving the script before it is pointed at the broker.
/// Needs a Python with `openai` (see `crate::tools::sdk_python`).
#[tokio::test]
async fn the_sdk_script_runs_against_the_openai_mock() {
    let python = crate::tools::sdk_python();
    let up = MockUpstream::start(Kind::OpenAi);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sdk/openai_sdk.py");
    let base = format!("{}/v1", up.base_url());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .env("ONEFLOW_BASE_URL", base)
            .env("ONEFLOW_KEY", MOCK_API_KEY)
            .env("ONEFLOW_CHAT_MODEL", "mock-gpt")
            .env("ONEFLOW_EMBED_MODEL", "mock-embed")
            .env("ONEFLOW_IMAGE_MODEL", "mock-image")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "script failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    eprintln!("sdk script said: {stdout}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let prompt = v["prompt_words"].as_u64().unwrap();
    assert_eq!(v["chat"]["prompt_tokens"], prompt);
    assert_eq!(v["chat"]["completion_tokens"], DEFAULT_ANSWER_WORDS);
    assert_eq!(v["stream"]["prompt_tokens"], prompt);
    assert_eq!(v["stream"]["completion_tokens"], DEFAULT_ANSWER_WORDS);
    assert_eq!(v["stream"]["text"], answer_text(DEFAULT_ANSWER_WORDS));
    assert_eq!(v["embed"]["prompt_tokens"], 3);
    assert_eq!(v["image"]["images"], 1);
    assert!(
        v["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "mock-gpt")
    );
    // The SDK asked for base64 embeddings and streaming usage.
    let reqs = up.requests();
    assert!(
        reqs.iter()
            .any(|r| r.path == "/v1/embeddings" && r.body["encoding_format"] == "base64")
    );
    assert!(
        reqs.iter()
            .any(|r| r.body["stream_options"]["include_usage"] == true)
    );
}

/// Streams an adapter's answer until the first error: the text before it
/// and the error's code.
async fn until_error(adapter: &dyn Adapter, req: CallRequest) -> (String, Option<&'static str>) {
    let mut s = adapter.stream(req).await.unwrap();
    let mut text = String::new();
    while let Some(c) = s.next().await {
        match c {
            Ok(Chunk::Delta(t)) => text.push_str(&t),
            Ok(_) => {}
            Err(e) => return (text, Some(e.code())),
        }
    }
    (text, None)
}

#[tokio::test]
async fn broken_streams_reach_the_adapters_as_errors_after_their_words() {
    let http = oneflow_actors::adapters::http_client(oneflow::reach::Reach::Anywhere).unwrap();
    let key = Some(MOCK_API_KEY.to_string());
    let up = MockUpstream::start(Kind::OpenAi);
    let cfg = provider(ProviderKind::Openai, format!("{}/v1", up.base_url()));
    let a = openai::OpenAi::new(&cfg, http.clone(), key.clone());
    let req = || call("mock-gpt", chat_op("hi", 50));
    up.push(Behavior::StreamError { after: 2 });
    assert_eq!(
        until_error(&a, req()).await,
        ("mock answer".into(), Some("upstream_unreachable"))
    );
    up.push(Behavior::ResetMidStream { after: 3 });
    let (text, err) = until_error(&a, req()).await;
    assert_eq!(text, answer_text(3));
    assert!(err.is_some());
    up.push(Behavior::Malformed);
    assert!(until_error(&a, req()).await.1.is_some());
    up.push(Behavior::StreamChunks {
        n: 9,
        delay: Duration::from_millis(1),
    });
    assert_eq!(until_error(&a, req()).await, (answer_text(9), None));
    // StreamError on a plain call is a 500.
    up.push(Behavior::StreamError { after: 0 });
    let e = a.call(req()).await.unwrap_err();
    assert_eq!(e.code(), "upstream_server_error");

    let up = MockUpstream::start(Kind::Anthropic);
    let cfg = provider(ProviderKind::Anthropic, up.base_url());
    let a = anthropic::Anthropic::new(&cfg, http, key);
    let req = || call("mock-claude", chat_op("hi", 50));
    up.push(Behavior::StreamError { after: 1 });
    let (text, err) = until_error(&a, req()).await;
    assert_eq!(text, "mock");
    assert!(err.is_some());
    up.push(Behavior::ResetMidStream { after: 2 });
    let (text, err) = until_error(&a, req()).await;
    assert_eq!(text, "mock answer");
    assert!(err.is_some());
    assert_eq!(up.client_disconnects(), 0);
}

#[tokio::test]
async fn a_mock_can_require_another_key() {
    let up = MockUpstream::start_with_key(Kind::Stability, "other-key");
    assert_eq!(up.api_key(), "other-key");
    let url = format!("{}/v1/generation/e/text-to-image", up.base_url());
    let body = json!({"text_prompts": [{"text": "x"}]});
    for (k, status) in [(MOCK_API_KEY, 401), ("other-key", 200)] {
        let res = client()
            .post(&url)
            .bearer_auth(k)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status);
    }
    assert_eq!(up.take_requests().len(), 2);
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn a_slow_answer_can_be_abandoned_and_is_counted() {
    let up = MockUpstream::start(Kind::OpenAi);
    up.push(Behavior::Slow(Duration::from_secs(60)));
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = quick
        .post(format!("{}/v1/chat/completions", up.base_url()))
        .bearer_auth(MOCK_API_KEY)
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(up.wait_for_disconnects(1, WAIT).await);
    // A short delay still ends in the normal answer.
    up.push(Behavior::Slow(Duration::from_millis(5)));
    let v: Value = post(&up, "/v1/chat/completions", &chat_body("hi"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], DEFAULT_ANSWER_WORDS);
    assert!(up.wait_for_requests(2, WAIT).await);
    assert_eq!(up.client_disconnects(), 1);
}

// Tool calls, `n` and JSON answers, in each protocol; and their clients.
mod tool_clients;
mod tools;
