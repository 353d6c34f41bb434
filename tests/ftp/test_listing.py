"""
Tests for L{appnet.ftp.listing} and L{appnet.ftp.paths}: listing lines
written and read, and virtual paths.
"""

from __future__ import annotations

import calendar
import stat

from twisted.trial.unittest import SynchronousTestCase

from appnet.ftp.errors import BadName, OutsideHome, showName
from appnet.ftp.listing import (
    formatFacts,
    formatList,
    listable,
    mdtm,
    parseFacts,
    parseList,
)
from appnet.ftp.paths import quote, render, resolve
from appnet.ftp.shell import Entry

WHEN = calendar.timegm((2024, 2, 29, 13, 45, 7, 0, 0, 0))


def entry(name: str = "f.txt", kind: str = "file", size: int = 1234) -> Entry:
    mode = (stat.S_IFDIR | 0o755) if kind == "dir" else (stat.S_IFREG | 0o644)
    return Entry(name, kind, size, WHEN, mode, 1, "801g2a")


class ListTests(SynchronousTestCase):
    """
    C{LIST} lines.
    """

    def test_recent(self) -> None:
        """Within half a year, the time of day is shown (UTC)."""
        self.assertEqual(
            formatList(entry(), WHEN + 86400),
            "-rw-r--r--   1 ftp      ftp              1234 Feb 29 13:45 f.txt",
        )

    def test_old(self) -> None:
        """Older entries show the year, like ls."""
        line = formatList(entry("d", "dir", 4096), WHEN + 400 * 86400)
        self.assertEqual(
            line, "drwxr-xr-x   1 ftp      ftp              4096 Feb 29  2024 d"
        )

    def test_roundTrip(self) -> None:
        """The client reads back what the server writes."""
        parsed = parseList(formatList(entry("with space.txt"), WHEN))
        assert parsed is not None
        self.assertEqual(
            (parsed.name, parsed.kind, parsed.size), ("with space.txt", "file", 1234)
        )

    def test_parseOthers(self) -> None:
        """Links lose their target; non-entry lines are skipped."""
        link = parseList("lrwxrwxrwx 1 u g 7 Jan  1 2020 l -> target")
        assert link is not None
        self.assertEqual((link.name, link.kind), ("l", "link"))
        self.assertIsNone(parseList("total 12"))


class FactsTests(SynchronousTestCase):
    """
    MLSx lines (RFC 3659).
    """

    def test_file(self) -> None:
        """A file's facts, in order."""
        self.assertEqual(
            formatFacts(entry(), readOnly=False),
            "type=file;size=1234;modify=20240229134507;perm=adfrw;unique=801g2a; f.txt",
        )

    def test_readOnlyDir(self) -> None:
        """A read-only directory may only be entered and listed."""
        line = formatFacts(entry("d", "dir"), readOnly=True, facts=("type", "perm"))
        self.assertEqual(line, "type=dir;perm=el; d")

    def test_parse(self) -> None:
        """The client reads facts back, with the time in seconds."""
        parsed = parseFacts(formatFacts(entry("a b"), readOnly=False))
        assert parsed is not None
        self.assertEqual(
            (parsed.name, parsed.kind, parsed.size, parsed.modified),
            ("a b", "file", 1234, WHEN),
        )
        self.assertEqual(parsed.facts["perm"], "adfrw")
        self.assertIsNone(parseFacts("garbage"))
        mlst = parseFacts(" type=dir; /x")
        assert mlst is not None
        self.assertEqual((mlst.name, mlst.kind), ("/x", "dir"))

    def test_mdtm(self) -> None:
        """MDTM's format."""
        self.assertEqual(mdtm(WHEN), "20240229134507")

    def test_listable(self) -> None:
        """Names with line ends cannot be listed."""
        self.assertTrue(listable("a b\tc"))
        self.assertFalse(listable("a\nb"))
        self.assertFalse(listable("a\rb"))


class PathTests(SynchronousTestCase):
    """
    L{resolve}, L{render}, L{quote}, L{showName}.
    """

    def test_relative(self) -> None:
        """Relative paths start at the working directory."""
        self.assertEqual(resolve(("a",), "b/c"), ("a", "b", "c"))
        self.assertEqual(resolve(("a", "b"), "../c"), ("a", "c"))
        self.assertEqual(resolve(("a",), "./b//c/."), ("a", "b", "c"))

    def test_absolute(self) -> None:
        """Absolute paths start at the root."""
        self.assertEqual(resolve(("a",), "/b"), ("b",))
        self.assertEqual(resolve(("a",), "/"), ())

    def test_aboveRoot(self) -> None:
        """Climbing above the root is an error, not a stop at /."""
        self.assertRaises(OutsideHome, resolve, (), "..")
        self.assertRaises(OutsideHome, resolve, ("a",), "../../b")
        self.assertRaises(OutsideHome, resolve, ("a",), "/../a")

    def test_badNames(self) -> None:
        """NUL, CR and LF are never part of a name."""
        for bad in ("a\0b", "a\rb", "a\nb"):
            self.assertRaises(BadName, resolve, (), bad)

    def test_render(self) -> None:
        """Segments render as an absolute path."""
        self.assertEqual(render(()), "/")
        self.assertEqual(render(("a", "b c")), "/a/b c")

    def test_quote(self) -> None:
        """Double quotes in a 257 reply are doubled (RFC 959)."""
        self.assertEqual(quote('/say "hi"'), '"/say ""hi"""')

    def test_showName(self) -> None:
        """Control characters never reach a reply."""
        self.assertEqual(showName("a\x1b[2Jb\x7f"), "a?[2Jb?")
