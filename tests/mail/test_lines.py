"""
Tests for L{appnet.mail.lines}: the shared dot-stuffing.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from appnet.mail.lines import DotStuffer, crlfLineEnds


class DotStufferTests(SynchronousTestCase):
    """
    L{DotStuffer} doubles a leading dot on every line, across chunks.
    """

    def stuff(self, stuffer: DotStuffer, *chunks: bytes) -> bytes:
        return b"".join(stuffer(c) for c in chunks) + stuffer.flush()

    def test_leadingDots(self) -> None:
        """A dot at a line start is doubled, wherever the chunks split."""
        self.assertEqual(
            self.stuff(DotStuffer(), b".a\r\nb\r\n", b".c\r\n.", b"d\r\n"),
            b"..a\r\nb\r\n..c\r\n..d\r\n",
        )

    def test_notLineStart(self) -> None:
        """A dot inside a line is left alone, even first in a chunk."""
        self.assertEqual(self.stuff(DotStuffer(), b"a", b".b\r\n"), b"a.b\r\n")

    def test_lineEnds(self) -> None:
        """
        With C{lineEnds}, bare LF becomes CRLF and a CR split from its LF
        across chunks stays one line end.
        """
        self.assertEqual(
            self.stuff(DotStuffer(lineEnds=True), b"a\n.b\r", b"\n.c\r"),
            b"a\r\n..b\r\n..c\r",
        )

    def test_withoutLineEnds(self) -> None:
        """Without C{lineEnds}, line ends pass through as they are."""
        self.assertEqual(self.stuff(DotStuffer(), b"a\n.b"), b"a\n..b")

    def test_crlfLineEnds(self) -> None:
        """L{crlfLineEnds} makes every line end CRLF, once."""
        self.assertEqual(crlfLineEnds(b"a\nb\r\nc"), b"a\r\nb\r\nc")
