"""
C{appnet fetch URL [-o FILE]}: download over HTTP or HTTPS.

Follows redirects, verifies TLS (C{--cacert FILE} to trust a given CA,
such as the certificate C{appnet cert} made; C{--insecure} to skip
verification), resumes a partial file with C{--continue}, and shows a
progress bar on a terminal. Without C{-o} the body goes to standard
output. An error status or a failed connection is one line and exit
status 1.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.python import usage

from appnet.cli import Command, CommandError, Context
from appnet.web.client import FetchError, ProgressBar, download, fetch, makeClient

__all__ = ["FetchOptions"]


class FetchOptions(Command):
    """Download a URL over HTTP or HTTPS."""

    synopsis = "URL [-o FILE] [--continue] [--insecure | --cacert FILE] [-H HEADER]"
    optParameters = [
        ["output", "o", None, "Write to FILE instead of standard output."],
        ["cacert", None, None, "Trust only the CA certificates in this PEM file."],
    ]
    optFlags = [
        ["continue", "c", "Resume a partial FILE with a Range request."],
        ["insecure", "k", "Do not verify the server's TLS certificate."],
        ["quiet", "q", "No progress bar and no summary."],
        ["progress", None, "Show the progress bar even when not on a terminal."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.headers: dict[str, str] = {}

    def opt_header(self, value: str) -> None:
        """Send an extra request header, "Name: value" (repeatable)."""
        name, colon, rest = value.partition(":")
        if not colon or not name.strip() or any(c in value for c in "\r\n"):
            raise usage.UsageError(f"bad header {value!r}; use 'Name: value'")
        self.headers[name.strip()] = rest.strip()

    opt_H = opt_header

    def parseArgs(self, url: str) -> None:  # type: ignore[override]
        self["url"] = url

    def postOptions(self) -> None:
        if self["insecure"] and self["cacert"]:
            raise usage.UsageError("--insecure and --cacert exclude each other")
        if self["continue"] and not self["output"]:
            raise usage.UsageError("--continue needs -o FILE")
        if not self["url"].lower().startswith(("http://", "https://")):
            raise usage.UsageError("the URL must start with http:// or https://")

    async def run(self, context: Context) -> None:
        trust = None
        if self["cacert"]:
            try:
                with open(self["cacert"], "rb") as f:
                    trust = f.read()
            except OSError as e:
                raise CommandError(
                    f"cannot read {self['cacert']}: {e.strerror}"
                ) from None
        try:
            client = makeClient(context.reactor, insecure=self["insecure"], trust=trust)
        except ValueError as e:
            raise CommandError(f"{self['cacert']}: {e}") from None
        show = not self["quiet"] and (self["progress"] or context.err.isatty())
        bar = ProgressBar(context.err) if show else None
        url = self["url"]
        try:
            if self["output"]:
                result = await download(
                    client,
                    url,
                    self["output"],
                    resume=self["continue"],
                    headers=self.headers,
                    progress=bar,
                )
                if bar is not None:
                    bar.done()
                if not self["quiet"]:
                    how = "resumed, " if result.resumed else ""
                    if result.code == 416:
                        note = "already complete"
                    else:
                        note = f"{how}{result.received} bytes received"
                    context.err.write(
                        f"{self['output']}: {result.size} bytes ({note})\n"
                    )
            else:
                out: Any = getattr(context.out, "buffer", None) or sys.stdout.buffer
                await fetch(client, url, out.write, headers=self.headers, progress=bar)
                out.flush()
                if bar is not None:
                    bar.done()
        except FetchError as e:
            if bar is not None:
                bar.done()
            raise CommandError(str(e)) from None
