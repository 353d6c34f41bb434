"""
C{appnet store migrate} at the issue's scale: an SQLite data directory
with 3 users, 5 folders and 2,000 messages copied into PostgreSQL, timed;
then every folder's UIDVALIDITY and every message's UID, size and flags
compared between the two stores, and C{appnet store check} run on the
copy.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/python bench/store/migrate.py [--messages N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from tests.pgserver import createDatabase, newServer  # noqa: E402

FILL = r"""
import sys
from twisted.internet import task
from twisted.internet.defer import Deferred
from appnet.store.sqlite import SQLiteStore
from appnet.store.interfaces import DeliveryTarget

path, count = sys.argv[1], int(sys.argv[2])
USERS = ["alice@example.org", "bob@example.org", "carol@example.net"]
FOLDERS = [(USERS[0], "INBOX"), (USERS[0], "Archive"), (USERS[1], "INBOX"),
           (USERS[1], "Lists"), (USERS[2], "INBOX")]


async def main(reactor):
    store = SQLiteStore.open(path, reactor)
    await store.start()
    try:
        for user in USERS:
            await store.users.addUser(user, "scrypt$bench")
        for owner, name in FOLDERS:
            if name != "INBOX":
                await store.mail.createFolder(owner, name)
        for i in range(count):
            owner, name = FOLDERS[i % len(FOLDERS)]
            staged = store.mail.stage()
            body = b"x" * (2000 + i % 3000)
            staged.write(b"Subject: %d\r\n\r\n" % i + body + b"\r\n")
            flags = frozenset({"\\Seen"}) if i % 3 == 0 else frozenset()
            await store.mail.deliver(staged, [DeliveryTarget(owner, name, flags)])
            staged.discard()
    finally:
        await store.stop()

task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
"""


def sqliteRows(path: str) -> set[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return set(
            conn.execute(
                "SELECT f.owner, f.name, f.uidvalidity, m.uid, m.size, m.flags"
                " FROM mail_messages m JOIN mail_folders f ON f.id = m.folder"
            ).fetchall()
        )
    finally:
        conn.close()


def postgresRows(url: str) -> set[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            tuple(row)
            for row in conn.execute(
                "SELECT f.owner, f.name, f.uidvalidity, m.uid, m.size, m.flags"
                " FROM mail_messages m JOIN mail_folders f ON f.id = m.folder"
            ).fetchall()
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    options = parser.parse_args()
    work = tempfile.mkdtemp(prefix="appnet-bench-migrate-")
    server = newServer()
    server.durable = True
    try:
        server.start()
        createDatabase(server, "target")
        url = server.url("target")
        data = os.path.join(work, "data")
        os.makedirs(data)
        path = os.path.join(data, "store.sqlite")
        subprocess.run(
            [sys.executable, "-c", FILL, path, str(options.messages)],
            check=True, cwd=ROOT,
        )  # fmt: skip
        env = dict(os.environ, APPNET_DATA=data)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "appnet", "store", "migrate", "--to", url],
            check=True, capture_output=True, cwd=ROOT, env=env,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        print(done.stdout.decode().strip().splitlines()[-1])
        same = sqliteRows(path) == postgresRows(url)
        config = os.path.join(work, "appnet.toml")
        with open(config, "w") as f:
            f.write(f'[store]\nurl = "{url}"\n')
        check = subprocess.run(
            [sys.executable, "-m", "appnet", "--config", config, "store", "check"],
            capture_output=True, cwd=ROOT, env=env,
        )  # fmt: skip
        print(
            f"{options.messages} messages migrated in {elapsed:.1f} s"
            f" ({options.messages / elapsed:.0f} msg/s); UIDVALIDITY, UIDs,"
            f" sizes and flags identical: {same}"
        )
        print(check.stdout.decode().strip())
    finally:
        server.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
