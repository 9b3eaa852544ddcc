//! Extended thinking (Anthropic providers): the signed thinking blocks of
//! an answer reach the client, whole and streamed, in Messages' shape and
//! in OpenAI's (`reasoning_content`, `thinking_blocks`), and come back in a
//! tool loop, which the upstream refuses without them. Charges include
//! the thinking's output tokens.

use reqwest::StatusCode;
use serde_json::{Value, json};

use oneflow::Credits;

use crate::messages::{call, events, send, two_formats, weather};
use crate::support::{TestServer, assert_ledger_balances};
use crate::upstream::anthropic::{THINKING, signature};
use crate::upstream::{Kind, MockUpstream};

fn thinking() -> Value {
    json!({"type": "enabled", "budget_tokens": 1024})
}

/// The mock's rate card for the `claude` provider: 0.001 a prompt token,
/// 0.003 an output token.
fn cost(usage: &Value, input: &str, output: &str) -> Credits {
    Credits(usage[input].as_i64().unwrap() * 1_000 + usage[output].as_i64().unwrap() * 3_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thinking_blocks_reach_a_messages_client_and_come_back_in_a_tool_loop() {
    let openai = MockUpstream::start(Kind::OpenAi);
    let claude = MockUpstream::start(Kind::Anthropic);
    let s = two_formats(&openai, &claude);
    let (_, key) = s.user("thinker", "100").await;
    let ask = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = |messages: Value| {
        json!({"model": "mock-claude", "max_tokens": 2048, "thinking": thinking(),
            "tools": [weather()], "messages": messages})
    };

    let (st, first) = call(&s, &key, "/v1/messages", body(json!([ask]))).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let content = first["content"].as_array().unwrap();
    assert_eq!(
        content[0],
        json!({"type": "thinking", "thinking": THINKING, "signature": signature(THINKING)})
    );
    assert_eq!(content[1]["type"], "tool_use", "{first}");
    assert_eq!(first["stop_reason"], "tool_use");
    let call_id = content[1]["id"].as_str().unwrap();

    // The assistant turn as it came, then the tool's result: the upstream
    // takes it only with the signed thinking block first.
    let result = json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call_id, "content": "18 degrees"}]});
    let looped = json!([ask, {"role": "assistant", "content": content}, result]);
    let (st, second) = call(&s, &key, "/v1/messages", body(looped)).await;
    assert_eq!(st, StatusCode::OK, "{second}");
    assert_eq!(second["content"][0]["type"], "thinking");
    assert!(
        second["content"][1]["text"]
            .as_str()
            .unwrap()
            .contains("18 degrees"),
        "{second}"
    );
    let sent = claude.requests()[1].body.clone();
    assert_eq!(sent["messages"][1]["content"][0], content[0]);

    // Without the thinking block the upstream refuses the loop: the block
    // is what makes it work, and nothing is charged for the refusal.
    let stripped = json!([ask, {"role": "assistant", "content": [content[1].clone()]}, result]);
    let (st, refused) = call(&s, &key, "/v1/messages", body(stripped)).await;
    assert!(!st.is_success(), "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("thinking"),
        "{refused}"
    );

    // Each charge is the reported usage, thinking included, at the rates.
    let want: Vec<Credits> = [&first, &second]
        .iter()
        .map(|v| cost(&v["usage"], "input_tokens", "output_tokens"))
        .collect();
    assert_eq!(s.charges(&key).await, want);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_thinking_keeps_its_signature_and_comes_back() {
    let openai = MockUpstream::start(Kind::OpenAi);
    let claude = MockUpstream::start(Kind::Anthropic);
    let s = two_formats(&openai, &claude);
    let (_, key) = s.user("stream-thinker", "100").await;
    let ask = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = json!({"model": "mock-claude", "max_tokens": 2048, "thinking": thinking(),
        "tools": [weather()], "stream": true, "messages": [ask]});
    let res = send(&s, &key, "/v1/messages", &body).await;
    assert_eq!(res.status(), StatusCode::OK);
    let evs = events(res).await;

    // Rebuild the blocks as a client does.
    let mut blocks: Vec<Value> = Vec::new();
    for (name, v) in &evs {
        match name.as_str() {
            "content_block_start" => {
                assert_eq!(v["index"].as_u64().unwrap() as usize, blocks.len(), "{v}");
                blocks.push(v["content_block"].clone());
            }
            "content_block_delta" => {
                let b = &mut blocks[v["index"].as_u64().unwrap() as usize];
                let d = &v["delta"];
                match d["type"].as_str().unwrap() {
                    "thinking_delta" => {
                        let t = format!(
                            "{}{}",
                            b["thinking"].as_str().unwrap(),
                            d["thinking"].as_str().unwrap()
                        );
                        b["thinking"] = json!(t);
                    }
                    "signature_delta" => b["signature"] = d["signature"].clone(),
                    "input_json_delta" => {
                        let j = format!(
                            "{}{}",
                            b["partial"].as_str().unwrap_or(""),
                            d["partial_json"].as_str().unwrap()
                        );
                        b["partial"] = json!(j);
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        blocks[0],
        json!({"type": "thinking", "thinking": THINKING, "signature": signature(THINKING)})
    );
    assert_eq!(blocks[1]["type"], "tool_use");
    let input: Value = serde_json::from_str(blocks[1]["partial"].as_str().unwrap()).unwrap();
    let tool_use = json!({"type": "tool_use", "id": blocks[1]["id"], "name": blocks[1]["name"], "input": input});
    let (_, end) = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(end["delta"]["stop_reason"], "tool_use");

    let looped = json!({"model": "mock-claude", "max_tokens": 2048, "thinking": thinking(),
        "tools": [weather()], "messages": [ask,
            {"role": "assistant", "content": [blocks[0].clone(), tool_use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": blocks[1]["id"], "content": "18 degrees"}]}]});
    let (st, second) = call(&s, &key, "/v1/messages", looped).await;
    assert_eq!(st, StatusCode::OK, "{second}");

    // The stream was charged its reported usage, thinking included.
    let streamed = cost(&end["usage"], "input_tokens", "output_tokens");
    let charges = s.charges(&key).await;
    assert_eq!(charges[0], streamed);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_client_gets_reasoning_content_and_thinking_blocks_it_can_send_back() {
    let openai = MockUpstream::start(Kind::OpenAi);
    let claude = MockUpstream::start(Kind::Anthropic);
    let s = two_formats(&openai, &claude);
    let (_, key) = s.user("openai-thinker", "100").await;
    let tool = json!({"type": "function", "function": {"name": weather()["name"],
        "parameters": weather()["input_schema"]}});
    let ask = json!({"role": "user", "content": "What is the weather in Paris?"});
    let body = |messages: Value, stream: bool| {
        json!({"model": "mock-claude", "max_tokens": 2048, "thinking": thinking(),
            "tools": [tool], "messages": messages, "stream": stream})
    };
    let (st, first) = s
        .post(&key, "/v1/chat/completions", body(json!([ask]), false))
        .await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let m = &first["choices"][0]["message"];
    assert_eq!(m["reasoning_content"], THINKING);
    assert_eq!(
        m["thinking_blocks"],
        json!([{"type": "thinking", "thinking": THINKING, "signature": signature(THINKING)}])
    );
    let call_id = m["tool_calls"][0]["id"].as_str().unwrap();
    let looped =
        json!([ask, m, {"role": "tool", "tool_call_id": call_id, "content": "18 degrees"}]);
    let (st, second) = s
        .post(&key, "/v1/chat/completions", body(looped, false))
        .await;
    assert_eq!(st, StatusCode::OK, "{second}");
    assert!(
        second["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("18 degrees"),
        "{second}"
    );

    // Streamed, the thinking comes as `reasoning_content` deltas.
    let res = s
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(&key)
        .json(&body(json!([ask]), true))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let reasoning: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(reasoning, THINKING);
    let want: Vec<Credits> = [&first, &second]
        .iter()
        .map(|v| cost(&v["usage"], "prompt_tokens", "completion_tokens"))
        .collect();
    assert_eq!(s.charges(&key).await[..2], want[..]);
    assert_ledger_balances(&s.ledger(&key).await, s.balance(&key).await);
    s.stop().await;
}

#[tokio::test]
async fn thinking_blocks_are_the_assistants_and_need_their_fields() {
    let s = TestServer::start();
    let (_, key) = s.user("careless", "100").await;
    let cases = [
        // In a user turn.
        json!([{"role": "user", "content": [{"type": "thinking", "thinking": "x", "signature": "s"}]}]),
        // Without its signature.
        json!([{"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}, {"type": "text", "text": "a"}]},
            {"role": "user", "content": "more"}]),
        // A redacted block without its data.
        json!([{"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "redacted_thinking"}]},
            {"role": "user", "content": "more"}]),
    ];
    for messages in cases {
        let (st, v) = call(
            &s,
            &key,
            "/v1/messages",
            json!({"model": "gpt", "max_tokens": 20, "messages": messages}),
        )
        .await;
        assert!(st.is_client_error(), "{messages}: {st} {v}");
        assert_eq!(v["type"], "error", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("thinking")
                || v["error"]["message"].as_str().unwrap().contains("think"),
            "{v}"
        );
    }
    assert_eq!(s.balance(&key).await, Credits::from_credits(100));
    s.stop().await;
}
