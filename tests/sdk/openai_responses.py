"""The official `openai` SDK's Responses API against OneFlow's /v1
(simulated providers): responses.create plain, streamed (stream=True, the
text collected from the events) and with a function tool whose output is
sent back through previous_response_id, and responses.retrieve. Prints one
JSON report: what the SDK saw, and the output tokens it reported for each
request that was charged, in order."""

import json
import os
import sys

import openai

BASE, KEY, MODEL = (os.environ[k] for k in ("ONEFLOW_BASE_URL", "ONEFLOW_KEY", "ONEFLOW_CHAT_MODEL"))
# Against an upstream mock (ONEFLOW_UPSTREAM=1): no tool calls (the mocks
# answer text), and its answers need not repeat.
UPSTREAM = os.environ.get("ONEFLOW_UPSTREAM") == "1"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
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
    client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0)
    report = {"output_tokens": [], "input_tokens": []}

    plain = client.responses.create(model=MODEL, input="Say hello to the broker", instructions="Be brief.")
    check(plain.status == "completed" and plain.output_text, f"a response: {plain}")
    report["output_tokens"].append(plain.usage.output_tokens)
    report["input_tokens"].append(plain.usage.input_tokens)

    got = client.responses.retrieve(plain.id)
    check(got.id == plain.id and got.output_text == plain.output_text, f"retrieved {got} vs {plain}")

    text, final = "", None
    for event in client.responses.create(model=MODEL, input="Say hello to the broker", instructions="Be brief.", stream=True):
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.completed":
            final = event.response
    check(final is not None and text and text == final.output_text, f"streamed {text!r} vs {final}")
    if not UPSTREAM:
        check(text == plain.output_text, f"streamed {text!r} vs {plain.output_text!r}")
    report["output_tokens"].append(final.usage.output_tokens)
    report["input_tokens"].append(final.usage.input_tokens)
    if UPSTREAM:
        json.dump(report, sys.stdout)
        return

    first = client.responses.create(model=MODEL, input="What is the weather in Paris?", tools=[WEATHER])
    calls = [o for o in first.output if o.type == "function_call"]
    check(calls and json.loads(calls[0].arguments) == {"city": "sim", "days": 1}, f"a call: {first}")
    report["output_tokens"].append(first.usage.output_tokens)
    report["input_tokens"].append(first.usage.input_tokens)

    answer = client.responses.create(
        model=MODEL,
        tools=[WEATHER],
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 degrees and sunny"}],
    )
    check(answer.status == "completed", f"an answer: {answer}")
    report["answer_text"] = answer.output_text
    report["output_tokens"].append(answer.usage.output_tokens)
    report["input_tokens"].append(answer.usage.input_tokens)

    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
