//! Clients of the mocks' tool calls: the broker's own adapters reading
//! them, plain and streamed, in each protocol; and the official SDK's agent
//! script run against the OpenAI mock itself.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{Value, json};

use oneflow::config::ProviderKind;
use oneflow_actors::adapters::{Adapter, Chunk, Operation, Output, anthropic, openai};

use super::tools::{chat_with_tools, responses_body, weather_args, weather_schema};
use super::{call, provider};
use crate::upstream::tools::{arguments_for, tool_answer};
use crate::upstream::{DEFAULT_ANSWER_WORDS, Kind, MOCK_API_KEY, MockUpstream, words};

/// An OpenAI-shaped chat offering the weather tool, as an adapter's
/// operation.
fn chat_op(max_tokens: u32, responses: bool) -> Operation {
    let body = chat_with_tools("weather in Paris");
    Operation::Chat {
        chat: oneflow::chat::openai::read_request(&body).unwrap(),
        max_tokens,
        n: 1,
        extra: Default::default(),
        responses: responses.then(|| Arc::new(responses_body(json!("weather in Paris")))),
    }
}

/// A streamed answer's tool calls (joined by index), usage and finish.
async fn streamed_calls(a: &dyn Adapter, op: Operation, model: &str) -> (Vec<Value>, u64, String) {
    let mut s = a.stream(call(model, op)).await.unwrap();
    let (mut calls, mut output, mut finish) = (Vec::<Value>::new(), 0, String::new());
    while let Some(c) = s.next().await {
        match c.unwrap() {
            Chunk::ToolCall(c) => {
                let i = c["index"].as_u64().unwrap() as usize;
                if calls.len() <= i {
                    calls.push(c.clone());
                } else {
                    let piece = c["function"]["arguments"].as_str().unwrap();
                    let joined = format!(
                        "{}{piece}",
                        calls[i]["function"]["arguments"].as_str().unwrap()
                    );
                    calls[i]["function"]["arguments"] = json!(joined);
                }
            }
            Chunk::Usage(u) => output = u.output_tokens,
            Chunk::Finish(f) => finish = f,
            Chunk::Delta(t) => panic!("a call, not text: {t}"),
            Chunk::Thinking(t) => panic!("no thinking was asked for, yet: {t:?}"),
        }
    }
    (calls, output, finish)
}

#[tokio::test]
async fn the_broker_adapters_read_the_mocks_tool_calls() {
    let http = oneflow_actors::adapters::http_client(oneflow::reach::Reach::Anywhere).unwrap();
    let key = Some(MOCK_API_KEY.to_string());
    let args = arguments_for(&weather_schema());
    let openai_up = MockUpstream::start(Kind::OpenAi);
    let anthropic_up = MockUpstream::start(Kind::Anthropic);
    let chat = openai::OpenAi::new(
        &provider(ProviderKind::Openai, format!("{}/v1", openai_up.base_url())),
        http.clone(),
        key.clone(),
    );
    let mut native = provider(ProviderKind::Openai, format!("{}/v1", openai_up.base_url()));
    native.responses = true;
    let native = openai::OpenAi::new(&native, http.clone(), key.clone());
    let claude = anthropic::Anthropic::new(
        &provider(ProviderKind::Anthropic, anthropic_up.base_url()),
        http,
        key,
    );
    let adapters: [(&dyn Adapter, bool, &str); 3] = [
        (&chat, false, "mock-gpt"),
        (&native, true, "mock-gpt"),
        (&claude, false, "mock-claude"),
    ];
    for (a, responses, model) in adapters {
        let r = a.call(call(model, chat_op(50, responses))).await.unwrap();
        let Output::Choices(choices) = &r.output else {
            panic!("{model}: a call is read as choices, not {:?}", r.output);
        };
        assert_eq!(choices[0]["finish_reason"], "tool_calls", "{model}");
        let c = &choices[0]["message"]["tool_calls"][0];
        assert_eq!(c["function"]["name"], "get_weather", "{model}");
        let got: Value =
            serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(got, weather_args(), "{model}");
        assert_eq!(r.usage.output_tokens, words(&args), "{model}");

        let (calls, output, finish) = streamed_calls(a, chat_op(50, responses), model).await;
        assert_eq!(calls.len(), 1, "{model}: {calls:?}");
        assert_eq!(calls[0]["function"]["name"], "get_weather", "{model}");
        assert_eq!(calls[0]["function"]["arguments"], args, "{model}");
        assert_eq!(output, words(&args), "{model}");
        assert_eq!(finish, "tool_calls", "{model}");
    }
    let sent: Vec<String> = openai_up.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        sent,
        [
            "/v1/chat/completions",
            "/v1/chat/completions",
            "/v1/responses",
            "/v1/responses"
        ]
    );
}

/// Runs `tests/sdk/openai_tools.py` (the official SDK's agent calls)
/// against the OpenAI mock itself: the SDK parses its calls, streamed
/// calls, `n` and JSON answers, and takes its 400 for a nameless tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_tools_script_runs_against_the_openai_mock() {
    let up = MockUpstream::start(Kind::OpenAi);
    let report = crate::tools::run_sdk(
        "openai_tools.py",
        vec![
            ("ONEFLOW_BASE_URL", format!("{}/v1", up.base_url())),
            ("ONEFLOW_KEY", MOCK_API_KEY.into()),
            ("ONEFLOW_CHAT_MODEL", "mock-gpt".into()),
            ("ONEFLOW_UPSTREAM", "1".into()),
        ],
    )
    .await;
    assert_eq!(
        report["answer_text"],
        tool_answer("Sunny, 21 degrees"),
        "{report}"
    );
    assert_eq!(
        report["n2_completion_tokens"],
        2 * DEFAULT_ANSWER_WORDS,
        "{report}"
    );
    // Six answered, then the nameless tool refused by the mock itself.
    let sent = up.requests();
    assert_eq!(sent.len(), 7);
    assert_eq!(report["usage"].as_array().unwrap().len(), 6);
    assert_eq!(sent[6].body["tools"][0]["function"]["name"], "");
}
