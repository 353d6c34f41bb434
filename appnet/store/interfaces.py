"""
The seams between protocol code and durable state.

Protocol code talks to storage only through these interfaces, so tests use
the in-memory fakes of L{appnet.store.memory} and a PostgreSQL store can
replace SQLite. Every method returns a Deferred: implementations must not
block the reactor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import BinaryIO

from attrs import Factory, field, frozen
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

__all__ = [
    "IUserStore",
    "IStore",
    "User",
    "ISessionStore",
    "SessionRecord",
    "IMailStore",
    "IQueueStore",
    "IStagedMessage",
    "INBOX",
    "Changes",
    "DeliveryTarget",
    "FolderInfo",
    "MessageBody",
    "MessageInfo",
    "Notice",
    "QueuedMessage",
    "QueuedRecipient",
    "RecipientState",
    "RecipientUpdate",
    "Usage",
]


@frozen
class User:
    """
    One account, shared by every protocol.

    @ivar address: the canonical address (L{appnet.address.normalizeAccount}).
    @ivar passwordHash: the encoded scrypt hash (L{appnet.auth.hashPassword}).
    @ivar admin: may use the admin parts of the web API.
    @ivar quota: mailbox and FTP quota in bytes, or C{None} for the default.
    @ivar created: creation time, seconds since the epoch.
    @ivar apop: whether the account has an APOP secret
        (L{IUserStore.setAPOPSecret}); the secret itself is read only with
        L{IUserStore.getAPOPSecret}.
    """

    address: str
    passwordHash: str
    admin: bool = False
    quota: int | None = None
    created: float = 0.0
    apop: bool = False

    @property
    def domain(self) -> str:
        """The domain part of the address."""
        return self.address.rpartition("@")[2]

    def __repr__(self) -> str:
        # Never print the hash into logs by accident.
        return f"User({self.address!r}, admin={self.admin}, quota={self.quota})"


class IUserStore(Interface):
    """
    The accounts.
    """

    generation = Attribute(
        """
        A number that changes whenever an account is added or deleted
        through this store (with PostgreSQL, through any node's store: as
        its notification arrives). Caches of account facts compare it
        before trusting an entry (the mail router's); changes another
        process makes to an SQLite file reach them only when their entries
        expire.
        """
    )

    def addUser(
        address: str, passwordHash: str, admin: bool = False, quota: int | None = None
    ) -> Deferred[User]:
        """
        Create an account. C{address} must already be canonical.

        @raise appnet.errors.UserExists: (as a failure) if it exists.
        """

    def getUser(address: str) -> Deferred[User | None]:
        """
        The account with this canonical address, or C{None}.
        """

    def setPasswordHash(address: str, passwordHash: str) -> Deferred[None]:
        """
        Replace an account's password hash. The APOP secret, a separate
        secret, is left as it is.

        @raise appnet.errors.NoSuchUser: (as a failure) if it does not exist.
        """

    def setAPOPSecret(address: str, secret: str | None) -> Deferred[None]:
        """
        Set (or, with C{None}, remove) an account's APOP secret: the shared
        secret of POP3's APOP command (RFC 1939 section 7), kept apart from
        the login password. APOP needs it in the clear, so it is stored as
        given; an account has none until one is set, and changing the
        login password does not touch it.

        @raise appnet.errors.NoSuchUser: (as a failure) if it does not exist.
        """

    def getAPOPSecret(address: str) -> Deferred[str | None]:
        """
        An account's APOP secret, or C{None} when it has none or does not
        exist (a caller checking a login cannot tell the two apart).
        """

    def deleteUser(address: str) -> Deferred[None]:
        """
        Delete an account, its APOP secret with it.

        @raise appnet.errors.NoSuchUser: (as a failure) if it does not exist.
        """

    def listUsers() -> Deferred[Sequence[User]]:
        """
        Every account, ordered by domain then address.
        """

    def domains() -> Deferred[frozenset[str]]:
        """
        Every domain that has at least one account.
        """


@frozen
class SessionRecord:
    """
    One web session, as stored.

    @ivar key: the session's lookup key: the SHA-256 (hex) of the secret
        cookie value. The store never sees the cookie value itself, so a
        copy of the database does not hand out live sessions.
    @ivar account: the canonical address of the logged-in account.
    @ivar csrfToken: the session's anti-CSRF token (L{appnet.web.csrf}).
    @ivar created: when the session was created, seconds since the epoch.
    @ivar expires: when it stops being valid unless extended.
    """

    key: str
    account: str
    csrfToken: str
    created: float
    expires: float

    def __repr__(self) -> str:
        # Keys and tokens stay out of logs.
        return f"SessionRecord({self.account!r}, expires={self.expires})"


class ISessionStore(Interface):
    """
    Web sessions (L{appnet.web.sessions}), so that a login survives a
    restart and is seen by every node sharing the store.
    """

    def addSession(record: SessionRecord) -> Deferred[None]:
        """
        Store a new session. Its key is random and new.
        """

    def getSession(key: str) -> Deferred[SessionRecord | None]:
        """
        The session with this key, expired or not, or C{None}.
        """

    def touchSession(key: str, expires: float) -> Deferred[bool]:
        """
        Move a session's expiry to C{expires}.

        @return: whether the session existed.
        """

    def deleteSession(key: str) -> Deferred[bool]:
        """
        Delete one session (logout).

        @return: whether it existed.
        """

    def deleteAccountSessions(account: str) -> Deferred[int]:
        """
        Delete every session of one account.

        @return: how many were deleted.
        """

    def purgeExpired(now: float) -> Deferred[int]:
        """
        Delete every session whose expiry is at or before C{now}.

        @return: how many were deleted.
        """


class IStore(Interface):
    """
    All durable state of one appnet node, one attribute per seam. Protocol
    issues add their seams (mail store, queue, sessions) here.
    """

    users = Attribute("The L{IUserStore}.")
    sessions = Attribute("The L{ISessionStore}.")
    mail = Attribute("The L{IMailStore}: every user's folders and messages.")
    queue = Attribute("The L{IQueueStore}: mail waiting to be relayed.")

    def start() -> Deferred[None]:
        """
        Open the store; fires when it is ready.
        """

    def stop() -> Deferred[None]:
        """
        Close the store after finishing queued work.
        """


# The mail store: folders and messages (SMTP delivers, POP3/IMAP/webmail
# read), and the outgoing queue (submission fills, the relay drains).

#: The folder every account has; created on first use.
INBOX = "INBOX"


@frozen
class FolderInfo:
    """
    The state of one folder, as IMAP's SELECT and STATUS report it.

    @ivar owner: the account address.
    @ivar name: the folder name (C{"INBOX"}, C{"Sent"}, C{"Archive/2024"}).
    @ivar uidValidity: changes only if UIDs of this name can no longer be
        trusted (the folder was deleted and made again).
    @ivar uidNext: the UID the next message will get.
    @ivar modseq: the folder's change counter: every delivery, flag change
        and expunge raises it, so a poller (in this or another process)
        learns of a change by comparing it.
    @ivar messages: how many messages it holds.
    @ivar unseen: how many of them lack C{\\Seen}.
    @ivar size: their total size in bytes.
    @ivar subscribed: the account subscribes to it (IMAP's SUBSCRIBE and
        LSUB); folders are subscribed when made.
    @ivar firstRecentUid: messages with this UID or above are IMAP
        C{\\Recent}: no read-write IMAP session has had the folder
        selected since they arrived (L{IMailStore.claimRecent}). Default:
        C{uidNext} (nothing is recent).
    @ivar recent: how many messages have a UID of C{firstRecentUid} or
        above (IMAP's STATUS RECENT).
    """

    owner: str
    name: str
    uidValidity: int
    uidNext: int
    modseq: int
    messages: int = 0
    unseen: int = 0
    size: int = 0
    subscribed: bool = True
    recent: int = 0
    firstRecentUid: int = field(
        default=Factory(lambda self: self.uidNext, takes_self=True)
    )


@frozen
class MessageInfo:
    """
    One message's index row, without its body.

    @ivar flags: system flags (C{\\Seen}, C{\\Deleted}, ...) and keywords.
    @ivar internalDate: when it arrived, seconds since the epoch.
    @ivar modseq: the folder modseq of its last change.
    """

    uid: int
    size: int
    flags: frozenset[str] = frozenset()
    internalDate: float = 0.0
    modseq: int = 0


@frozen
class Changes:
    """
    What changed in a folder after a given modseq.

    @ivar modseq: the folder's modseq now.
    @ivar changed: messages added or whose flags changed, by UID.
    @ivar expunged: UIDs removed.
    @ivar firstRecentUid: the folder's L{FolderInfo.firstRecentUid} as of
        the same moment, or C{None} if not known (nothing counts as
        recent).
    """

    modseq: int
    changed: tuple[MessageInfo, ...] = ()
    expunged: tuple[int, ...] = ()
    firstRecentUid: int | None = None


@frozen
class Usage:
    """
    What one account's messages take, for quota.
    """

    bytes: int = 0
    messages: int = 0


@frozen
class DeliveryTarget:
    """
    One folder a staged message is filed into.

    @ivar quota: the owner's quota in bytes, or C{None} for no limit; the
        store refuses a delivery that would take the owner past it.
    """

    owner: str
    folder: str = INBOX
    flags: frozenset[str] = frozenset()
    quota: int | None = None


@frozen
class MessageBody:
    """
    A stored message's bytes, opened on demand.

    Message files are immutable, and an opened file stays readable even if
    the message is expunged meanwhile.
    """

    size: int
    _opener: Callable[[], BinaryIO] = field(alias="opener")
    #: The bytes themselves, when the store holds them in memory anyway
    #: (a small message just queued by this process, or read from the
    #: database with its row): no file to read.
    memory: bytes | None = field(default=None, kw_only=True)

    def open(self) -> BinaryIO:
        """
        Open the message for reading, from its first byte. Local file
        opens are cheap; read in chunks (a producer), not all at once.
        """
        return self._opener()


class IStagedMessage(Interface):
    """
    A message being received, before it is filed anywhere.

    Whoever receives a message (SMTP's DATA, IMAP's APPEND) writes it here
    as it arrives, then hands it to L{IQueueStore.enqueue} and/or (last)
    L{IMailStore.deliver}, and finally calls L{discard}. Enqueueing copies
    the bytes; delivering may move them, so nothing can follow it.
    """

    size = Attribute("Bytes written so far.")

    def write(data: bytes) -> None:
        """
        Append bytes (written through to a temporary file, not fsynced).
        """

    def discard() -> None:
        """
        Throw away the staged copy. Idempotent.
        """


class IMailStore(Interface):
    """
    Every account's mail: folders holding immutable messages with UIDs and
    flags, quota accounting, change notification and session locks.

    A message's bytes are fixed once stored; its flags change. Every method
    is safe while other sessions (SMTP delivering, POP3 and IMAP reading)
    use the same folder, in this process or another sharing the store.
    INBOX exists for every account from its first use; other folders must
    be created.
    """

    def stage() -> IStagedMessage:
        """
        Start receiving a message.
        """

    def deliver(
        staged: IStagedMessage,
        targets: Sequence[DeliveryTarget],
        internalDate: float | None = None,
        prefix: bytes = b"",
    ) -> Deferred[Sequence[int]]:
        """
        File a staged message into every target folder, atomically and
        durably: when the Deferred fires, the bytes are fsynced and every
        index row is committed; if it fails, no target got the message.
        The staged message is used up either way (only L{discard} it).

        @param internalDate: default: now.
        @param prefix: bytes that readers see before the staged message's
            (the C{Return-Path} line), kept with the index row so that the
            received file itself can be shared with the queue; the
            message's size counts them.
        @return: the new UIDs, one per target in order.
        @raise appnet.errors.QuotaExceeded: (as a failure) naming the first
            owner the message would take past its quota.
        @raise appnet.errors.NoSuchFolder: for a missing folder other than
            INBOX.
        """

    def folder(owner: str, name: str = INBOX) -> Deferred[FolderInfo]:
        """
        One folder's state.

        @raise appnet.errors.NoSuchFolder: (as a failure).
        """

    def listFolders(owner: str) -> Deferred[Sequence[FolderInfo]]:
        """
        Every folder of an account, INBOX first, then by name.
        """

    def createFolder(owner: str, name: str) -> Deferred[FolderInfo]:
        """
        Make an empty folder with a fresh UIDVALIDITY.

        @raise appnet.errors.FolderExists: (as a failure).
        """

    def renameFolder(
        owner: str, old: str, new: str, delimiter: str | None = None
    ) -> Deferred[None]:
        """
        Rename a folder (keeping its UIDVALIDITY). Renaming INBOX moves its
        messages into a new folder and leaves INBOX empty (RFC 3501 6.3.5).

        @param delimiter: also rename, in the same transaction, every
            folder below C{old} in a hierarchy with this delimiter
            (C{old/x} becomes C{new/x}); not for INBOX.
        @raise appnet.errors.NoSuchFolder: if C{old} does not exist.
        @raise appnet.errors.FolderExists: if C{new} (or a renamed
            inferior's new name) does.
        """

    def deleteFolder(owner: str, name: str) -> Deferred[None]:
        """
        Delete a folder and its messages (not INBOX).

        @raise appnet.errors.NoSuchFolder: (as a failure).
        """

    def listMessages(
        owner: str, name: str = INBOX, uids: Sequence[int] | None = None
    ) -> Deferred[Sequence[MessageInfo]]:
        """
        Index rows in UID order, without bodies: cheap for large folders.

        @param uids: only these UIDs (missing ones are skipped); default all.
        @raise appnet.errors.NoSuchFolder: (as a failure).
        """

    def newestFirst(
        owner: str, name: str, offset: int, limit: int
    ) -> Deferred[Sequence[MessageInfo]]:
        """
        One page of index rows, newest first (internal date, then UID,
        both descending): rows C{offset} to C{offset + limit} of that
        order, chosen by the store (a folder's rows are never all loaded).

        @raise appnet.errors.NoSuchFolder: (as a failure).
        """

    def openMessage(owner: str, name: str, uid: int) -> Deferred[MessageBody]:
        """
        A message's bytes.

        @raise appnet.errors.NoSuchMessage: (as a failure).
        """

    def openMessages(
        owner: str, name: str, uids: Sequence[int]
    ) -> Deferred[Mapping[int, MessageBody]]:
        """
        The bytes of many messages in one look-up (IMAP FETCH and SEARCH
        over a range). Missing UIDs are left out of the mapping.

        @raise appnet.errors.NoSuchFolder: (as a failure).
        """

    def setFlags(
        owner: str, name: str, uids: Sequence[int], flags: frozenset[str], mode: str
    ) -> Deferred[Sequence[MessageInfo]]:
        """
        Change flags: C{mode} is C{"add"}, C{"remove"} or C{"replace"}.

        @return: the rows whose flags changed, as they are now.
        """

    def expunge(
        owner: str,
        name: str,
        uids: Sequence[int] | None = None,
        onlyDeleted: bool = False,
    ) -> Deferred[Sequence[int]]:
        """
        Remove messages for good: the given UIDs, or (C{None}) every message
        flagged C{\\Deleted}. Missing UIDs are ignored.

        @param onlyDeleted: of the given UIDs, remove only those flagged
            C{\\Deleted} at the moment of removal (IMAP's EXPUNGE and UID
            EXPUNGE, which must not remove a message another session has
            just undeleted).
        @return: the UIDs removed.
        """

    def copy(
        owner: str,
        name: str,
        uids: Sequence[int],
        dest: str,
        quota: int | None = None,
    ) -> Deferred[Mapping[int, int]]:
        """
        Copy messages (with their flags and internal dates) to another folder
        of the same account.

        @return: source UID to new UID.
        @raise appnet.errors.QuotaExceeded: if the copies would not fit.
        """

    def move(
        owner: str, name: str, uids: Sequence[int], dest: str
    ) -> Deferred[Mapping[int, int]]:
        """
        Move messages to another folder of the same account (RFC 6851): new
        UIDs there, expunged here, usage unchanged.

        @return: source UID to new UID.
        """

    def setSubscribed(owner: str, name: str, subscribed: bool) -> Deferred[None]:
        """
        Subscribe to a folder or unsubscribe from it (IMAP's SUBSCRIBE and
        UNSUBSCRIBE); the choice is kept across sessions.

        @raise appnet.errors.NoSuchFolder: (as a failure).
        """

    def claimRecent(owner: str, name: str) -> Deferred[tuple[int, int]]:
        """
        Claim a folder's recent messages for one read-write IMAP session
        (RFC 3501 2.3.2: a message is C{\\Recent} in the first session to
        have the folder selected after it arrived, and in no other): in one
        atomic compare-and-set, move the folder's
        L{FolderInfo.firstRecentUid} up to its UIDNEXT. Concurrent
        claimers, in this process or others sharing the store, get
        disjoint ranges. Messages delivered, copied, moved or appended
        later get UIDs at or above the new value, so they are recent for
        the next claimer. Nothing else (EXAMINE, STATUS, POP3) claims.
        The folder's modseq is not raised: no message changed.

        @return: C{(first, end)}: the UIDs in C{[first, end)} are recent
            for the caller alone (C{first == end}: none).
        @raise appnet.errors.NoSuchFolder: (as a failure).
        """

    def changesSince(owner: str, name: str, modseq: int) -> Deferred[Changes]:
        """
        What changed in a folder after C{modseq}: how a session (or another
        process) catches up after a notification or a poll.
        """

    def watch(
        owner: str, name: str, callback: Callable[[FolderInfo], None]
    ) -> Callable[[], None]:
        """
        Call C{callback(folderInfo)} whenever the folder changes (delivery,
        flags, expunge), from this process or, by polling the folder's
        modseq, from another one sharing the store.

        @return: a function that stops watching.
        """

    def usage(owner: str) -> Deferred[Usage]:
        """
        The bytes and messages an account's folders hold.
        """

    def lock(owner: str, name: str, holder: str, ttl: float) -> Deferred[bool]:
        """
        Take an exclusive named lock on an account (POP3's maildrop lock),
        held by C{holder} for C{ttl} seconds unless refreshed. A lock whose
        holder died expires instead of blocking the account forever.

        @return: C{True} if taken (or already held by C{holder}), C{False}
            if someone else holds it.
        """

    def refreshLock(owner: str, name: str, holder: str, ttl: float) -> Deferred[bool]:
        """
        Extend a held lock.

        @return: C{False} if C{holder} no longer holds it.
        """

    def unlock(owner: str, name: str, holder: str) -> Deferred[None]:
        """
        Release a lock if C{holder} holds it.
        """


class RecipientState:
    """
    What has become of one recipient of a queued message.
    """

    PENDING = "pending"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    ALL = (PENDING, DELIVERED, DEFERRED, BOUNCED)


@frozen
class QueuedRecipient:
    """
    One envelope recipient of a queued message.

    @ivar state: one of L{RecipientState}.
    @ivar response: the last SMTP reply or error for it.
    @ivar updated: when its state last changed.
    @ivar notified: the sender has been told of its bounce (a DSN was
        queued, or none is due: the null sender).
    """

    address: str
    state: str = RecipientState.PENDING
    response: str | None = None
    updated: float = 0.0
    notified: bool = False

    @property
    def final(self) -> bool:
        """Delivered, or bounced and the sender told."""
        return self.state == RecipientState.DELIVERED or (
            self.state == RecipientState.BOUNCED and self.notified
        )


@frozen
class QueuedMessage:
    """
    A message in the outgoing queue.

    @ivar sender: the envelope sender (C{""} for the null sender).
    @ivar submitter: the account that submitted it, if authenticated.
    @ivar nextAttempt: when the relay should next try it.
    @ivar held: the relay must leave it alone until released.
    @ivar lastError: the last failure affecting the whole message.
    @ivar warned: the sender has been told of its delay.
    @ivar claimedBy: the queue runner working on it, if any ...
    @ivar claimedUntil: ... until this time, unless it renews its claim.
    """

    id: int
    sender: str
    recipients: tuple[QueuedRecipient, ...]
    size: int
    created: float
    nextAttempt: float
    attempts: int = 0
    held: bool = False
    lastError: str | None = None
    submitter: str | None = None
    warned: bool = False
    claimedBy: str | None = None
    claimedUntil: float = 0.0


@frozen
class RecipientUpdate:
    """
    What one delivery attempt made of one recipient.

    @ivar state: L{RecipientState.DELIVERED}, C{DEFERRED} or C{BOUNCED}.
    @ivar response: the SMTP reply or error, for the queue listing and
        the DSN.
    @ivar notified: see L{QueuedRecipient.notified}.
    """

    address: str
    state: str
    response: str | None = None
    notified: bool = False


@frozen
class Notice:
    """
    What a queued DSN tells about another queued message; enqueueing the
    DSN marks it in the same transaction, so the sender is told once
    however the process dies.

    @ivar message: the queue id of the message the DSN is about.
    @ivar bounced: its recipients whose failure the DSN reports (they
        become C{notified}).
    @ivar warned: the DSN is its delay warning.
    """

    message: int
    bounced: tuple[str, ...] = ()
    warned: bool = False


class IQueueStore(Interface):
    """
    Mail waiting to leave this node. Submission enqueues remote recipients
    durably before it answers 250; queue runners claim due messages with a
    lease (several runners, in several processes or nodes, never work on
    one message at once, and a crashed runner's claims expire), record
    each recipient's outcome, and settle the message: rescheduled while
    any recipient is left, removed once every one is final.
    """

    def enqueue(
        staged: IStagedMessage,
        sender: str,
        recipients: Sequence[str],
        skip: int = 0,
        submitter: str | None = None,
        notice: Notice | None = None,
    ) -> Deferred[int]:
        """
        Queue a staged message for C{recipients}, durably (fsynced file,
        committed rows) before the Deferred fires. Every recipient starts
        C{pending}, due now.

        @param skip: leading bytes of the staged message not to queue (the
            C{Return-Path} line a local delivery of the same message adds).
        @param notice: this message is a DSN about another queued message;
            mark that one in the same transaction.
        @return: the queue id.
        """

    def watch(callback: Callable[[], None]) -> Callable[[], None]:
        """
        Call C{callback()} whenever a change made through this store may
        have made a message due (enqueue, retry, release, a released
        claim). Changes by other processes are not reported: a runner
        also polls.

        @return: a function that stops watching.
        """

    def adopt(
        owner: str, lease: float, callback: Callable[[QueuedMessage], None]
    ) -> Callable[[], None]:
        """
        Offer to hand messages enqueued through this store from now on
        straight to a runner of this process: each is claimed for
        C{owner} (until its enqueue time plus C{lease}) in its enqueue's
        own transaction and, once that has committed, given to
        C{callback} instead of being reported to watchers, so the runner
        takes new mail without a claim and a look-up of its own. One
        adopter at a time (a later call replaces the earlier). A store may
        decline by returning at once: its watchers then hear of new mail
        as before.

        @return: a function that stops adopting. A message whose enqueue
            committed after that is released and reported to watchers.
        """

    def claim(
        owner: str, now: float, lease: float, limit: int
    ) -> Deferred[Sequence[QueuedMessage]]:
        """
        Take up to C{limit} due messages for C{owner}: not held, next
        attempt at or before C{now}, and unclaimed or claimed by a lease
        that has run out; earliest due first. Each is claimed until
        C{now + lease}. Atomic: two owners never get the same message.
        """

    def renew(owner: str, ids: Sequence[int], until: float) -> Deferred[int]:
        """
        Extend C{owner}'s claims on these messages.

        @return: how many it still held.
        """

    def releaseClaims(prefix: str) -> Deferred[int]:
        """
        Drop every claim whose owner starts with C{prefix}: a runner,
        starting, takes back what an earlier run of its node held when it
        died.

        @return: how many claims were dropped.
        """

    def nextDue() -> Deferred[float | None]:
        """
        When the next message falls due (a claimed one: when its lease
        runs out), ignoring held messages; C{None} if none.
        """

    def record(id: int, updates: Sequence[RecipientUpdate]) -> Deferred[None]:
        """
        Store what an attempt made of some recipients, durably. A
        recipient already delivered stays delivered. Nothing happens for
        a message that is gone (deleted meanwhile).
        """

    def settle(
        id: int,
        owner: str,
        nextAttempt: float,
        lastError: str | None,
        updates: Sequence[RecipientUpdate] = (),
    ) -> Deferred[bool]:
        """
        End C{owner}'s attempt on a message: remove it (row and file) if
        every recipient is final (L{QueuedRecipient.final}), else count
        the attempt, note C{lastError}, schedule it for C{nextAttempt}
        and drop the claim.

        @param updates: outcomes to L{record} first, in the same
            transaction.

        @return: whether the message left the queue.
        """

    def retry(id: int | None = None) -> Deferred[int]:
        """
        Make one message (or every one) due now.

        @return: how many messages were affected.
        """

    def hold(id: int) -> Deferred[bool]:
        """
        Keep a message from being delivered until released.

        @return: whether it exists.
        """

    def release(id: int) -> Deferred[bool]:
        """
        Undo L{hold}; the message is due now.

        @return: whether it exists.
        """

    def delete(id: int) -> Deferred[bool]:
        """
        Remove a message (row and file) without telling its sender.

        @return: whether it existed.
        """

    def get(id: int) -> Deferred[QueuedMessage | None]:
        """
        One queued message, or C{None}.
        """

    def list() -> Deferred[Sequence[QueuedMessage]]:
        """
        Every queued message, oldest first.
        """

    def openMessage(id: int) -> Deferred[MessageBody]:
        """
        A queued message's bytes.

        @raise appnet.errors.NoSuchMessage: (as a failure).
        """
