"""
BIND-format zone files (RFC 1035 section 5.1, with BIND's C{$TTL}).

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from io import BytesIO
from typing import Any

from attrs import frozen
from twisted.names import dns

from appnet.dns.errors import ZoneError
from appnet.dns.records import CAA, Record_CAA, recordClass, typeByName, typeName

__all__ = ["ZoneRecord", "parseZone", "parseTTL", "readFile"]

#: How deep C{$INCLUDE} may nest (it also stops include loops).
MAX_INCLUDE_DEPTH = 8

_TOKEN = re.compile(
    r"""
      (?P<newline>\n)
    | (?P<space>[ \t\r]+)
    | (?P<comment>;[^\n]*)
    | (?P<quoted>"(?:[^"\\\n]|\\.)*")
    | (?P<open>\()
    | (?P<close>\))
    | (?P<word>(?:[^\s;()"\\]|\\.)+)
    | (?P<bad>.)
    """,
    re.VERBOSE,
)

_TTL_PART = re.compile(r"(\d+)([smhdw])", re.IGNORECASE)
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL_SHAPE = re.compile(r"^(\d+|(\d+[smhdw])+)$", re.IGNORECASE)
_CLASSES = {"IN", "CH", "CS", "HS", "ANY"}
_MAX_TTL = 2**31 - 1


class _Problem(Exception):
    """A problem on the current line; the parser adds file and line."""


@frozen
class _Token:
    text: str
    quoted: bool


@frozen
class _Entry:
    line: int
    indented: bool
    tokens: list[_Token]


@frozen
class ZoneRecord:
    """
    One record read from a zone file.

    @ivar name: the owner, folded (lower case, no trailing dot).
    @ivar type: the record type number.
    @ivar ttl: the TTL in seconds.
    @ivar payload: the Twisted record object (C{dns.Record_MX} ...).
    @ivar filename: the file it came from.
    @ivar line: the line it starts on.
    """

    name: bytes
    type: int
    ttl: int
    payload: Any
    filename: str
    line: int


def parseTTL(text: str) -> int:
    """
    A TTL: seconds (C{3600}) or with units (C{1h}, C{1h30m}, C{2w}).

    @raise ValueError: if malformed or above 2**31 - 1.
    """
    if not _TTL_SHAPE.match(text):
        raise ValueError(f"bad TTL {text!r}")
    if text.isdigit():
        value = int(text)
    else:
        value = sum(
            int(n) * _TTL_UNITS[unit.lower()] for n, unit in _TTL_PART.findall(text)
        )
    if value > _MAX_TTL:
        raise ValueError(f"TTL {text} is above 2147483647")
    return value


def _tokenize(text: str, filename: str) -> list[_Entry]:
    """
    Split zone text into entries (logical lines: parentheses join lines)
    of tokens, dropping comments.
    """
    entries: list[_Entry] = []
    tokens: list[_Token] = []
    line = 1
    entryLine = 1
    indented = False
    atLineStart = True
    depth = 0
    openedAt = 0
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        value = match.group()
        if kind == "newline":
            line += 1
            if depth == 0:
                if tokens:
                    entries.append(_Entry(entryLine, indented, tokens))
                tokens = []
                indented = False
                atLineStart = True
            continue
        if kind == "space":
            if atLineStart and depth == 0 and not tokens:
                indented = True
            atLineStart = False
            continue
        atLineStart = False
        if kind == "comment":
            continue
        if kind == "bad":
            if value == '"':
                raise ZoneError(filename, line, "unterminated quoted string")
            raise ZoneError(filename, line, f"unexpected character {value!r}")
        if not tokens and depth == 0:
            entryLine = line
        if kind == "open":
            if depth == 0:
                openedAt = line
            depth += 1
            if depth > 1:
                raise ZoneError(filename, line, "nested parentheses")
            continue
        if kind == "close":
            if depth == 0:
                raise ZoneError(filename, line, "')' without '('")
            depth -= 1
            continue
        if kind == "quoted":
            tokens.append(_Token(value[1:-1], True))
        else:
            tokens.append(_Token(value, False))
    if depth:
        raise ZoneError(filename, openedAt, "'(' is never closed")
    if tokens:
        entries.append(_Entry(entryLine, indented, tokens))
    return entries


def _unescape(text: str) -> bytes:
    """
    The bytes of a character-string: C{\\X} is X, C{\\DDD} the byte DDD.
    """
    if "\\" not in text:
        return text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        digits = text[i + 1 : i + 4]
        if len(digits) == 3 and digits.isdigit():
            value = int(digits)
            if value > 255:
                raise _Problem(f"bad escape \\{digits}")
            out.append(value)
            i += 4
        elif i + 1 < len(text):
            out += text[i + 1].encode("utf-8")
            i += 2
        else:
            raise _Problem("backslash at the end of a string")
    return bytes(out)


def readFile(path: str) -> str:
    """
    Read a zone file's text.

    @raise ZoneError: if it cannot be read or is not UTF-8.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ZoneError(path, 0, f"cannot read: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ZoneError(
            path, data.count(b"\n", 0, e.start) + 1, "not UTF-8 text"
        ) from None


class _Parser:
    """
    Turns the entries of one zone file (and the files it includes) into
    records. The TTL state and the previous owner carry across includes;
    the origin is restored after each (RFC 1035 section 5.1).
    """

    def __init__(self, reader: Callable[[str], str]) -> None:
        self.reader = reader
        self.origin = b""
        self.defaultTTL: int | None = None
        self.lastTTL: int | None = None
        self.soaMinimum: int | None = None
        self.lastOwner: bytes | None = None
        self.records: list[ZoneRecord] = []

    def run(self, text: str, filename: str, directory: str, depth: int) -> None:
        for entry in _tokenize(text, filename):
            try:
                self._entry(entry, filename, directory, depth)
            except _Problem as e:
                raise ZoneError(filename, entry.line, str(e)) from None

    # Names and values.

    def name(self, token: _Token) -> bytes:
        if token.quoted:
            raise _Problem(f'a domain name cannot be quoted: "{token.text}"')
        text = token.text
        if text == "@":
            return self.origin
        if text == ".":
            return b""
        if "\\" in text:
            labels, absolute = self._escapedLabels(text)
        else:
            absolute = text.endswith(".")
            body = text[:-1] if absolute else text
            labels = [label.encode("utf-8") for label in body.split(".")]
            if any(not label for label in labels):
                raise _Problem(f"empty label in name {text!r}")
        for label in labels:
            if len(label) > 63:
                raise _Problem(f"label longer than 63 bytes in {text!r}")
        name = b".".join(labels).lower()
        if not absolute and self.origin:
            name = name + b"." + self.origin
        if len(name) > 253:
            raise _Problem(f"name longer than 255 bytes: {text!r}")
        return name

    def _escapedLabels(self, text: str) -> tuple[list[bytes], bool]:
        labels: list[bytes] = []
        current = bytearray()
        i = 0
        while i < len(text):
            c = text[i]
            if c == "\\":
                digits = text[i + 1 : i + 4]
                if len(digits) == 3 and digits.isdigit():
                    value = int(digits)
                    i += 4
                elif i + 1 < len(text):
                    value = ord(text[i + 1]) if text[i + 1].isascii() else -1
                    if value < 0:
                        current += text[i + 1].encode("utf-8")
                        i += 2
                        continue
                    i += 2
                else:
                    raise _Problem(f"backslash at the end of {text!r}")
                if value > 255:
                    raise _Problem(f"bad escape in {text!r}")
                if value == ord("."):
                    raise _Problem(f"a dot inside a label is not supported: {text!r}")
                current.append(value)
                continue
            if c == ".":
                if not current:
                    raise _Problem(f"empty label in name {text!r}")
                labels.append(bytes(current))
                current = bytearray()
                i += 1
                if i == len(text):
                    return labels, True
                continue
            current += c.encode("utf-8")
            i += 1
        labels.append(bytes(current))
        return labels, False

    def ttl(self, token: _Token) -> int:
        try:
            return parseTTL(token.text)
        except ValueError as e:
            raise _Problem(str(e)) from None

    def number(self, token: _Token, what: str, top: int) -> int:
        if not token.text.isdigit() or int(token.text) > top:
            raise _Problem(f"bad {what} {token.text!r} (0 to {top})")
        return int(token.text)

    def text(self, token: _Token) -> bytes:
        data = _unescape(token.text)
        if len(data) > 255:
            raise _Problem(
                "a character-string holds at most 255 bytes; split it into "
                'several quoted strings ("..." "...")'
            )
        return data

    # Entries.

    def _entry(self, entry: _Entry, filename: str, directory: str, depth: int) -> None:
        tokens = list(entry.tokens)
        first = tokens[0]
        if not first.quoted and first.text.startswith("$") and not entry.indented:
            self._directive(first.text.upper(), tokens[1:], directory, depth)
            return
        if entry.indented:
            if self.lastOwner is None:
                raise _Problem("record without an owner name and no previous owner")
            owner = self.lastOwner
        else:
            owner = self.name(tokens.pop(0))
            self.lastOwner = owner
        ttl: int | None = None
        for _ in range(2):
            if not tokens:
                break
            word = tokens[0].text
            if tokens[0].quoted:
                break
            if ttl is None and _TTL_SHAPE.match(word):
                ttl = self.ttl(tokens.pop(0))
            elif word.upper() in _CLASSES:
                if word.upper() != "IN":
                    raise _Problem(f"class {word.upper()} is not served; use IN")
                tokens.pop(0)
            else:
                break
        if not tokens:
            raise _Problem("record type missing")
        typeToken = tokens.pop(0)
        try:
            type = typeByName(typeToken.text)
        except ValueError:
            raise _Problem(f"unknown record type {typeToken.text!r}") from None
        payload = self._rdata(type, tokens)
        if type == dns.SOA:
            self.soaMinimum = payload.minimum
        if ttl is None:
            ttl = self._defaultTTL(type, payload)
        else:
            self.lastTTL = ttl
        payload.ttl = ttl
        self.records.append(ZoneRecord(owner, type, ttl, payload, filename, entry.line))

    def _defaultTTL(self, type: int, payload: Any) -> int:
        if self.defaultTTL is not None:
            return self.defaultTTL
        if self.lastTTL is not None:
            return self.lastTTL
        if self.soaMinimum is not None:
            return self.soaMinimum
        raise _Problem("no TTL on this record and no $TTL before it")

    def _directive(
        self, word: str, args: list[_Token], directory: str, depth: int
    ) -> None:
        if word == "$ORIGIN":
            if len(args) != 1:
                raise _Problem("$ORIGIN takes one name")
            # A relative $ORIGIN is taken relative to the current one.
            self.origin = self.name(args[0])
        elif word == "$TTL":
            if len(args) != 1:
                raise _Problem("$TTL takes one TTL")
            self.defaultTTL = self.ttl(args[0])
        elif word == "$INCLUDE":
            if not 1 <= len(args) <= 2:
                raise _Problem("$INCLUDE takes a file name and an optional origin")
            if depth >= MAX_INCLUDE_DEPTH:
                raise _Problem("$INCLUDE nested too deeply (an include loop?)")
            path = _unescape(args[0].text).decode("utf-8", "replace")
            if not os.path.isabs(path):
                path = os.path.join(directory, path)
            saved = self.origin
            if len(args) == 2:
                self.origin = self.name(args[1])
            text = self.reader(path)
            self.run(text, path, os.path.dirname(path), depth + 1)
            self.origin = saved
        else:
            raise _Problem(f"unsupported directive {word}")

    # Record data, by type.

    def _rdata(self, type: int, tokens: list[_Token]) -> Any:
        if tokens and tokens[0].text == "\\#" and not tokens[0].quoted:
            return self._generic(type, tokens[1:])
        parse = self._PARSERS.get(type)
        if parse is None:
            raise _Problem(
                f"{typeName(type)} records are not supported here; write them "
                f"in the generic form: TYPE{type} \\# LENGTH HEX"
            )
        count, function = parse
        if count is not None and len(tokens) != count:
            if len(tokens) > count:
                raise _Problem(
                    f"unexpected {tokens[count].text!r} after {typeName(type)} data"
                )
            raise _Problem(
                f"{typeName(type)} needs {count} field{'s' if count > 1 else ''}, "
                f"got {len(tokens)}"
            )
        return function(self, tokens)

    def _generic(self, type: int, tokens: list[_Token]) -> Any:
        if not tokens or not tokens[0].text.isdigit():
            raise _Problem("generic record data needs a length: \\# LENGTH HEX")
        length = int(tokens[0].text)
        try:
            data = bytes.fromhex("".join(t.text for t in tokens[1:]))
        except ValueError:
            raise _Problem("bad hex in generic record data") from None
        if len(data) != length:
            raise _Problem(f"generic record data is {len(data)} bytes, not {length}")
        payload = recordClass(type)()
        try:
            payload.decode(BytesIO(data), length)
        except (EOFError, ValueError) as e:
            raise _Problem(f"bad {typeName(type)} data: {e}") from None
        return payload

    def _a(self, tokens: list[_Token]) -> Any:
        try:
            return dns.Record_A(str(ipaddress.IPv4Address(tokens[0].text)))
        except ValueError:
            raise _Problem(f"bad IPv4 address {tokens[0].text!r}") from None

    def _aaaa(self, tokens: list[_Token]) -> Any:
        try:
            return dns.Record_AAAA(str(ipaddress.IPv6Address(tokens[0].text)))
        except ValueError:
            raise _Problem(f"bad IPv6 address {tokens[0].text!r}") from None

    def _simple(cls: Any) -> Callable[[_Parser, list[_Token]], Any]:
        def parse(self: _Parser, tokens: list[_Token]) -> Any:
            return cls(self.name(tokens[0]))

        return parse

    def _mx(self, tokens: list[_Token]) -> Any:
        return dns.Record_MX(
            self.number(tokens[0], "MX preference", 65535), self.name(tokens[1])
        )

    def _txt(self, tokens: list[_Token]) -> Any:
        if not tokens:
            raise _Problem("TXT needs at least one string")
        return dns.Record_TXT(*[self.text(t) for t in tokens])

    def _spf(self, tokens: list[_Token]) -> Any:
        if not tokens:
            raise _Problem("SPF needs at least one string")
        return dns.Record_SPF(*[self.text(t) for t in tokens])

    def _soa(self, tokens: list[_Token]) -> Any:
        return dns.Record_SOA(
            mname=self.name(tokens[0]),
            rname=self.name(tokens[1]),
            serial=self.number(tokens[2], "serial", 2**32 - 1),
            refresh=self.ttl(tokens[3]),
            retry=self.ttl(tokens[4]),
            expire=self.ttl(tokens[5]),
            minimum=self.ttl(tokens[6]),
        )

    def _srv(self, tokens: list[_Token]) -> Any:
        return dns.Record_SRV(
            self.number(tokens[0], "SRV priority", 65535),
            self.number(tokens[1], "SRV weight", 65535),
            self.number(tokens[2], "SRV port", 65535),
            self.name(tokens[3]),
        )

    def _caa(self, tokens: list[_Token]) -> Any:
        tag = tokens[1].text
        if tokens[1].quoted or not re.match(r"^[A-Za-z0-9]{1,255}$", tag):
            raise _Problem(f"bad CAA tag {tag!r} (letters and digits)")
        return Record_CAA(
            self.number(tokens[0], "CAA flags", 255),
            tag.lower().encode("ascii"),
            _unescape(tokens[2].text),
        )

    _PARSERS: dict[int, tuple[int | None, Callable[[_Parser, list[_Token]], Any]]] = {
        dns.A: (1, _a),
        dns.AAAA: (1, _aaaa),
        dns.NS: (1, _simple(dns.Record_NS)),
        dns.CNAME: (1, _simple(dns.Record_CNAME)),
        dns.PTR: (1, _simple(dns.Record_PTR)),
        dns.MX: (2, _mx),
        dns.TXT: (None, _txt),
        dns.SPF: (None, _spf),
        dns.SOA: (7, _soa),
        dns.SRV: (4, _srv),
        CAA: (3, _caa),
    }


def parseZone(
    text: str,
    filename: str,
    origin: bytes = b"",
    reader: Callable[[str], str] = readFile,
    directory: str | None = None,
) -> list[ZoneRecord]:
    """
    Parse zone file text into records.

    @param filename: names the text in errors.
    @param origin: the origin before any C{$ORIGIN} (folded), usually
        the file name without C{.zone}.
    @param reader: reads an included file (the default reads from disk).
    @param directory: where relative C{$INCLUDE} paths start (default:
        the directory of C{filename}).
    @raise ZoneError: naming the file and line of the first problem.
    """
    parser = _Parser(reader)
    parser.origin = origin
    if directory is None:
        directory = os.path.dirname(filename)
    parser.run(text, filename, directory, 0)
    return parser.records
