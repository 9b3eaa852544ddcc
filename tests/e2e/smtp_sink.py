"""A real SMTP server for tests/e2e/email.rs, on aiosmtpd.

    python smtp_sink.py <dir> [--refuse]

Listens on 127.0.0.1 at a port the system picks and prints that port on
its first line of output. Each message it takes is parsed with Python's
own e-mail parser (an implementation independent of the one that wrote
it) and written to <dir>/<n>.json: the envelope, the headers and every
MIME leaf part, text decoded. With --refuse every message is answered 554
and nothing is written. Exits when its standard input closes, so a test
that goes away never leaves it behind.
"""

import asyncio
import email
import email.policy
import json
import os
import socket
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, out, refuse):
        self.out = out
        self.refuse = refuse
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return "554 5.7.1 refused by the test's server"
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                parts.append({"content_type": part.get_content_type()})
                continue
            payload = part.get_payload(decode=True) or b""
            parts.append(
                {
                    "content_type": part.get_content_type(),
                    "content_id": part.get("Content-ID"),
                    "disposition": part.get_content_disposition(),
                    "filename": part.get_filename(),
                    "text": payload.decode("utf-8", errors="replace"),
                }
            )
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k: str(v) for k, v in msg.items()},
            "parts": parts,
        }
        self.n += 1
        path = os.path.join(self.out, f"{self.n:04}.json")
        with open(path + ".part", "w") as f:
            json.dump(record, f)
        # Whole or not at all: the test reads only finished messages.
        os.rename(path + ".part", path)
        return "250 2.0.0 OK"


async def main():
    out = sys.argv[1]
    refuse = "--refuse" in sys.argv[2:]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    loop = asyncio.get_running_loop()
    handler = Sink(out, refuse)
    server = await loop.create_server(lambda: SMTP(handler), sock=sock)
    print(sock.getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


asyncio.run(main())
