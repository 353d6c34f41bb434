"""
Tests for L{appnet.ftp.server}: every command and its reply codes, driven
through the real protocol with L{StringTransport}s and a
L{MemoryReactorClock} (no sockets, no sleeps).
"""

from __future__ import annotations

import errno
import os
import re
import time

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import fail
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from appnet.ftp._files import _final, inline, writeAll
from appnet.ftp.data import DataConnection
from appnet.ftp.server import COMMANDS, ServerSettings
from tests.ftp.helpers import ALICE, PASSWORD, Harness


class _Base(SynchronousTestCase):
    def harness(self, **kwargs: object) -> Harness:
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        return Harness(root, **kwargs)  # type: ignore[arg-type]

    def setUp(self) -> None:
        self.h = self.harness()

    def assertReply(self, line: str, code: int, *fragments: str) -> None:
        reply = self.h.send(line)
        self.assertTrue(reply, f"no reply to {line!r}")
        self.assertEqual(int(reply[-1][:3]), code, reply)
        for fragment in fragments:
            self.assertIn(fragment, "\n".join(reply))
        self.assertNoRepr(reply)

    def assertNoRepr(self, lines: list[str]) -> None:
        text = "\n".join(lines)
        for leak in ("['", "Traceback", "Failure", " object at ", "Error(", "<"):
            self.assertNotIn(leak, text, f"Python text leaked into {lines}")
        self.assertIsNone(
            re.search(r"(^|[\s(=:])b['\"]", text), f"bytes repr in {lines}"
        )


class LoginTests(_Base):
    """
    The greeting and the login states.
    """

    def test_greeting(self) -> None:
        """A connection is greeted with 220 and the host name."""
        self.assertEqual(self.h.received(), ["220 ftp.test appnet FTP server ready"])

    def test_login(self) -> None:
        """USER then PASS logs in (331, 230) and lands in /."""
        self.h.received()
        self.assertReply(f"USER {ALICE}", 331, ALICE)
        self.assertReply(f"PASS {PASSWORD}", 230, ALICE)
        self.assertReply("PWD", 257, '"/"')
        self.assertTrue(os.path.isdir(self.h.home), "home created at first login")

    def test_badPassword(self) -> None:
        """A wrong password gets 530 and the session stays logged out."""
        self.h.received()
        self.h.send(f"USER {ALICE}")
        self.assertReply("PASS wrong", 530, "Login incorrect")
        self.assertReply("PWD", 530)

    def test_unknownUser(self) -> None:
        """An unknown user gets the same 331 and 530 as a wrong password."""
        self.h.received()
        self.assertReply("USER nobody@example.org", 331)
        self.assertReply("PASS whatever", 530, "Login incorrect")

    def test_throttled(self) -> None:
        """After too many failures from one address, logins are refused."""
        self.h.received()
        for _ in range(3):
            self.h.send(f"USER {ALICE}")
            self.h.send("PASS wrong")
        self.h.send(f"USER {ALICE}")
        self.assertReply(f"PASS {PASSWORD}", 530, "Too many failed logins")

    def test_passFirst(self) -> None:
        """PASS without USER is a bad sequence (503)."""
        self.h.received()
        self.assertReply("PASS x", 503)

    def test_userTwice(self) -> None:
        """USER while logged in is refused (503): REIN first."""
        self.h.login()
        self.assertReply(f"USER {ALICE}", 503, "REIN")

    def test_beforeLogin(self) -> None:
        """
        File commands need a login (530); FEAT, SYST, NOOP, HELP, OPTS do
        not.
        """
        self.h.received()
        for command in ("CWD /", "LIST", "RETR x", "PASV", "MKD x", "STAT /"):
            self.assertReply(command, 530)
        self.assertReply("FEAT", 211)
        self.assertReply("SYST", 215, "UNIX Type: L8")
        self.assertReply("NOOP", 200)
        self.assertReply("HELP", 214)
        self.assertReply("OPTS UTF8 ON", 200)

    def test_plaintextFromElsewhere(self) -> None:
        """
        A client not on loopback must use TLS before sending a password;
        USER says so with 530 and no password is asked for.
        """
        h = self.harness(peer="192.0.2.10", local="192.0.2.1")
        h.received()
        reply = h.send(f"USER {ALICE}")
        self.assertEqual(reply[0][:3], "530")
        self.assertIn("TLS", reply[0])

    def test_requireTLS(self) -> None:
        """With require_tls, loopback clients must use TLS too."""
        h = self.harness(settings=ServerSettings(requireTLS=True))
        h.received()
        self.assertEqual(h.send(f"USER {ALICE}")[0][:3], "530")

    def test_anonymousOff(self) -> None:
        """
        Anonymous logins fail unless enabled, at USER, with a reply that
        says anonymous FTP is off (no password asked, none counted).
        """
        self.h.received()
        lines = self.h.send("USER anonymous")
        self.assertEqual(
            lines, ["530 Anonymous FTP is off on this server; log in as a user"]
        )
        self.assertReply("USER ftp", 530)

    def test_anonymousReadOnly(self) -> None:
        """
        With anonymous logins on, anonymous reads the anonymous area and
        every change is refused with 550.
        """
        area = os.path.join(self.mktemp(), "pub")
        os.makedirs(area)
        with open(os.path.join(area, "readme"), "wb") as f:
            f.write(b"hello")
        h = self.harness(
            settings=ServerSettings(anonymous=True, passivePorts=(30000, 30000)),
            anonymousRoot=area,
        )
        h.received()
        self.assertEqual(h.send("USER anonymous")[0][:3], "331")
        self.assertEqual(h.send("PASS me@example.org")[0][:3], "230")
        for command in ("MKD x", "DELE readme", "RMD x", "RNFR readme"):
            reply = h.send(command)
            if reply[0].startswith("350"):
                reply = h.send("RNTO other")
            self.assertEqual(reply[-1][:3], "550", (command, reply))
        h.passive()
        self.assertEqual(h.send("STOR new")[0][:3], "550")
        h.passive()
        data, transport = h.acceptData()
        self.assertEqual(h.send("RETR readme")[0][:3], "125")
        self.assertEqual(transport.value(), b"hello")
        h.close(data)
        self.assertEqual(h.received()[0][:3], "226")
        self.assertFalse(os.path.exists(os.path.join(area, "new")))

    def test_acct(self) -> None:
        """ACCT is superfluous (202)."""
        self.h.login()
        self.assertReply("ACCT x", 202)

    def test_rein(self) -> None:
        """REIN logs out (220); the session can log in again."""
        self.h.login()
        self.assertReply("REIN", 220)
        self.assertReply("PWD", 530)
        self.h.login()

    def test_quit(self) -> None:
        """QUIT says 221 and closes the connection."""
        self.h.login()
        self.assertReply("QUIT", 221)
        self.assertTrue(self.h.transport.disconnecting)

    def test_idleTimeout(self) -> None:
        """An idle session gets 421 and is closed."""
        h = self.harness(settings=ServerSettings(idleTimeout=30))
        h.login()
        h.clock.advance(29)
        self.assertFalse(h.transport.disconnecting)
        h.clock.advance(2)
        self.assertEqual(h.received()[0][:3], "421")
        self.assertTrue(h.transport.disconnecting)


class CommandSyntaxTests(_Base):
    """
    Unknown, unsupported and malformed commands.
    """

    def test_unknown(self) -> None:
        """An unknown verb gets 500, naming it without Python quoting."""
        self.h.login()
        self.assertReply("FROB x", 500, "FROB: command not understood")

    def test_unsupported(self) -> None:
        """Known but unsupported commands get 502."""
        self.h.login()
        self.assertReply("SITE CHMOD 777 x", 502)
        self.assertReply("CCC", 502)

    def test_missingArgument(self) -> None:
        """A command missing its argument gets 501."""
        self.h.login()
        for verb in ("RETR", "CWD", "MKD", "DELE", "TYPE", "PORT", "REST"):
            self.assertReply(verb, 501)

    def test_twistedOnlyMethodsNotReachable(self) -> None:
        """
        Only commands this server defines are dispatched, not methods it
        inherits from Twisted without reviewing.
        """
        self.assertTrue({"RETR", "STOR", "MLSD", "ABOR", "AUTH"} <= COMMANDS)
        self.h.login()
        self.assertReply("TYPE_A", 500)

    def test_lineTooLong(self) -> None:
        """An over-long line gets 500 and the connection is closed."""
        self.h.login()
        self.h.protocol.dataReceived(b"NOOP " + b"x" * 10000)
        self.assertEqual(self.h.received()[-1][:3], "500")
        self.assertTrue(self.h.transport.disconnecting)

    def test_badNames(self) -> None:
        """A path holding NUL or CR is refused with 553."""
        self.h.login()
        self.assertReply(b"MKD a\x00b", 553, "file name not allowed")
        self.assertReply(b"MKD a\rb", 553)

    def test_bareLF(self) -> None:
        """Lines ending in LF alone are accepted too."""
        self.h.login()
        self.h.protocol.dataReceived(b"NOOP\n")
        self.assertEqual(self.h.received(), ["200 Command OK"])

    def test_telnetBeforeABOR(self) -> None:
        """Telnet IP and Synch (IAC IP IAC DM) before ABOR are ignored."""
        self.h.login()
        self.assertReply(b"\xff\xf4\xff\xf2ABOR", 225)

    def test_pipelined(self) -> None:
        """Pipelined commands are answered in order."""
        self.h.login()
        self.h.protocol.dataReceived(b"NOOP\r\nPWD\r\nSYST\r\n")
        self.assertEqual([r[:3] for r in self.h.received()], ["200", "257", "215"])

    def test_queueBounded(self) -> None:
        """
        While a command is still running, at most a few dozen lines queue
        up; then the control connection is paused.
        """
        from twisted.internet.defer import Deferred

        self.h.received()
        blocked: Deferred[None] = Deferred()
        self.h.factory.portalFor = lambda host: type(
            "Stuck", (), {"login": lambda *a: blocked}
        )()
        self.h.send(f"USER {ALICE}")
        self.h.protocol.dataReceived(b"PASS x\r\n" + b"NOOP\r\n" * 40)
        self.assertEqual(self.h.transport.producerState, "paused")
        blocked.errback(Failure(UnauthorizedLogin()))
        self.assertEqual(self.h.transport.producerState, "producing")
        self.assertEqual(self.h.received().count("200 Command OK"), 40)


class SimpleCommandTests(_Base):
    """
    Commands answered from the session's state.
    """

    def setUp(self) -> None:
        super().setUp()
        self.h.login()

    def test_feat(self) -> None:
        """FEAT lists what works, one per line after a space (RFC 2389)."""
        reply = self.h.send("FEAT")
        self.assertEqual(reply[0], "211-Features:")
        self.assertEqual(reply[-1], "211 End")
        features = [line.strip() for line in reply[1:-1]]
        for f in ("EPRT", "EPSV", "MDTM", "REST STREAM", "SIZE", "TVFS", "UTF8"):
            self.assertIn(f, features)
        self.assertIn("MLST type*;size*;modify*;perm*;unique*;", features)
        self.assertNotIn("AUTH TLS", features, "no TLS configured here")
        self.assertTrue(all(line.startswith(" ") for line in reply[1:-1]))

    def test_featWithTLS(self) -> None:
        """With a certificate, FEAT offers AUTH TLS, PBSZ and PROT."""
        h = self.harness(tlsOptions=object())
        h.received()
        features = [line.strip() for line in h.send("FEAT")[1:-1]]
        self.assertTrue({"AUTH TLS", "PBSZ", "PROT"} <= set(features))

    def test_opts(self) -> None:
        """OPTS UTF8 ON is accepted; OPTS MLST chooses the facts."""
        self.assertReply("OPTS UTF8 ON", 200)
        self.assertReply("OPTS UTF8 OFF", 504)
        self.assertReply("OPTS MLST size;type;", 200, "type;size;")
        self.h.write("f", b"12345")
        reply = self.h.send("MLST f")
        self.assertEqual(reply[1], " type=file;size=5; /f")
        self.assertIn(
            "MLST type*;size*;modify;perm;unique;",
            [x.strip() for x in self.h.send("FEAT")],
        )
        self.assertReply("OPTS FROB", 501)

    def test_type(self) -> None:
        """TYPE A and I (and L 8) are accepted; others get 504 or 501."""
        self.assertReply("TYPE A", 200)
        self.assertReply("TYPE A N", 200)
        self.assertReply("TYPE I", 200)
        self.assertReply("TYPE L 8", 200)
        self.assertReply("TYPE E", 504)
        self.assertReply("TYPE A T", 501)

    def test_modeStru(self) -> None:
        """MODE S and STRU F only (504 for the rest)."""
        self.assertReply("MODE S", 200)
        self.assertReply("MODE B", 504)
        self.assertReply("STRU F", 200)
        self.assertReply("STRU R", 504)

    def test_allo(self) -> None:
        """ALLO needs no storage allocation (202)."""
        self.assertReply("ALLO 1000", 202)

    def test_help(self) -> None:
        """HELP lists the commands; HELP verb says whether it is known."""
        reply = self.h.send("HELP")
        self.assertEqual(reply[-1], "214 Help OK")
        self.assertIn("MLSD", "\n".join(reply))
        self.assertReply("HELP RETR", 214)
        self.assertReply("HELP FROB", 502)

    def test_stat(self) -> None:
        """STAT without an argument describes the session (211)."""
        reply = self.h.send("STAT")
        self.assertEqual(reply[0], "211-FTP server status:")
        self.assertIn(f" Logged in as {ALICE}", reply)
        self.assertEqual(reply[-1], "211 End of status")

    def test_statPath(self) -> None:
        """STAT dir lists it over the control connection (212)."""
        self.h.write("d/one", b"1")
        reply = self.h.send("STAT d")
        self.assertEqual(reply[0][:4], "212-")
        self.assertTrue(reply[1].endswith(" one"))
        self.assertEqual(reply[-1][:4], "212 ")


class DirectoryTests(_Base):
    """
    CWD, CDUP, PWD, MKD, RMD, DELE, RNFR/RNTO, SIZE, MDTM, MLST.
    """

    def setUp(self) -> None:
        super().setUp()
        self.h.login()

    def test_cwd(self) -> None:
        """CWD enters a directory (250); PWD shows it; CDUP goes back up."""
        os.makedirs(self.h.path("a", "b"))
        self.assertReply("CWD a/b", 250, "/a/b")
        self.assertReply("PWD", 257, '"/a/b"')
        self.assertReply("CDUP", 250)
        self.assertReply("PWD", 257, '"/a"')
        self.assertReply("XCWD /", 250)

    def test_cwdMissing(self) -> None:
        """CWD to nothing, or to a file, gets 550."""
        self.h.write("f", b"")
        self.assertReply("CWD nope", 550, "/nope: no such file or directory")
        self.assertReply("CWD f", 550, "/f: not a directory")

    def test_mkd(self) -> None:
        """MKD makes a directory and answers 257 with its quoted path."""
        self.assertReply('MKD say "hi"', 257, '"/say ""hi""" created')
        self.assertTrue(os.path.isdir(self.h.path('say "hi"')))
        self.assertReply('MKD say "hi"', 550, "already exists")
        self.assertReply("MKD missing/child", 550)

    def test_rmd(self) -> None:
        """RMD removes an empty directory; not a full one or a file."""
        os.makedirs(self.h.path("empty"))
        self.h.write("full/x", b"x")
        self.assertReply("RMD empty", 250)
        self.assertReply("RMD full", 550, "not empty")
        self.assertReply("RMD full/x", 550, "not a directory")
        self.assertReply("RMD nope", 550)
        self.assertReply("RMD /", 550)

    def test_dele(self) -> None:
        """DELE removes a file (250), never a directory (550)."""
        self.h.write("f", b"x")
        os.makedirs(self.h.path("d"))
        self.assertReply("DELE f", 250)
        self.assertFalse(os.path.exists(self.h.path("f")))
        self.assertReply("DELE d", 550, "is a directory")
        self.assertReply("DELE f", 550, "no such file")

    def test_rename(self) -> None:
        """RNFR (350) then RNTO (250) renames."""
        self.h.write("old", b"x")
        self.assertReply("RNFR old", 350)
        self.assertReply("RNTO new", 250)
        self.assertEqual(self.h.read("new"), b"x")

    def test_renameSequence(self) -> None:
        """
        RNTO needs RNFR right before it (503); RNFR of nothing is 550.
        """
        self.h.write("old", b"x")
        self.assertReply("RNTO x", 503)
        self.assertReply("RNFR nope", 550)
        self.assertReply("RNTO x", 503)
        self.h.send("RNFR old")
        self.h.send("NOOP")
        self.assertReply("RNTO x", 503)

    def test_size(self) -> None:
        """SIZE of a file (213), not of a directory or in ASCII mode (550)."""
        self.h.write("f", b"12345")
        os.makedirs(self.h.path("d"))
        self.assertReply("SIZE f", 213)
        self.assertEqual(self.h.replies[-1], "213 5")
        self.assertReply("SIZE d", 550)
        self.assertReply("SIZE nope", 550)
        self.h.send("TYPE A")
        self.assertReply("SIZE f", 550, "ASCII")

    def test_mdtm(self) -> None:
        """MDTM gives the modification time in UTC (213 YYYYMMDDHHMMSS)."""
        path = self.h.write("f", b"")
        stamp = time.mktime((2021, 3, 4, 5, 6, 7, 0, 0, 0)) - time.timezone
        os.utime(path, (stamp, stamp))
        self.assertReply("MDTM f", 213)
        self.assertEqual(self.h.replies[-1], "213 20210304050607")

    def test_mlst(self) -> None:
        """MLST describes one path with RFC 3659 facts (250)."""
        self.h.write("f", b"123")
        reply = self.h.send("MLST f")
        self.assertEqual(reply[0], "250-Listing /f")
        self.assertTrue(
            re.match(
                r"^ type=file;size=3;modify=\d{14};perm=adfrw;unique=[0-9a-fg]+; /f$",
                reply[1],
            ),
            reply[1],
        )
        self.assertEqual(reply[2], "250 End")
        self.assertReply("MLST nope", 550)

    def test_utf8Names(self) -> None:
        """Names are UTF-8 both ways (RFC 2640)."""
        self.assertReply("MKD café", 257, '"/café"')
        self.assertTrue(os.path.isdir(self.h.path("café")))

    def test_undecodableNames(self) -> None:
        """
        A name that is not UTF-8 reaches the disk as the same bytes, and
        comes back the same.
        """
        self.h.send(b"MKD caf\xe9")
        self.assertTrue(os.path.isdir(os.path.join(self.h.home.encode(), b"caf\xe9")))
        self.assertIn(b'257 "/caf\xe9" created', self.h.transport.value())


class JailTests(_Base):
    """
    Nothing outside the home can be reached: C{..}, absolute paths, encoded
    names and symbolic links all end in 550.
    """

    def setUp(self) -> None:
        super().setUp()
        self.h.login()
        self.outside = os.path.join(self.h.root, "secret")
        with open(self.outside, "wb") as f:
            f.write(b"secret")
        other = os.path.join(self.h.homes, "bob@example.org")
        os.makedirs(other)
        with open(os.path.join(other, "mail"), "wb") as f:
            f.write(b"bob's")

    def test_dotDot(self) -> None:
        """C{..} above the home is refused, whatever the depth."""
        self.assertReply("CWD ..", 550, "outside your home")
        self.assertReply("CWD ../..", 550)
        self.assertReply("CDUP", 550)
        self.assertReply("SIZE ../secret", 550)
        self.assertReply("SIZE ../bob@example.org/mail", 550)
        self.assertReply("MKD ../../evil", 550)
        self.assertReply("RNFR ../bob@example.org/mail", 550)

    def test_absolute(self) -> None:
        """An absolute path starts at the home, not at the disk's root."""
        self.assertReply("SIZE /etc/passwd", 550, "no such file")
        self.assertReply(f"SIZE {self.outside}", 550)

    def test_encoded(self) -> None:
        """Percent-encoded or overlong dots are names, not parent links."""
        self.assertReply("CWD %2e%2e", 550, "no such file")
        self.assertReply(b"CWD \xc0\xae\xc0\xae", 550, "no such file")
        self.assertReply("CWD ..%2f..", 550, "no such file")

    def test_symlinkOut(self) -> None:
        """
        A symbolic link leading out of the home can be neither read,
        entered, listed, nor written through.
        """
        os.symlink(self.outside, self.h.path("link"))
        os.symlink(self.h.root, self.h.path("dirlink"))
        self.assertReply("SIZE link", 550, "outside your home")
        self.assertReply("CWD dirlink", 550, "outside your home")
        self.assertReply("MKD dirlink/x", 550)
        self.assertReply("RNFR dirlink/secret", 550)
        self.h.passive()
        self.assertReply("RETR link", 550)
        self.h.passive()
        self.assertReply("STOR dirlink/new", 550)
        self.h.passive()
        self.assertReply("LIST dirlink", 550)
        self.assertFalse(os.path.exists(os.path.join(self.h.root, "new")))
        self.assertEqual(open(self.outside, "rb").read(), b"secret")

    def test_symlinkNotFollowedForWrites(self) -> None:
        """
        Uploading onto a symbolic link is refused, even one pointing inside
        the home.
        """
        self.h.write("target", b"keep")
        os.symlink(self.h.path("target"), self.h.path("alias"))
        self.h.passive()
        self.assertReply("STOR alias", 550)
        self.h.passive()
        self.assertReply("APPE alias", 550)
        self.assertEqual(self.h.read("target"), b"keep")

    def test_symlinkInside(self) -> None:
        """A link to something inside the home works like its target."""
        self.h.write("real/f", b"x")
        os.symlink(self.h.path("real"), self.h.path("alias"))
        self.assertReply("CWD alias", 250)
        self.assertReply("SIZE f", 213)

    def test_listingHidesEscapes(self) -> None:
        """LIST leaves out links that lead outside the home."""
        os.symlink(self.outside, self.h.path("link"))
        self.h.write("visible", b"")
        self.h.passive()
        data, transport = self.h.acceptData()
        self.h.send("NLST")
        self.h.close(data)
        self.assertEqual(transport.value(), b"visible\r\n")


class DataChannelTests(_Base):
    """
    PASV, EPSV, PORT, EPRT, and the rules for who may connect where.
    """

    def setUp(self) -> None:
        super().setUp()
        self.h.login()

    def test_pasv(self) -> None:
        """
        PASV listens in the range on the control connection's local address
        and says where (227).
        """
        self.assertReply("PASV", 227, "(127,0,0,1,117,48)")
        port, factory, backlog, interface = self.h.clock.tcpServers[-1]
        self.assertEqual((port, interface), (30000, "127.0.0.1"))

    def test_pasvPublicAddress(self) -> None:
        """
        Behind NAT, PASV announces the configured public address to
        clients that are not on loopback.
        """
        area = self.mktemp()
        os.makedirs(area)
        h = self.harness(
            peer="192.0.2.10",
            local="10.0.0.2",
            anonymousRoot=area,
            settings=ServerSettings(
                anonymous=True, publicAddress="203.0.113.7", passivePorts=(30000, 30000)
            ),
        )
        h.received()
        h.send("USER anonymous")
        h.send("PASS x")
        self.assertIn("(203,0,113,7,117,48)", h.send("PASV")[0])
        self.assertEqual(h.clock.tcpServers[-1][3], "10.0.0.2")

    def test_pasvIPv6(self) -> None:
        """Over IPv6, PASV is refused (502) and EPSV works."""
        h = self.harness(peer="::1", local="::1")
        h.login()
        self.assertEqual(h.send("PASV")[0][:3], "502")
        self.assertEqual(
            h.send("EPSV")[0], "229 Entering Extended Passive Mode (|||30000|)"
        )
        self.assertEqual(h.clock.tcpServers[-1][3], "::1")
        self.assertEqual(h.send("EPSV 1")[0][:3], "522")

    def test_epsv(self) -> None:
        """EPSV answers 229 with the port; EPSV ALL forbids PORT and PASV."""
        self.assertReply("EPSV", 229, "(|||30000|)")
        self.assertReply("EPSV 1", 229)
        self.assertReply("EPSV 2", 522, "(1)")
        self.assertReply("EPSV x", 501)
        self.assertReply("EPSV ALL", 200)
        self.assertReply("PASV", 503)
        self.assertReply("PORT 127,0,0,1,200,0", 503)
        self.assertReply("EPRT |1|127.0.0.1|51200|", 503)
        self.assertReply("EPSV", 229)

    def test_passiveOnlyFromClient(self) -> None:
        """
        A passive data connection from any host but the client's is
        refused; the client's own still gets in.
        """
        factory = self.h.passive()
        self.assertIsNone(factory.buildProtocol(self.h._address("192.0.2.66", 1)))
        data, transport = self.h.acceptData(factory)
        self.assertIsNotNone(data)
        self.assertIsNone(factory.buildProtocol(self.h._address("127.0.0.1", 2)))

    def test_portOwnAddressOnly(self) -> None:
        """PORT and EPRT to anyone but the client are refused (501)."""
        self.assertReply("PORT 10,0,0,1,200,0", 501, "your own address")
        self.assertReply("EPRT |1|192.0.2.1|51200|", 501)
        self.assertReply("EPRT |2|::1|51200|", 501)
        self.assertEqual(self.h.clock.tcpClients, [])

    def test_portPrivileged(self) -> None:
        """PORT to a port below 1024 is refused (FTP bounce to services)."""
        self.assertReply("PORT 127,0,0,1,0,25", 501, "privileged")

    def test_portSyntax(self) -> None:
        """Malformed PORT and EPRT arguments get 501; unknown families 522."""
        self.assertReply("PORT 1,2,3", 501)
        self.assertReply("PORT 127,0,0,1,300,0", 501)
        self.assertReply("EPRT nonsense", 501)
        self.assertReply("EPRT |3|127.0.0.1|51200|", 522)
        self.assertReply("EPRT |1|::1|51200|", 501)

    def test_activeConnectsLater(self) -> None:
        """
        PORT answers 200 at once; the server connects, from its own
        address, only when a transfer needs it.
        """
        self.h.write("f", b"data")
        self.assertReply("PORT 127,0,0,1,200,0", 200)
        self.assertEqual(self.h.clock.tcpClients, [])
        self.assertEqual(self.h.send("RETR f"), [])
        host, port, _, _, bind = self.h.clock.tcpClients[-1]
        self.assertEqual((host, port, bind), ("127.0.0.1", 51200, ("127.0.0.1", 0)))
        data, transport = self.h.connectActive()
        self.assertEqual(self.h.received()[0][:3], "150")
        self.assertEqual(transport.value(), b"data")
        self.h.close(data)
        self.assertEqual(self.h.received()[0][:3], "226")

    def test_eprt(self) -> None:
        """EPRT to the client's own address works like PORT."""
        self.assertReply("EPRT |1|127.0.0.1|51200|", 200)

    def test_commandsWhilePending(self) -> None:
        """
        After PASV, commands keep being answered before any data
        connection arrives (Twisted's server stalls here: issue 4819).
        """
        self.h.write("f", b"0123456789")
        self.h.passive()
        self.assertReply("NOOP", 200)
        self.assertReply("REST 4", 350)
        self.assertReply("PWD", 257)
        data, transport = self.h.acceptData()
        self.assertEqual(self.h.send("RETR f")[0][:3], "125")
        self.assertEqual(transport.value(), b"456789")
        self.h.close(data)
        self.assertEqual(self.h.received()[0][:3], "226")

    def test_noConnection425(self) -> None:
        """
        A data connection that never comes gives one 425, and the replies
        after it stay in step.
        """
        self.h.write("f", b"x")
        self.h.passive()
        self.assertEqual(self.h.send("RETR f"), [])
        self.h.protocol.dataReceived(b"NOOP\r\n")
        self.assertEqual(self.h.received(), [])
        self.h.clock.advance(10)
        self.assertEqual([r[:3] for r in self.h.received()], ["425", "200"])
        self.assertReply("PWD", 257)

    def test_activeRefused(self) -> None:
        """An active connection the client refuses gives 425."""
        self.h.write("f", b"x")
        self.h.send("PORT 127,0,0,1,200,0")
        self.h.send("RETR f")
        _, _, factory, _, _ = self.h.clock.tcpClients[-1]
        from twisted.internet.error import ConnectionRefusedError

        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertEqual(self.h.received()[0][:3], "425")

    def test_noChannel(self) -> None:
        """A transfer without PORT or PASV first gets 425."""
        self.h.write("f", b"x")
        self.assertReply("RETR f", 425, "PASV")
        self.assertReply("LIST", 425)
        self.assertReply("STOR g", 425)

    def test_channelUsedOnce(self) -> None:
        """Each transfer needs its own PASV."""
        self.h.write("f", b"x")
        self.h.passive()
        data, _ = self.h.acceptData()
        self.h.send("RETR f")
        self.h.close(data)
        self.h.received()
        self.assertReply("RETR f", 425)

    def test_pasvReplacesChannel(self) -> None:
        """A second PASV closes the first listener."""
        self.h.passive()
        first = self.h.clock.tcpServers[-1][1]
        self.h.passive()
        self.assertIsNone(first.buildProtocol(self.h._address("127.0.0.1", 9)))


class TransferTests(_Base):
    """
    RETR, STOR, APPE, STOU, REST, LIST, NLST, MLSD, TYPE A, ABOR, STAT.
    """

    def setUp(self) -> None:
        super().setUp()
        self.h.login()

    def download(self, command: str) -> tuple[list[str], bytes]:
        self.h.passive()
        data, transport = self.h.acceptData()
        reply = self.h.send(command)
        if reply and reply[-1][:1] in "45":
            return reply, b""
        self.assertTrue(transport.disconnecting, reply)
        self.h.close(data)
        return reply + self.h.received(), transport.value()

    def test_retr(self) -> None:
        """RETR sends the file: 125 (connection open), data, 226."""
        content = os.urandom(700_000)
        self.h.write("f.bin", content)
        reply, data = self.download("RETR f.bin")
        self.assertEqual(
            reply[0],
            "125 Opening BINARY mode data connection for /f.bin (700000 bytes)",
        )
        self.assertEqual(reply[-1], "226 Transfer complete; 700000 bytes sent")
        self.assertEqual(data, content)

    def test_retrErrors(self) -> None:
        """RETR of nothing or of a directory: 550 before any data flows."""
        os.makedirs(self.h.path("d"))
        self.assertEqual(self.download("RETR nope")[0][-1][:3], "550")
        self.assertEqual(self.download("RETR d")[0][-1], "550 /d: is a directory")

    def test_retrRest(self) -> None:
        """REST n then RETR sends from byte n; beyond the end is 554."""
        self.h.write("f", b"0123456789")
        self.h.send("REST 7")
        self.assertEqual(self.download("RETR f")[1], b"789")
        self.h.send("REST 11")
        self.assertEqual(self.download("RETR f")[0][-1][:3], "554")
        self.assertEqual(self.download("RETR f")[1], b"0123456789", "REST was used up")

    def test_retrAscii(self) -> None:
        """In TYPE A, line ends go out as CRLF."""
        self.h.write("t", b"a\nb\r\nc\n")
        self.h.send("TYPE A")
        self.assertEqual(self.download("RETR t")[1], b"a\r\nb\r\nc\r\n")

    def test_stor(self) -> None:
        """STOR stores the data; 226 comes once it is on disk."""
        reply = self.h.upload("STOR new.bin", b"payload")
        self.assertEqual(reply[0], "125 Ready to receive /new.bin")
        self.assertEqual(reply[-1], "226 Transfer complete; 7 bytes stored as /new.bin")
        self.assertEqual(self.h.read("new.bin"), b"payload")
        self.assertEqual(os.listdir(self.h.staging), [])

    def test_storReplaces(self) -> None:
        """STOR over an existing file replaces it."""
        self.h.write("f", b"old content")
        self.h.upload("STOR f", b"new")
        self.assertEqual(self.h.read("f"), b"new")

    def test_storFailedKeepsOld(self) -> None:
        """
        An upload whose data connection breaks gets 426 and leaves the old
        file as it was, with no temporary file left behind.
        """
        self.h.write("f", b"old content")
        reply = self.h.upload("STOR f", b"half of the new", clean=False)
        self.assertEqual(reply[-1][:3], "426")
        self.assertEqual(self.h.read("f"), b"old content")
        self.assertEqual(os.listdir(self.h.staging), [])

    def test_storInvisibleUntilDone(self) -> None:
        """While a STOR runs, the target still shows the old file."""
        self.h.write("f", b"old")
        self.h.passive()
        data, _ = self.h.acceptData()
        self.h.send("STOR f")
        data.dataReceived(b"new data")
        self.assertEqual(self.h.read("f"), b"old")
        self.h.close(data)
        self.assertEqual(self.h.read("f"), b"new data")

    def test_storEarlyData(self) -> None:
        """
        Data the client sends (and even closes) before the STOR is
        processed is kept.
        """
        self.h.passive()
        data, _ = self.h.acceptData()
        data.dataReceived(b"early ")
        data.dataReceived(b"bird")
        self.h.close(data)
        self.assertEqual(self.h.send("STOR f")[-1][:3], "226")
        self.assertEqual(self.h.read("f"), b"early bird")

    def test_storErrors(self) -> None:
        """STOR into a missing directory or onto a directory is 550."""
        os.makedirs(self.h.path("d"))
        self.assertEqual(self.h.upload("STOR nope/f", b"x")[0][:3], "550")
        self.assertEqual(self.h.upload("STOR d", b"x")[0][:3], "550")

    def test_storAscii(self) -> None:
        """In TYPE A, uploaded CRLF line ends are stored as LF."""
        self.h.send("TYPE A")
        self.h.passive()
        data, _ = self.h.acceptData()
        self.h.send("STOR t")
        data.dataReceived(b"a\r\nb\r")
        data.dataReceived(b"\nc\r")
        self.h.close(data)
        self.assertEqual(self.h.read("t"), b"a\nb\nc\r")

    def test_appe(self) -> None:
        """APPE appends (and creates a missing file)."""
        self.h.write("log", b"one\n")
        self.h.upload("APPE log", b"two\n")
        self.assertEqual(self.h.read("log"), b"one\ntwo\n")
        self.h.upload("APPE fresh", b"x")
        self.assertEqual(self.h.read("fresh"), b"x")

    def test_restStor(self) -> None:
        """REST n then STOR continues the file from byte n."""
        self.h.write("f", b"0123456789")
        self.h.send("REST 4")
        self.assertEqual(self.h.upload("STOR f", b"abc")[-1][:3], "226")
        self.assertEqual(self.h.read("f"), b"0123abc")
        self.h.send("REST 99")
        self.assertEqual(self.h.upload("STOR f", b"x")[0][:3], "554")

    def test_stou(self) -> None:
        """STOU stores under a new name and says which (150 FILE: name)."""
        self.h.write("report", b"first")
        reply = self.h.upload("STOU report", b"second")
        self.assertEqual(reply[0], "125 FILE: report.1")
        self.assertEqual(self.h.read("report.1"), b"second")
        self.assertEqual(self.h.read("report"), b"first")
        reply = self.h.upload("STOU", b"third")
        self.assertEqual(reply[0], "125 FILE: file")

    def test_stouFailed(self) -> None:
        """A failed STOU leaves no file behind."""
        self.h.upload("STOU x", b"part", clean=False)
        self.assertFalse(os.path.exists(self.h.path("x")))

    def test_quota(self) -> None:
        """
        An upload that would pass the account's quota is refused with 552
        and discarded.
        """
        h = self.harness(quota=100)
        h.write("have", b"x" * 60)
        h.login()
        h.passive()
        data, transport = h.acceptData()
        h.send("STOR big")
        data.dataReceived(b"y" * 50)
        self.assertEqual(transport.producerState, "stopped", "the upload was cut off")
        h.close(data)
        self.assertEqual(h.received()[-1][:3], "552")
        self.assertFalse(os.path.exists(h.path("big")))
        reply = h.upload("STOR small", b"z" * 40)
        self.assertEqual(reply[-1][:3], "226")

    def test_quotaReplacing(self) -> None:
        """Replacing a file only counts the difference against the quota."""
        h = self.harness(quota=100)
        h.write("f", b"x" * 90)
        h.login()
        reply = h.upload("STOR f", b"y" * 95)
        self.assertEqual(reply[-1][:3], "226")

    def test_defaultQuota(self) -> None:
        """An account without its own quota gets the configured default."""
        h = self.harness(defaultQuota=10)
        h.login()
        reply = h.upload("STOR f", b"y" * 11)
        self.assertEqual(reply[-1][:3], "552")

    def test_maxUpload(self) -> None:
        """A file larger than the upload limit is refused (552)."""
        h = self.harness(maxUpload=10)
        h.login()
        reply = h.upload("STOR f", b"y" * 11)
        self.assertIn("upload limit", reply[-1])
        self.assertFalse(os.path.exists(h.path("f")))

    def test_diskFull(self) -> None:
        """A full disk gets 452 and the old file stays."""

        def full(f, *args, **kwargs):  # type: ignore[no-untyped-def]
            if f in (writeAll, _final):
                return fail(OSError(errno.ENOSPC, "No space left on device"))
            return inline(f, *args, **kwargs)

        h = self.harness(run=full)
        h.login()
        h.write("f", b"old")
        reply = h.upload("STOR f", b"new")
        self.assertEqual(reply[-1][:3], "452")
        self.assertEqual(h.read("f"), b"old")

    def test_list(self) -> None:
        """LIST sends C{ls -l} lines; flags like -la are ignored."""
        self.h.write("a.txt", b"12345")
        os.makedirs(self.h.path("sub"))
        reply, data = self.download("LIST -la")
        self.assertEqual(reply[0][:3], "125")
        self.assertEqual(reply[-1][:3], "226")
        lines = data.decode().split("\r\n")
        self.assertTrue(
            re.match(
                r"^-rw-r--r-- +1 ftp +ftp +5 \w{3} [ \d]\d [\d:]{5} a\.txt$", lines[0]
            ),
            lines[0],
        )
        self.assertTrue(lines[1].startswith("drwx") and lines[1].endswith(" sub"))
        self.assertEqual(lines[2], "")

    def test_listFile(self) -> None:
        """LIST of a file lists that file under the name given."""
        self.h.write("d/a.txt", b"1")
        data = self.download("LIST d/a.txt")[1]
        self.assertTrue(data.endswith(b" d/a.txt\r\n"))

    def test_listMissing(self) -> None:
        """LIST of nothing is 550, before any data connection is used."""
        self.assertEqual(self.download("LIST nope")[0][-1][:3], "550")

    def test_nlst(self) -> None:
        """NLST sends names, for the working directory or an argument."""
        self.h.write("a", b"")
        self.h.write("d/b", b"")
        self.h.write("d/c.txt", b"")
        self.assertEqual(self.download("NLST")[1], b"a\r\nd\r\n")
        self.assertEqual(self.download("NLST d")[1], b"b\r\nc.txt\r\n")
        self.assertEqual(self.download("NLST d/*.txt")[1], b"d/c.txt\r\n")
        self.assertEqual(self.download("NLST d/b")[1], b"d/b\r\n")
        self.assertEqual(self.download("NLST *.none")[1], b"")

    def test_mlsd(self) -> None:
        """MLSD sends one facts line per entry; MLSD of a file is 501."""
        self.h.write("d/f", b"abc")
        data = self.download("MLSD d")[1].decode()
        self.assertTrue(
            re.match(
                r"^type=file;size=3;modify=\d{14};perm=adfrw;unique=\w+; f\r\n$", data
            ),
            data,
        )
        self.assertEqual(self.h.send("MLSD d/f")[-1][:3], "501")

    def test_abortUpload(self) -> None:
        """
        ABOR during an upload: the transfer gets 426, then ABOR 226, and
        nothing is stored.
        """
        self.h.passive()
        data, transport = self.h.acceptData()
        self.h.send("STOR f")
        data.dataReceived(b"partial")
        self.assertEqual(self.h.send("ABOR"), [])
        self.assertTrue(transport.disconnecting)
        data.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([r[:3] for r in self.h.received()], ["426", "226"])
        self.assertFalse(os.path.exists(self.h.path("f")))

    def test_abortWaiting(self) -> None:
        """ABOR while waiting for the data connection: 426 then 226."""
        self.h.write("f", b"x")
        self.h.passive()
        self.h.send("RETR f")
        self.assertEqual([r[:3] for r in self.h.send("ABOR")], ["426", "226"])
        self.assertReply("NOOP", 200)

    def test_abortNothing(self) -> None:
        """ABOR with no transfer: 225, and a pending PASV is dropped."""
        self.h.passive()
        self.assertReply("ABOR", 225)
        self.assertReply("RETR f", 425)

    def test_statDuringTransfer(self) -> None:
        """STAT during a transfer reports its progress at once."""
        self.h.passive()
        data, _ = self.h.acceptData()
        self.h.send("STOR f")
        data.dataReceived(b"12345")
        reply = self.h.send("STAT")
        self.assertIn(" STOR /f: 5 bytes transferred", reply)
        self.h.close(data)
        self.assertEqual(self.h.received()[-1][:3], "226")

    def test_statPathDuringTransfer(self) -> None:
        """
        STAT with a path during a transfer is 450 (RFC 959: not taken now,
        try again). STAT is answered out of turn while a transfer runs, to
        report on it; a path would make it file work beside the transfer,
        its reply racing the transfer's. The transfer goes on to its 226,
        and the same STAT afterwards is answered.
        """
        self.h.write("other", b"x")
        self.h.passive()
        data, _ = self.h.acceptData()
        self.h.send("STOR f")
        data.dataReceived(b"12345")
        reply = self.h.send("STAT other")
        self.assertEqual(reply, ["450 A transfer is in progress; try again after it"])
        self.h.close(data)
        self.assertEqual(self.h.received()[-1][:3], "226")
        self.assertEqual(self.h.read("f"), b"12345")
        self.assertEqual(self.h.send("STAT other")[-1][:3], "213")

    def test_quitDuringTransfer(self) -> None:
        """QUIT during a transfer aborts it (426), then says 221."""
        self.h.passive()
        data, _ = self.h.acceptData()
        self.h.send("STOR f")
        self.h.send("QUIT")
        data.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([r[:3] for r in self.h.received()], ["426", "221"])
        self.assertTrue(self.h.transport.disconnecting)

    def test_stall(self) -> None:
        """A transfer that makes no progress for the data timeout gets 426."""
        self.h.passive()
        data, transport = self.h.acceptData()
        self.h.send("STOR f")
        data.dataReceived(b"x")
        self.h.clock.advance(9)
        data.dataReceived(b"y")
        self.h.clock.advance(9)
        self.assertFalse(transport.disconnecting)
        self.h.clock.advance(2)
        self.assertTrue(transport.disconnecting)
        data.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.h.received()[-1][:3], "426")

    def test_rateLimit(self) -> None:
        """
        With a rate limit, a download pauses between chunks for as long as
        the limit asks.
        """
        h = self.harness(rateLimit=512 * 1024)
        h.login()
        h.write("f", b"x" * (1024 * 1024 + 10))
        h.passive()
        data, transport = h.acceptData()
        h.send("RETR f")
        sizes = [len(transport.value())]
        for _ in range(4):
            h.clock.advance(0.5)
            sizes.append(len(transport.value()))
        self.assertLess(sizes[0], 1024 * 1024)
        self.assertEqual(sizes[-1], 1024 * 1024 + 10)
        self.assertGreater(len(set(sizes)), 2, "data came out in steps")


BUSY = "file busy: an upload is changing it; try again later"


class BusyFileTests(_Base):
    """
    C{450} (RFC 959: file unavailable, busy): while one session's upload
    changes a file in place (APPE, REST + STOR), other sessions of the
    same user may not read, write, delete or rename it; an in-place
    upload may not start on a file being downloaded. Like vsftpd's
    C{lock_upload_files}, without the wait. A replacing STOR (written
    aside, renamed at the end) keeps the old file whole, so it makes
    nothing busy but an in-place upload of the same file.
    """

    def setUp(self) -> None:
        super().setUp()
        self.h.login()
        self.other = self.h.session()
        self.other.login()

    def start(self, h: Harness, command: str) -> tuple[DataConnection, list[str]]:
        """Open a data connection and send C{command} on C{h}."""
        data, _ = h.acceptData(h.passive())
        return data, h.send(command)

    def finish(self, h: Harness, data: DataConnection, clean: bool = True) -> str:
        """The client ends the data connection; return the final reply."""
        h.close(data, clean)
        return h.received()[-1]

    def appending(self, content: bytes = b"one\n") -> DataConnection:
        """Start an APPE of C{log} by the first session, C{content} sent."""
        self.h.write("log", b"start\n")
        data, reply = self.start(self.h, "APPE log")
        self.assertEqual(reply, ["125 Ready to receive /log"])
        data.dataReceived(content)
        return data

    def test_appendWhileAppending(self) -> None:
        """
        A second APPE of a file another session is appending to is 450;
        without it the two uploads' chunks interleave in the file and
        both are answered 226. Once the first ends, the second may go.
        """
        first = self.appending(b"A" * 300_000)
        second, reply = self.start(self.other, "APPE log")
        self.assertEqual(reply, [f"450 /log: {BUSY}"])
        first.dataReceived(b"A" * 300_000)
        self.assertEqual(self.finish(self.h, first)[:3], "226")
        self.assertEqual(self.h.read("log"), b"start\n" + b"A" * 600_000)
        second, reply = self.start(self.other, "APPE log")
        second.dataReceived(b"B")
        self.assertEqual(self.finish(self.other, second)[:3], "226")
        self.assertEqual(self.h.read("log"), b"start\n" + b"A" * 600_000 + b"B")

    def test_resumeWhileAppending(self) -> None:
        """
        REST + STOR (which truncates at the offset) of a file being
        appended to is 450, and the file is left as it was.
        """
        first = self.appending()
        self.other.send("REST 2")
        self.assertEqual(self.start(self.other, "STOR log")[1], [f"450 /log: {BUSY}"])
        self.assertEqual(self.finish(self.h, first)[:3], "226")
        self.assertEqual(self.h.read("log"), b"start\none\n")

    def test_storeWhileAppending(self) -> None:
        """
        STOR of a file being appended to is 450: its rename at the end
        would leave the APPE writing into a file no one can see.
        """
        first = self.appending()
        self.assertEqual(self.start(self.other, "STOR log")[1], [f"450 /log: {BUSY}"])
        self.assertEqual(self.finish(self.h, first)[:3], "226")
        self.assertEqual(self.h.read("log"), b"start\none\n")

    def test_appendWhileStoring(self) -> None:
        """
        APPE of a file another session is replacing with STOR is 450, for
        the same reason the other way round.
        """
        self.h.write("f", b"old")
        first, _ = self.start(self.h, "STOR f")
        first.dataReceived(b"new")
        self.assertEqual(self.start(self.other, "APPE f")[1], [f"450 /f: {BUSY}"])
        self.assertEqual(self.finish(self.h, first)[:3], "226")
        self.assertEqual(self.h.read("f"), b"new")

    def test_retrieveWhileAppending(self) -> None:
        """
        RETR of a file being appended to is 450, not the half-written
        file; after the upload, RETR sends all of it.
        """
        first = self.appending()
        data, transport = self.other.acceptData(self.other.passive())
        self.assertEqual(self.other.send("RETR log"), [f"450 /log: {BUSY}"])
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.finish(self.h, first)[:3], "226")
        data, transport = self.other.acceptData(self.other.passive())
        self.assertEqual(self.other.send("RETR log")[0][:3], "125")
        self.assertEqual(self.finish(self.other, data)[:3], "226")
        self.assertEqual(transport.value(), b"start\none\n")

    def test_appendWhileRetrieving(self) -> None:
        """
        APPE or REST + STOR of a file another session is downloading is
        450 (the download would send a torn file); a replacing STOR and
        DELE are not, and the download still sends the old file whole.
        """
        content = os.urandom(200_000)
        self.h.write("big", content)
        download, transport = self.h.acceptData(self.h.passive())
        self.assertEqual(self.h.send("RETR big")[0][:3], "125")
        self.assertEqual(self.start(self.other, "APPE big")[1], [f"450 /big: {BUSY}"])
        self.other.send("REST 10")
        self.assertEqual(self.start(self.other, "STOR big")[1], [f"450 /big: {BUSY}"])
        upload, reply = self.start(self.other, "STOR big")
        self.assertEqual(reply, ["125 Ready to receive /big"])
        upload.dataReceived(b"replacement")
        self.assertEqual(self.finish(self.other, upload)[:3], "226")
        self.assertEqual(self.other.send("DELE big"), ["250 /big deleted"])
        self.assertEqual(self.finish(self.h, download)[:3], "226")
        self.assertEqual(transport.value(), content)

    def test_deleteWhileAppending(self) -> None:
        """DELE of a file being appended to is 450; the file stays."""
        first = self.appending()
        self.assertEqual(self.other.send("DELE log"), [f"450 /log: {BUSY}"])
        self.assertEqual(self.finish(self.h, first)[:3], "226")
        self.assertEqual(self.h.read("log"), b"start\none\n")
        self.assertEqual(self.other.send("DELE log"), ["250 /log deleted"])

    def test_renameWhileAppending(self) -> None:
        """
        RNFR of a file being appended to, or of a directory holding it, is
        450; so is RNTO onto it.
        """
        os.makedirs(self.h.path("d"))
        self.h.write("other", b"x")
        data, _ = self.start(self.h, "APPE d/log")
        data.dataReceived(b"line\n")
        self.assertEqual(self.other.send("RNFR d/log"), [f"450 /d/log: {BUSY}"])
        self.assertEqual(self.other.send("RNFR d"), [f"450 /d: {BUSY}"])
        self.assertEqual(self.other.send("RNFR other"), ["350 Ready for RNTO"])
        self.assertEqual(self.other.send("RNTO d/log"), [f"450 /d/log: {BUSY}"])
        self.assertEqual(self.finish(self.h, data)[:3], "226")
        self.assertEqual(self.h.read("d/log"), b"line\n")
        self.assertEqual(self.h.read("other"), b"x")
        self.assertEqual(self.other.send("RNFR d")[0][:3], "350")
        self.assertEqual(self.other.send("RNTO e")[0][:3], "250")

    def test_releasedAfterFailure(self) -> None:
        """
        An in-place upload that fails (broken data connection: 426) or is
        aborted lets the file go at once.
        """
        first = self.appending()
        self.assertEqual(self.finish(self.h, first, clean=False)[:3], "426")
        second, reply = self.start(self.other, "APPE log")
        self.assertEqual(reply[0][:3], "125")
        self.other.send("ABOR")
        second.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([r[:3] for r in self.other.received()], ["426", "226"])
        self.assertEqual(self.h.send("DELE log")[0][:3], "250")

    def test_replacingMakesNothingBusy(self) -> None:
        """
        While one session replaces a file with STOR, others still read the
        old file, replace it themselves (the last to finish wins) or
        delete it: no 450.
        """
        self.h.write("f", b"old")
        first, _ = self.start(self.h, "STOR f")
        first.dataReceived(b"first")
        download, transport = self.other.acceptData(self.other.passive())
        self.assertEqual(self.other.send("RETR f")[0][:3], "125")
        self.assertEqual(self.finish(self.other, download)[:3], "226")
        self.assertEqual(transport.value(), b"old")
        second, _ = self.start(self.other, "STOR f")
        second.dataReceived(b"second")
        self.assertEqual(self.finish(self.other, second)[:3], "226")
        self.assertEqual(self.finish(self.h, first)[:3], "226")
        self.assertEqual(self.h.read("f"), b"first")
        self.assertEqual(self.other.send("DELE f")[0][:3], "250")

    def test_sameFileThroughALink(self) -> None:
        """
        A name that reaches the busy file through a linked directory is
        the same file: RETR through it is 450 too.
        """
        os.makedirs(self.h.path("d"))
        os.symlink("d", self.h.path("alias"))
        data, _ = self.start(self.h, "APPE d/log")
        data.dataReceived(b"x")
        self.assertEqual(
            self.start(self.other, "RETR alias/log")[1], [f"450 /alias/log: {BUSY}"]
        )
        self.assertEqual(self.finish(self.h, data)[:3], "226")


class UploadRateTests(_Base):
    """
    The rate limit on uploads.
    """

    def test_uploadPaused(self) -> None:
        """
        An upload faster than the limit pauses the data connection until
        the limit allows more.
        """
        h = self.harness(rateLimit=1000)
        h.login()
        h.passive()
        data, transport = h.acceptData()
        h.send("STOR f")
        data.dataReceived(b"x" * 3000)
        self.assertEqual(transport.producerState, "paused")
        h.clock.advance(1.9)
        self.assertEqual(transport.producerState, "paused")
        h.clock.advance(0.2)
        self.assertEqual(transport.producerState, "producing")
        h.close(data)
        self.assertEqual(h.received()[-1][:3], "226")
        self.assertEqual(h.read("f"), b"x" * 3000)


class TLSCommandTests(_Base):
    """
    AUTH TLS, PBSZ and PROT (RFC 4217), as far as they work without a real
    handshake; the handshake itself is tested with real clients.
    """

    def setUp(self) -> None:
        self.h = self.harness(tlsOptions=object())
        self.h.received()

    def test_auth(self) -> None:
        """AUTH TLS answers 234 in the clear, then starts TLS."""
        self.assertReply("AUTH TLS", 234)
        self.assertIsNotNone(self.h.transport.tlsStarted)
        self.assertTrue(
            self.h.transport.beforeTLS.endswith(
                b"234 AUTH TLS ok; start the TLS handshake\r\n"
            )
        )

    def test_noInjection(self) -> None:
        """
        Commands pipelined after AUTH TLS in the same packet are discarded,
        not run inside the TLS session.
        """
        self.h.protocol.dataReceived(
            b"AUTH TLS\r\nUSER alice@example.org\r\nPASS x\r\n"
        )
        self.assertEqual([r[:3] for r in self.h.received()], ["234"])
        self.assertReply("PASS x", 503)

    def test_noInjectionQueued(self) -> None:
        """
        The same when AUTH waits behind a slow command: whatever was queued
        after it is dropped.
        """
        from twisted.internet.defer import Deferred

        blocked: Deferred[None] = Deferred()
        self.h.factory.portalFor = lambda host: type(
            "Stuck", (), {"login": lambda *a: blocked}
        )()
        self.h.send("USER x")
        self.h.protocol.dataReceived(b"PASS y\r\nAUTH TLS\r\nUSER evil\r\n")
        blocked.errback(Failure(UnauthorizedLogin()))
        self.assertEqual([r[:3] for r in self.h.received()], ["530", "234"])

    def test_authErrors(self) -> None:
        """Unknown mechanisms get 504, a second AUTH 503."""
        self.assertReply("AUTH KERBEROS", 504)
        self.assertReply("AUTH TLS", 234)
        self.assertReply("AUTH TLS", 503)

    def test_authWithoutCertificate(self) -> None:
        """Without TLS material, AUTH is not implemented (502)."""
        h = self.harness()
        h.received()
        self.assertEqual(h.send("AUTH TLS")[0][:3], "502")

    def test_pbszProt(self) -> None:
        """PBSZ needs AUTH, PROT needs PBSZ (503); then C and P work."""
        self.assertReply("PBSZ 0", 503)
        self.assertReply("PROT P", 503)
        self.h.send("AUTH TLS")
        self.assertReply("PROT P", 503)
        self.assertReply("PBSZ 0", 200, "PBSZ=0")
        self.assertReply("PROT S", 536)
        self.assertReply("PROT X", 504)
        self.assertReply("PROT C", 200)
        self.assertReply("PROT P", 200)

    def test_loginAfterAuth(self) -> None:
        """After AUTH TLS, a client elsewhere may log in."""
        h = self.harness(peer="192.0.2.10", local="192.0.2.1", tlsOptions=object())
        h.received()
        self.assertEqual(h.send(f"USER {ALICE}")[0][:3], "530")
        h.send("AUTH TLS")
        self.assertEqual(h.send(f"USER {ALICE}")[0][:3], "331")
        self.assertEqual(h.send(f"PASS {PASSWORD}")[0][:3], "230")

    def test_requireProtP(self) -> None:
        """With require_tls, PROT C is refused and transfers need PROT P."""
        h = self.harness(
            settings=ServerSettings(requireTLS=True, passivePorts=(30000, 30000)),
            tlsOptions=object(),
        )
        h.received()
        h.send("AUTH TLS")
        h.send("PBSZ 0")
        self.assertEqual(h.send("PROT C")[0][:3], "534")
        h.send(f"USER {ALICE}")
        h.send(f"PASS {PASSWORD}")
        h.send("EPSV")
        self.assertEqual(h.send("LIST")[0][:3], "521")


class HostileInputTests(_Base):
    """
    Input found by the robustness fuzzer (tests.robustness.test_ftp) that
    once raised, logged a failure or put control characters in a reply.
    """

    def test_restNotANumber(self) -> None:
        """
        REST with digits int() refuses (superscripts, thousands of them)
        gets 501, not a logged failure and 451.
        """
        self.h.login()
        for offset in ("\u00b2", "\u0663", "1" + "0" * 4400, "9" * 21):
            self.assertReply(f"REST {offset}", 501, "REST wants a byte offset")
        self.assertReply("REST 10", 350)

    def test_controlCharactersInArguments(self) -> None:
        """
        TYPE, MODE and STRU quote a bad argument with its control
        characters replaced.
        """
        self.h.login()
        self.assertReply(b"TYPE \x1b[2J", 504, "'?[2J'")
        self.assertReply(b"MODE \x07", 504, "'?'")
        self.assertReply(b"STRU \x16x", 504, "'?x'")

    def test_controlCharactersInNames(self) -> None:
        """
        A name holding control characters (ESC, BEL) is shown with them
        replaced in PWD, MKD, MLST and STAT replies; the data connection's
        listings keep it exact.
        """
        self.h.login()
        self.assertReply(b"MKD a\x1bb", 257, '"/a?b" created')
        self.assertReply(b"CWD a\x1bb", 250)
        self.assertReply("PWD", 257, '"/a?b" is')
        self.assertReply(b"MKD \x07", 257)
        self.assertReply("MLST", 250, "/a?b")
        reply = self.h.send("STAT /a\x1bb/..")
        self.assertTrue([r for r in reply if r.endswith(" a?b")], reply)
        self.assertFalse([r for r in reply if re.search("[\x00-\x1f\x7f]", r)])

    def test_nonUTF8NamesInTheLog(self) -> None:
        """
        A transfer of a name that is not UTF-8 is logged with the bad bytes
        as \\xNN: the log is written as strict UTF-8, and a lone surrogate
        made its observer raise and the event be lost.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import formatEvent, globalLogPublisher

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.h.login()
        self.h.passive()
        data, _ = self.h.acceptData()
        self.h.send(b"STOR caf\xe9.bin")
        data.dataReceived(b"payload")
        self.h.close(data)
        self.assertEqual(self.h.received()[-1][:3], "226")
        lines = [formatEvent(event) for event in logged]
        for line in lines:
            line.encode("utf-8")
        self.assertTrue([x for x in lines if "/caf\\xe9.bin" in x], lines)
