"""
C{appnet cache stats} and C{appnet cache purge URL|--all}: the proxy cache
of a running server. Both talk to the server over HTTP (its C{/status}
and the C{PURGE} method, accepted from C{http.status_allow} networks),
because the running server holds the cache's index and memory tier: files
removed under it would still be served from memory.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from twisted.python import usage
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from appnet.cli import Command, CommandError, Context, SubOptions
from appnet.config import Config

__all__ = ["CacheOptions"]


def serverURL(config: Config) -> str:
    """
    The URL of the configured web server: its first TCP listener (an
    unspecified address is reached over loopback).
    """
    for endpoint in config.http.listen:
        kind, _, rest = endpoint.partition(":")
        if kind not in ("tcp", "tcp6"):
            continue
        parts = [p.replace("\\:", ":") for p in re.split(r"(?<!\\):", rest)]
        port = None
        host = "127.0.0.1"
        for part in parts:
            name, eq, value = part.partition("=")
            if not eq and port is None:
                port = name
            elif name == "port":
                port = value
            elif name == "interface":
                host = value
        if port is None or not port.isdigit():
            continue
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"
    raise CommandError("no plain TCP http listener in the config; use --server")


class _ServerCommand(Command):
    optParameters = [
        ["server", "s", None, "The server's base URL (default: from the config)."],
    ]

    def base(self, context: Context) -> str:
        return str(self["server"] or serverURL(context.config)).rstrip("/")


async def _request(
    context: Context, method: bytes, url: str, headers: dict[bytes, list[bytes]]
) -> tuple[int, bytes]:
    agent = Agent(context.reactor)
    try:
        response = await agent.request(method, url.encode("ascii"), Headers(headers))
        body = await readBody(response)
    except Exception as e:
        raise CommandError(f"cannot reach the server at {url}: {e}") from None
    return response.code, body


class CacheStats(_ServerCommand):
    """Show the cache's counters and size."""

    synopsis = "[--server URL]"

    async def run(self, context: Context) -> None:
        code, body = await _request(context, b"GET", self.base(context) + "/status", {})
        if code != 200:
            raise CommandError(f"the server answered {code} for /status")
        cache = json.loads(body).get("services", {}).get("cache")
        if cache is None:
            raise CommandError("the server has no proxy cache configured")
        for name in sorted(cache):
            value = cache[name]
            shown = int(value) if float(value).is_integer() else value
            context.say(f"{name:<14} {shown}")


class CachePurge(_ServerCommand):
    """Remove one URL's stored responses, or everything with --all."""

    synopsis = "URL | --all [--server URL]"
    optFlags = [["all", "a", "Remove every stored response."]]

    def parseArgs(self, url: str | None = None) -> None:
        self["url"] = url

    def postOptions(self) -> None:
        if bool(self["url"]) == bool(self["all"]):
            raise usage.UsageError("give either a URL or --all")

    async def run(self, context: Context) -> None:
        base = self.base(context)
        if self["all"]:
            code, body = await _request(
                context, b"PURGE", base + "/", {b"cache-purge": [b"all"]}
            )
        else:
            url = urlsplit(self["url"])
            if url.scheme not in ("http", "https") or not url.netloc:
                raise CommandError(f"not an http(s) URL: {self['url']!r}")
            target = (url.path or "/") + (f"?{url.query}" if url.query else "")
            code, body = await _request(
                context, b"PURGE", base + target, {b"host": [url.netloc.encode()]}
            )
        if code == 403:
            raise CommandError("the server refused PURGE from this address")
        try:
            count = int(json.loads(body)["purged"])
        except (ValueError, KeyError, TypeError):
            raise CommandError(f"the server answered {code}") from None
        context.say(f"purged {count} stored response{'s' if count != 1 else ''}")


class CacheOptions(SubOptions):
    """The proxy cache of a running server."""

    synopsis = "stats | purge URL|--all"
    subCommands = [
        ["stats", None, CacheStats, "Counters and size of the cache."],
        ["purge", None, CachePurge, "Remove a URL's stored responses, or all."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("say stats, or purge URL|--all")
