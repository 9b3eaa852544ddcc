#!/usr/bin/env python3
"""Drives an OpenAI-compatible endpoint with the official `openai` SDK.

Proves that an unmodified SDK works against OneFlow's /v1 API (or against
the OpenAI mock of tests/e2e/upstream/). Runs, in order: a plain chat, a
streamed chat with `stream_options={"include_usage": True}`, embeddings, an
image generation and `models.list()`, checks each answer is sane, and prints
ONE JSON line on stdout with the usage it saw per call, for a Rust test to
compare with the ledger:

    {"prompt_words": 7,
     "chat":   {"model", "prompt_tokens", "completion_tokens", "total_tokens", "text"},
     "stream": {"model", "prompt_tokens", "completion_tokens", "total_tokens", "text", "chunks"},
     "embed":  {"model", "prompt_tokens", "total_tokens", "count", "dimensions"},
     "image":  {"images", "format"},
     "models": ["id", ...]}

`image` is null when ONEFLOW_IMAGE_MODEL is empty or unset.

Environment:
    ONEFLOW_BASE_URL     the API root including /v1, e.g. http://127.0.0.1:8080/v1
    ONEFLOW_KEY          the API key (sent as a Bearer token)
    ONEFLOW_CHAT_MODEL   model for chat and streamed chat
    ONEFLOW_EMBED_MODEL  model for embeddings
    ONEFLOW_IMAGE_MODEL  model for images (optional)

Exit status 0 when every call passed its checks; 1 otherwise, with the reason
on stderr. The SDK's own retries are off so a failure shows as it happened.
"""

import base64
import json
import os
import sys
import traceback

from openai import OpenAI

PROMPT = "Say hello to the broker in a few words"
EMBED_INPUT = ["one two", "three"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def env(name, required=True):
    value = os.environ.get(name, "").strip()
    if required and not value:
        raise SystemExit(f"openai_sdk.py: set {name}")
    return value


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def usage_of(u):
    check(u is not None, "the answer has no usage")
    out = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }
    check(out["prompt_tokens"] > 0, f"prompt_tokens should be positive: {out}")
    check(out["completion_tokens"] > 0, f"completion_tokens should be positive: {out}")
    check(
        out["total_tokens"] == out["prompt_tokens"] + out["completion_tokens"],
        f"total_tokens should be the sum: {out}",
    )
    return out


def chat(client, model):
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=32,
    )
    check(len(r.choices) >= 1, "chat answered no choices")
    text = r.choices[0].message.content or ""
    check(text.strip() != "", "chat answered empty text")
    check(r.choices[0].finish_reason in ("stop", "length"), "odd finish_reason")
    out = usage_of(r.usage)
    out["model"] = r.model
    out["text"] = text
    return out


def stream(client, model):
    parts = []
    usage = None
    chunks = 0
    finish = None
    events = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
    )
    answered_model = None
    for chunk in events:
        chunks += 1
        answered_model = answered_model or chunk.model
        if chunk.usage is not None:
            # OpenAI sends usage in its own last chunk, with no choices.
            check(chunk.choices == [], "the usage chunk should have no choices")
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta is not None and choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    text = "".join(parts)
    check(text.strip() != "", "the stream carried no text")
    check(finish in ("stop", "length"), f"the stream ended without a finish reason: {finish}")
    out = usage_of(usage)
    out["model"] = answered_model
    out["text"] = text
    out["chunks"] = chunks
    return out


def embed(client, model):
    # The SDK asks for base64 and decodes it to floats itself.
    r = client.embeddings.create(model=model, input=EMBED_INPUT)
    check(len(r.data) == len(EMBED_INPUT), f"expected {len(EMBED_INPUT)} embeddings")
    dims = len(r.data[0].embedding)
    check(dims > 0, "empty embedding")
    for i, d in enumerate(r.data):
        check(d.index == i, "embeddings out of order")
        check(len(d.embedding) == dims, "embeddings of different sizes")
        check(all(isinstance(x, float) for x in d.embedding), "non-float embedding")
    check(r.usage is not None and r.usage.prompt_tokens > 0, "embeddings without usage")
    return {
        "model": r.model,
        "prompt_tokens": r.usage.prompt_tokens,
        "total_tokens": r.usage.total_tokens,
        "count": len(r.data),
        "dimensions": dims,
    }


def image(client, model):
    r = client.images.generate(
        model=model,
        prompt="a small red square",
        n=1,
        size="256x256",
        response_format="b64_json",
    )
    check(r.data is not None and len(r.data) == 1, "expected one image")
    img = r.data[0]
    if img.b64_json:
        check(base64.b64decode(img.b64_json)[:8] == PNG_MAGIC, "b64_json is not a PNG")
        fmt = "b64_json"
    else:
        check(bool(img.url), "the image has neither b64_json nor url")
        fmt = "url"
    return {"images": len(r.data), "format": fmt}


def main():
    base_url = env("ONEFLOW_BASE_URL")
    client = OpenAI(
        base_url=base_url,
        api_key=env("ONEFLOW_KEY"),
        max_retries=0,
        timeout=60.0,
    )
    result = {"prompt_words": len(PROMPT.split())}
    steps = [
        ("chat", lambda: chat(client, env("ONEFLOW_CHAT_MODEL"))),
        ("stream", lambda: stream(client, env("ONEFLOW_CHAT_MODEL"))),
        ("embed", lambda: embed(client, env("ONEFLOW_EMBED_MODEL"))),
    ]
    image_model = env("ONEFLOW_IMAGE_MODEL", required=False)
    if image_model:
        steps.append(("image", lambda: image(client, image_model)))
    else:
        result["image"] = None
    steps.append(("models", lambda: [m.id for m in client.models.list()]))
    for name, step in steps:
        try:
            result[name] = step()
        except Exception as e:  # noqa: BLE001 - report any failure by step
            print(f"openai_sdk.py: step {name} failed: {e!r}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            return 1
    check(len(result["models"]) > 0, "models.list() is empty")
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print(f"openai_sdk.py: {e}", file=sys.stderr)
        sys.exit(1)
