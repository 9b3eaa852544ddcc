"""The official `openai` SDK's Responses API against OneFlow's /v1
(simulated providers, or with ONEFLOW_UPSTREAM=1 an OpenAI upstream behind
it): responses.create plain, streamed (stream=True, the text collected from
the events), with a function tool whose output is sent back through
previous_response_id, and with a function tool streamed (the arguments
collected from the events); and responses.retrieve. Prints one JSON report:
what the SDK saw, and the input and output tokens it reported for each
request that was charged, in order."""

import json
import os
import sys

import openai

BASE, KEY, MODEL = (os.environ[k] for k in ("ONEFLOW_BASE_URL", "ONEFLOW_KEY", "ONEFLOW_CHAT_MODEL"))
# Against an upstream mock (ONEFLOW_UPSTREAM=1): its answers need not
# repeat, and a call's arguments are the mock's ("mock" for a string, 1 for
# an integer) where the simulated provider writes "sim".
UPSTREAM = os.environ.get("ONEFLOW_UPSTREAM") == "1"
ARGS = {"city": "mock" if UPSTREAM else "sim", "days": 1}
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

    first = client.responses.create(model=MODEL, input="What is the weather in Paris?", tools=[WEATHER])
    calls = [o for o in first.output if o.type == "function_call"]
    check(calls and json.loads(calls[0].arguments) == ARGS, f"a call: {first}")
    check(calls[0].name == "get_weather" and calls[0].call_id, f"a call: {first}")
    report["output_tokens"].append(first.usage.output_tokens)
    report["input_tokens"].append(first.usage.input_tokens)

    answer = client.responses.create(
        model=MODEL,
        tools=[WEATHER],
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 degrees and sunny"}],
    )
    check(answer.status == "completed", f"an answer: {answer}")
    check(not [o for o in answer.output if o.type == "function_call"], f"text, not a call: {answer}")
    report["answer_text"] = answer.output_text
    report["output_tokens"].append(answer.usage.output_tokens)
    report["input_tokens"].append(answer.usage.input_tokens)

    # A streamed call: the arguments in pieces, the whole in the final
    # response.
    arguments, added, final = "", None, None
    for event in client.responses.create(model=MODEL, input="What is the weather in Oslo?", tools=[WEATHER], stream=True):
        if event.type == "response.output_item.added" and event.item.type == "function_call":
            added = event.item
        elif event.type == "response.function_call_arguments.delta":
            arguments += event.delta
        elif event.type == "response.completed":
            final = event.response
    check(added is not None and added.name == "get_weather", f"an added call: {added}")
    check(final is not None, "a response.completed event")
    calls = [o for o in final.output if o.type == "function_call"]
    check(calls and calls[0].arguments == arguments and json.loads(arguments) == ARGS, f"streamed {arguments!r} vs {final}")
    report["output_tokens"].append(final.usage.output_tokens)
    report["input_tokens"].append(final.usage.input_tokens)

    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
