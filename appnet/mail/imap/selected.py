"""
IMAP commands of the selected state: CHECK, CLOSE, UNSELECT, EXPUNGE,
SEARCH, FETCH (streamed in batches, with back-pressure), STORE, COPY and
MOVE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from appnet.mail.imap import fetch as fetching
from appnet.mail.imap import search as searching
from appnet.mail.imap.authenticated import AuthenticatedCommands
from appnet.mail.imap.errors import BadCommand, CommandFailed
from appnet.mail.imap.framing import Done
from appnet.mail.imap.mailbox import SelectedMailbox
from appnet.mail.imap.parse import Arguments
from appnet.mail.imap.wire import atoms, uidSet
from appnet.store.watching import IFolderFeed

__all__ = ["SelectedCommands"]

#: Messages FETCH or SEARCH works on per batch: at most this many, and
#: (for contents) at most this many bytes, more than one message permitting.
_BATCH = 64
_BATCH_BYTES = 2 << 20
#: Message bytes SEARCH reads per batch (more than one message permitting).
_SEARCH_BYTES = 16 << 20
#: Index-only FETCH responses written per batch.
_INDEX_BATCH = 512
#: Contents larger than this are streamed from the file in chunks of it.
_CHUNK = 256 << 10


class SelectedCommands(AuthenticatedCommands):
    """
    The handlers of the selected state.
    """

    # Selected.

    def _mailbox(self) -> SelectedMailbox:
        assert self.selected is not None
        return self.selected

    def _writable(self) -> SelectedMailbox:
        mailbox = self._mailbox()
        if mailbox.readOnly:
            raise CommandFailed("The mailbox is read-only (EXAMINE)", "READ-ONLY")
        return mailbox

    async def cmd_CHECK(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        self._mailbox().dirty = True
        return Done(b"CHECK completed")

    async def cmd_CLOSE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        mailbox = self._mailbox()
        if not mailbox.readOnly:
            uids = mailbox.uids()
            await self.factory.store.expunge(
                mailbox.owner, mailbox.name, uids, onlyDeleted=True
            )
        self._deselect()
        return Done(b"CLOSE completed")

    async def cmd_UNSELECT(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        self._deselect()
        return Done(b"UNSELECT completed")

    async def cmd_EXPUNGE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        mailbox = self._mailbox()
        if uid:
            numbers = args.sequenceSet()
            args.end()
            uids = [row.uid for _, row in mailbox.select(numbers, uid=True)]
        else:
            args.end()
            uids = mailbox.uids()
        mailbox = self._writable()
        store = self.factory.store
        if uids:
            await store.expunge(mailbox.owner, mailbox.name, uids, onlyDeleted=True)
        if not IFolderFeed.providedBy(store):
            # (A feed tells of the expunge before the store returns.)
            mailbox.dirty = True
        return Done(b"EXPUNGE completed")

    async def cmd_SEARCH(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        criterion = searching.parseSearch(args)
        await self._announce(uid)
        mailbox = self._mailbox()
        limits = searching.Limits(mailbox.count, mailbox.lastUID)
        rows = mailbox.rows()
        # Numbers, not candidates: a candidate holds its message's body,
        # which may be its bytes (a store's small messages).
        numbers: list[int] = []
        recent = mailbox.isRecent
        if criterion.needs == searching.INDEX:
            candidates = [
                searching.Candidate(seq, row, None, recent(row.uid))
                for seq, row in rows
            ]
            found = searching.evaluate(criterion, candidates, limits)
            numbers = [c.info.uid if uid else c.seq for c in found]
        else:
            size = searching.BATCH[criterion.needs]
            store = self.factory.store
            i = 0
            while i < len(rows):
                # At most C{size} messages, and (more than one permitting)
                # at most _SEARCH_BYTES of them, per thread hop.
                start, total = i, 0
                while i < len(rows) and i - start < size:
                    total += rows[i][1].size
                    if i > start and total > _SEARCH_BYTES:
                        break
                    i += 1
                batch = rows[start:i]
                bodies = await store.openMessages(
                    mailbox.owner, mailbox.name, [row.uid for _, row in batch]
                )
                candidates = [
                    searching.Candidate(seq, row, bodies.get(row.uid), recent(row.uid))
                    for seq, row in batch
                ]
                found = await self._blocking(
                    searching.evaluate, criterion, candidates, limits
                )
                numbers += [c.info.uid if uid else c.seq for c in found]
                del candidates, found, bodies
                if self._closed or self.selected is not mailbox:
                    return Done(b"")
        self.sendUntaggedResponse(b"SEARCH" + b"".join(b" %d" % n for n in numbers))
        return Done(b"SEARCH completed")

    async def cmd_FETCH(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        numbers = args.sequenceSet()
        args.sp()
        items = fetching.parseFetch(args)
        # Flags other sessions changed are reported fresh (and expunges, in
        # a UID FETCH, which may announce them).
        await self._announce(uid)
        mailbox = self._mailbox()
        messages = mailbox.select(numbers, uid)
        producer = self.transport
        producer.registerProducer(self, True)
        try:
            missing = await self._fetch(mailbox, messages, items, uid)
        finally:
            if not self._closed:
                producer.unregisterProducer()
        if missing:
            raise CommandFailed(
                "Some messages were expunged by another session", "EXPUNGEISSUED"
            )
        return Done(b"FETCH completed")

    async def _fetch(
        self,
        mailbox: SelectedMailbox,
        messages: list[tuple[int, Any]],
        items: list[fetching.FetchItem],
        uid: bool,
    ) -> bool:
        """
        Send the FETCH responses, a batch at a time.

        @return: whether some messages' contents were gone.
        """
        needs = max(item.needs for item in items)
        setsSeen = not mailbox.readOnly and any(item.setsSeen for item in items)
        withFlags = [*items, fetching.FetchItem("FLAGS")]
        hasFlags = any(item.name == "FLAGS" for item in items)
        store = self.factory.store
        missing = False
        i = 0
        while i < len(messages):
            if self._closed or self.selected is not mailbox:
                return missing
            if needs == fetching.INDEX:
                batch = messages[i : i + _INDEX_BATCH]
                i += len(batch)
                render, flagsOf = fetching.renderIndex, mailbox.flagsOf
                self._announceKeywords(mailbox, [row.flags for _, row in batch])
                self.transport.write(
                    b"".join(
                        [
                            render(seq, row, items, uid, flagsOf(row))
                            for seq, row in batch
                        ]
                    )
                )
                await self._drained()
                continue
            batch, total = [], 0
            while i < len(messages) and len(batch) < _BATCH:
                size = messages[i][1].size
                if batch and total + size > _BATCH_BYTES:
                    break
                batch.append(messages[i])
                total += size
                i += 1
            keys = [mailbox.key(row.uid) for _, row in batch]
            headers = None
            if needs == fetching.HEADER:
                # Answered from header sections read before, if all were.
                headers = self.factory.headers.getAll(keys)
            bodies: dict[int, Any] = {}
            if headers is None:
                bodies, unknown = mailbox.knownBodies([row.uid for _, row in batch])
                if unknown:
                    opened = await store.openMessages(
                        mailbox.owner, mailbox.name, unknown
                    )
                    mailbox.keepBodies(opened)
                    bodies.update(opened)
            seen: set[int] = set()
            if setsSeen:
                unseen = [
                    row.uid
                    for _, row in batch
                    if "\\Seen" not in row.flags
                    and (headers is not None or row.uid in bodies)
                ]
                if unseen:
                    changed = await store.setFlags(
                        mailbox.owner,
                        mailbox.name,
                        unseen,
                        frozenset({"\\Seen"}),
                        "add",
                    )
                    mailbox.updated(changed)
                    seen = {row.uid for row in changed}
            jobs = []
            for seq, row in batch:
                current = mailbox.row(row.uid) or row
                body = bodies.get(row.uid)
                wanted = withFlags if row.uid in seen and not hasFlags else items
                flags = mailbox.flagsOf(current)
                jobs.append((seq, current, body, wanted, flags, uid, _CHUNK))
            self._announceKeywords(mailbox, [job[4] for job in jobs])
            if headers is not None:
                fromHeader = fetching.renderHeader
                rendered = [
                    (fromHeader(job[0], job[1], header, job[3], job[4], uid), False)
                    for job, header in zip(jobs, headers, strict=True)
                ]
            else:
                read: list[bytes | None] = []
                rendered = await self._blocking(_renderAll, jobs, read)
                self.factory.headers.putAll(keys, read)
            try:
                for pieces, gone in rendered:
                    missing = missing or gone
                    for piece in pieces:
                        if self._closed:
                            return missing
                        if isinstance(piece, bytes):
                            self.transport.write(piece)
                        else:
                            await self._stream(piece)
                    await self._drained()
            finally:
                for pieces, _ in rendered:
                    fetching.closeFiles(pieces)
        return missing

    async def _stream(self, piece: fetching.Range) -> None:
        """
        Send a range of a message file (open since rendering) in chunks,
        as the client reads.
        """
        file = piece.file
        position, left = piece.start, piece.length
        while left > 0 and not self._closed:
            chunk = await self._blocking(
                fetching.readRange, file, position, min(left, _CHUNK)
            )
            if not chunk:
                # The file is shorter than its index row says: pad, so
                # the literal keeps its announced length.
                chunk = b" " * min(left, _CHUNK)
            self.transport.write(chunk)
            position += len(chunk)
            left -= len(chunk)
            await self._drained()

    async def cmd_STORE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        mailbox = self._mailbox()
        numbers = args.sequenceSet()
        args.sp()
        action = args.atom("+FLAGS, -FLAGS or FLAGS").upper()
        args.sp()
        flags = args.storeFlags()
        args.end()
        mode = {b"FLAGS": "replace", b"+FLAGS": "add", b"-FLAGS": "remove"}
        silent = action.endswith(b".SILENT")
        how = mode.get(action[:-7] if silent else action)
        if how is None:
            raise BadCommand(f"Unknown STORE action {action.decode('ascii')}")
        messages = mailbox.select(numbers, uid)
        mailbox = self._writable()
        uids = [row.uid for _, row in messages]
        # \Recent was left out of the flags: STORE neither sets nor
        # clears it, so "+FLAGS (\Recent)" alone changes nothing.
        if uids and (flags or how == "replace"):
            changed = await self.factory.store.setFlags(
                mailbox.owner, mailbox.name, uids, frozenset(flags), how
            )
            mailbox.updated(changed)
        if not silent:
            rows = [mailbox.row(row.uid) for _, row in messages]
            self._announceKeywords(mailbox, [r.flags for r in rows if r is not None])
            for seq, row in messages:
                current = mailbox.row(row.uid)
                if current is None or mailbox.isGone(row.uid):
                    continue
                extra = b" UID %d" % row.uid if uid else b""
                self.sendUntaggedResponse(
                    b"%d FETCH (FLAGS %s%s)"
                    % (seq, atoms(sorted(mailbox.flagsOf(current))), extra)
                )
        return Done(b"STORE completed")

    async def cmd_COPY(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._copy(args, uid, move=False)

    async def cmd_MOVE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._copy(args, uid, move=True)

    async def _copy(self, args: Arguments, uid: bool, move: bool) -> Done:
        mailbox = self._mailbox()
        numbers = args.sequenceSet()
        args.sp()
        target = args.mailbox()
        args.end()
        messages = mailbox.select(numbers, uid)
        if move:
            mailbox = self._writable()
        uids = [row.uid for _, row in messages if not mailbox.isGone(row.uid)]
        verb = b"MOVE" if move else b"COPY"
        if not uids:
            return Done(verb + b" completed (no messages)")
        validity, mapping = await self._account().copy(mailbox.name, uids, target, move)
        if not mapping:
            raise CommandFailed(
                "The messages were expunged by another session", "EXPUNGEISSUED"
            )
        sources = sorted(mapping)
        code = b"[COPYUID %d %s %s]" % (
            validity,
            uidSet(sources),
            b",".join(b"%d" % mapping[s] for s in sources),
        )
        if target == mailbox.name:
            mailbox.dirty = True
        if move:
            mailbox.dirty = True
            self.sendUntaggedResponse(b"OK " + code + b" Moved")
            return Done(b"MOVE completed")
        return Done(code + b" COPY completed")


def _renderAll(
    jobs: Sequence[tuple[Any, ...]], headers: list[bytes | None]
) -> list[tuple[list[fetching.Piece], bool]]:
    """
    Render a batch of FETCH responses (blocking): each message's pieces,
    and whether its content was gone; each one's header section read (or
    C{None}) is added to C{headers}.
    """
    rendered = []
    for seq, info, body, items, flags, uid, inline in jobs:
        rendered.append(
            fetching.renderMessage(
                seq, info, body, items, flags, uid, inline, headers=headers
            )
        )
    return rendered
