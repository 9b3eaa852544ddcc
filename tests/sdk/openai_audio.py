"""The official `openai` SDK's audio.transcriptions.create against OneFlow's
/v1, on a real WAV file this script makes with Python's `wave` module (1.5 s
of a 440 Hz tone, 16 kHz mono). Prints one JSON report: the text and the
seconds the answer says were charged."""

import io
import json
import math
import os
import struct
import sys
import wave

import openai

BASE, KEY, MODEL = (os.environ[k] for k in ("ONEFLOW_BASE_URL", "ONEFLOW_KEY", "ONEFLOW_AUDIO_MODEL"))


def tone(seconds=1.5, rate=16_000):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(int(seconds * rate))
        )
        w.writeframes(frames)
    return buf.getvalue()


def main():
    client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0)
    result = client.audio.transcriptions.create(model=MODEL, file=("tone.wav", tone(), "audio/wav"))
    if not result.text:
        print(f"no text: {result}", file=sys.stderr)
        sys.exit(1)
    seconds = result.model_extra.get("usage", {}).get("seconds") if result.model_extra else None
    if seconds is None:
        seconds = result.usage.seconds
    json.dump({"text": result.text, "seconds": seconds}, sys.stdout)


if __name__ == "__main__":
    main()
