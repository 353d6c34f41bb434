"""
Tests for the FTP fixture, L{appnet.testing.startFTP}, and for how the FTP
component joins the stack.
"""

from __future__ import annotations

import ftplib
import os

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from appnet.errors import ConfigError
from appnet.testing import ephemeralConfig, startFTP, startStack

ALICE = "alice@example.org"


class FixtureTests(TestCase):
    """
    L{startFTP}: users and files from dicts.
    """

    timeout = 30

    async def test_usersAndFiles(self) -> None:
        """The named users log in and find the named files."""
        ftp = await startFTP(
            users={ALICE: "pw-alice-1"},
            files={ALICE: {"a/b.txt": "text", "empty/": b""}},
        )
        root = ftp.root
        try:

            def check() -> list[str]:
                client = ftplib.FTP()
                client.connect(*ftp.address, timeout=10)
                client.login(ALICE, "pw-alice-1")
                names = client.nlst("a")
                client.quit()
                return names

            self.assertEqual(await deferToThread(check), ["b.txt"])
            self.assertTrue(os.path.isdir(os.path.join(ftp.home(ALICE), "empty")))
            self.assertTrue(
                ftp.url(ALICE).startswith("ftp://alice%40example.org@127.0.0.1:")
            )
        finally:
            await ftp.stop()
        self.assertFalse(os.path.exists(root), "the data is removed")

    async def test_anonymous(self) -> None:
        """With anonymous on, the anonymous area can be filled and read."""
        ftp = await startFTP(self, anonymous=True, files={"anonymous": {"pub/r": b"r"}})

        def check() -> list[str]:
            client = ftplib.FTP()
            client.connect(*ftp.address, timeout=10)
            client.login()
            names = client.nlst("pub")
            client.quit()
            return names

        self.assertEqual(await deferToThread(check), ["r"])


class StackTests(TestCase):
    """
    The FTP component in a whole stack.
    """

    timeout = 30

    async def test_inDefaultStack(self) -> None:
        """FTP is part of the default stack."""
        stack = await startStack(self)
        self.assertEqual(stack.address("ftp")[0], "127.0.0.1")

    def test_sweep(self) -> None:
        """At start, upload temporaries left by a crash are removed."""
        from appnet.ftp._files import inline
        from appnet.ftp.server import _StagingSweep

        staging = os.path.abspath(self.mktemp())
        os.makedirs(staging)
        for name in (".appnet-upload-0123", ".appnet-upload-4567", "other"):
            with open(os.path.join(staging, name), "wb") as f:
                f.write(b"left by a crash")
        sweep = _StagingSweep(inline, staging)
        sweep.startService()
        assert sweep.swept is not None
        self.assertEqual(self.successResultOf(sweep.swept), 2)
        self.assertEqual(os.listdir(staging), ["other"])

    def test_publicAddressChecked(self) -> None:
        """A public address that is not IPv4 is a config error naming the key."""
        with self.assertRaises(ConfigError) as caught:
            ephemeralConfig("/tmp/x", {"ftp": {"public_address": "example.org"}})
        self.assertEqual(caught.exception.key, "ftp.public_address")

    def test_passivePorts(self) -> None:
        """passive_ports takes a range, or 0 for any free port."""
        config = ephemeralConfig("/tmp/x", {"ftp": {"passive_ports": "0"}})
        self.assertEqual(config.ftp.passive_ports, (0, 0))
        config = ephemeralConfig("/tmp/x", {"ftp": {"passive_ports": "40000-40010"}})
        self.assertEqual(config.ftp.passive_ports, (40000, 40010))

    async def test_tracedPasswordMasked(self) -> None:
        """--trace ftp logs the dialogue with PASS masked."""
        from twisted.logger import globalLogPublisher

        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        ftp = await startFTP(self, users={ALICE: "pw-alice-1"}, config={"trace": "ftp"})

        def login() -> None:
            client = ftplib.FTP()
            client.connect(*ftp.address, timeout=10)
            client.login(ALICE, "pw-alice-1")
            client.quit()

        await deferToThread(login)
        lines = [str(e.get("line")) for e in events if e.get("direction") == "C"]
        self.assertIn("PASS ********", lines)
        self.assertNotIn("pw-alice-1", " ".join(lines))

    async def test_refusalLine(self) -> None:
        """Over the per-address limit, a client is told 421 and closed."""
        ftp = await startFTP(self, config={"limits": {"connections_per_ip": 1}})

        def twice() -> str:
            first = ftplib.FTP()
            first.connect(*ftp.address, timeout=10)
            second = ftplib.FTP()
            try:
                second.connect(*ftp.address, timeout=10)
            except ftplib.error_temp as e:
                return str(e)
            finally:
                first.close()
                second.close()
            return "accepted"

        self.assertTrue((await deferToThread(twice)).startswith("421"))
