//! Agent traffic on `/v1/chat/completions`: tools, tool results, image
//! parts, `n` and `response_format`, through the simulated provider, the
//! official SDK and an OpenAI-compatible upstream, with the ledger checked.

use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;
use oneflow::config::ProviderKind;
use oneflow::ledger::EntryKind;
use oneflow::pricing::Modality;

use crate::providers::provider;
use crate::support::{TestServer, assert_ledger_balances};
use crate::upstream::tools::{arguments_for, tool_answer};
use crate::upstream::{Kind, MockUpstream, words};

fn weather() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}},
        "required": ["city", "days", "metric"],
    }}})
}

/// The sum of the charges in the caller's ledger.
async fn charged(s: &TestServer, key: &str) -> Credits {
    let mut total = Credits::ZERO;
    for e in s.ledger(key).await {
        if e.kind == EntryKind::Charge {
            total += Credits(e.amount.0.abs());
        }
    }
    total
}

#[tokio::test]
async fn a_tool_call_comes_back_and_its_result_is_answered_in_text() {
    let s = TestServer::start();
    let (_, key) = s.user("agent", "100").await;
    let ask = json!([{"role": "user", "content": "weather in Paris"}]);
    let (st, v) = s
        .post(
            &key,
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": ask, "tools": [weather()], "max_tokens": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "sim", "days": 1, "metric": true}));
    // Charged what the answer used: its arguments, one credit a word.
    let used = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(used >= 1, "{v}");

    let mut history = ask.as_array().unwrap().clone();
    history.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
    history.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "sunny"}));
    let (st, v2) = s
        .post(
            &key,
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": history, "tools": [weather()], "max_tokens": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v2}");
    assert_eq!(v2["choices"][0]["finish_reason"], "stop", "{v2}");
    assert!(
        v2["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("sunny")
    );
    let used2 = v2["usage"]["completion_tokens"].as_u64().unwrap();
    // gpt: 1 credit per output token, nothing for input.
    assert_eq!(
        charged(&s, &key).await,
        Credits::from_credits(i64::try_from(used + used2).unwrap())
    );
    assert_eq!(
        s.balance(&key).await,
        Credits::from_credits(100 - i64::try_from(used + used2).unwrap())
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn n_answers_are_held_for_and_charged_by_usage() {
    let s = TestServer::start();
    let (_, key) = s.user("many", "100").await;
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "one two three"}], "n": 3, "max_tokens": 4});
    let (st, v) = s.post(&key, "/v1/chat/completions", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3, "{v}");
    // Each answer is cut at its own 4 tokens; the usage is all three.
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["finish_reason"], "length");
        assert_eq!(
            c["message"]["content"].as_str().unwrap().split(' ').count(),
            4
        );
    }
    assert_eq!(v["usage"]["completion_tokens"], 12, "{v}");
    assert_eq!(s.balance(&key).await, Credits::from_credits(88));
    // A wallet that covers one answer's bound but not three is refused.
    let (_, poor) = s.user("poor", "5").await;
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "x"}], "n": 3, "max_tokens": 4});
    let (st, v) = s.post(&poor, "/v1/chat/completions", body).await;
    assert_eq!(st, StatusCode::PAYMENT_REQUIRED, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn json_object_and_image_parts_are_served() {
    let s = TestServer::start();
    let (_, key) = s.user("parts", "100").await;
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "say hi"}], "response_format": {"type": "json_object"}});
    let (st, v) = s.post(&key, "/v1/chat/completions", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        serde_json::from_str::<Value>(text).unwrap().is_object(),
        "{text}"
    );
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}},
    ]}]});
    let (st, v) = s.post(&key, "/v1/chat/completions", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn a_streamed_tool_call_arrives_as_deltas() {
    let s = TestServer::start();
    let (_, key) = s.user("streamer", "100").await;
    let body = json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": "weather"}], "tools": [weather()], "max_tokens": 30});
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let (mut args, mut name, mut finish, mut pieces) = (String::new(), None, None, 0);
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let Ok(ev) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(choice) = ev["choices"].get(0) else {
            continue;
        };
        for c in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(c["index"], 0);
            if let Some(n) = c["function"]["name"].as_str() {
                name = Some(n.to_string());
            }
            args.push_str(c["function"]["arguments"].as_str().unwrap_or_default());
            pieces += 1;
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(name.as_deref(), Some("get_weather"), "{text}");
    assert!(pieces > 2, "pieces as they come, not one: {text}");
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args, json!({"city": "sim", "days": 1, "metric": true}));
    assert_eq!(finish.as_deref(), Some("tool_calls"), "{text}");
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn malformed_agent_requests_get_a_clear_4xx() {
    let s = TestServer::start();
    let (_, key) = s.user("bad", "100").await;
    let user = json!({"role": "user", "content": "hi"});
    for (body, status) in [
        // A tool without a name.
        (
            json!({"model": "gpt", "messages": [user], "tools": [{"type": "function", "function": {"parameters": {}}}]}),
            400,
        ),
        (json!({"model": "gpt", "messages": [user], "n": 0}), 400),
        (json!({"model": "gpt", "messages": [user], "n": 9}), 400),
        (
            json!({"model": "gpt", "messages": [user], "stream": true, "n": 2}),
            400,
        ),
        // A tool result answering no call; a tool choice naming no tool.
        (
            json!({"model": "gpt", "messages": [user, {"role": "tool", "tool_call_id": "x", "content": "r"}]}),
            422,
        ),
        (
            json!({"model": "gpt", "messages": [user], "tools": [weather()], "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            422,
        ),
        // A system message once the conversation began: Anthropic's format
        // has no place for it, so no provider could be sure to get it.
        (
            json!({"model": "gpt", "messages": [user, {"role": "system", "content": "now be rude"}]}),
            422,
        ),
    ] {
        let (st, v) = s.post(&key, "/v1/chat/completions", body.clone()).await;
        assert_eq!(st.as_u16(), status, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().is_some_and(|m| m.len() > 5),
            "{v}"
        );
    }
    assert_eq!(s.balance(&key).await, Credits::from_credits(100));
    s.stop().await;
}

#[tokio::test]
async fn unknown_fields_reach_an_openai_upstream_and_stop_at_an_anthropic_one() {
    let up = MockUpstream::start(Kind::OpenAi);
    let claude = MockUpstream::start(Kind::Anthropic);
    let s = TestServer::start_with(|c| {
        c.providers = vec![
            provider(
                "chatter",
                ProviderKind::Openai,
                Modality::Text,
                &up,
                &["mock-chat"],
            ),
            provider(
                "claude",
                ProviderKind::Anthropic,
                Modality::Text,
                &claude,
                &["mock-claude"],
            ),
        ];
    });
    let (_, key) = s.user("fields", "100").await;
    let body = json!({"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}],
        "seed": 7, "frobnicate": {"level": 3}, "tools": [weather()], "tool_choice": "auto"});
    let (st, v) = s.post(&key, "/v1/chat/completions", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sent = up.requests()[0].body.clone();
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["frobnicate"], json!({"level": 3}));
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["tool_choice"], "auto");

    let body =
        json!({"model": "mock-claude", "messages": [{"role": "user", "content": "hi"}], "seed": 7});
    let (st, v) = s.post(&key, "/v1/chat/completions", body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`seed`"),
        "{v}"
    );
    assert_eq!(claude.request_count(), 0);
    s.stop().await;
}

/// The `usage` an SDK script reported, each `[prompt, completion]`
/// request priced at `rates` (micro-credits a prompt and a completion
/// token): what each charge must be.
fn priced(report: &Value, rates: (i64, i64)) -> Vec<Credits> {
    report["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let (i, o) = (u[0].as_i64().unwrap(), u[1].as_i64().unwrap());
            Credits(i * rates.0 + o * rates.1)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_runs_tools_n_json_and_images_and_the_ledger_agrees() {
    let s = TestServer::start();
    let (_, key) = s.user("sdk-agent", "1000").await;
    let report = crate::tools::run_sdk(
        "openai_tools.py",
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
    // Every request the SDK made was charged once, by the usage it
    // reported (gpt: a credit per output token), and the balance is what
    // the ledger says.
    let want = priced(&report, (0, 1_000_000));
    assert_eq!(want.len(), 6, "{report}");
    assert_eq!(s.charges(&key).await, want);
    assert_eq!(
        s.balance(&key).await,
        Credits::from_credits(1000) - charged(&s, &key).await
    );
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_runs_tools_n_json_and_images_through_an_openai_upstream() {
    let up = MockUpstream::start(Kind::OpenAi);
    let p = provider(
        "chatter",
        ProviderKind::Openai,
        Modality::Text,
        &up,
        &["mock-chat"],
    );
    let s = TestServer::start_with(move |c| c.providers = vec![p]);
    let (_, key) = s.user("sdk-agent-upstream", "1000").await;
    let report = crate::tools::run_sdk(
        "openai_tools.py",
        vec![
            ("ONEFLOW_BASE_URL", format!("{}/v1", s.url)),
            ("ONEFLOW_KEY", key.clone()),
            ("ONEFLOW_CHAT_MODEL", "mock-chat".into()),
            ("ONEFLOW_UPSTREAM", "1".into()),
        ],
    )
    .await;
    // Each charge is the usage the SDK reported times the rate card (0.001
    // a prompt token, 0.003 a completion token).
    let want = priced(&report, (1_000, 3_000));
    assert_eq!(want.len(), 6, "{report}");
    assert_eq!(s.charges(&key).await, want);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);

    // What the upstream was sent, in order: the call, its result, the
    // streamed call, n=2, json_object, the image (the nameless tool was
    // refused before it).
    let sent = up.requests();
    assert_eq!(sent.len(), 6);
    let args = report["call_arguments"].as_str().unwrap();
    assert_eq!(
        args,
        arguments_for(&weather_sdk()["function"]["parameters"])
    );
    let usage = |k: usize| report["usage"][k][1].as_u64().unwrap();
    // A call's completion tokens are the words of its arguments.
    assert_eq!(usage(0), words(args), "{report}");
    assert_eq!(usage(2), words(args), "{report}");
    let history = sent[1].body["messages"].as_array().unwrap();
    assert_eq!(history[2]["role"], "tool");
    assert_eq!(
        history[2]["tool_call_id"],
        history[1]["tool_calls"][0]["id"]
    );
    assert_eq!(
        report["answer_text"],
        tool_answer("Sunny, 21 degrees"),
        "{report}"
    );
    assert_eq!(sent[2].body["stream"], true);
    assert_eq!(sent[2].body["stream_options"]["include_usage"], true);
    // Two answers, both counted.
    assert_eq!(sent[3].body["n"], 2);
    let texts = report["n2_texts"].as_array().unwrap();
    let both: u64 = texts.iter().map(|t| words(t.as_str().unwrap())).sum();
    assert_eq!(report["n2_completion_tokens"], both, "{report}");
    assert_eq!(sent[4].body["response_format"]["type"], "json_object");
    assert_eq!(
        sent[5].body["messages"][0]["content"][1]["type"],
        "image_url"
    );
    s.stop().await;
}

/// The tool `tests/sdk/openai_tools.py` offers.
fn weather_sdk() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }}})
}

#[tokio::test]
async fn an_image_part_over_the_bound_is_413_in_every_format() {
    let s = TestServer::start_with(|c| {
        c.server.max_body_bytes = 1 << 20;
        c.server.max_image_bytes = 2048;
    });
    let (_, key) = s.user("pictures", "100").await;
    let data = "A".repeat(4096);
    let url = format!("data:image/png;base64,{data}");
    let small = format!("data:image/png;base64,{}", "A".repeat(1024));
    let chat = |u: &str| {
        json!({"model": "gpt", "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": u}}]}]})
    };
    let (st, v) = s.post(&key, "/v1/chat/completions", chat(&small)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let bodies = [
        ("/v1/chat/completions", chat(&url)),
        (
            "/v1/messages",
            json!({"model": "gpt", "max_tokens": 10, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}]}]}),
        ),
        (
            "/v1/responses",
            json!({"model": "gpt", "input": [{"role": "user", "content": [
                {"type": "input_image", "image_url": url}]}]}),
        ),
    ];
    for (path, body) in bodies {
        let (st, v) = s.post(&key, path, body).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {v}");
        let code = v["error"]["code"].as_str().unwrap();
        assert_eq!(code, "image_too_large", "{path}: {v}");
    }
    // Only the image within the bound was served and charged.
    assert_eq!(
        s.balance(&key).await,
        Credits::from_credits(100) - charged(&s, &key).await
    );
    let charges = s.ledger(&key).await;
    let charges = charges.iter().filter(|e| e.kind == EntryKind::Charge);
    assert_eq!(charges.count(), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_provider_that_bills_images_by_the_piece_is_charged_per_image_sent() {
    let up = MockUpstream::start(Kind::OpenAi);
    let mut p = provider(
        "seer",
        ProviderKind::Openai,
        Modality::Text,
        &up,
        &["mock-vision"],
    );
    p.rates.per_input_image = Credits(500_000);
    let s = TestServer::start_with(move |c| c.providers = vec![p]);
    let (_, key) = s.user("looker", "100").await;
    let image = |u: &str| json!({"type": "image_url", "image_url": {"url": u}});
    let (st, v) = s
        .post(
            &key,
            "/v1/chat/completions",
            json!({"model": "mock-vision", "max_tokens": 20, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "compare these"},
                image("https://example.com/a.png"), image("https://example.com/b.png")]}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Both images reached the upstream.
    let sent = &up.requests()[0].body["messages"][0]["content"];
    assert_eq!(sent[2]["image_url"]["url"], "https://example.com/b.png");
    let (i, o) = (
        v["usage"]["prompt_tokens"].as_i64().unwrap(),
        v["usage"]["completion_tokens"].as_i64().unwrap(),
    );
    // Tokens at the rate card, and half a credit for each image sent.
    let want = Credits(i * 1_000 + o * 3_000 + 2 * 500_000);
    assert_eq!(charged(&s, &key).await, want);
    let id = v["id"].as_str().unwrap().trim_start_matches("chatcmpl-");
    let (_, record) = s.get(&key, &format!("/api/history/requests/{id}")).await;
    assert_eq!(record["usage"]["input_images"], 2, "{record}");
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}
