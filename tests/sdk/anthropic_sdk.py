"""The official `anthropic` SDK against OneFlow's /v1/messages (simulated
providers, or with ONEFLOW_UPSTREAM=1 an Anthropic upstream behind it):
messages.create, messages.stream with the text collected by the SDK, a tool
call and its result, a streamed tool call assembled by the SDK,
messages.count_tokens, and a request without max_tokens that the SDK must
raise BadRequestError for. Prints one JSON report: what the SDK saw, and the
input and output tokens it reported for each request that was charged, in
order."""

import json
import os
import sys

import anthropic

BASE, KEY, MODEL = (os.environ[k] for k in ("ONEFLOW_BASE_URL", "ONEFLOW_KEY", "ONEFLOW_CHAT_MODEL"))
# Against an upstream mock (ONEFLOW_UPSTREAM=1): count_tokens is OneFlow's
# bound, not the exact count, and a tool's input is the mock's ("mock" for a
# string, 1 for an integer) where the simulated provider writes "sim".
UPSTREAM = os.environ.get("ONEFLOW_UPSTREAM") == "1"
INPUT = {"city": "mock" if UPSTREAM else "sim", "days": 1}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}


def check(cond, what):
    if not cond:
        print(f"check failed: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    client = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0)
    report = {"output_tokens": [], "input_tokens": []}
    ask = [{"role": "user", "content": "Say hello to the broker"}]

    plain = client.messages.create(model=MODEL, max_tokens=50, system="Be brief.", messages=ask)
    check(plain.type == "message" and plain.role == "assistant", f"a message: {plain}")
    check(plain.stop_reason == "end_turn", f"stop reason: {plain}")
    check(plain.content[0].type == "text" and plain.content[0].text, f"text: {plain}")
    report["output_tokens"].append(plain.usage.output_tokens)
    report["input_tokens"].append(plain.usage.input_tokens)

    counted = client.messages.count_tokens(model=MODEL, system="Be brief.", messages=ask)
    if UPSTREAM:
        check(counted.input_tokens >= plain.usage.input_tokens, f"count {counted} vs {plain.usage}")
    else:
        check(counted.input_tokens == plain.usage.input_tokens, f"count {counted} vs {plain.usage}")

    with client.messages.stream(model=MODEL, max_tokens=50, system="Be brief.", messages=ask) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(streamed == final.content[0].text and streamed, f"streamed {streamed!r} vs {final}")
    if not UPSTREAM:
        check(streamed == plain.content[0].text, f"streamed {streamed!r} vs {plain.content[0].text!r}")
    check(final.stop_reason == "end_turn", f"final: {final}")
    report["output_tokens"].append(final.usage.output_tokens)
    report["input_tokens"].append(final.usage.input_tokens)

    weather_ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.messages.create(model=MODEL, max_tokens=50, tools=[WEATHER], messages=weather_ask)
    check(first.stop_reason == "tool_use", f"a tool call: {first}")
    call = next(b for b in first.content if b.type == "tool_use")
    check(call.name == "get_weather" and call.input == INPUT, f"input: {call}")
    check(call.id, f"a tool use id: {call}")
    report["output_tokens"].append(first.usage.output_tokens)
    report["input_tokens"].append(first.usage.input_tokens)

    answer = client.messages.create(
        model=MODEL,
        max_tokens=50,
        tools=[WEATHER],
        messages=weather_ask
        + [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees and sunny"}],
            },
        ],
    )
    check(answer.stop_reason == "end_turn" and answer.content[0].type == "text", f"an answer: {answer}")
    report["answer_text"] = answer.content[0].text
    report["output_tokens"].append(answer.usage.output_tokens)
    report["input_tokens"].append(answer.usage.input_tokens)

    # A streamed tool call, assembled by the SDK's stream helper.
    with client.messages.stream(model=MODEL, max_tokens=50, tools=[WEATHER], messages=weather_ask) as stream:
        partial = "".join(e.partial_json for e in stream if e.type == "input_json")
        final = stream.get_final_message()
    streamed_call = next(b for b in final.content if b.type == "tool_use")
    check(streamed_call.input == INPUT and json.loads(partial) == INPUT, f"streamed input: {partial!r} {final}")
    check(final.stop_reason == "tool_use", f"streamed stop reason: {final}")
    report["output_tokens"].append(final.usage.output_tokens)
    report["input_tokens"].append(final.usage.input_tokens)

    if UPSTREAM:
        thinking_loop(client, weather_ask, report)
    bad_request(client, ask, report)
    json.dump(report, sys.stdout)


def thinking_loop(client, weather_ask, report):
    """Extended thinking through an Anthropic upstream (the mock thinks when
    asked): the SDK parses the signed thinking block, streamed and whole, and
    a tool loop sending the assistant turn back as the SDK holds it is
    served (the upstream refuses one without the block)."""
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with client.messages.stream(
        model=MODEL, max_tokens=2048, thinking=thinking, tools=[WEATHER], messages=weather_ask
    ) as stream:
        thought = "".join(e.thinking for e in stream if e.type == "thinking")
        first = stream.get_final_message()
    block = first.content[0]
    check(block.type == "thinking" and block.thinking == thought and block.signature, f"thinking: {first}")
    call = next(b for b in first.content if b.type == "tool_use")
    report["output_tokens"].append(first.usage.output_tokens)
    report["input_tokens"].append(first.usage.input_tokens)
    answer = client.messages.create(
        model=MODEL,
        max_tokens=2048,
        thinking=thinking,
        tools=[WEATHER],
        messages=weather_ask
        + [
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees"}]},
        ],
    )
    check(answer.content[0].type == "thinking", f"thinking again: {answer}")
    check(answer.content[-1].type == "text" and "18" in answer.content[-1].text, f"an answer: {answer}")
    report["thought"] = thought
    report["output_tokens"].append(answer.usage.output_tokens)
    report["input_tokens"].append(answer.usage.input_tokens)


def bad_request(client, ask, report):
    try:
        client.messages.create(model=MODEL, max_tokens=anthropic.NOT_GIVEN, messages=ask, timeout=30)
        check(False, "a request without max_tokens was served")
    except anthropic.BadRequestError as e:
        check(e.body["type"] == "error", f"error body: {e.body}")
        report["bad_request"] = type(e).__name__


if __name__ == "__main__":
    main()
