//! The mocks' tool calls, `n` choices and JSON answers as a client sees
//! them over HTTP, in each protocol's own shapes and event order.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{anthropic_post, frames, post};
use crate::upstream::tools::{arguments_for, json_answer, tool_answer, value_for};
use crate::upstream::{DEFAULT_ANSWER_WORDS, Kind, MockUpstream, answer_text, words};

/// The weather tool's parameters: every property required but `unit`.
pub(super) fn weather_schema() -> Value {
    json!({"type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
            "metric": {"type": "boolean"}, "unit": {"type": "string"}},
        "required": ["city", "days", "metric"]})
}

/// What the mocks call the weather tool with.
pub(super) fn weather_args() -> Value {
    json!({"city": "mock", "days": 1, "metric": true})
}

fn lookup_schema() -> Value {
    json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]})
}

/// A chat offering the weather tool, then a lookup tool.
pub(super) fn chat_with_tools(prompt: &str) -> Value {
    json!({"model": "mock-gpt", "messages": [{"role": "user", "content": prompt}], "tools": [
        {"type": "function", "function": {"name": "get_weather", "parameters": weather_schema()}},
        {"type": "function", "function": {"name": "lookup", "parameters": lookup_schema()}},
    ]})
}

/// A stream's `data:` events as JSON, `[DONE]` left out.
fn data_events(text: &str) -> Vec<Value> {
    frames(text)
        .into_iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str(&d).unwrap())
        .collect()
}

async fn json_of(up: &MockUpstream, path: &str, body: &Value) -> (StatusCode, Value) {
    let res = post(up, path, body).await;
    (res.status(), res.json().await.unwrap())
}

#[tokio::test]
async fn openai_chat_calls_the_chosen_tool_then_answers_its_result() {
    let up = MockUpstream::start(Kind::OpenAi);
    let mut body = chat_with_tools("weather in Paris");
    let (st, v) = json_of(&up, "/v1/chat/completions", &body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let message = &choice["message"];
    assert!(message.get("content").is_some_and(Value::is_null), "{v}");
    let call = &message["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{v}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args = call["function"]["arguments"].as_str().unwrap();
    assert_eq!(args, arguments_for(&weather_schema()));
    assert_eq!(serde_json::from_str::<Value>(args).unwrap(), weather_args());
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], words(args));

    // The tool the choice names; none when it says "none".
    body["tool_choice"] = json!({"type": "function", "function": {"name": "lookup"}});
    let (_, v) = json_of(&up, "/v1/chat/completions", &body).await;
    let call = &v["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "lookup", "{v}");
    assert_eq!(call["arguments"], r#"{"query": "mock"}"#);
    body["tool_choice"] = json!("none");
    let (_, v) = json_of(&up, "/v1/chat/completions", &body).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        answer_text(DEFAULT_ANSWER_WORDS)
    );

    // The tool's result: text about it.
    let mut answered = chat_with_tools("weather in Paris");
    let messages = answered["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}]}));
    messages
        .push(json!({"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees"}));
    let (_, v) = json_of(&up, "/v1/chat/completions", &answered).await;
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(text, tool_answer("Sunny, 21 degrees"));
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{v}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 3 + 3, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], words(text));

    // max_tokens cuts the arguments, and says so.
    let mut short = chat_with_tools("weather");
    short["max_tokens"] = json!(2);
    let (_, v) = json_of(&up, "/v1/chat/completions", &short).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    let cut = &v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"];
    assert_eq!(cut.as_str().map(words), Some(2));
    assert_eq!(v["usage"]["completion_tokens"], 2);

    // Tools the real API refuses, in its error shape; nothing answered.
    for (tools, choice) in [
        (
            json!([{"type": "function", "function": {"parameters": {}}}]),
            None,
        ),
        (
            json!([{"type": "function", "function": {"name": ""}}]),
            None,
        ),
        (
            body["tools"].clone(),
            Some(json!({"type": "function", "function": {"name": "nope"}})),
        ),
    ] {
        let mut bad = chat_with_tools("x");
        bad["tools"] = tools;
        if let Some(c) = choice {
            bad["tool_choice"] = c;
        }
        let (st, v) = json_of(&up, "/v1/chat/completions", &bad).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
}

#[tokio::test]
async fn openai_chat_streams_a_tool_call_as_the_real_api_does() {
    let up = MockUpstream::start(Kind::OpenAi);
    let mut body = chat_with_tools("weather in Paris");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = post(&up, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(frames(&text).last().unwrap().1, "[DONE]");
    let chunks = data_events(&text);
    // The head of the call, its argument pieces, the finish, the usage.
    let args = arguments_for(&weather_schema());
    let pieces = words(&args) as usize;
    assert_eq!(chunks.len(), 1 + pieces + 2, "{text}");
    let head = &chunks[0]["choices"][0]["delta"];
    assert_eq!(head["role"], "assistant");
    let first = &head["tool_calls"][0];
    assert_eq!(first["index"], 0);
    assert!(first["id"].as_str().unwrap().starts_with("call_"), "{head}");
    assert_eq!(first["type"], "function");
    assert_eq!(
        first["function"],
        json!({"name": "get_weather", "arguments": ""})
    );
    let mut joined = String::new();
    for c in &chunks[1..=pieces] {
        let piece = &c["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(piece["index"], 0);
        assert!(piece.get("id").is_none() && piece["function"].get("name").is_none());
        joined.push_str(piece["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(joined, args);
    let finish = &chunks[pieces + 1]["choices"][0];
    assert_eq!(finish["finish_reason"], "tool_calls");
    assert_eq!(finish["delta"], json!({}));
    let usage = &chunks[pieces + 2];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], pieces);
    assert_eq!(usage["usage"]["prompt_tokens"], 3);
}

#[tokio::test]
async fn openai_chat_gives_n_choices_and_json_when_asked() {
    let up = MockUpstream::start(Kind::OpenAi);
    let mut body = super::chat_body("two answers");
    body["n"] = json!(2);
    let (_, v) = json_of(&up, "/v1/chat/completions", &body).await;
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2, "{v}");
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["content"], answer_text(DEFAULT_ANSWER_WORDS));
    }
    // Completion tokens count every choice.
    assert_eq!(v["usage"]["completion_tokens"], 2 * DEFAULT_ANSWER_WORDS);

    // Streamed: an event for each choice in turn, told apart by index.
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = post(&up, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let chunks = data_events(&text);
    // Role, words and finish for each choice, then the usage.
    assert_eq!(
        chunks.len(),
        2 * (1 + DEFAULT_ANSWER_WORDS + 1) + 1,
        "{text}"
    );
    let mut texts = [String::new(), String::new()];
    let mut finishes = 0;
    for (j, c) in chunks[..chunks.len() - 1].iter().enumerate() {
        let choices = c["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1, "{c}");
        assert_eq!(choices[0]["index"], j % 2, "{c}");
        let i = j % 2;
        texts[i].push_str(choices[0]["delta"]["content"].as_str().unwrap_or_default());
        finishes += usize::from(choices[0]["finish_reason"] == "stop");
    }
    assert_eq!(texts[0], answer_text(DEFAULT_ANSWER_WORDS));
    assert_eq!(texts[0], texts[1]);
    assert_eq!(finishes, 2);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 2 * DEFAULT_ANSWER_WORDS);

    // n tool calls, each with its own id.
    let mut tools = chat_with_tools("weather");
    tools["n"] = json!(2);
    let (_, v) = json_of(&up, "/v1/chat/completions", &tools).await;
    let ids: Vec<&Value> = (0..2)
        .map(|i| &v["choices"][i]["message"]["tool_calls"][0]["id"])
        .collect();
    assert_ne!(ids[0], ids[1], "{v}");
    let args = arguments_for(&weather_schema());
    assert_eq!(v["usage"]["completion_tokens"], 2 * words(&args));
    body["n"] = json!(0);
    body["stream"] = json!(false);
    let (st, _) = json_of(&up, "/v1/chat/completions", &body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // JSON: an object, or a value of the schema given.
    let mut js = super::chat_body("as json");
    js["response_format"] = json!({"type": "json_object"});
    let (_, v) = json_of(&up, "/v1/chat/completions", &js).await;
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content, json_answer());
    assert!(serde_json::from_str::<Value>(content).unwrap().is_object());
    assert_eq!(v["usage"]["completion_tokens"], words(content));
    js["response_format"] = json!({"type": "json_schema",
        "json_schema": {"name": "weather", "schema": weather_schema()}});
    let (_, v) = json_of(&up, "/v1/chat/completions", &js).await;
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(content).unwrap(),
        weather_args()
    );
}

pub(super) fn responses_body(input: Value) -> Value {
    json!({"model": "mock-gpt", "input": input, "tools": [
        {"type": "web_search"},
        {"type": "function", "name": "get_weather", "parameters": weather_schema()},
        {"type": "function", "name": "lookup", "parameters": lookup_schema()},
    ]})
}

#[tokio::test]
async fn responses_call_a_function_then_answer_its_output() {
    let up = MockUpstream::start(Kind::OpenAi);
    let (st, v) = json_of(&up, "/v1/responses", &responses_body(json!("weather"))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed", "{v}");
    let output = v["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{v}");
    let item = &output[0];
    assert_eq!(item["type"], "function_call");
    assert!(item["id"].as_str().unwrap().starts_with("fc_"), "{item}");
    assert!(
        item["call_id"].as_str().unwrap().starts_with("call_"),
        "{item}"
    );
    assert_eq!(item["name"], "get_weather");
    assert_eq!(item["status"], "completed");
    let args = item["arguments"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(args).unwrap(), weather_args());
    assert_eq!(v["usage"]["input_tokens"], 1);
    assert_eq!(v["usage"]["output_tokens"], words(args));

    // Its output: text about it.
    let input = json!([
        {"role": "user", "content": "weather"},
        item,
        {"type": "function_call_output", "call_id": item["call_id"], "output": "18 degrees"},
    ]);
    let (_, v) = json_of(&up, "/v1/responses", &responses_body(input)).await;
    let message = &v["output"][0];
    assert_eq!(message["type"], "message", "{v}");
    let text = message["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, tool_answer("18 degrees"));
    assert_eq!(v["usage"]["input_tokens"], 1 + 2, "{v}");
    assert_eq!(v["usage"]["output_tokens"], words(text));

    // The function the choice names; none when it says "none", or when
    // no function is offered.
    let mut named = responses_body(json!("weather"));
    named["tool_choice"] = json!({"type": "function", "name": "lookup"});
    let (_, v) = json_of(&up, "/v1/responses", &named).await;
    assert_eq!(v["output"][0]["name"], "lookup", "{v}");
    named["tool_choice"] = json!("none");
    let (_, v) = json_of(&up, "/v1/responses", &named).await;
    assert_eq!(v["output"][0]["type"], "message", "{v}");
    let mut builtin = responses_body(json!("weather"));
    builtin["tools"] = json!([{"type": "web_search"}]);
    let (_, v) = json_of(&up, "/v1/responses", &builtin).await;
    assert_eq!(v["output"][0]["type"], "message", "{v}");
}

/// A Responses stream's events, each checked to carry the next
/// `sequence_number` and its type as the event's name.
async fn responses_events(up: &MockUpstream, mut body: Value) -> Vec<Value> {
    body["stream"] = json!(true);
    let text = post(up, "/v1/responses", &body).await.text().await.unwrap();
    frames(&text)
        .into_iter()
        .enumerate()
        .map(|(i, (name, d))| {
            let v: Value = serde_json::from_str(&d).unwrap();
            assert_eq!(v["sequence_number"], i, "{v}");
            assert_eq!(Some(v["type"].as_str().unwrap()), name.as_deref());
            v
        })
        .collect()
}

#[tokio::test]
async fn responses_stream_a_function_call_and_text_in_the_real_event_order() {
    let up = MockUpstream::start(Kind::OpenAi);
    let events = responses_events(&up, responses_body(json!("weather"))).await;
    let args = arguments_for(&weather_schema());
    let pieces = words(&args) as usize;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let mut want = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ];
    want.extend(vec!["response.function_call_arguments.delta"; pieces]);
    want.extend([
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(types, want);
    let added = &events[2]["item"];
    assert_eq!(added["type"], "function_call");
    assert_eq!(
        (&added["arguments"], &added["status"]),
        (&json!(""), &json!("in_progress"))
    );
    let joined: String = events[3..3 + pieces]
        .iter()
        .map(|e| {
            assert_eq!(e["item_id"], added["id"]);
            e["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(joined, args);
    assert_eq!(events[3 + pieces]["arguments"], args);
    let done = &events[4 + pieces]["item"];
    assert_eq!(done["arguments"], args);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["call_id"], added["call_id"]);
    let r = &events[5 + pieces]["response"];
    assert_eq!(r["status"], "completed");
    assert_eq!(&r["output"][0], done);
    assert_eq!(r["usage"]["output_tokens"], pieces);

    // Text: its part opened and closed around the deltas, the whole
    // message in the completed response.
    let events = responses_events(
        &up,
        json!({"model": "mock-gpt", "input": "hi", "max_output_tokens": 3}),
    )
    .await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete",
        ]
    );
    assert_eq!(events[7]["text"], answer_text(3));
    let r = &events[10]["response"];
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r["output"][0]["content"][0]["text"], answer_text(3));
    assert_eq!(r["usage"]["output_tokens"], 3);
}

fn messages_body(messages: Value) -> Value {
    json!({"model": "mock-claude", "max_tokens": 100, "messages": messages, "tools": [
        {"name": "get_weather", "description": "The weather", "input_schema": weather_schema()},
        {"name": "lookup", "input_schema": lookup_schema()},
    ]})
}

async fn anthropic_json(up: &MockUpstream, body: &Value) -> (StatusCode, Value) {
    let res = anthropic_post(up, body).send().await.unwrap();
    (res.status(), res.json().await.unwrap())
}

#[tokio::test]
async fn anthropic_calls_a_tool_then_answers_its_result() {
    let up = MockUpstream::start(Kind::Anthropic);
    let ask = json!([{"role": "user", "content": "weather in Paris"}]);
    let (st, v) = anthropic_json(&up, &messages_body(ask.clone())).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let content = v["content"].as_array().unwrap();
    assert_eq!(content.len(), 1, "{v}");
    let block = &content[0];
    assert_eq!(block["type"], "tool_use");
    assert!(
        block["id"].as_str().unwrap().starts_with("toolu_"),
        "{block}"
    );
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], weather_args());
    let args = arguments_for(&weather_schema());
    assert_eq!(v["usage"]["input_tokens"], 3);
    assert_eq!(v["usage"]["output_tokens"], words(&args));

    // Its result: text about it (the result's words count as input).
    let mut answered = ask.as_array().unwrap().clone();
    answered.push(json!({"role": "assistant", "content": [block]}));
    answered.push(json!({"role": "user", "content": [{"type": "tool_result",
        "tool_use_id": block["id"], "content": [{"type": "text", "text": "18 degrees"}]}]}));
    let (_, v) = anthropic_json(&up, &messages_body(json!(answered))).await;
    assert_eq!(v["stop_reason"], "end_turn", "{v}");
    assert_eq!(v["content"][0]["type"], "text");
    let text = v["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, tool_answer("18 degrees"));
    assert_eq!(v["usage"]["input_tokens"], 3 + 2, "{v}");
    assert_eq!(v["usage"]["output_tokens"], words(text));

    // The tool the choice names; none when it says none.
    let mut named = messages_body(ask.clone());
    named["tool_choice"] = json!({"type": "tool", "name": "lookup"});
    let (_, v) = anthropic_json(&up, &named).await;
    assert_eq!(v["content"][0]["name"], "lookup", "{v}");
    assert_eq!(v["content"][0]["input"], value_for(&lookup_schema()));
    named["tool_choice"] = json!({"type": "none"});
    let (_, v) = anthropic_json(&up, &named).await;
    assert_eq!(v["stop_reason"], "end_turn", "{v}");

    // A tool without its schema is refused in Anthropic's shape.
    let mut bad = messages_body(ask);
    bad["tools"] = json!([{"name": "get_weather"}]);
    let (st, v) = anthropic_json(&up, &bad).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn anthropic_streams_a_tool_use_in_the_real_event_order() {
    let up = MockUpstream::start(Kind::Anthropic);
    let mut body = messages_body(json!([{"role": "user", "content": "weather in Paris"}]));
    body["stream"] = json!(true);
    let text = anthropic_post(&up, &body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let f = frames(&text);
    let args = arguments_for(&weather_schema());
    let pieces = words(&args) as usize;
    let names: Vec<&str> = f.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    let mut want = vec!["message_start", "content_block_start", "ping"];
    want.extend(vec!["content_block_delta"; pieces]);
    want.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, want);
    let data: Vec<Value> = f
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    let start = &data[1]["content_block"];
    assert_eq!(start["type"], "tool_use");
    assert!(
        start["id"].as_str().unwrap().starts_with("toolu_"),
        "{start}"
    );
    assert_eq!(start["name"], "get_weather");
    assert_eq!(start["input"], json!({}));
    let joined: String = data[3..3 + pieces]
        .iter()
        .map(|d| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert_eq!(joined, args);
    let end = &data[4 + pieces];
    assert_eq!(end["delta"]["stop_reason"], "tool_use");
    assert_eq!(end["usage"]["output_tokens"], pieces);
}
