"""
Helpers for mail tests over real sockets: a stack with a certificate, and
a blocking line-by-line dialogue run in a thread of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from appnet.mail.testing import MailStack, startMail
from appnet.tls import writeSelfSigned

T = TypeVar("T")


def inThread(fn: Callable[..., T], *args: Any) -> Deferred[T]:
    """
    Run a blocking client in a new thread (not the reactor's pool, which
    the store's file work needs while the client waits for its reply).
    """
    d: Deferred[T] = Deferred()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException:
            reactor.callFromThread(d.errback, Failure())  # type: ignore[attr-defined]
        else:
            reactor.callFromThread(d.callback, result)  # type: ignore[attr-defined]

    threading.Thread(target=run, daemon=True).start()
    return d


async def tlsMailStack(
    testCase: Any, users: dict[str, str], **kw: Any
) -> tuple[MailStack, str]:
    """
    A mail stack whose data directory holds a self-signed certificate
    for localhost and 127.0.0.1, so STARTTLS and STLS are offered.

    @return: the stack and the certificate's path.
    """
    data = tempfile.mkdtemp(prefix="appnet-mail-")
    testCase.addCleanup(shutil.rmtree, data, True)
    cert = os.path.join(data, "tls", "cert.pem")
    writeSelfSigned(cert, os.path.join(data, "tls", "key.pem"), "localhost")
    stack = await startMail(testCase, users=users, dataDir=data, **kw)
    return stack, cert


class Dialogue:
    """
    A blocking client that sends lines and reads replies (SMTP-style,
    ending at a line whose fourth character is a space; or one POP3 line;
    or a POP3 multi-line block ending with '.').
    """

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")

    def line(self) -> str:
        return self.file.readline().decode().rstrip("\r\n")

    def smtpReply(self) -> list[str]:
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return lines

    def multiline(self) -> list[str]:
        lines = [self.line()]
        if lines[0].startswith("-ERR"):
            return lines
        while lines[-1] != ".":
            lines.append(self.line())
        return lines

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def smtpDialogue(
    host: str, port: int, lines: Sequence[str]
) -> list[tuple[str, list[str]]]:
    """
    Play an SMTP dialogue: the greeting, then each client line with the
    reply it got (a DATA body is sent as one step ending with '.').
    """
    client = Dialogue(host, port)
    transcript = [("", client.smtpReply())]
    try:
        for line in lines:
            client.send(line)
            transcript.append((line, client.smtpReply()))
    finally:
        client.close()
    return transcript
