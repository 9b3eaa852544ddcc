"""The official `openai` SDK's agent calls against OneFlow's /v1 (simulated
providers, or with ONEFLOW_UPSTREAM=1 an OpenAI-compatible upstream behind
it; also the OpenAI mock of tests/e2e/upstream/ itself): a tool call parsed
by the SDK, the tool's result answered with text, a streamed tool call
assembled by the SDK's stream helper, n=2, json_object and an image part.
Prints one JSON report: what the SDK saw, and the usage it reported for
each request that was charged, in order (`usage`: [prompt, completion])."""

import json
import os
import sys

import openai

BASE, KEY, MODEL = (os.environ[k] for k in ("ONEFLOW_BASE_URL", "ONEFLOW_KEY", "ONEFLOW_CHAT_MODEL"))
# Against an upstream mock (ONEFLOW_UPSTREAM=1) the arguments are the
# mock's: "mock" for a string, 1 for an integer; the simulated provider
# writes "sim" for a string.
UPSTREAM = os.environ.get("ONEFLOW_UPSTREAM") == "1"
ARGS = {"city": "mock" if UPSTREAM else "sim", "days": 1}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


def check(cond, what):
    if not cond:
        print(f"check failed: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0)
    report = {"usage": []}

    def charged(completion):
        u = completion.usage
        check(u is not None, f"no usage: {completion}")
        check(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage adds up: {u}")
        report["usage"].append([u.prompt_tokens, u.completion_tokens])

    ask = [{"role": "user", "content": "What is the weather in Paris?"}]

    first = client.chat.completions.create(model=MODEL, messages=ask, tools=[WEATHER], max_tokens=50)
    choice = first.choices[0]
    check(choice.finish_reason == "tool_calls", f"a tool call: {first}")
    check(choice.message.content is None, f"no text beside the call: {first}")
    call = choice.message.tool_calls[0]
    args = json.loads(call.function.arguments)
    check(call.type == "function" and call.id.startswith("call_"), f"the call: {call}")
    check(call.function.name == "get_weather" and args == ARGS, f"arguments: {call}")
    charged(first)
    report["call_arguments"] = call.function.arguments

    answer = client.chat.completions.create(
        model=MODEL,
        tools=[WEATHER],
        max_tokens=50,
        messages=ask
        + [
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees"},
        ],
    )
    check(answer.choices[0].message.content and not answer.choices[0].message.tool_calls, f"text: {answer}")
    check(answer.choices[0].finish_reason == "stop", f"an answer: {answer}")
    report["answer_text"] = answer.choices[0].message.content
    charged(answer)

    with client.chat.completions.stream(
        model=MODEL, messages=ask, tools=[WEATHER], max_tokens=50, stream_options={"include_usage": True}
    ) as s:
        pieces = 0
        for event in s:
            if event.type == "tool_calls.function.arguments.delta":
                pieces += 1
        done = s.get_final_completion()
    streamed = done.choices[0].message.tool_calls[0]
    check(streamed.function.name == "get_weather", f"streamed call: {done}")
    check(json.loads(streamed.function.arguments) == ARGS, f"streamed call: {done}")
    check(done.choices[0].finish_reason == "tool_calls", f"streamed finish: {done}")
    check(pieces > 1, f"the arguments came in pieces, not {pieces}")
    charged(done)

    two = client.chat.completions.create(model=MODEL, messages=ask, n=2, max_tokens=20)
    check(len(two.choices) == 2 and [c.index for c in two.choices] == [0, 1], f"n=2: {two}")
    check(all(c.message.content for c in two.choices), f"n=2 texts: {two}")
    report["n2_completion_tokens"] = two.usage.completion_tokens
    report["n2_texts"] = [c.message.content for c in two.choices]
    charged(two)

    js = client.chat.completions.create(
        model=MODEL, messages=ask, response_format={"type": "json_object"}, max_tokens=50
    )
    check(isinstance(json.loads(js.choices[0].message.content), dict), f"json_object: {js}")
    charged(js)

    image = client.chat.completions.create(
        model=MODEL,
        max_tokens=20,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ],
            }
        ],
    )
    check(image.choices[0].message.content, f"image part: {image}")
    charged(image)

    try:
        client.chat.completions.create(
            model=MODEL, messages=ask, tools=[{"type": "function", "function": {"name": ""}}]
        )
        check(False, "a tool without a name was taken")
    except openai.BadRequestError:
        pass
    report["charged_requests"] = len(report["usage"])
    print(json.dumps(report))


main()
