"""
IMAP commands of the authenticated state: ENABLE, NAMESPACE, SELECT and
EXAMINE, mailbox management, LIST and LSUB, STATUS, APPEND and IDLE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appnet.errors import NoSuchFolder
from appnet.mail.imap.account import DELIMITER, IMAPAccount, checkName
from appnet.mail.imap.errors import BadCommand, CommandFailed
from appnet.mail.imap.framing import Done
from appnet.mail.imap.mailbox import SelectedMailbox
from appnet.mail.imap.parse import Arguments
from appnet.mail.imap.unauthenticated import NotAuthenticatedCommands
from appnet.mail.imap.wire import atoms, encodeMailbox, parseDateTime, string
from appnet.store.watching import Delta, IFolderFeed

__all__ = ["AuthenticatedCommands"]


class _Buffered:
    """
    A folder feed's callback while the folder is being read: it keeps
    what it is told until the view exists, then passes it on.
    """

    def __init__(self) -> None:
        self._kept: list[Delta] = []
        self._to: Callable[[Delta], None] = self._kept.append

    def __call__(self, delta: Delta) -> None:
        self._to(delta)

    def forward(self, mailbox: SelectedMailbox, to: Callable[[Delta], None]) -> None:
        for delta in self._kept:
            mailbox.told(delta)
        self._kept = []
        self._to = to


_STATUS_ITEMS = {b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"SIZE"}


class AuthenticatedCommands(NotAuthenticatedCommands):
    """
    The handlers of the authenticated state.
    """

    # Authenticated.

    def _account(self) -> IMAPAccount:
        assert self.account is not None
        return self.account

    async def cmd_ENABLE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.atom("a capability")
        while args.maybe(b" "):
            args.atom("a capability")
        args.end()
        # None of the extensions ENABLE turns on is offered, so none is
        # enabled (RFC 5161 3.1: unknown names are ignored).
        self.sendUntaggedResponse(b"ENABLED")
        return Done(b"ENABLE completed")

    async def cmd_NAMESPACE(self, tag: bytes, args: Arguments, uid: bool) -> None:
        args.end()
        self.do_NAMESPACE(tag)

    async def cmd_SELECT(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._select(args, readOnly=False)

    async def cmd_EXAMINE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._select(args, readOnly=True)

    async def _select(self, args: Arguments, readOnly: bool) -> Done:
        name = args.mailbox()
        args.end()
        # A failed SELECT leaves no mailbox selected (RFC 3501 6.3.1).
        self._deselect()
        account = self._account()
        store = self.factory.store
        if IFolderFeed.providedBy(store):
            # Told of changes from before the folder is read: those the
            # listing has already are skipped (or apply again, unchanged).
            feed = _Buffered()
            stop = store.feed(account.address, checkName(name), feed)
            try:
                mailbox = await self._open(name, readOnly)
            except BaseException:
                stop()
                raise
            mailbox.stopWatching = stop
            feed.forward(mailbox, self._folderTold)
        else:
            mailbox = await self._open(name, readOnly)
            mailbox.stopWatching = store.watch(
                account.address, mailbox.name, self._folderChanged
            )
            # Anything between the listing and the watch is caught up on
            # the next command.
            mailbox.dirty = True
        if self._closed:
            mailbox.stopWatching()
            return Done(b"")
        self.selected = mailbox
        self.state = "select"
        mailbox.keywords = mailbox.flagsInUse()
        self._sendFlags(mailbox)
        self.sendUntaggedResponse(b"%d EXISTS" % mailbox.count)
        mailbox.reportedRecent = mailbox.recentCount
        self.sendUntaggedResponse(b"%d RECENT" % mailbox.reportedRecent)
        unseen = mailbox.firstUnseen()
        if unseen is not None:
            self.sendUntaggedResponse(b"OK [UNSEEN %d] First unseen" % unseen)
        self.sendUntaggedResponse(
            b"OK [UIDVALIDITY %d] UIDs valid" % mailbox.uidValidity
        )
        self.sendUntaggedResponse(
            b"OK [UIDNEXT %d] Predicted next UID" % mailbox.uidNext
        )
        mode = b"READ-ONLY" if readOnly else b"READ-WRITE"
        verb = b"EXAMINE" if readOnly else b"SELECT"
        return Done(b"[" + mode + b"] " + verb + b" completed")

    async def _open(self, name: str, readOnly: bool) -> SelectedMailbox:
        """Read a folder's state and listing into a view; claim C{\\Recent}."""
        account = self._account()
        store = self.factory.store
        if IFolderFeed.providedBy(store):
            # State and listing in one read.
            try:
                info, rows = await store.snapshot(account.address, checkName(name))
            except NoSuchFolder:
                raise CommandFailed(
                    f"Mailbox {name} does not exist", "NONEXISTENT"
                ) from None
        else:
            info = await account.status(name)
            rows = await store.listMessages(account.address, info.name)
        mailbox = SelectedMailbox.open(info, rows, readOnly)
        if mailbox.claimDue() and not self._closed:
            mailbox.claimed(*await store.claimRecent(account.address, info.name))
        return mailbox

    async def cmd_CREATE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.end()
        await self._account().create(name)
        return Done(b"CREATE completed")

    async def cmd_DELETE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.end()
        if self.selected is not None and self.selected.name == name:
            self._deselect()
        await self._account().delete(name)
        return Done(b"DELETE completed")

    async def cmd_RENAME(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        old = args.mailbox()
        args.sp()
        new = args.mailbox()
        args.end()
        if self.selected is not None and (
            self.selected.name == old or self.selected.name.startswith(old + DELIMITER)
        ):
            self._deselect()
        await self._account().rename(old, new)
        return Done(b"RENAME completed")

    async def cmd_SUBSCRIBE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.end()
        await self._account().subscribe(name, True)
        return Done(b"SUBSCRIBE completed")

    async def cmd_UNSUBSCRIBE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.end()
        await self._account().subscribe(name, False)
        return Done(b"UNSUBSCRIBE completed")

    async def cmd_LIST(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._list(args, b"LIST")

    async def cmd_LSUB(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._list(args, b"LSUB")

    async def _list(self, args: Arguments, verb: bytes) -> Done:
        if args.peek() == ord("("):
            raise BadCommand("LIST selection options are not supported")
        reference = args.listMailbox() if not args.maybe(b'""') else ""
        args.sp()
        pattern = args.listMailbox() if not args.maybe(b'""') else ""
        args.end()
        delimiter = string(DELIMITER)
        if not pattern:
            if verb == b"LIST":
                self.sendUntaggedResponse(b'LIST (\\Noselect) %s ""' % delimiter)
            return Done(verb + b" completed")
        listed = await self._account().list(reference, pattern, verb == b"LSUB")
        for folder in listed:
            self.sendUntaggedResponse(
                b"%s %s %s %s"
                % (
                    verb,
                    atoms(folder.attributes),
                    delimiter,
                    string(encodeMailbox(folder.name)),
                )
            )
        return Done(verb + b" completed")

    async def cmd_STATUS(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.sp()
        items = args.parenthesised(lambda a: a.atom("a status item").upper(), False)
        args.end()
        for item in items:
            if item not in _STATUS_ITEMS:
                raise BadCommand(f"Unknown status item {item.decode('ascii')}")
        info = await self._account().status(name)
        values = {
            b"MESSAGES": info.messages,
            b"RECENT": info.recent,
            b"UIDNEXT": info.uidNext,
            b"UIDVALIDITY": info.uidValidity,
            b"UNSEEN": info.unseen,
            b"SIZE": info.size,
        }
        answer = b" ".join(b"%s %d" % (item, values[item]) for item in items)
        self.sendUntaggedResponse(
            b"STATUS %s (%s)" % (string(encodeMailbox(info.name)), answer)
        )
        return Done(b"STATUS completed")

    async def cmd_APPEND(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.sp()
        flags: list[str] = []
        if args.peek() == ord("("):
            flags = args.flagList()
            args.sp()
        date = None
        if args.peek() == ord('"'):
            text = args.quoted().decode("ascii", "replace")
            try:
                date = parseDateTime(text)
            except ValueError:
                raise BadCommand(f"Invalid date-time {text!r}") from None
            args.sp()
        if not args.atLiteral():
            raise BadCommand("The message must be a literal")
        literal = args.literal()
        args.end()
        if literal.size == 0:
            raise CommandFailed("An empty message cannot be stored", "CANNOT")
        staged = literal.staged
        if staged is None:
            staged = self.factory.store.stage()
            staged.write(literal.data)
        try:
            account = self._account()
            validity, newUID = await account.append(
                name, staged, frozenset(flags), date, self._knownValidity(name)
            )
        finally:
            staged.discard()
        self.factory.status.increment("imap", "appended")
        if (
            self.selected is not None
            and self.selected.name == name
            and not IFolderFeed.providedBy(self.factory.store)
        ):
            self.selected.dirty = True
        return Done(b"[APPENDUID %d %d] APPEND completed" % (validity, newUID))

    def _knownValidity(self, name: str) -> int | None:
        """
        The UIDVALIDITY of the folder C{name} if it is the one selected
        (so an APPEND to it need not read it again).
        """
        selected = self.selected
        if selected is None or selected.name != checkName(name):
            return None
        return selected.uidValidity

    async def cmd_IDLE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        self.sendContinuationRequest(b"idling")
        self._idling = True
        keepalive = self._keepalive()
        try:
            await self._announce(True)
            line = await self._nextLine()
        finally:
            self._idling = False
            keepalive()
        if line.strip().upper() != b"DONE":
            raise BadCommand("Expected DONE to end IDLE")
        return Done(b"IDLE terminated")

    def _keepalive(self) -> Callable[[], None]:
        """
        Send C{* OK Still here} now and then during IDLE, so that idle
        NAT mappings and firewalls keep the connection open.
        """
        interval = self.factory.idleKeepalive
        calls: list[Any] = []

        def tick() -> None:
            if self._idling and not self._closed:
                self.sendUntaggedResponse(b"OK Still here")
                calls[:] = [self.callLater(interval, tick)]

        if interval > 0:
            calls.append(self.callLater(interval, tick))

        def cancel() -> None:
            for call in calls:
                if call.active():
                    call.cancel()

        return cancel
