//! OpenAI's Responses API (`/v1/responses`): plain, function tools and
//! their outputs, `previous_response_id`, retrieval, streams in the
//! Responses events, errors, the official SDK, and the ledger checked
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
use crate::upstream::{Behavior, Kind, MockUpstream, Recorded, words};

fn weather() -> Value {
    json!({"type": "function", "name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }})
}

/// A stream read to its end: each event's data, in order, checked to
/// name its type and to number itself from 0.
async fn events(res: reqwest::Response) -> Vec<Value> {
    let text = res.text().await.unwrap();
    let out: Vec<Value> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data: Value =
                serde_json::from_str(e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap())
                    .unwrap();
            assert_eq!(data["type"], name, "{e}");
            data
        })
        .collect();
    for (i, e) in out.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    out
}

fn kinds(ev: &[Value]) -> Vec<&str> {
    ev.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_response_is_answered_kept_and_retrieved_and_charged_by_its_usage() {
    let s = TestServer::start();
    let (_, key) = s.user("responder", "100").await;
    let (st, r) = s
        .post(
            &key,
            "/v1/responses",
            json!({"model": "gpt", "input": "say hello to the broker", "instructions": "Be brief.",
                   "max_output_tokens": 40, "metadata": {"team": "a"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert!(r["id"].as_str().unwrap().starts_with("resp_"), "{r}");
    assert_eq!(r["instructions"], "Be brief.");
    assert_eq!(r["metadata"], json!({"team": "a"}));
    let msg = &r["output"][0];
    assert_eq!(msg["type"], "message", "{r}");
    assert_eq!(msg["content"][0]["type"], "output_text");
    let text = msg["content"][0]["text"].as_str().unwrap();
    let out = r["usage"]["output_tokens"].as_u64().unwrap();
    assert_eq!(out, words(text));
    assert_eq!(r["usage"]["input_tokens"], 7, "{r}");
    assert_eq!(
        s.charges(&key).await,
        vec![Credits::from_credits(out as i64)]
    );

    // Kept: retrieved as answered.
    let id = r["id"].as_str().unwrap();
    let (st, got) = s.get(&key, &format!("/v1/responses/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got, r);
    // Not another user's.
    let (_, other) = s.user("someone-else", "1").await;
    let (st, _) = s.get(&other, &format!("/v1/responses/{id}")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Not kept with `store: false`.
    let (st, r) = s
        .post(
            &key,
            "/v1/responses",
            json!({"model": "gpt", "input": "hi", "store": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["store"], false);
    let (st, v) = s
        .get(
            &key,
            &format!("/v1/responses/{}", r["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn a_function_call_and_its_output_continue_through_previous_response_id() {
    let s = TestServer::start();
    let (_, key) = s.user("agentic", "100").await;
    let (st, first) = s
        .post(
            &key,
            "/v1/responses",
            json!({"model": "gpt", "input": "weather in Paris", "tools": [weather()]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let call = &first["output"][0];
    assert_eq!(call["type"], "function_call", "{first}");
    assert_eq!(call["name"], "get_weather");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "sim", "days": 1}));

    // The output alone, after the kept conversation.
    let output = json!([{"type": "function_call_output", "call_id": call["call_id"],
        "output": "18 degrees and sunny"}]);
    let (st, next) = s
        .post(
            &key,
            "/v1/responses",
            json!({"model": "gpt", "tools": [weather()], "input": output,
                   "previous_response_id": first["id"]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{next}");
    assert_eq!(next["output"][0]["type"], "message", "{next}");
    let text = next["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("degrees"), "{next}");
    assert_eq!(next["previous_response_id"], first["id"]);

    // The same conversation sent whole, as items, gives the same answer.
    let whole =
        json!([{"role": "user", "content": "weather in Paris"}, call.clone(), output[0].clone()]);
    let (st, again) = s
        .post(
            &key,
            "/v1/responses",
            json!({"model": "gpt", "tools": [weather()], "input": whole}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["output"][0]["content"][0]["text"], text);
    let total = s
        .charges(&key)
        .await
        .into_iter()
        .fold(Credits::ZERO, |a, c| a + c);
    assert_eq!(s.balance(&key).await, Credits::from_credits(100) - total);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn a_stream_sends_the_responses_events_and_keeps_what_it_sent() {
    let s = TestServer::start();
    let (_, key) = s.user("streamer", "100").await;
    let body = json!({"model": "gpt", "input": "tell me about the broker please", "max_output_tokens": 40});
    let (_, whole) = s.post(&key, "/v1/responses", body.clone()).await;
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let res = s
        .http
        .post(format!("{}/v1/responses", s.url))
        .bearer_auth(&key)
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ev = events(res).await;
    let k = kinds(&ev);
    assert_eq!(
        k[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(
        k[k.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let text: String = ev
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    let want = whole["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, want);
    let done = &ev.last().unwrap()["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], want);
    assert_eq!(
        done["usage"]["output_tokens"],
        whole["usage"]["output_tokens"]
    );
    // Kept before its last event was sent.
    let (st, got) = s
        .get(
            &key,
            &format!("/v1/responses/{}", done["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(&got, done);

    // A streamed function call: its arguments in pieces.
    let res = s
        .http
        .post(format!("{}/v1/responses", s.url))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt", "input": "weather in Oslo", "tools": [weather()], "stream": true}))
        .send()
        .await
        .unwrap();
    let ev = events(res).await;
    let args: String = ev
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert!(
        ev.iter()
            .filter(|e| e["type"] == "response.function_call_arguments.delta")
            .count()
            > 1
    );
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "sim", "days": 1})
    );
    let done = &ev.last().unwrap()["response"];
    assert_eq!(done["output"][0]["type"], "function_call");
    assert_eq!(done["output"][0]["arguments"], args);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn malformed_responses_requests_get_a_clear_4xx() {
    let s = TestServer::start();
    let (_, key) = s.user("careless", "10").await;
    let cases = [
        (json!({"model": "gpt"}), 400, "input"),
        (
            json!({"model": "gpt", "input": "hi", "max_output_tokens": 0}),
            400,
            "max_output_tokens",
        ),
        (
            json!({"model": "gpt", "input": "hi", "tools": [{"type": "web_search"}]}),
            400,
            "name",
        ),
        (
            json!({"model": "gpt", "input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}),
            400,
            "reasoning",
        ),
        (
            json!({"model": "gpt", "input": "hi", "frobnicate": 1}),
            400,
            "frobnicate",
        ),
        (
            json!({"model": "gpt", "input": [{"type": "function_call_output", "call_id": "nobody", "output": "x"}]}),
            422,
            "nobody",
        ),
        (
            json!({"model": "gpt", "input": "hi", "previous_response_id": "resp_nothing"}),
            404,
            "resp_nothing",
        ),
        (
            json!({"model": "gpt", "input": [{"role": "user", "content": "hi"},
                {"role": "developer", "content": "now be rude"}]}),
            422,
            "system message",
        ),
    ];
    for (body, status, names) in cases {
        let (st, v) = s.post(&key, "/v1/responses", body.clone()).await;
        assert_eq!(st.as_u16(), status, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{body}: {message}");
    }
    assert!(s.charges(&key).await.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_whose_hold_runs_out_is_incomplete_with_oneflows_note() {
    let up = MockUpstream::start(Kind::OpenAi);
    up.set_default(Behavior::Endless {
        delay: Duration::from_millis(2),
    });
    let p = provider(
        "oai",
        ProviderKind::Openai,
        Modality::Text,
        &up,
        &["mock-chat"],
    );
    let s = TestServer::start_with(move |c| c.providers = vec![p]);
    let (_, key) = s.user("endless-responses", "100").await;
    let res = s
        .http
        .post(format!("{}/v1/responses", s.url))
        .bearer_auth(&key)
        .json(&json!({"model": "mock-chat", "input": "go on forever",
                      "max_output_tokens": 20, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ev = events(res).await;
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "response.incomplete", "{last}");
    let r = &last["response"];
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r["oneflow"]["stopped"], "hold_exhausted", "{r}");
    let delivered = words(r["output"][0]["content"][0]["text"].as_str().unwrap());
    assert_eq!(r["usage"]["output_tokens"], delivered);
    assert_eq!(s.charges(&key).await, vec![credits(&r["oneflow"]["cost"])]);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_creates_streams_calls_and_retrieves_responses() {
    let s = TestServer::start();
    let (_, key) = s.user("responses-sdk", "1000").await;
    let report = crate::tools::run_sdk(
        "openai_responses.py",
        vec![
            ("ONEFLOW_BASE_URL", format!("{}/v1", s.url)),
            ("ONEFLOW_KEY", key.clone()),
            ("ONEFLOW_CHAT_MODEL", "gpt".into()),
        ],
    )
    .await;
    assert!(
        report["answer_text"].as_str().unwrap().contains("degrees"),
        "{report}"
    );
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

/// Runs `openai_responses.py` through a broker whose one provider is an
/// OpenAI mock serving `mock-chat` (spoken to in the Responses API when
/// `native`, else in chat completions) and checks that each request was
/// charged the usage the SDK reported times the rate card; the requests
/// the mock received.
async fn responses_sdk_through_an_openai_upstream(native: bool) -> Vec<Recorded> {
    let up = MockUpstream::start(Kind::OpenAi);
    let mut p = provider(
        "oai",
        ProviderKind::Openai,
        Modality::Text,
        &up,
        &["mock-chat"],
    );
    p.responses = native;
    let s = TestServer::start_with(move |c| c.providers = vec![p]);
    let (_, key) = s.user("responses-sdk-upstream", "1000").await;
    let report = crate::tools::run_sdk(
        "openai_responses.py",
        vec![
            ("ONEFLOW_BASE_URL", format!("{}/v1", s.url)),
            ("ONEFLOW_KEY", key.clone()),
            ("ONEFLOW_CHAT_MODEL", "mock-chat".into()),
            ("ONEFLOW_UPSTREAM", "1".into()),
        ],
    )
    .await;
    // The function's output reached the upstream, which answered about it.
    assert_eq!(
        report["answer_text"],
        tool_answer("18 degrees and sunny"),
        "{report}"
    );
    // Each charge is the usage the SDK reported times the rate card.
    let (want, output_tokens) = crate::tools::reported_charges(&report);
    // Plain, streamed, a call, its output's answer, a streamed call.
    assert_eq!(want.len(), 5, "{report}");
    assert_eq!(s.charges(&key).await, want);
    // A call's output tokens are the words of the arguments it holds.
    let args = arguments_for(&weather()["parameters"]);
    assert_eq!(output_tokens[2], words(&args) as i64, "{report}");
    assert_eq!(output_tokens[4], words(&args) as i64, "{report}");
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
    up.requests()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_responses_through_an_openai_upstream_pay_what_they_report() {
    let sent = responses_sdk_through_an_openai_upstream(false).await;
    // Every one went upstream as chat completions; the function's output
    // as a tool message answering the call.
    let paths: Vec<&str> = sent.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/v1/chat/completions"; 5]);
    let messages = sent[3].body["messages"].as_array().unwrap();
    let (call, result) = (&messages[1], &messages[2]);
    assert_eq!(call["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(result["role"], "tool", "{}", sent[3].body);
    assert_eq!(result["tool_call_id"], call["tool_calls"][0]["id"]);
    assert_eq!(sent[4].body["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_responses_through_a_responses_upstream_pay_what_they_report() {
    let sent = responses_sdk_through_an_openai_upstream(true).await;
    // Every one went upstream in the Responses API; the function's output
    // after the call it answers, in the conversation OneFlow kept.
    let paths: Vec<&str> = sent.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/v1/responses"; 5]);
    let input = sent[3].body["input"].as_array().unwrap();
    let (call, output) = (&input[input.len() - 2], &input[input.len() - 1]);
    assert_eq!(call["type"], "function_call", "{}", sent[3].body);
    assert_eq!(output["type"], "function_call_output", "{}", sent[3].body);
    assert_eq!(output["call_id"], call["call_id"]);
    assert_eq!(sent[4].body["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_that_speaks_the_responses_api_gets_the_request_as_it_came() {
    let up = MockUpstream::start(Kind::OpenAi);
    let mut p = provider(
        "oai",
        ProviderKind::Openai,
        Modality::Text,
        &up,
        &["mock-chat"],
    );
    p.responses = true;
    let s = TestServer::start_with(move |c| c.providers = vec![p]);
    let (_, key) = s.user("native-responses", "100").await;
    let (st, first) = s
        .post(
            &key,
            "/v1/responses",
            json!({"model": "mock-chat", "input": "hello there", "instructions": "Be brief.",
                   "max_output_tokens": 30, "text": {"format": {"type": "text"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let sent = up.requests()[0].clone();
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(sent.body["instructions"], "Be brief.");
    assert_eq!(
        sent.body["input"],
        json!([{"role": "user", "content": "hello there"}])
    );
    assert_eq!(sent.body["store"], false);
    assert_eq!(sent.body["max_output_tokens"], 30);
    let text = first["output"][0]["content"][0]["text"].as_str().unwrap();
    let (i, o) = (
        first["usage"]["input_tokens"].as_i64().unwrap(),
        first["usage"]["output_tokens"].as_i64().unwrap(),
    );
    assert_eq!(o as u64, words(text));

    // A continuation goes up whole: the kept conversation, then the input;
    // the id is OneFlow's, so it is not sent.
    let res = s
        .http
        .post(format!("{}/v1/responses", s.url))
        .bearer_auth(&key)
        .json(&json!({"model": "mock-chat", "input": "and again",
                      "previous_response_id": first["id"], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let next = events(res).await;
    let sent = up.requests()[1].clone();
    assert!(
        sent.body.get("previous_response_id").is_none(),
        "{}",
        sent.body
    );
    assert_eq!(sent.body["stream"], true);
    let input = sent.body["input"].as_array().unwrap();
    assert_eq!(input.len(), 3, "{}", sent.body);
    assert_eq!(input[1]["type"], "message");
    assert_eq!(input[1]["content"][0]["text"], text);
    assert_eq!(input[2]["content"], "and again");
    let done = &next.last().unwrap()["response"];
    assert_eq!(done["status"], "completed", "{done}");
    let (i2, o2) = (
        done["usage"]["input_tokens"].as_i64().unwrap(),
        done["usage"]["output_tokens"].as_i64().unwrap(),
    );
    let streamed: String = next
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(o2 as u64, words(&streamed));
    // Charged each the usage the upstream reported, at the rate card.
    assert_eq!(
        s.charges(&key).await,
        vec![
            Credits(i * 1_000 + o * 3_000),
            Credits(i2 * 1_000 + o2 * 3_000)
        ]
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}
