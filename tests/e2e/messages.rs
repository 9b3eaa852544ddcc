//! Anthropic's Messages API inbound (`/v1/messages`, `count_tokens`):
//! plain, tool calls and results, streams in Anthropic's event sequence,
//! errors in Anthropic's shape, translation to an OpenAI upstream and
//! passage to an Anthropic one, the official SDK, and the ledger checked
//! after each.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::ProviderKind;
use oneflow::pricing::Modality;

use crate::providers::provider;
use crate::support::{TestServer, assert_ledger_balances, credits};
use crate::upstream::tools::{arguments_for, tool_answer};
use crate::upstream::{Behavior, Kind, MockUpstream, words};

/// A weather tool in Anthropic's shape, every property required.
pub(crate) fn weather() -> Value {
    json!({"name": "get_weather", "description": "The weather in a city", "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
        "required": ["city", "days", "metric"],
    }})
}

/// POSTs `body` as Anthropic's SDKs do: the key in `x-api-key`, with
/// `anthropic-version`.
pub(crate) async fn send(s: &TestServer, key: &str, path: &str, body: &Value) -> reqwest::Response {
    s.http
        .post(format!("{}{path}", s.url))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn call(
    s: &TestServer,
    key: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let res = send(s, key, path, &body).await;
    let st = res.status();
    (st, res.json().await.unwrap())
}

/// A stream read to its end: each event's name and data, in order.
pub(crate) async fn events(res: reqwest::Response) -> Vec<(String, Value)> {
    let text = res.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("an event without a name: {e}"));
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("an event without data: {e}"));
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name, "{e}");
            (name.to_string(), data)
        })
        .collect()
}

/// Checks the event sequence Anthropic streams (`message_start`, `ping`,
/// blocks each opened, filled and closed in order, `message_delta`,
/// `message_stop`) and returns the blocks it built, as a whole answer
/// holds them, and the `message_delta`.
fn assemble(ev: &[(String, Value)]) -> (Vec<Value>, Value) {
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["message_start", "ping"], "{names:?}");
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
    assert_eq!(ev[0].1["message"]["role"], "assistant");
    let mut blocks: Vec<Value> = Vec::new();
    let mut json_args: Vec<String> = Vec::new();
    let mut open = false;
    for (name, d) in &ev[2..ev.len() - 2] {
        match name.as_str() {
            "content_block_start" => {
                assert!(!open, "a block opened inside another");
                assert_eq!(d["index"], blocks.len());
                blocks.push(d["content_block"].clone());
                json_args.push(String::new());
                open = true;
            }
            "content_block_delta" => {
                assert!(open);
                let i = blocks.len() - 1;
                assert_eq!(d["index"], i);
                match d["delta"]["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = blocks[i]["text"].as_str().unwrap().to_string();
                        blocks[i]["text"] = json!(t + d["delta"]["text"].as_str().unwrap());
                    }
                    "input_json_delta" => {
                        json_args[i].push_str(d["delta"]["partial_json"].as_str().unwrap())
                    }
                    other => panic!("delta {other}"),
                }
            }
            "content_block_stop" => {
                assert!(open);
                assert_eq!(d["index"], blocks.len() - 1);
                open = false;
            }
            other => panic!("unexpected event {other} inside the message"),
        }
    }
    assert!(!open, "a block was left open");
    for (b, args) in blocks.iter_mut().zip(json_args) {
        if b["type"] == "tool_use" {
            b["input"] = serde_json::from_str(&args).unwrap();
        }
    }
    (blocks, ev[ev.len() - 2].1.clone())
}

#[tokio::test]
async fn a_message_is_answered_in_anthropics_shape_and_charged_by_its_usage() {
    let s = TestServer::start();
    let (_, key) = s.user("claude-user", "100").await;
    let body = json!({"model": "gpt", "max_tokens": 50, "system": "Be brief.",
        "messages": [{"role": "user", "content": "say hello to the broker"}]});
    let res = send(&s, &key, "/v1/messages", &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cost: Credits = res.headers()["x-oneflow-cost"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["role"], "assistant");
    assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["stop_reason"], "end_turn");
    // The simulated provider counts a word a token; the system prompt is
    // part of the prompt.
    assert_eq!(v["usage"]["input_tokens"], 7, "{v}");
    let out = v["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!(out, words(v["content"][0]["text"].as_str().unwrap()));
    // gpt: a credit an output token, nothing for input.
    assert_eq!(cost, Credits::from_credits(out as i64));
    assert_eq!(s.charges(&key).await, vec![cost]);

    // count_tokens says what the request was charged for its input, and
    // costs nothing.
    let (st, c) = call(&s, &key, "/v1/messages/count_tokens", body).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c, json!({"input_tokens": 7}));
    assert_eq!(s.balance(&key).await, Credits::from_credits(100) - cost);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn a_tool_call_comes_back_as_tool_use_and_its_result_is_answered_in_text() {
    let s = TestServer::start();
    let (_, key) = s.user("claude-agent", "100").await;
    let ask = json!({"role": "user", "content": "weather in Paris"});
    let (st, v) = call(
        &s,
        &key,
        "/v1/messages",
        json!({"model": "gpt", "max_tokens": 40, "messages": [ask], "tools": [weather()]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let call_block = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap()
        .clone();
    assert_eq!(call_block["name"], "get_weather");
    assert_eq!(
        call_block["input"],
        json!({"city": "sim", "days": 1, "metric": true})
    );
    // The tools' definitions are counted as input, as providers count them.
    let (_, c) = call(
        &s,
        &key,
        "/v1/messages/count_tokens",
        json!({"model": "gpt", "messages": [ask], "tools": [weather()]}),
    )
    .await;
    assert_eq!(c["input_tokens"], v["usage"]["input_tokens"], "{c} {v}");

    let result = json!({"role": "user", "content": [{"type": "tool_result",
        "tool_use_id": call_block["id"], "content": "18 degrees and sunny"}]});
    let assistant = json!({"role": "assistant", "content": v["content"]});
    let (st, v) = call(
        &s,
        &key,
        "/v1/messages",
        json!({"model": "gpt", "max_tokens": 40, "tools": [weather()],
               "messages": [ask, assistant, result]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["stop_reason"], "end_turn", "{v}");
    assert_eq!(v["content"][0]["type"], "text");
    assert!(
        v["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("degrees"),
        "{v}"
    );
    let charged: Credits = s
        .charges(&key)
        .await
        .into_iter()
        .fold(Credits::ZERO, |a, c| a + c);
    assert_eq!(s.balance(&key).await, Credits::from_credits(100) - charged);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn a_stream_follows_anthropics_event_sequence_text_and_tool_calls_alike() {
    let s = TestServer::start();
    let (_, key) = s.user("claude-stream", "100").await;
    let body = json!({"model": "gpt", "max_tokens": 50,
        "messages": [{"role": "user", "content": "tell me about the broker please"}]});
    let (_, whole) = call(&s, &key, "/v1/messages", body.clone()).await;
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let res = send(&s, &key, "/v1/messages", &streamed).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let (blocks, end) = assemble(&events(res).await);
    // The same answer as the whole one (the simulated provider is
    // deterministic), in one text block.
    assert_eq!(blocks, vec![whole["content"][0].clone()]);
    assert_eq!(end["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        end["usage"]["output_tokens"],
        whole["usage"]["output_tokens"]
    );
    assert!(end.get("oneflow").is_none(), "{end}");

    // A tool call arrives as a tool_use block filled by input_json_delta.
    let tools = json!({"model": "gpt", "max_tokens": 40, "stream": true, "tools": [weather()],
        "messages": [{"role": "user", "content": "weather in Oslo"}]});
    let res = send(&s, &key, "/v1/messages", &tools).await;
    assert_eq!(res.status(), StatusCode::OK);
    let ev = events(res).await;
    let pieces = ev
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .count();
    assert!(pieces > 1, "the arguments came in one piece: {ev:?}");
    let (blocks, end) = assemble(&ev);
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["type"], "tool_use");
    assert_eq!(blocks[0]["name"], "get_weather");
    assert_eq!(
        blocks[0]["input"],
        json!({"city": "sim", "days": 1, "metric": true})
    );
    assert_eq!(end["delta"]["stop_reason"], "tool_use");
    // Each stream was charged what its message_delta reported.
    let out = end["usage"]["output_tokens"].as_i64().unwrap();
    assert_eq!(
        s.charges(&key).await.last(),
        Some(&Credits::from_credits(out))
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn malformed_and_refused_messages_get_anthropics_error_shape() {
    let s = TestServer::start();
    let (_, key) = s.user("claude-errors", "1").await;
    let hi = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"model": "gpt", "messages": hi}), "max_tokens"),
        (
            json!({"model": "gpt", "max_tokens": 0, "messages": hi}),
            "max_tokens",
        ),
        (
            json!({"model": "gpt", "max_tokens": 5, "messages": "hi"}),
            "`messages`: invalid type",
        ),
        (
            json!({"model": "gpt", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            "role",
        ),
        (
            json!({"model": "gpt", "max_tokens": null, "messages": hi}),
            "max_tokens",
        ),
        (
            json!({"model": "gpt", "max_tokens": 5, "messages": hi, "temperature": 1.5}),
            "temperature",
        ),
        (
            json!({"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
            "source",
        ),
        (
            json!({"model": "gpt", "max_tokens": 5, "messages": hi, "tools": [{"name": "t"}]}),
            "input_schema",
        ),
        (
            json!({"model": "gpt", "max_tokens": 5, "messages": hi, "metadata": {"team": "x"}}),
            "team",
        ),
        (
            json!({"model": "no-such-model", "max_tokens": 5, "messages": hi}),
            "no-such-model",
        ),
    ];
    for (body, names) in cases {
        let (st, v) = call(&s, &key, "/v1/messages", body.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{body}: {message}");
    }
    // A conversation whose parts do not agree: 422, as on every route
    // (400 is kept for what breaks the documented schema).
    let (st, v) = call(
        &s,
        &key,
        "/v1/messages",
        json!({"model": "gpt", "max_tokens": 5,
        "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "nobody", "content": "x"}]}]}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nobody"),
        "{v}"
    );
    // No key, a wrong key: authentication_error; a Bearer key works too.
    let res = s
        .http
        .post(format!("{}/v1/messages", s.url))
        .json(&json!({"model": "gpt", "max_tokens": 5, "messages": hi}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error", "{v}");
    let (st, v) = call(
        &s,
        "of_wrong_key_00000000",
        "/v1/messages",
        json!({"model": "gpt", "max_tokens": 5, "messages": hi}),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // One credit cannot hold 500 output tokens: billing_error, nothing
    // charged.
    let (st, v) = s
        .post(
            &key,
            "/v1/messages",
            json!({"model": "gpt", "max_tokens": 500, "messages": hi}),
        )
        .await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(v["error"]["type"], "billing_error", "{v}");
    assert_eq!(v["error"]["code"], "insufficient_credits", "{v}");
    assert_eq!(s.balance(&key).await, Credits::from_credits(1));
    assert!(s.charges(&key).await.is_empty());
    s.stop().await;
}

/// A broker with an OpenAI mock serving `mock-chat` and an Anthropic mock
/// serving `mock-claude`.
pub(crate) fn two_formats(openai: &MockUpstream, claude: &MockUpstream) -> TestServer {
    let a = provider(
        "chatter",
        ProviderKind::Openai,
        Modality::Text,
        openai,
        &["mock-chat"],
    );
    let b = provider(
        "claude",
        ProviderKind::Anthropic,
        Modality::Text,
        claude,
        &["mock-claude"],
    );
    TestServer::start_with(move |c| c.providers = vec![a, b])
}

#[tokio::test]
async fn messages_reach_either_upstream_translated_and_own_fields_only_anthropic() {
    let openai = MockUpstream::start(Kind::OpenAi);
    let claude = MockUpstream::start(Kind::Anthropic);
    let s = two_formats(&openai, &claude);
    let (_, key) = s.user("both", "100").await;

    // To the OpenAI upstream: system, tools and the stop sequences in its
    // words; the answer, the call the tool choice required, in Anthropic's.
    let (st, v) = call(
        &s,
        &key,
        "/v1/messages",
        json!({"model": "mock-chat", "max_tokens": 30,
        "system": "Be brief.", "stop_sequences": ["END"], "tools": [weather()],
        "tool_choice": {"type": "any"}, "metadata": {"user_id": "u-7"},
        "messages": [{"role": "user", "content": "hello there"}]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["type"], "message");
    let sent = openai.requests()[0].body.clone();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["messages"][1]["content"], "hello there");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["stop"], json!(["END"]));
    assert_eq!(sent["user"], "u-7");
    let (i, o) = (
        v["usage"]["input_tokens"].as_u64().unwrap(),
        v["usage"]["output_tokens"].as_u64().unwrap(),
    );
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let tool_use = &v["content"][0];
    assert_eq!(tool_use["type"], "tool_use", "{v}");
    assert_eq!(tool_use["name"], "get_weather", "{v}");
    assert_eq!(
        tool_use["input"],
        json!({"city": "mock", "days": 1, "metric": true})
    );
    // Its output tokens are the words of the arguments the upstream wrote.
    let args = arguments_for(&weather()["input_schema"]);
    assert_eq!(o, words(&args), "{v}");
    let cost = Credits(i as i64 * 1_000 + o as i64 * 3_000);
    assert_eq!(s.charges(&key).await, vec![cost]);

    // A field only Anthropic's format has goes to the Anthropic upstream
    // as given, and keeps the OpenAI one out (400 naming it).
    let thinking = json!({"type": "enabled", "budget_tokens": 1024});
    let (st, v) = call(
        &s,
        &key,
        "/v1/messages",
        json!({"model": "mock-claude", "max_tokens": 2048,
        "thinking": thinking, "top_k": 5, "metadata": {"user_id": "u-7"},
        "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sent = claude.requests()[0].body.clone();
    assert_eq!(sent["thinking"], thinking);
    assert_eq!(sent["top_k"], 5);
    assert_eq!(sent["metadata"], json!({"user_id": "u-7"}));
    let (st, v) = call(
        &s,
        &key,
        "/v1/messages",
        json!({"model": "mock-chat", "max_tokens": 30,
        "thinking": thinking, "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`thinking`"),
        "{v}"
    );
    assert_eq!(openai.request_count(), 1);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_whose_hold_runs_out_ends_with_max_tokens_and_oneflows_note() {
    let claude = MockUpstream::start(Kind::Anthropic);
    claude.set_default(Behavior::Endless {
        delay: Duration::from_millis(2),
    });
    let openai = MockUpstream::start(Kind::OpenAi);
    let s = two_formats(&openai, &claude);
    let (_, key) = s.user("endless-claude", "100").await;
    let res = send(
        &s,
        &key,
        "/v1/messages",
        &json!({"model": "mock-claude", "max_tokens": 20, "stream": true,
            "messages": [{"role": "user", "content": "go on forever"}]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let quote: Credits = res.headers()["x-oneflow-quote"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (blocks, end) = assemble(&events(res).await);
    assert_eq!(end["delta"]["stop_reason"], "max_tokens", "{end}");
    assert_eq!(end["oneflow"]["stopped"], "hold_exhausted", "{end}");
    let delivered = words(blocks[0]["text"].as_str().unwrap());
    assert_eq!(end["usage"]["output_tokens"], delivered);
    let cost = credits(&end["oneflow"]["cost"]);
    assert!(cost <= quote, "charged {cost} for a hold of {quote}");
    assert_eq!(s.charges(&key).await, vec![cost]);
    assert!(
        claude
            .wait_for_disconnects(1, Duration::from_secs(10))
            .await
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_creates_streams_calls_tools_counts_and_fails_cleanly() {
    let s = TestServer::start();
    let (_, key) = s.user("anthropic-sdk", "1000").await;
    let report = crate::tools::run_sdk(
        "anthropic_sdk.py",
        vec![
            ("ONEFLOW_BASE_URL", s.url.clone()),
            ("ONEFLOW_KEY", key.clone()),
            ("ONEFLOW_CHAT_MODEL", "gpt".into()),
        ],
    )
    .await;
    assert!(
        report["answer_text"].as_str().unwrap().contains("degrees"),
        "{report}"
    );
    assert_eq!(report["bad_request"], "BadRequestError", "{report}");
    // Each charge is the output tokens the SDK reported (gpt: a credit a
    // token), in order; the balance is what the ledger says.
    let reported: Vec<Credits> = report["output_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Credits::from_credits(t.as_i64().unwrap()))
        .collect();
    assert_eq!(s.charges(&key).await, reported);
    let total = reported.iter().fold(Credits::ZERO, |a, c| a + *c);
    assert_eq!(s.balance(&key).await, Credits::from_credits(1000) - total);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdk_through_an_anthropic_upstream_pays_what_it_reports() {
    let claude = MockUpstream::start(Kind::Anthropic);
    let openai = MockUpstream::start(Kind::OpenAi);
    let s = two_formats(&openai, &claude);
    let (_, key) = s.user("anthropic-sdk-upstream", "1000").await;
    let report = crate::tools::run_sdk(
        "anthropic_sdk.py",
        vec![
            ("ONEFLOW_BASE_URL", s.url.clone()),
            ("ONEFLOW_KEY", key.clone()),
            ("ONEFLOW_CHAT_MODEL", "mock-claude".into()),
            ("ONEFLOW_UPSTREAM", "1".into()),
        ],
    )
    .await;
    assert_eq!(report["bad_request"], "BadRequestError", "{report}");
    // The tool's result reached the upstream, which answered about it.
    assert_eq!(
        report["answer_text"],
        tool_answer("18 degrees and sunny"),
        "{report}"
    );
    // Each charge is the usage the SDK reported times the rate card.
    let (want, output_tokens) = crate::tools::reported_charges(&report);
    // A message, a stream, a tool call, its result's answer, a streamed
    // tool call; then a streamed call with thinking and its loop.
    assert_eq!(want.len(), 7, "{report}");
    assert_eq!(s.charges(&key).await, want);
    let sent = claude.requests();
    assert_eq!(sent.len(), 7);
    assert_eq!(report["thought"], crate::upstream::anthropic::THINKING);
    // The thinking went back upstream as the SDK held it, signature and all.
    let back = &sent[6].body["messages"][1]["content"][0];
    assert_eq!(back["type"], "thinking", "{}", sent[6].body);
    assert_eq!(
        back["signature"],
        crate::upstream::anthropic::signature(crate::upstream::anthropic::THINKING)
    );
    // The calls' output tokens are the words of the input the upstream
    // wrote, and the result went up as a tool_result for that call.
    let args = arguments_for(&sent[2].body["tools"][0]["input_schema"]);
    assert_eq!(output_tokens[2], words(&args) as i64, "{report}");
    assert_eq!(output_tokens[4], words(&args) as i64, "{report}");
    let result = &sent[3].body["messages"][2]["content"][0];
    assert_eq!(result["type"], "tool_result", "{}", sent[3].body);
    let called = &sent[3].body["messages"][1]["content"][0];
    assert_eq!(called["type"], "tool_use", "{}", sent[3].body);
    assert_eq!(result["tool_use_id"], called["id"]);
    assert!(called["id"].as_str().unwrap().starts_with("toolu_mock"));
    assert_eq!(sent[4].body["stream"], true);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

/// Reads a stream until `marker` has come `n` times, then goes away; the
/// request's id.
async fn leave_after(res: reqwest::Response, marker: &str, n: usize) -> String {
    use futures_util::StreamExt;
    let id = res.headers()["x-oneflow-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut body = res.bytes_stream();
    let mut seen = String::new();
    while seen.matches(marker).count() < n {
        seen.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_leaves_a_messages_or_responses_stream_pays_for_what_was_delivered() {
    let claude = MockUpstream::start(Kind::Anthropic);
    let openai = MockUpstream::start(Kind::OpenAi);
    for up in [&claude, &openai] {
        up.set_default(Behavior::Endless {
            delay: Duration::from_millis(20),
        });
    }
    let s = two_formats(&openai, &claude);
    let (_, key) = s.user("leaver-both", "100").await;
    let messages = send(&s, &key, "/v1/messages", &json!({"model": "mock-claude",
        "max_tokens": 1000, "stream": true, "messages": [{"role": "user", "content": "talk a while"}]}))
    .await;
    let responses = s
        .http
        .post(format!("{}/v1/responses", s.url))
        .bearer_auth(&key)
        .json(&json!({"model": "mock-chat", "input": "talk a while",
                      "max_output_tokens": 1000, "stream": true}))
        .send()
        .await
        .unwrap();
    let ids = [
        leave_after(messages, "text_delta", 5).await,
        leave_after(responses, "response.output_text.delta", 5).await,
    ];
    // Each upstream call is cancelled, and each request settled for what
    // was sent: far less than its hold for 1,000 tokens.
    assert!(
        claude
            .wait_for_disconnects(1, Duration::from_secs(10))
            .await
    );
    assert!(
        openai
            .wait_for_disconnects(1, Duration::from_secs(10))
            .await
    );
    let mut costs = Vec::new();
    for id in ids {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let r = loop {
            let (st, v) = s.get(&key, &format!("/api/history/requests/{id}")).await;
            if st == StatusCode::OK {
                break v;
            }
            assert!(std::time::Instant::now() < deadline, "never settled: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let out = r["usage"]["output_tokens"].as_i64().unwrap();
        assert!((5..1000).contains(&out), "{r}");
        let cost = credits(&r["cost"]);
        let input = r["usage"]["input_tokens"].as_i64().unwrap();
        assert_eq!(cost, Credits(input * 1_000 + out * 3_000), "{r}");
        assert!(cost < credits(&r["quote"]));
        costs.push(cost);
    }
    let mut charged = s.charges(&key).await;
    charged.sort();
    costs.sort();
    assert_eq!(charged, costs);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}
