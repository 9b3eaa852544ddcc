#!/usr/bin/env python3
"""Streams the same chat twice through the official `openai` SDK with
`x-oneflow-cache: use`, and prints ONE JSON line for a Rust test:

    {"runs": [{"cache", "request_id", "text", "chunks", "finish_reason",
               "prompt_tokens", "completion_tokens"}, ...]}

The first stream is expected to fill the response cache and the second to
be replayed from it (docs/cache.md); the test compares the two. Each run's
response headers are read through `with_raw_response`, and the stream
through the SDK's own parser, so a replay that is not a valid stream fails
here.

Environment: ONEFLOW_BASE_URL (ending in /v1), ONEFLOW_KEY,
ONEFLOW_CHAT_MODEL.
"""

import json
import os
import sys

from openai import OpenAI


def main():
    client = OpenAI(
        base_url=os.environ["ONEFLOW_BASE_URL"],
        api_key=os.environ["ONEFLOW_KEY"],
        max_retries=0,
    )
    runs = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model=os.environ["ONEFLOW_CHAT_MODEL"],
            messages=[{"role": "user", "content": "Tell the cache a short story"}],
            max_tokens=40,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-oneflow-cache": "use"},
        )
        text, chunks, finish, usage = "", 0, None, None
        for chunk in raw.parse():
            chunks += 1
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    text += choice.delta.content
                if choice.finish_reason:
                    finish = choice.finish_reason
        if usage is None:
            raise AssertionError("the stream had no usage chunk")
        runs.append(
            {
                "cache": raw.headers.get("x-oneflow-cache"),
                "request_id": raw.headers.get("x-oneflow-request-id"),
                "text": text,
                "chunks": chunks,
                "finish_reason": finish,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            }
        )
    print(json.dumps({"runs": runs}))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust test shows stderr
        print(f"openai_cache_stream.py: {e!r}", file=sys.stderr)
        sys.exit(1)
