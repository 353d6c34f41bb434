"""
C{appnet queue}: look at and manage the outgoing mail queue of a data
directory (Postfix's C{mailq}, C{postqueue -f}, C{postsuper -d/-h/-H}).

The commands work on the store directly, so they work whether or not the
daemon runs; a running daemon notices changes within C{[mail]
queue_poll}. A held message is left alone by the relay until released;
a deleted one is gone without a bounce.
"""

from __future__ import annotations

import time

from twisted.internet.threads import deferToThread
from twisted.python import usage

from appnet.cli import Command, CommandError, Context, SubOptions
from appnet.errors import NoSuchMessage
from appnet.mail.bounce import readHeader
from appnet.store.interfaces import QueuedMessage, RecipientState

__all__ = ["QueueOptions"]


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"not a queue id: {text!r}") from None
    if value <= 0:
        raise CommandError(f"not a queue id: {text!r}")
    return value


def _summary(message: QueuedMessage) -> list[str]:
    flags = " [held]" if message.held else ""
    lines = [
        f"{message.id:<6} {message.size:>8}  {_when(message.created)}"
        f"  <{message.sender}>{flags}"
    ]
    for r in message.recipients:
        if r.state == RecipientState.DELIVERED:
            continue
        response = f"  {r.response}" if r.response else ""
        lines.append(f"       {r.state:<9} <{r.address}>{response}")
    return lines


class _OneId(Command):
    def parseArgs(self, id: str) -> None:  # type: ignore[override]
        self["id"] = id


class QueueList(Command):
    """List queued messages and their waiting recipients."""

    synopsis = ""

    async def run(self, context: Context) -> None:
        store = await context.store()
        messages = await store.queue.list()
        if not messages:
            context.say("queue is empty")
            return
        context.say(f"{'ID':<6} {'SIZE':>8}  {'QUEUED (UTC)':<19}  SENDER")
        waiting = 0
        for message in messages:
            for line in _summary(message):
                context.say(line)
            waiting += sum(
                1 for r in message.recipients if r.state != RecipientState.DELIVERED
            )
        plural = "s" if len(messages) != 1 else ""
        context.say(
            f"-- {len(messages)} message{plural}, {waiting} recipient(s) waiting"
        )


class QueueShow(_OneId):
    """Show one message: envelope, every recipient's state, its header."""

    synopsis = "ID [--body]"
    optFlags = [["body", None, "Print the whole message, not only its header."]]

    async def run(self, context: Context) -> None:
        id = _id(self["id"])
        store = await context.store()
        message = await store.queue.get(id)
        if message is None:
            raise CommandError(f"no message {id} in the queue")
        context.say(f"id:           {message.id}")
        context.say(f"sender:       <{message.sender}>")
        if message.submitter:
            context.say(f"submitted by: {message.submitter}")
        context.say(f"size:         {message.size}")
        context.say(f"queued:       {_when(message.created)} UTC")
        context.say(f"attempts:     {message.attempts}")
        state = "held" if message.held else f"{_when(message.nextAttempt)} UTC"
        context.say(f"next attempt: {state}")
        if message.lastError:
            context.say(f"last error:   {message.lastError}")
        if message.warned:
            context.say("delay warning sent")
        for r in message.recipients:
            context.say(f"recipient:    <{r.address}> {r.state} {_when(r.updated)} UTC")
            if r.response:
                context.say(f"              {r.response}")
        try:
            body = await store.queue.openMessage(id)
        except NoSuchMessage:
            return
        whole = self["body"]

        def read() -> bytes:
            with body.open() as f:
                return f.read() if whole else readHeader(f)

        data = await deferToThread(read)
        context.say("")
        context.out.write(data.decode("utf-8", "replace").replace("\r\n", "\n"))
        context.out.flush()


class QueueRetry(Command):
    """Make one message (or every message) due now."""

    synopsis = "[ID]"

    def parseArgs(self, id: str | None = None) -> None:
        self["id"] = id

    async def run(self, context: Context) -> None:
        id = None if self["id"] is None else _id(self["id"])
        store = await context.store()
        count = await store.queue.retry(id)
        if id is not None and not count:
            raise CommandError(f"no message {id} in the queue")
        plural = "" if count == 1 else "s"
        context.say(f"{count} message{plural} due now")


class QueueDelete(_OneId):
    """Remove a message from the queue, without telling its sender."""

    synopsis = "ID"

    async def run(self, context: Context) -> None:
        id = _id(self["id"])
        store = await context.store()
        if not await store.queue.delete(id):
            raise CommandError(f"no message {id} in the queue")
        context.say(f"deleted {id}")


class QueueHold(_OneId):
    """Keep a message from being delivered until released."""

    synopsis = "ID"

    async def run(self, context: Context) -> None:
        id = _id(self["id"])
        store = await context.store()
        if not await store.queue.hold(id):
            raise CommandError(f"no message {id} in the queue")
        context.say(f"held {id}")


class QueueRelease(_OneId):
    """Release a held message; it is due now."""

    synopsis = "ID"

    async def run(self, context: Context) -> None:
        id = _id(self["id"])
        store = await context.store()
        if not await store.queue.release(id):
            raise CommandError(f"no message {id} in the queue")
        context.say(f"released {id}")


class QueueOptions(SubOptions):
    """The outgoing mail queue."""

    synopsis = "list|show ID|retry [ID]|delete ID|hold ID|release ID"
    subCommands = [
        ["list", None, QueueList, "List queued messages."],
        ["show", None, QueueShow, "Show one message."],
        ["retry", None, QueueRetry, "Retry one message, or all, now."],
        ["delete", None, QueueDelete, "Delete a message (no bounce)."],
        ["hold", None, QueueHold, "Hold a message."],
        ["release", None, QueueRelease, "Release a held message."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError(
                "say list, show ID, retry [ID], delete ID, hold ID or release ID"
            )
