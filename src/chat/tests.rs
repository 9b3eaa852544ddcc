use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn text() -> impl Strategy<Value = String> {
    "[a-z ]{0,12}"
}

fn image() -> impl Strategy<Value = Image> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|s| Image::Url(format!("https://img.example/{s}.png"))),
        "[A-Za-z0-9+/]{4,16}".prop_map(|d| Image::Base64 {
            media_type: "image/png".into(),
            data: d,
        }),
    ]
}

fn input() -> impl Strategy<Value = Value> {
    ("[a-z]{1,5}", 0i64..1000, text()).prop_map(|(k, n, s)| json!({k: n, "note": s}))
}

/// A user turn: results for some of the calls the turn before made, then
/// text and images (at least one part in all).
fn user_turn(calls: Vec<String>, errors: bool) -> impl Strategy<Value = Turn> {
    let results = proptest::sample::subsequence(calls.clone(), 0..=calls.len());
    let rest = proptest::collection::vec(
        prop_oneof![text().prop_map(Part::Text), image().prop_map(Part::Image)],
        0..3,
    );
    (
        results,
        rest,
        proptest::collection::vec(any::<bool>(), 4),
        text(),
    )
        .prop_map(move |(ids, mut rest, flags, content)| {
            let mut parts: Vec<Part> = ids
                .into_iter()
                .enumerate()
                .map(|(i, call_id)| Part::ToolResult {
                    call_id,
                    content: content.clone(),
                    is_error: errors && flags[i % flags.len()],
                })
                .collect();
            if parts.is_empty() && rest.is_empty() {
                rest.push(Part::Text("hello".into()));
            }
            parts.append(&mut rest);
            Turn {
                role: Role::User,
                parts,
            }
        })
}

/// An assistant turn: text, then tool calls (ids unique in the request).
fn assistant_turn(at: usize, tools: Vec<String>) -> impl Strategy<Value = Turn> {
    let names = if tools.is_empty() {
        vec!["f".to_string()]
    } else {
        tools
    };
    (
        proptest::collection::vec(text(), 0..3),
        proptest::collection::vec((proptest::sample::select(names), input()), 0..3),
    )
        .prop_map(move |(texts, calls)| {
            let mut parts: Vec<Part> = texts.into_iter().map(Part::Text).collect();
            for (j, (name, input)) in calls.into_iter().enumerate() {
                parts.push(Part::ToolCall {
                    id: format!("call_{at}_{j}"),
                    name,
                    input,
                });
            }
            if parts.is_empty() {
                parts.push(Part::Text("ok".into()));
            }
            Turn {
                role: Role::Assistant,
                parts,
            }
        })
}

fn calls_of(t: &Turn) -> Vec<String> {
    t.parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// Up to six alternating turns, each built on the one before.
fn turns(tools: Vec<String>, errors: bool) -> BoxedStrategy<Vec<Turn>> {
    let mut s: BoxedStrategy<Vec<Turn>> =
        user_turn(Vec::new(), errors).prop_map(|t| vec![t]).boxed();
    for at in 1..6 {
        let tools = tools.clone();
        s = s
            .prop_flat_map(move |ts| {
                let last = ts.last().cloned();
                let next: BoxedStrategy<Turn> = match last.map(|t| (t.role, calls_of(&t))) {
                    Some((Role::User, _)) => assistant_turn(at, tools.clone()).boxed(),
                    Some((Role::Assistant, calls)) => user_turn(calls, errors).boxed(),
                    None => unreachable!("starts with one turn"),
                };
                (Just(ts), next, any::<bool>())
            })
            .prop_map(|(mut ts, next, keep)| {
                if keep {
                    ts.push(next);
                }
                ts
            })
            .boxed();
    }
    s
}

/// A request both formats can carry; `errors`: tool results may be marked
/// as errors (only Anthropic's format has the flag).
fn request(errors: bool) -> impl Strategy<Value = ChatRequest> {
    let tools = proptest::collection::btree_set("[a-z]{1,6}", 0..3);
    tools.prop_flat_map(move |names| {
        let names: Vec<String> = names.into_iter().collect();
        let tools: Vec<Tool> = names
            .iter()
            .map(|n| Tool {
                name: n.clone(),
                description: Some(format!("does {n}")),
                parameters: json!({"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}),
            })
            .collect();
        let mut choices = vec![
            ToolChoice::Auto,
            ToolChoice::None,
            ToolChoice::Required,
        ];
        choices.extend(names.iter().cloned().map(ToolChoice::Named));
        (
            proptest::option::of(text()),
            turns(names.clone(), errors),
            Just(tools),
            proptest::option::of((proptest::sample::select(choices), proptest::option::of(any::<bool>()))),
            1u32..8192,
            proptest::collection::vec("[a-z#]{1,4}", 0..3),
            proptest::option::of(0u32..=100),
            proptest::option::of(0u32..=100),
            any::<bool>(),
        )
            .prop_map(
                |(system, turns, tools, choice, max, stop, temp, top_p, stream)| ChatRequest {
                    model: "m".into(),
                    system,
                    turns,
                    tools,
                    parallel_tool_calls: choice.as_ref().and_then(|c| c.1),
                    tool_choice: choice.map(|c| c.0),
                    max_tokens: Some(max),
                    stop,
                    temperature: temp.map(|t| f64::from(t) / 100.0),
                    top_p: top_p.map(|t| f64::from(t) / 100.0),
                    stream,
                },
            )
    })
}

fn response() -> impl Strategy<Value = ChatResponse> {
    (
        assistant_turn(1, vec!["f".into(), "g".into()]),
        prop_oneof![
            Just(StopReason::EndTurn),
            Just(StopReason::MaxTokens),
            Just(StopReason::ToolUse),
            Just(StopReason::Refused),
        ],
        0u64..100_000,
        0u64..100_000,
    )
        .prop_map(|(turn, stop, i, o)| ChatResponse {
            id: "msg_1".into(),
            model: "m".into(),
            parts: turn.parts,
            stop,
            input_tokens: i,
            output_tokens: o,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_request_written_for_openai_reads_back_the_same(r in request(false)) {
        prop_assert_eq!(r.check(), Ok(()));
        let wire = openai::write_request(&r).unwrap();
        prop_assert_eq!(openai::read_request(&wire).unwrap(), r);
    }

    #[test]
    fn a_request_written_for_anthropic_reads_back_the_same(r in request(true)) {
        let wire = anthropic::write_request(&r).unwrap();
        prop_assert_eq!(anthropic::read_request(&wire).unwrap(), r);
    }

    /// OpenAI's format in, Anthropic's out, and back: the same request.
    #[test]
    fn openai_to_anthropic_and_back_is_the_same_request(r in request(false)) {
        let inbound = openai::read_request(&openai::write_request(&r).unwrap()).unwrap();
        let upstream = anthropic::write_request(&inbound).unwrap();
        let back = openai::write_request(&anthropic::read_request(&upstream).unwrap()).unwrap();
        prop_assert_eq!(openai::read_request(&back).unwrap(), r);
    }

    #[test]
    fn an_answer_reads_back_the_same_in_either_format(a in response()) {
        let o = openai::write_response(&a, 1_700_000_000);
        prop_assert_eq!(openai::read_response(&o).unwrap(), a.clone());
        let m = anthropic::write_response(&a);
        prop_assert_eq!(anthropic::read_response(&m).unwrap(), a);
    }
}

/// An OpenAI agent's request, as Anthropic's format writes it.
#[test]
fn an_openai_tool_conversation_becomes_anthropic_blocks() {
    let openai = json!({
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, sun"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "stop": "END"
    });
    let r = openai::read_request(&openai).unwrap();
    let a = anthropic::write_request(&r).unwrap();
    assert_eq!(
        a,
        json!({
            "model": "claude-x",
            "max_tokens": 100,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sun"}
                ]}
            ],
            "tools": [{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any"},
            "stop_sequences": ["END"]
        })
    );
}

#[test]
fn stop_reasons_map_one_to_one() {
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ] {
        let o = json!({"id": "x", "model": "m", "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": finish}]});
        let a = anthropic::write_response(&openai::read_response(&o).unwrap());
        assert_eq!(a["stop_reason"], stop);
        let back = openai::write_response(&anthropic::read_response(&a).unwrap(), 0);
        assert_eq!(back["choices"][0]["finish_reason"], finish);
    }
}

/// What one format has and the other cannot carry, and malformed requests,
/// are refused naming the field, never dropped.
#[test]
fn what_cannot_be_carried_is_refused_by_name() {
    let msg = |c: Value| json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": c}]});
    let cases: Vec<(Result<Value, TranslateError>, &str)> = vec![
        (
            openai::read_request(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"parameters": {}}}]}))
            .map(|_| Value::Null),
            "name",
        ),
        (
            anthropic::read_request(&json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}))
                .map(|_| Value::Null),
            "max_tokens",
        ),
        (
            openai::read_request(&json!({"model": "m", "messages": [
                {"role": "user", "content": "x"}, {"role": "system", "content": "late"}]}))
            .map(|_| Value::Null),
            "system message",
        ),
        (
            anthropic::read_request(&msg(json!([{"type": "document", "source": {}}]))).map(|_| Value::Null),
            "document",
        ),
        (
            anthropic::read_request(&json!({"model": "m", "max_tokens": 5, "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": true}]}
            ]}))
            .and_then(|r| openai::write_request(&r)),
            "is_error",
        ),
        (
            openai::read_request(&json!({"model": "m", "max_tokens": 5, "temperature": 1.5,
                "messages": [{"role": "user", "content": "x"}]}))
            .and_then(|r| anthropic::write_request(&r)),
            "temperature",
        ),
        (
            openai::read_request(&json!({"model": "m", "messages": [
                {"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}]}))
            .map(|_| Value::Null),
            "nope",
        ),
    ];
    for (result, names) in cases {
        let e = result.expect_err(names);
        assert!(e.0.contains(names), "{names}: {e}");
    }
}

#[test]
fn thinking_goes_to_anthropic_as_given_and_shows_in_openai_answers() {
    let thought = json!({"type": "thinking", "thinking": "check the tool", "signature": "sig1"});
    let redacted = json!({"type": "redacted_thinking", "data": "opaque"});
    let call = json!({"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}});
    let v = json!({"model": "m", "max_tokens": 50, "messages": [
        {"role": "user", "content": "hi"},
        // Thinking after the call as sent: read back in Anthropic's order.
        {"role": "assistant", "content": [call, thought, redacted]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
    ]});
    let r = anthropic::read_request(&v).unwrap();
    let written = anthropic::write_request(&r).unwrap();
    assert_eq!(
        written["messages"][1]["content"],
        json!([thought, redacted, call])
    );
    // OpenAI-compatible upstreams are not sent it.
    let to_openai = openai::write_request(&r).unwrap();
    assert!(!to_openai.to_string().contains("sig1"), "{to_openai}");
    assert!(r.text().contains("check the tool"));

    // An answer with thinking, in OpenAI's shape and back.
    let answer = anthropic::read_response(&json!({"id": "a", "model": "m",
        "content": [thought, {"type": "text", "text": "done"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 4}}))
    .unwrap();
    let o = openai::write_response(&answer, 0);
    let m = &o["choices"][0]["message"];
    assert_eq!(m["reasoning_content"], "check the tool");
    assert_eq!(m["thinking_blocks"], json!([thought]));
    assert_eq!(m["content"], "done");
    assert_eq!(openai::read_response(&o).unwrap().parts, answer.parts);

    // A user turn does not think.
    let bad = json!({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [thought]}]});
    assert!(anthropic::read_request(&bad).is_err());
}
