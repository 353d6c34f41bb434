"""
C{appnet store}: move a data directory's SQLite store into PostgreSQL,
and check either store's consistency.
"""

from __future__ import annotations

from twisted.internet.threads import deferToThread
from twisted.python import usage

from appnet.cli import Command, CommandError, Context
from appnet.config import checkStoreURL
from appnet.errors import AppnetError, ConfigError

__all__ = ["StoreOptions"]


def _url(text: str) -> str:
    try:
        return checkStoreURL(text, "--to")
    except ConfigError as e:
        raise CommandError(str(e)) from None


class StoreMigrate(Command):
    """
    Copy the data directory's SQLite store (accounts, folders, messages
    with their flags, UIDs and UIDVALIDITY, the queue, web sessions) into
    a PostgreSQL database. Run it again after an interruption: what is
    there already is skipped.
    """

    synopsis = "--to postgresql://USER@HOST/DB [--password-file FILE]"
    optParameters = [
        ["to", None, None, "The PostgreSQL database (a URL without password)."],
        ["password-file", None, None, "File holding the password (else PGPASSFILE)."],
    ]

    async def run(self, context: Context) -> None:
        from appnet.store.pg import PostgreSQLStore, conninfoFor
        from appnet.store.pg.migrate import copyStore
        from appnet.store.sqlite import SQLiteStore

        if not self["to"]:
            raise CommandError("say where to: --to postgresql://USER@HOST/DB")
        url = _url(self["to"])
        path = context.dataDir.store.path
        if not context.dataDir.store.exists():
            raise CommandError(f"{path}: no SQLite store to migrate")
        try:
            conninfo = conninfoFor(url, self["password-file"])
        except OSError as e:
            raise CommandError(f"{e.filename}: {e.strerror}") from None
        source = SQLiteStore.open(path, context.reactor)
        target = PostgreSQLStore.open(conninfo, context.reactor)
        await source.start()
        try:
            try:
                await target.start()
            except AppnetError as e:
                raise CommandError(str(e)) from None
            try:
                counts = await copyStore(source, path, target, context.say)
            finally:
                await target.stop()
        finally:
            await source.stop()
        context.say("copied " + ", ".join(f"{n} {name}" for name, n in counts.items()))


class StoreCheck(Command):
    """
    Count what the configured store holds and look for inconsistencies
    (unreferenced bodies, UIDs past UIDNEXT, usage that does not add up;
    for SQLite, body rows or message files missing or that nothing names);
    exit status 1 if any is found. With --repair, message files nothing
    names (left by a crash, last written over a day ago) are removed.
    """

    synopsis = "[--repair] [--stray-age SECONDS]"
    optFlags = [
        ["repair", None, "Remove message files nothing names (SQLite store)."],
    ]
    optParameters = [
        [
            "stray-age",
            None,
            86400.0,
            "A file nothing names counts once unchanged this long (seconds).",
            float,
        ],
    ]

    async def run(self, context: Context) -> None:
        from appnet.store._files import MessageFiles
        from appnet.store.pg.migrate import checkPostgreSQL, checkSQLite
        from appnet.store.sqlite import auditFiles

        config = context.config.store
        if config.url:
            from appnet.store.pg import PostgreSQLStore, conninfoFor

            store = PostgreSQLStore.open(
                conninfoFor(config.url, config.password_file), context.reactor
            )
            try:
                await store.start()
            except AppnetError as e:
                raise CommandError(str(e)) from None
            try:
                counts, problems = await store.database.run(checkPostgreSQL)
            finally:
                await store.stop()
            where = "postgresql"
        else:
            path = context.dataDir.store.path
            if not context.dataDir.store.exists():
                raise CommandError(f"{path}: no store")
            counts, problems = await deferToThread(checkSQLite, path)
            files, missing, strays = await deferToThread(
                auditFiles, path, context.dataDir.mail.path, self["stray-age"]
            )
            counts["message files"] = files
            if missing:
                problems["message files missing (mail lost)"] = len(missing)
                for name in missing[:10]:
                    context.say(f"missing: {name}")
            if strays and self["repair"]:
                await deferToThread(
                    MessageFiles(context.dataDir.mail.path).remove, strays
                )
                context.say(f"removed {len(strays)} message files nothing named")
            elif strays:
                problems["message files nothing names (--repair removes)"] = len(strays)
            where = path
        context.say(
            f"{where}: " + ", ".join(f"{n} {name}" for name, n in counts.items())
        )
        for name, n in problems.items():
            context.say(f"problem: {n} {name}")
        if problems:
            raise CommandError(f"{len(problems)} kinds of problem found")
        context.say("no problems found")


class StoreOptions(usage.Options):
    """Move the store to PostgreSQL; check its consistency."""

    synopsis = "migrate|check ..."
    subCommands = [
        ["migrate", None, StoreMigrate, "Copy the SQLite store into PostgreSQL."],
        ["check", None, StoreCheck, "Report counts and inconsistencies."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("say migrate or check")
