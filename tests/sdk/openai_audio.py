"""The official `openai` SDK's audio.transcriptions.create against OneFlow's
/v1, on a real WAV file this script makes with Python's `wave` module (1.5 s
of a 440 Hz tone, 16 kHz mono), then on an MP3 that FFmpeg made
(tests/fixtures/audio/cbr.mp3, 2.5 s) passed as an open file. Prints one
JSON report: the text and the seconds the answer says were charged, for
each."""

import io
import json
import math
import os
import struct
import sys
import wave
from pathlib import Path

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


MP3 = Path(__file__).resolve().parent.parent / "fixtures" / "audio" / "cbr.mp3"


def charged(result):
    """The text, and the seconds the answer's usage gives."""
    if not result.text:
        print(f"no text: {result}", file=sys.stderr)
        sys.exit(1)
    seconds = result.model_extra.get("usage", {}).get("seconds") if result.model_extra else None
    if seconds is None:
        seconds = result.usage.seconds
    return result.text, seconds


def main():
    client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0)
    text, seconds = charged(client.audio.transcriptions.create(model=MODEL, file=("tone.wav", tone(), "audio/wav")))
    # The SDK takes the file's name from the open file: tone's .mp3.
    with MP3.open("rb") as f:
        mp3_text, mp3_seconds = charged(client.audio.transcriptions.create(model=MODEL, file=f))
    json.dump({"text": text, "seconds": seconds, "mp3_text": mp3_text, "mp3_seconds": mp3_seconds}, sys.stdout)


if __name__ == "__main__":
    main()
