"""The official `openai` SDK's agent calls against OneFlow's /v1 (simulated
providers): a tool call parsed by the SDK, the tool's result answered with
text, a streamed tool call assembled by the SDK's stream helper, n=2,
json_object and an image part. Prints one JSON report: what the SDK saw."""

import json
import os
import sys

import openai

BASE, KEY, MODEL = (os.environ[k] for k in ("ONEFLOW_BASE_URL", "ONEFLOW_KEY", "ONEFLOW_CHAT_MODEL"))
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
    report = {"charged_requests": 0}
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]

    first = client.chat.completions.create(model=MODEL, messages=ask, tools=[WEATHER], max_tokens=50)
    choice = first.choices[0]
    check(choice.finish_reason == "tool_calls", f"a tool call: {first}")
    call = choice.message.tool_calls[0]
    args = json.loads(call.function.arguments)
    check(call.function.name == "get_weather" and args == {"city": "sim", "days": 1}, f"arguments: {call}")

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
    report["answer_text"] = answer.choices[0].message.content

    with client.chat.completions.stream(model=MODEL, messages=ask, tools=[WEATHER], max_tokens=50) as s:
        for _ in s:
            pass
        done = s.get_final_completion()
    streamed = done.choices[0].message.tool_calls[0]
    check(json.loads(streamed.function.arguments) == {"city": "sim", "days": 1}, f"streamed call: {done}")
    check(done.choices[0].finish_reason == "tool_calls", f"streamed finish: {done}")

    two = client.chat.completions.create(model=MODEL, messages=ask, n=2, max_tokens=20)
    check(len(two.choices) == 2 and [c.index for c in two.choices] == [0, 1], f"n=2: {two}")
    report["n2_completion_tokens"] = two.usage.completion_tokens

    js = client.chat.completions.create(
        model=MODEL, messages=ask, response_format={"type": "json_object"}, max_tokens=50
    )
    check(isinstance(json.loads(js.choices[0].message.content), dict), f"json_object: {js}")

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

    try:
        client.chat.completions.create(
            model=MODEL, messages=ask, tools=[{"type": "function", "function": {"name": ""}}]
        )
        check(False, "a tool without a name was taken")
    except openai.BadRequestError:
        pass
    report["charged_requests"] = 6
    print(json.dumps(report))


main()
