"""
The body of SMTP's DATA, decoded as it streams in.

L{DataDecoder} turns the wire form into the stored form without holding the
message in memory: it finds the terminating C{.} line, removes
dot-stuffing (RFC 5321 4.5.2), turns bare LF line ends into CRLF (stored
messages always use CRLF, so POP3 and IMAP sizes are exact), counts
C{Received} headers for loop detection (RFC 5321 6.3), notes which header
fields are present, and stops storing (but keeps reading to the end) once
the message is over the size limit. Header lines are examined one by one;
the body is processed in bulk with C{bytes} methods.
"""

from __future__ import annotations

from collections.abc import Callable

from appnet.mail.lines import crlfLineEnds

__all__ = ["DataDecoder"]

#: A line longer than this is passed through in pieces.
MAX_LINE = 1 << 16


class DataDecoder:
    """
    Decodes one message body after C{354}.

    @ivar size: bytes of the stored form so far (what will be stored, if
        not over the limit).
    @ivar hops: C{Received} header fields seen.
    @ivar headers: lower-case names of the header fields seen.
    @ivar tooBig: the message passed C{maxSize}; nothing more was stored.
    """

    def __init__(
        self,
        sink: Callable[[bytes], None],
        maxSize: int,
        endOfHeaders: Callable[[DataDecoder], bytes] | None = None,
    ) -> None:
        """
        @param sink: receives the stored form, in order.
        @param maxSize: largest message to store, in bytes.
        @param endOfHeaders: called once when the header section ends;
            returns header lines to add at its end (a submission server
            adding a missing Message-ID), or C{b""}.
        """
        self._sink = sink
        self._maxSize = maxSize
        self._endOfHeaders = endOfHeaders
        self._buffer = b""
        self._inHeaders = True
        self._atLineStart = True
        self.size = 0
        self.hops = 0
        self.headers: set[str] = set()
        self.tooBig = False
        self.done = False

    def _emit(self, data: bytes) -> None:
        if self.tooBig or not data:
            return
        if self.size + len(data) > self._maxSize:
            self.tooBig = True
            return
        self.size += len(data)
        self._sink(data)

    def feed(self, data: bytes) -> bytes | None:
        """
        Decode more of the body.

        @return: C{None} while the body goes on; once the terminating line
            has arrived, the bytes that followed it (pipelined commands).
        """
        buffer = self._buffer + data
        self._buffer = b""
        while self._inHeaders:
            newline = buffer.find(b"\n")
            if newline == -1:
                break
            line, buffer = buffer[:newline], buffer[newline + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            if line == b".":
                self._finishHeaders()
                self.done = True
                return buffer
            if line.startswith(b"."):
                line = line[1:]
            self._headerLine(line)
        if self._inHeaders:
            self._buffer = buffer
            if len(buffer) > MAX_LINE:
                # An absurd header line: give up parsing headers.
                self._finishHeaders()
                self._buffer = b""
                self._body(buffer, partial=True)
            return None
        return self._body(buffer)

    def _headerLine(self, line: bytes) -> None:
        if line == b"":
            self._finishHeaders()
            self._emit(b"\r\n")
            return
        if line[:1] in (b" ", b"\t"):
            self._emit(line + b"\r\n")
            return
        name, colon, _ = line.partition(b":")
        if not colon or not name or b" " in name.strip(b" \t"):
            # Not a header field: the message has no (more) headers, so
            # this line starts the body after an empty line.
            self._finishHeaders()
            self._emit(b"\r\n" + line + b"\r\n")
            return
        field = name.strip().lower().decode("ascii", "replace")
        self.headers.add(field)
        if field == "received":
            self.hops += 1
        self._emit(line + b"\r\n")

    def _finishHeaders(self) -> None:
        if not self._inHeaders:
            return
        self._inHeaders = False
        if self._endOfHeaders is not None:
            self._emit(self._endOfHeaders(self))

    def _body(self, buffer: bytes, partial: bool = False) -> bytes | None:
        last = buffer.rfind(b"\n")
        if last == -1:
            complete, rest = b"", buffer
        else:
            complete, rest = buffer[: last + 1], buffer[last + 1 :]
        if complete:
            # One scan tells whether the lines hold a terminator or a
            # dot-stuffed line at all (most bodies have neither): only
            # then are they searched for each.
            dots = b"\n." in complete
            end = self._terminator(complete, dots)
            if end is not None:
                start, after = end
                self._bodyPart(complete[:start])
                self.done = True
                return complete[after:] + rest
            self._bodyPart(complete, dots)
            self._atLineStart = True
        if len(rest) > MAX_LINE or partial:
            # A very long line: pass it on in pieces, keeping a trailing
            # CR that may be half of a CRLF.
            keep = 1 if rest.endswith(b"\r") else 0
            piece, rest = rest[: len(rest) - keep], rest[len(rest) - keep :]
            if piece:
                self._bodyPart(piece)
                self._atLineStart = False
        self._buffer = rest
        return None

    def _terminator(self, complete: bytes, dots: bool = True) -> tuple[int, int] | None:
        """
        Where the C{.} line is in a run of complete lines: the offset of
        its first byte and of the byte after it.

        @param dots: whether a line after the first may start with a dot
            (C{False}: only the first line can be the C{.} line).
        """
        if self._atLineStart:
            for ending in (b".\r\n", b".\n"):
                if complete.startswith(ending):
                    return 0, len(ending)
        if not dots:
            return None
        found: tuple[int, int] | None = None
        for ending in (b"\n.\r\n", b"\n.\n"):
            i = complete.find(ending)
            if i != -1 and (found is None or i + 1 < found[0]):
                found = (i + 1, i + len(ending))
        return found

    def _bodyPart(self, part: bytes, dots: bool = True) -> None:
        """
        @param dots: whether C{part} may hold a line starting with a dot
            after its first (C{False}: known not to).
        """
        if not part:
            return
        if self._atLineStart and part.startswith(b"."):
            part = part[1:]
        # Each rewrite copies the part: skip those with nothing to do (the
        # scans cost less than the copies).
        if part.count(b"\n") != part.count(b"\r\n"):
            part = crlfLineEnds(part)
        if dots and b"\r\n." in part:
            # RFC 5321 4.5.2: the first period of any line starting with
            # one goes (a line of a client that did not stuff it too, as
            # at the start of a part and in the header section).
            part = part.replace(b"\r\n.", b"\r\n")
        self._emit(part)
