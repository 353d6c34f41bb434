"""
Tests for L{appnet.mail.data.DataDecoder}: the stored form of a DATA body
is the same however the body is cut into chunks.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from appnet.mail.data import DataDecoder


def decode(chunks: list[bytes]) -> tuple[bytes, bytes | None]:
    """Feed C{chunks}; the stored form and what followed the C{.} line."""
    stored: list[bytes] = []
    decoder = DataDecoder(stored.append, 1 << 20)
    for i, chunk in enumerate(chunks):
        rest = decoder.feed(chunk)
        if rest is not None:
            return b"".join(stored), rest + b"".join(chunks[i + 1 :])
    return b"".join(stored), None


def reference(wire: bytes) -> tuple[bytes, bytes]:
    """The same, line by line (RFC 5321 4.5.2), for bodies with headers."""
    lines = []
    rest = wire
    while True:
        line, _, rest = rest.partition(b"\n")
        line = line.removesuffix(b"\r")
        if line == b".":
            break
        lines.append(line[1:] if line.startswith(b".") else line)
    return b"".join(line + b"\r\n" for line in lines), rest


BODIES = [
    b"Subject: a\r\n\r\nplain\r\nlines\r\n.\r\nNOOP\r\n",
    b"Subject: b\r\n\r\n..dot\r\nmid.dle\r\n...\r\n.x\r\n.\r\nQUIT\r\n",
    b"Subject: c\n\nbare\nLF\n..\n.\n",
    b"Subject: d\r\n\r\nx\r\n\r\n.\r\n",
    b"Subject: e\r\n\r\n" + b"y" * 70 + b"\r\n.\r\n",
]


class ChunkingTests(SynchronousTestCase):
    def test_everyCut(self) -> None:
        """
        Cut anywhere in two, or fed byte by byte, a body decodes as a
        line-by-line reading does: dots unstuffed only at line starts,
        the terminator found across any cut, bare LF stored as CRLF.
        """
        for wire in BODIES:
            expected = reference(wire)
            for cut in range(len(wire) + 1):
                self.assertEqual(
                    decode([wire[:cut], wire[cut:]]), expected, (wire, cut)
                )
            self.assertEqual(
                decode([wire[i : i + 1] for i in range(len(wire))]), expected
            )

    def test_dotsInLaterChunks(self) -> None:
        """
        A dot-stuffed line in a chunk of whole lines after the first
        (where only one scan looks for dots) is unstuffed; one at the
        start of a chunk too.
        """
        head = b"Subject: f\r\n\r\n" + b"z" * 50 + b"\r\n"
        stored, rest = decode([head, b"..a\r\nb\r\n", b"c\r\n..d\r\n", b".\r\n"])
        self.assertEqual(
            stored.split(b"\r\n\r\n", 1)[1], b"z" * 50 + b"\r\n.a\r\nb\r\nc\r\n.d\r\n"
        )
        self.assertEqual(rest, b"")
