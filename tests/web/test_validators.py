"""
Tests for the pure HTTP rules: entity tags, precondition order, If-Range,
Range parsing and Accept-Encoding.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from appnet.web.validators import (
    ANY,
    UNSATISFIABLE,
    Condition,
    ETag,
    acceptsEncoding,
    evaluate,
    httpDate,
    ifRangeAllows,
    parseDate,
    parseETags,
    parseRanges,
)

TAG = ETag(b"abc")
MTIME = 1_700_000_000


def headers(**values: str) -> Headers:
    h = Headers()
    for name, value in values.items():
        h.setRawHeaders(name.replace("_", "-"), [value.encode()])
    return h


class ETagTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """Lists, weak tags, unquoted tags and '*' are parsed."""
        self.assertIs(parseETags(b" * "), ANY)
        self.assertEqual(
            parseETags(b'"a", W/"b",c,,'),
            [ETag(b"a"), ETag(b"b", True), ETag(b"c")],
        )

    def test_comparison(self) -> None:
        """Strong comparison needs both strong; weak ignores weakness."""
        self.assertTrue(TAG.strongMatch(ETag(b"abc")))
        self.assertFalse(TAG.strongMatch(ETag(b"abc", True)))
        self.assertTrue(TAG.weakMatch(ETag(b"abc", True)))
        self.assertEqual(ETag(b"x", True).header(), b'W/"x"')


class EvaluateTests(SynchronousTestCase):
    def check(self, method: bytes = b"GET", exists: bool = True, **h: str) -> Condition:
        return evaluate(method, headers(**h), TAG, MTIME, exists)

    def test_none(self) -> None:
        """No preconditions: proceed."""
        self.assertIs(self.check(), Condition.PROCEED)

    def test_ifMatchFirst(self) -> None:
        """If-Match failing wins over everything else."""
        self.assertIs(
            self.check(if_match='"zzz"', if_none_match='"abc"'),
            Condition.PRECONDITION_FAILED,
        )

    def test_ifMatchStar(self) -> None:
        """If-Match: * needs a current representation."""
        self.assertIs(self.check(if_match="*"), Condition.PROCEED)
        self.assertIs(
            self.check(exists=False, if_match="*"), Condition.PRECONDITION_FAILED
        )

    def test_ifUnmodifiedSinceIgnoredWithIfMatch(self) -> None:
        """If-Unmodified-Since only counts when If-Match is absent."""
        old = httpDate(MTIME - 10).decode()
        self.assertIs(
            self.check(if_unmodified_since=old), Condition.PRECONDITION_FAILED
        )
        self.assertIs(
            self.check(if_match='"abc"', if_unmodified_since=old), Condition.PROCEED
        )

    def test_ifNoneMatchUnsafe(self) -> None:
        """A matching If-None-Match on an unsafe method is 412, not 304."""
        self.assertIs(
            self.check(method=b"PUT", if_none_match='"abc"'),
            Condition.PRECONDITION_FAILED,
        )

    def test_ifModifiedSince(self) -> None:
        """Only GET and HEAD are ever 304 by date."""
        same = httpDate(MTIME).decode()
        self.assertIs(self.check(if_modified_since=same), Condition.NOT_MODIFIED)
        self.assertIs(
            self.check(method=b"HEAD", if_modified_since=same), Condition.NOT_MODIFIED
        )
        self.assertIs(
            self.check(method=b"POST", if_modified_since=same), Condition.PROCEED
        )

    def test_dates(self) -> None:
        """The three HTTP date formats are read; others are not."""
        for text in (
            b"Sun, 06 Nov 1994 08:49:37 GMT",
            b"Sunday, 06-Nov-94 08:49:37 GMT",
            b"Sun Nov  6 08:49:37 1994",
        ):
            self.assertEqual(parseDate(text), 784111777, text)
        self.assertIsNone(parseDate(b"last tuesday"))


class IfRangeTests(SynchronousTestCase):
    def test_ifRange(self) -> None:
        """Tags must match strongly; dates exactly."""
        self.assertTrue(ifRangeAllows(b'"abc"', TAG, MTIME))
        self.assertFalse(ifRangeAllows(b'W/"abc"', TAG, MTIME))
        self.assertFalse(ifRangeAllows(b'"old"', TAG, MTIME))
        self.assertTrue(ifRangeAllows(httpDate(MTIME), TAG, MTIME))
        self.assertFalse(ifRangeAllows(httpDate(MTIME - 1), TAG, MTIME))
        self.assertFalse(ifRangeAllows(b"garbage", TAG, MTIME))


class RangeTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """First-last, open-ended and suffix ranges; ends are clamped."""
        self.assertEqual(parseRanges(b"bytes=0-9", 100), [(0, 10)])
        self.assertEqual(parseRanges(b"bytes=90-", 100), [(90, 10)])
        self.assertEqual(parseRanges(b"bytes=-5", 100), [(95, 5)])
        self.assertEqual(parseRanges(b"bytes=-500", 100), [(0, 100)])
        self.assertEqual(parseRanges(b"bytes=50-5000", 100), [(50, 50)])
        self.assertEqual(parseRanges(b"Bytes = 1-2 , 5-6", 100), [(1, 2), (5, 2)])

    def test_unsatisfiable(self) -> None:
        """Ranges all past the end, or suffix 0, or an empty file: 416."""
        self.assertIs(parseRanges(b"bytes=100-", 100), UNSATISFIABLE)
        self.assertIs(parseRanges(b"bytes=-0", 100), UNSATISFIABLE)
        self.assertIs(parseRanges(b"bytes=0-", 0), UNSATISFIABLE)
        self.assertEqual(parseRanges(b"bytes=200-300,0-0", 100), [(0, 1)])

    def test_ignored(self) -> None:
        """Bad syntax, other units and too many ranges: ignore the header."""
        for value in (
            b"bytes=5-1",
            b"bytes=a-",
            b"items=0-1",
            b"bytes=-",
            b"bytes",
            b"bytes=,",
        ):
            self.assertIsNone(parseRanges(value, 100), value)
        self.assertIsNone(parseRanges(b"bytes=" + b",".join([b"0-0"] * 5), 100, 4))

    def test_coalesce(self) -> None:
        """Overlapping or touching ranges are sorted and merged."""
        self.assertEqual(
            parseRanges(b"bytes=50-59,0-9,10-19", 100), [(0, 20), (50, 10)]
        )
        self.assertEqual(parseRanges(b"bytes=0-0,0-0,0-0", 100), [(0, 1)])
        self.assertEqual(parseRanges(b"bytes=50-59,0-9", 100), [(50, 10), (0, 10)])


class AcceptEncodingTests(SynchronousTestCase):
    def test_accepts(self) -> None:
        """Codings with q > 0 are accepted; '*' covers unlisted ones."""
        self.assertTrue(acceptsEncoding(b"gzip, deflate, br", b"gzip"))
        self.assertTrue(acceptsEncoding(b"x-gzip", b"gzip"))
        self.assertTrue(acceptsEncoding(b"GZIP;q=0.5", b"gzip"))
        self.assertTrue(acceptsEncoding(b"br, *;q=0.1", b"gzip"))
        self.assertFalse(acceptsEncoding(b"gzip;q=0", b"gzip"))
        self.assertFalse(acceptsEncoding(b"*, gzip;q=0", b"gzip"))
        self.assertFalse(acceptsEncoding(b"br", b"gzip"))
        self.assertFalse(acceptsEncoding(None, b"gzip"))
        self.assertFalse(acceptsEncoding(b"gzip;q=bogus", b"gzip"))
