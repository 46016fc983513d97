#!/usr/bin/env python3
"""An SMTP server on loopback for the e-mail tests: aiosmtpd on a free port, writing
each message it accepts to DIR as one file (written under a temporary name, then
renamed, so a reader never sees half a message). Prints `listening on PORT` when ready;
runs until killed or stdin closes.

Usage: smtp_sink.py DIR
"""

import asyncio
import email
import email.policy
import os
import sys
import uuid

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, folder):
        self.folder = folder

    async def handle_DATA(self, server, session, envelope):
        name = uuid.uuid4().hex
        tmp = os.path.join(self.folder, f".{name}.tmp")
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = (
            f"X-Envelope-From: {envelope.mail_from}\n"
            f"X-Envelope-To: {','.join(envelope.rcpt_tos)}\n"
            f"Subject: {message['subject']}\n"
            f"From: {message['from']}\n"
            f"To: {message['to']}\n\n"
            f"{body.get_content() if body else ''}"
        )
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.folder, f"{name}.eml"))
        return "250 Message accepted for delivery"


async def main(folder):
    loop = asyncio.get_running_loop()
    handler = Sink(folder)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.test"), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {port}", flush=True)
    # Ends when the test closes our stdin (or kills us).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
