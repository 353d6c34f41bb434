"""
Webmail API latency: how long the calls behind the page take on a large
folder, with the real SQLite store, message files and thread pool.

No peer is measured side by side: no other webmail is installed on the
development machine (Roundcube and SOGo need PHP or a database server).
The numbers say whether the page stays interactive: every call should
answer well within 100 ms.

The script starts a stack in-process (web only, data in a temporary
directory), fills one INBOX with N messages of about 2 KiB (and one HTML
message of 100 KiB), then times each call sequentially over a kept-alive
connection and prints medians and 95th percentiles.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/python bench/webmail/run.py [--messages 10000] [--rounds 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from twisted.internet import defer, task

from appnet.store.interfaces import DeliveryTarget
from appnet.web.testing import startWeb

ALICE = "alice@example.org"
BOB = "bob@example.org"


def message(i: int) -> bytes:
    return (
        f"From: Bob <{BOB}>\r\nTo: {ALICE}\r\nSubject: message {i}\r\n"
        f"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m{i}@example.org>\r\n"
        "\r\n"
    ).encode() + b"A line of text in the body of a message.\r\n" * 45


def htmlMessage() -> bytes:
    body = "".join(
        f"<p>Paragraph {i} with <b>bold</b>,"
        f' <a href="https://example.org/{i}">a link</a>'
        f' and <img src="https://tracker.example/{i}.gif"></p>\r\n'
        for i in range(800)
    )
    return (
        f"From: {BOB}\r\nTo: {ALICE}\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n" + body
    ).encode()


async def fill(mail: Any, count: int) -> int:
    batch = []
    for i in range(count):
        staged = mail.stage()
        staged.write(message(i))
        batch.append(mail.deliver(staged, [DeliveryTarget(ALICE)], 1_800_000_000 + i))
        if len(batch) == 200:
            await defer.gatherResults(batch)
            batch = []
    staged = mail.stage()
    staged.write(htmlMessage())
    batch.append(mail.deliver(staged, [DeliveryTarget(ALICE)], 1_900_000_000))
    results = await defer.gatherResults(batch)
    return int(results[-1][0])


async def main(reactor: Any, options: argparse.Namespace) -> None:
    web = await startWeb(users={ALICE: "pw-alice-123", BOB: "pw-bob-1234"})
    try:
        started = time.perf_counter()
        htmlUid = await fill(web.stack.store.mail, options.messages)
        print(
            f"filled INBOX with {options.messages + 1} messages"
            f" in {time.perf_counter() - started:.1f} s"
        )
        session = await web.session(ALICE)
        client = web.client(persistent=True)
        headers = session.headers()
        deep = max(0, options.messages - 50)
        calls = [
            ("GET /mail/ (the page)", "GET", "/mail/", None),
            ("GET folders", "GET", "/api/v1/folders", None),
            ("GET messages, newest 50", "GET", "/api/v1/messages?limit=50", None),
            ("GET messages, oldest 50", "GET", f"/api/v1/messages?offset={deep}", None),
            ("GET message, 2 KiB text", "GET", "/api/v1/message?uid=1", None),
            (
                "GET message, 100 KiB HTML",
                "GET",
                f"/api/v1/message?uid={htmlUid}",
                None,
            ),
            ("GET draft, reply", "GET", "/api/v1/draft?mode=reply&uid=1", None),
            ("POST send, local", "POST", "/api/v1/send", {"to": BOB, "text": "hi"}),
        ]
        print()
        print(f"{'call':<28} {'median ms':>10} {'p95 ms':>8}")
        print(f"{'-' * 28} {'-' * 10} {'-' * 8}")
        for name, method, path, body in calls:
            times = []
            for _ in range(options.rounds):
                t = time.perf_counter()
                if method == "GET":
                    response = await client.get(web.url(path), headers=headers)
                else:
                    response = await client.post(
                        web.url(path), json=body, headers=headers
                    )
                await response.content()
                assert response.code == 200, (path, response.code)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(f"{name:<28} {statistics.median(times):>10.1f} {p95:>8.1f}")
        print()
        print(
            f"sequential requests over one kept-alive connection, {options.rounds}"
            " rounds each; SQLite store, loopback"
        )
    finally:
        await web.stop()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=50)
    options = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options)))


if __name__ == "__main__":
    run()
