"""
C{appnet store migrate} and C{appnet store check}: an SQLite data
directory copied into PostgreSQL keeps its UIDs and UIDVALIDITY, and a
second run after an interruption finishes the job.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from appnet.store.interfaces import INBOX, DeliveryTarget, SessionRecord
from appnet.store.pg.migrate import checkPostgreSQL, copyStore
from appnet.store.sqlite import SQLiteStore
from tests import pgserver
from tests.process import run

USERS = ["alice@example.org", "bob@example.org", "carol@example.net"]


async def fill(store: Any) -> None:
    """Three users, five folders, some messages, flags, a queue, a session."""
    for address in USERS:
        await store.users.addUser(address, "hash-" + address)
    await store.users.setAPOPSecret(USERS[0], "apop secret")
    await store.mail.createFolder(USERS[0], "Archive")
    await store.mail.createFolder(USERS[1], "Lists")
    for i in range(12):
        owner = USERS[i % 3]
        folder = {0: "Archive", 1: "Lists", 2: INBOX}[i % 3] if i % 2 else INBOX
        staged = store.mail.stage()
        staged.write(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        if i % 4 == 0:
            # Large enough for a file of its own in an SQLite store (the
            # others are rows of its database).
            staged.write((b"x" * 78 + b"\r\n") * 300)
        await store.mail.deliver(staged, [DeliveryTarget(owner, folder)], 1000.0 + i)
        staged.discard()
    await store.mail.expunge(USERS[0], INBOX, [1])
    await store.mail.setFlags(USERS[1], INBOX, [1], frozenset({"\\Seen"}), "add")
    staged = store.mail.stage()
    staged.write(b"Subject: out\r\n\r\nout\r\n")
    await store.queue.enqueue(staged, USERS[0], ["x@remote.example"])
    staged.discard()
    await store.sessions.addSession(SessionRecord("k" * 64, USERS[0], "c", 1.0, 9e9))


async def snapshot(store: Any) -> dict[str, Any]:
    """What an IMAP client would have cached, per folder."""
    result: dict[str, Any] = {}
    for owner in USERS:
        for info in await store.mail.listFolders(owner):
            rows = await store.mail.listMessages(owner, info.name)
            bodies = await store.mail.openMessages(
                owner, info.name, [m.uid for m in rows]
            )
            contents = {}
            for uid, body in bodies.items():
                with body.open() as f:
                    contents[uid] = f.read()
            result[f"{owner}/{info.name}"] = (
                info.uidValidity,
                info.uidNext,
                [(m.uid, m.size, m.flags, m.internalDate) for m in rows],
                contents,
            )
    return result


class MigrateTests(TestCase):
    """An SQLite store copied into PostgreSQL."""

    async def test_copyKeepsUIDs(self) -> None:
        """
        Accounts, APOP secrets, folders with their UIDVALIDITY and
        UIDNEXT, messages with UIDs, flags and dates, the queue and the
        sessions arrive; a second run copies nothing more; the check
        finds no problem.
        """
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        path = os.path.join(root, "store.sqlite")
        source = SQLiteStore.open(path, reactor)
        await source.start()
        self.addCleanup(source.stop)
        await fill(source)
        target = await pgserver.startStore(self)
        counts = await copyStore(source, path, target, lambda line: None)
        self.assertEqual(
            (counts["users"], counts["folders"], counts["queued"], counts["sessions"]),
            (3, 5, 1, 1),
        )
        self.assertEqual(counts["messages"], 11)
        self.assertEqual(await snapshot(target), await snapshot(source))
        self.assertEqual(await target.users.getAPOPSecret(USERS[0]), "apop secret")
        self.assertEqual(
            await target.mail.usage(USERS[0]), await source.mail.usage(USERS[0])
        )
        again = await copyStore(source, path, target, lambda line: None)
        self.assertEqual(sum(again.values()), 0)
        counts, problems = await target.database.run(checkPostgreSQL)
        self.assertEqual(problems, {})
        self.assertEqual(counts["messages"], 11)
        [queued] = await target.queue.list()
        self.assertEqual(queued.recipients[0].address, "x@remote.example")
        # New mail after the move continues the UIDs.
        staged = target.mail.stage()
        staged.write(b"new\r\n")
        [uid] = await target.mail.deliver(staged, [DeliveryTarget(USERS[1])])
        self.assertEqual(uid, (await source.mail.folder(USERS[1])).uidNext)

    async def test_resumes(self) -> None:
        """
        A copy interrupted half-way (some messages already there) is
        finished by running it again.
        """
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        path = os.path.join(root, "store.sqlite")
        source = SQLiteStore.open(path, reactor)
        await source.start()
        self.addCleanup(source.stop)
        await fill(source)
        target = await pgserver.startStore(self)
        await copyStore(source, path, target, lambda line: None)

        def forget(conn: Any) -> None:
            conn.execute("DELETE FROM mail_messages WHERE uid > 2")

        await target.database.run(forget)
        counts = await copyStore(source, path, target, lambda line: None)
        self.assertGreater(counts["messages"], 0)
        self.assertEqual(await snapshot(target), await snapshot(source))


class CommandTests(TestCase):
    """The commands, as a user runs them."""

    timeout = 60

    async def filledDataDirectory(self) -> tuple[str, str]:
        """A working directory holding a data directory L{fill}ed."""
        cwd = os.path.abspath(self.mktemp())
        data = os.path.join(cwd, "data")
        os.makedirs(data)
        store = SQLiteStore.open(os.path.join(data, "store.sqlite"), reactor)
        await store.start()
        await fill(store)
        await store.stop()
        return cwd, data

    async def test_migrateAndCheck(self) -> None:
        """
        C{appnet store migrate --to URL} copies the data directory;
        C{appnet store check} reports the counts of either store.
        """
        cwd, data = await self.filledDataDirectory()
        url = await pgserver.freshDatabase(self)
        env = {"APPNET_DATA": data}
        out = await run(["-m", "appnet", "store", "migrate", "--to", url], cwd, env)
        self.assertEqual(out.code, 0, out.err)
        self.assertIn("11 messages", out.out)
        out = await run(["-m", "appnet", "store", "check"], cwd, env)
        self.assertEqual(out.code, 0, out.err)
        self.assertIn("3 users, 5 folders, 11 messages", out.out)
        config = os.path.join(cwd, "appnet.toml")
        with open(config, "w") as f:
            f.write(f'[store]\nurl = "{url}"\n')
        out = await run(
            ["-m", "appnet", "--config", config, "store", "check"], cwd, env
        )
        self.assertEqual(out.code, 0, out.err)
        self.assertIn("postgresql: 3 users, 5 folders, 11 messages", out.out)
        out = await run(
            ["-m", "appnet", "store", "migrate", "--to", "postgresql://u:pw@h/db"],
            cwd,
            env,
        )
        self.assertEqual(out.code, 1)
        self.assertIn("password", out.err)
        self.assertNotIn("pw@", out.err)

    async def test_checkFiles(self) -> None:
        """
        C{appnet store check} on an SQLite store compares its message files
        with the index: a file gone is lost mail (exit status 1); a file
        nothing names is reported once unchanged for C{--stray-age}
        seconds, and C{--repair} removes it.
        """
        cwd, data = await self.filledDataDirectory()
        env = {"APPNET_DATA": data}
        check = ["-m", "appnet", "store", "check"]
        out = await run(check, cwd, env)
        self.assertEqual(out.code, 0, out.err)
        # Two large messages and the queued one; the small ones are rows.
        self.assertIn("9 message bodies in the database, 3 message files", out.out)
        self.assertIn("no problems found", out.out)

        mail = os.path.join(data, "mail")
        owner = sorted(os.listdir(os.path.join(mail, "store")))[-1]
        folder = os.path.join(mail, "store", owner)
        lost = sorted(os.listdir(folder))[0]
        os.unlink(os.path.join(folder, lost))
        with open(os.path.join(folder, "left-by-a-crash"), "wb") as f:
            f.write(b"Subject: orphan\r\n\r\n")
        out = await run(check, cwd, env)
        self.assertEqual(out.code, 1)
        self.assertIn(f"missing: store/{owner}/{lost}", out.out)
        self.assertIn("problem: 1 message files missing (mail lost)", out.out)
        self.assertNotIn("nothing names", out.out)  # Too new to count.

        out = await run([*check, "--stray-age", "0"], cwd, env)
        self.assertIn("problem: 1 message files nothing names", out.out)
        out = await run([*check, "--stray-age", "0", "--repair"], cwd, env)
        self.assertIn("removed 1 message files nothing named", out.out)
        self.assertFalse(os.path.exists(os.path.join(folder, "left-by-a-crash")))
        self.assertEqual(out.code, 1)  # The lost one is still lost.

    async def test_checkBodies(self) -> None:
        """
        C{appnet store check} on an SQLite store finds small messages
        whose body row is gone (lost mail) and body rows no message
        refers to; either is a problem (exit status 1).
        """
        cwd, data = await self.filledDataDirectory()
        env = {"APPNET_DATA": data}
        conn = sqlite3.connect(os.path.join(data, "store.sqlite"))
        with conn:
            conn.execute(
                "DELETE FROM mail_bodies WHERE id = (SELECT MIN(id) FROM mail_bodies)"
            )
            conn.execute("INSERT INTO mail_bodies (data) VALUES (x'00')")
        conn.close()
        out = await run(["-m", "appnet", "store", "check"], cwd, env)
        self.assertEqual(out.code, 1, out.err)
        self.assertIn("problem: 1 messages whose body row is gone (mail lost)", out.out)
        self.assertIn("problem: 1 message bodies nothing refers to", out.out)
