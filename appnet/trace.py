"""
Protocol transcripts: C{--trace smtp,pop3} logs each dialogue line by line::

    smtp 127.0.0.1:50312 C: MAIL FROM:<alice@crepes.fr>
    smtp 127.0.0.1:50312 S: 250 2.1.0 Sender ok

A L{Transcript} sits in the listener's protocol wrapper, below the protocol
and above TLS, so it sees the plain dialogue even after STARTTLS. Secrets
never reach the log: a L{MaskRule} per protocol says which command
arguments are passwords (C{PASS}, C{LOGIN}'s second argument, C{AUTH}'s
initial response) and which server prompts make the client's next line a
secret (SMTP C{334}, IMAP and POP3 C{+}). Message bodies (after SMTP's
C{354}) and literals (IMAP C{{123}}) are summarised, not logged.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import define, field, frozen
from twisted.logger import Logger

__all__ = ["MaskRule", "Transcript", "MASKED"]

MASKED = "********"

#: Longest line logged whole; longer lines are cut.
_MAX_LINE = 512
#: At most this many lines are logged from one write; the rest is counted.
_MAX_LINES_PER_CHUNK = 12


@frozen
class MaskRule:
    """
    What is secret in one protocol's dialogue.

    @ivar secretCommands: command verb (upper case) to the number of
        leading arguments that stay visible; the rest is masked. C{{b"PASS":
        0}} masks everything after C{PASS}; C{{b"AUTH": 1}} keeps the
        mechanism and masks an initial response.
    @ivar tagged: the first word of each client line is a tag (IMAP).
    @ivar challenges: server line prefixes after which the client's next
        line is a secret (a SASL response).
    @ivar bodyStart: server line prefixes after which the client sends a
        message body ending with a line holding only C{.} (SMTP C{354}).
    @ivar literals: client lines ending in C{{N}} or C{{N+}} are followed by
        N bytes of literal data (IMAP).
    @ivar serverSecrets: like C{secretCommands}, for the server's lines
        (HTTP's C{Set-Cookie:}).
    @ivar httpBodies: the client speaks HTTP: a C{Content-Length: N} header
        announces N bytes of body after the blank line ending the header
        section, which are summarised (a login form's password never
        reaches the log).
    """

    secretCommands: Mapping[bytes, int] = field(factory=dict)
    tagged: bool = False
    challenges: tuple[bytes, ...] = ()
    bodyStart: tuple[bytes, ...] = ()
    literals: bool = False
    serverSecrets: Mapping[bytes, int] = field(factory=dict)
    httpBodies: bool = False


def _show(line: bytes) -> str:
    text = line.decode("utf-8", "backslashreplace")
    if len(text) > _MAX_LINE:
        text = text[:_MAX_LINE] + f"... ({len(line)} bytes)"
    return text


@define
class Transcript:
    """
    Turns the bytes of one connection into logged, masked lines.
    """

    _service: str
    _peer: str
    _rule: MaskRule = field(factory=MaskRule)
    _clientBuffer: bytes = field(default=b"", init=False)
    _serverBuffer: bytes = field(default=b"", init=False)
    _secretNext: bool = field(default=False, init=False)
    _inBody: bool = field(default=False, init=False)
    _bodyLines: int = field(default=0, init=False)
    _bodyBytes: int = field(default=0, init=False)
    _literalLeft: int = field(default=0, init=False)
    _literalSize: int = field(default=0, init=False)
    _literalName: str = field(default="literal", init=False)
    _httpLength: int = field(default=0, init=False)
    _log = Logger()

    def _emit(self, direction: str, text: str) -> None:
        self._log.info(
            "{service} {peer} {direction}: {line}",
            service=self._service,
            peer=self._peer,
            direction=direction,
            line=text,
        )

    def note(self, text: str) -> None:
        """Log an event of the connection that is not a line (a fault)."""
        self._emit("!", text)

    def fromClient(self, data: bytes) -> None:
        """
        Log what the client sent.
        """
        while data:
            if self._literalLeft:
                taken = data[: self._literalLeft]
                self._literalLeft -= len(taken)
                data = data[len(taken) :]
                if not self._literalLeft:
                    self._emit("C", f"<{self._literalName}, {self._literalSize} bytes>")
                continue
            line, newline, rest = data.partition(b"\n")
            if not newline:
                self._clientBuffer += data
                if len(self._clientBuffer) > 65536:
                    self._emit("C", _show(self._clientBuffer) + " <no line end>")
                    self._clientBuffer = b""
                return
            data = rest
            whole = (self._clientBuffer + line).rstrip(b"\r")
            self._clientBuffer = b""
            self._clientLine(whole)

    def _clientLine(self, line: bytes) -> None:
        if self._inBody:
            if line == b".":
                self._inBody = False
                self._emit(
                    "C",
                    f"<message, {self._bodyLines} lines, {self._bodyBytes} bytes>",
                )
                self._emit("C", ".")
            else:
                self._bodyLines += 1
                self._bodyBytes += len(line) + 2
            return
        if self._secretNext:
            self._secretNext = False
            self._emit("C", MASKED if line and line != b"*" else _show(line))
            return
        if self._rule.httpBodies:
            self._httpLine(line)
            return
        self._emit("C", self._mask(line))
        if self._rule.literals and line.endswith(b"}"):
            head, brace, size = line[:-1].rpartition(b"{")
            size = size.rstrip(b"+")
            # At most 20 digits, as the IMAP server accepts (int() refuses
            # thousands, and this runs inside the connection's dataReceived).
            if brace and size.isdigit() and len(size) <= 20:
                self._literalLeft = self._literalSize = int(size)

    def _httpLine(self, line: bytes) -> None:
        self._emit("C", self._mask(line))
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"content-length":
            try:
                self._httpLength = int(value.strip())
            except ValueError:
                self._httpLength = 0
        elif not line and self._httpLength > 0:
            self._literalLeft = self._literalSize = self._httpLength
            self._literalName = "body"
            self._httpLength = 0

    def _mask(self, line: bytes, secrets: Mapping[bytes, int] | None = None) -> str:
        words = line.split(b" ")
        prefix: list[bytes] = []
        if self._rule.tagged and len(words) > 1:
            prefix, words = words[:1], words[1:]
        verb = words[0].upper()
        table = self._rule.secretCommands if secrets is None else secrets
        keep = table.get(verb)
        if keep is None or len(words) <= 1 + keep:
            return _show(line)
        shown = prefix + words[: 1 + keep]
        return _show(b" ".join(shown)) + " " + MASKED

    def fromServer(self, data: bytes) -> None:
        """
        Log what the server sent.
        """
        data = self._serverBuffer + data
        lines = data.split(b"\n")
        self._serverBuffer = lines.pop()
        if len(self._serverBuffer) > 65536:
            lines.append(self._serverBuffer)
            self._serverBuffer = b""
        for i, raw in enumerate(lines):
            line = raw.rstrip(b"\r")
            if i == _MAX_LINES_PER_CHUNK:
                rest = sum(len(x) + 1 for x in lines[i:])
                self._emit("S", f"<{len(lines) - i} more lines, {rest} bytes>")
                line = lines[-1].rstrip(b"\r")
                self._serverLine(line, log=False)
                return
            self._serverLine(line, log=True)

    def _serverLine(self, line: bytes, log: bool) -> None:
        if log:
            if self._rule.serverSecrets:
                self._emit("S", self._mask(line, self._rule.serverSecrets))
            else:
                self._emit("S", _show(line))
        if self._literalLeft:
            # A continuation inviting literal data, not a SASL challenge.
            return
        if any(line.startswith(p) for p in self._rule.challenges):
            self._secretNext = True
        if any(line.startswith(p) for p in self._rule.bodyStart):
            self._inBody = True
            self._bodyLines = self._bodyBytes = 0
