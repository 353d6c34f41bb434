"""
Tests for L{appnet.dns.zonefile}: the BIND zone file syntax, and errors
that name file, line and problem.
"""

from __future__ import annotations

import os
import socket

from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns.errors import ZoneError
from appnet.dns.records import CAA, Record_CAA
from appnet.dns.zonefile import ZoneRecord, parseTTL, parseZone

BASIC = """\
$ORIGIN hamburger.edu.
$TTL 1h
@       IN SOA  ns1 hostmaster (
                2024010101 ; serial
                3h 15m 1w 5m )
        IN NS   ns1
        NS      ns2.example.net.
        MX      10 mx1
        300 IN MX 20 mx2.hamburger.edu.
www     IN 60 A 192.0.2.1
        AAAA    2001:db8::1
mail    CNAME   www
_smtp._tcp SRV  10 60 25 mail
txt     TXT     "v=spf1 mx -all" "a; b ; c" unquoted
caa     CAA     128 issue "ca.example.net; account=1"
ptr     PTR     www
"""


def records(text: str, origin: bytes = b"") -> list[ZoneRecord]:
    return parseZone(text, "test.zone", origin)


def by(rs: list[ZoneRecord], name: bytes, type: int) -> list[ZoneRecord]:
    return [r for r in rs if r.name == name and r.type == type]


class SyntaxTests(SynchronousTestCase):
    """
    What a zone file may say, and what it means.
    """

    def setUp(self) -> None:
        self.records = records(BASIC)

    def test_originAndAt(self) -> None:
        """C{@} is the origin; the SOA's names are relative to it."""
        soa = by(self.records, b"hamburger.edu", dns.SOA)[0]
        self.assertEqual(soa.payload.mname.name, b"ns1.hamburger.edu")
        self.assertEqual(soa.payload.rname.name, b"hostmaster.hamburger.edu")

    def test_parenthesesAcrossLines(self) -> None:
        """Parentheses continue an entry; comments inside are dropped."""
        soa = by(self.records, b"hamburger.edu", dns.SOA)[0].payload
        self.assertEqual(
            (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
            (2024010101, 10800, 900, 604800, 300),
        )
        self.assertEqual(by(self.records, b"hamburger.edu", dns.SOA)[0].line, 3)

    def test_blankOwnerIsPreviousOwner(self) -> None:
        """
        A line starting with blanks belongs to the previous record's owner,
        not the origin.
        """
        aaaa = by(self.records, b"www.hamburger.edu", dns.AAAA)
        self.assertEqual(len(aaaa), 1)
        self.assertEqual(
            socket.inet_ntop(socket.AF_INET6, aaaa[0].payload.address), "2001:db8::1"
        )

    def test_ttlAndClassInEitherOrder(self) -> None:
        """C{300 IN MX} and C{IN 60 A} both parse; units work."""
        mx = by(self.records, b"hamburger.edu", dns.MX)
        self.assertEqual([r.ttl for r in mx], [3600, 300])
        self.assertEqual(by(self.records, b"www.hamburger.edu", dns.A)[0].ttl, 60)
        self.assertEqual(parseTTL("1h30m"), 5400)
        self.assertEqual(parseTTL("2W"), 1209600)

    def test_defaultTTL(self) -> None:
        """Records without a TTL take $TTL."""
        self.assertEqual(
            by(self.records, b"mail.hamburger.edu", dns.CNAME)[0].ttl, 3600
        )

    def test_relativeNamesInData(self) -> None:
        """Names inside record data are completed with the origin."""
        self.assertEqual(
            by(self.records, b"mail.hamburger.edu", dns.CNAME)[0].payload.name.name,
            b"www.hamburger.edu",
        )
        mx = by(self.records, b"hamburger.edu", dns.MX)
        self.assertEqual(
            [m.payload.name.name for m in mx],
            [b"mx1.hamburger.edu", b"mx2.hamburger.edu"],
        )
        ns = by(self.records, b"hamburger.edu", dns.NS)
        self.assertEqual(ns[1].payload.name.name, b"ns2.example.net")
        srv = by(self.records, b"_smtp._tcp.hamburger.edu", dns.SRV)[0].payload
        self.assertEqual(
            (srv.priority, srv.weight, srv.port, srv.target.name),
            (10, 60, 25, b"mail.hamburger.edu"),
        )
        ptr = by(self.records, b"ptr.hamburger.edu", dns.PTR)[0].payload
        self.assertEqual(ptr.name.name, b"www.hamburger.edu")

    def test_quotedText(self) -> None:
        """
        Quoted strings keep spaces and semicolons; each quoted or bare
        word is one character-string.
        """
        txt = by(self.records, b"txt.hamburger.edu", dns.TXT)[0].payload
        self.assertEqual(txt.data, [b"v=spf1 mx -all", b"a; b ; c", b"unquoted"])

    def test_escapes(self) -> None:
        """C{\\"} and C{\\DDD} inside strings."""
        [txt] = records('x.example. 60 TXT "say \\"hi\\"\\059 \\255"\n')
        self.assertEqual(txt.payload.data, [b'say "hi"; \xff'])

    def test_caa(self) -> None:
        """CAA: flags, tag, quoted value."""
        caa = by(self.records, b"caa.hamburger.edu", CAA)[0].payload
        self.assertEqual(caa, Record_CAA(128, b"issue", b"ca.example.net; account=1"))

    def test_genericForm(self) -> None:
        """RFC 3597: unknown types, and known types, in C{\\# len hex}."""
        unknown, a = records(
            "x.example. 60 TYPE65280 \\# 3 abcdef\nx.example. 60 A \\# 4 C0000201\n"
        )
        self.assertEqual(unknown.type, 65280)
        self.assertEqual(unknown.payload.data, b"\xab\xcd\xef")
        self.assertEqual(a.payload.dottedQuad(), "192.0.2.1")

    def test_originFromCaller(self) -> None:
        """Without $ORIGIN, names are relative to the given origin."""
        rs = records("www 60 A 192.0.2.1\n", b"crepes.fr")
        self.assertEqual(rs[0].name, b"www.crepes.fr")

    def test_relativeOrigin(self) -> None:
        """A relative $ORIGIN is relative to the current one."""
        rs = records("$ORIGIN sub\nwww 60 A 192.0.2.1\n", b"crepes.fr")
        self.assertEqual(rs[0].name, b"www.sub.crepes.fr")

    def test_caseFolded(self) -> None:
        """Names are folded to lower case."""
        rs = records("WWW.Example.ORG. 60 CNAME Other.EXAMPLE.org.\n")
        self.assertEqual(rs[0].name, b"www.example.org")
        self.assertEqual(rs[0].payload.name.name, b"other.example.org")

    def test_include(self) -> None:
        """
        $INCLUDE reads a file relative to the including one, with its own
        origin; the origin is restored afterwards.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "hosts.inc"), "w") as f:
            f.write("a 60 A 192.0.2.1\nb 60 A 192.0.2.2\n")
        main = os.path.join(directory, "main.zone")
        text = "$ORIGIN example.org.\n$INCLUDE hosts.inc sub\nc 60 A 192.0.2.3\n"
        rs = parseZone(text, main, b"")
        self.assertEqual(
            [r.name for r in rs],
            [b"a.sub.example.org", b"b.sub.example.org", b"c.example.org"],
        )
        self.assertEqual(rs[0].filename, os.path.join(directory, "hosts.inc"))


class ErrorTests(SynchronousTestCase):
    """
    Every problem names the file and line.
    """

    def fails(self, text: str, line: int, fragment: str) -> ZoneError:
        with self.assertRaises(ZoneError) as caught:
            records(text, b"example.org")
        error = caught.exception
        self.assertEqual((error.filename, error.line), ("test.zone", line))
        self.assertIn(fragment, error.problem)
        self.assertTrue(str(error).startswith(f"test.zone:{line}: "))
        return error

    def test_unknownType(self) -> None:
        """An unknown type names itself and its line."""
        self.fails("$TTL 60\n\nwww IN BOGUS 1\n", 3, "unknown record type 'BOGUS'")

    def test_badAddress(self) -> None:
        """A malformed IPv4 address is an error."""
        self.fails("www 60 A 192.0.2.300\n", 1, "bad IPv4 address")

    def test_badIPv6(self) -> None:
        """A malformed IPv6 address is an error."""
        self.fails("www 60 AAAA 2001:db8::g\n", 1, "bad IPv6 address")

    def test_unterminatedQuote(self) -> None:
        """A quote left open is an error on its line."""
        self.fails('$TTL 60\nt TXT "open\n', 2, "unterminated quoted string")

    def test_unclosedParenthesis(self) -> None:
        """An unclosed parenthesis names the line it opened on."""
        self.fails("$TTL 60\n@ SOA ns host ( 1 2\n3 4 5\n", 2, "'(' is never closed")

    def test_extraData(self) -> None:
        """Data beyond a type's fields is an error."""
        self.fails("$TTL 60\nmx MX 10 mx1 extra\n", 2, "unexpected 'extra'")

    def test_missingData(self) -> None:
        """Too few fields for a type is an error."""
        self.fails("$TTL 60\nmx MX 10\n", 2, "MX needs 2 fields, got 1")

    def test_noTTL(self) -> None:
        """A record with no TTL, no $TTL and no SOA before it is an error."""
        self.fails("www A 192.0.2.1\n", 1, "no TTL")

    def test_noOwner(self) -> None:
        """A blank owner with no previous record is an error."""
        self.fails("  60 A 192.0.2.1\n", 1, "no previous owner")

    def test_otherClass(self) -> None:
        """Only class IN is served."""
        self.fails("www 60 CH A 192.0.2.1\n", 1, "class CH is not served")

    def test_longString(self) -> None:
        """A character-string over 255 bytes is an error."""
        self.fails(f'$TTL 1\nt TXT "{"x" * 256}"\n', 2, "at most 255 bytes")

    def test_longLabel(self) -> None:
        """A label over 63 bytes is an error."""
        self.fails(f"{'a' * 64} 60 A 192.0.2.1\n", 1, "longer than 63")

    def test_emptyLabel(self) -> None:
        """An empty label (two dots) is an error."""
        self.fails("a..b 60 A 192.0.2.1\n", 1, "empty label")

    def test_badDirective(self) -> None:
        """Directives other than $ORIGIN, $TTL, $INCLUDE are errors."""
        self.fails("$GENERATE 1-10 x A 1.2.3.$\n", 1, "unsupported directive")

    def test_missingInclude(self) -> None:
        """A missing include names the included file."""
        with self.assertRaises(ZoneError) as caught:
            records("$INCLUDE /nonexistent/file.inc\n")
        self.assertEqual(caught.exception.filename, "/nonexistent/file.inc")
        self.assertIn("cannot read", caught.exception.problem)

    def test_includeLoop(self) -> None:
        """An include loop stops at the depth limit."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "loop.zone")
        with open(path, "w") as f:
            f.write("$INCLUDE loop.zone\n")
        with self.assertRaises(ZoneError) as caught:
            parseZone("$INCLUDE loop.zone\n", path, b"")
        self.assertIn("nested too deeply", caught.exception.problem)
