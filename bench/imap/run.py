"""
IMAP on a 10,000-message mailbox: appnet against Dovecot, side by side in
one run.

Both servers get the same mailbox: 10,000 messages of about 4 KiB (a
header section and a text body), put in place directly (appnet: through
its store into a data directory; Dovecot: files in a Maildir). One
client (Python's imaplib, so client costs are the same for both) then
measures:

- SELECT INBOX: the first one (Dovecot builds its index then; appnet's
  index is its database) and the median of five more;
- FETCH 1:* (FLAGS UID): index data of every message, messages/s;
- FETCH 1:* BODY.PEEK[]: every message whole, MB/s;
- SEARCH SUBJECT (a header search over every message), seconds;
- SEARCH TEXT (header and decoded body of every message), seconds;
- SEARCH BODY for a word every message has, and for one none has;
- the server's peak resident memory (VmHWM) over the run.

With C{--big N}, a second mailbox of N messages of C{--big-size} MiB
(plain text) is searched with SEARCH TEXT, and each server's peak
resident memory during that search is printed: it must not grow with
the messages' size.

appnet runs as its twistd daemon over TCP on 127.0.0.1 (plain text, as
loopback allows). Dovecot 2.3 runs as its C{imap} process pre-
authenticated over a pipe (C{imaplib.IMAP4_stream}), from the Debian
packages unpacked into a temporary directory (nothing installed, no
system configuration touched; as root it runs as C{nobody}); it skips
login and TCP, so it is favoured slightly. Without C{--dovecot} (or when
unpacking fails) its column is left empty.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/python bench/imap/run.py [--dovecot] [--messages N] [--big N]

On a shared machine, run it twice and compare.
"""

from __future__ import annotations

import argparse
import glob
import imaplib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import stopProcess, table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER = "bench@example.org"
PASSWORD = "bench-password"

POPULATE = r"""
import sys
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from appnet.store.sqlite import SQLiteStore
from appnet.store.interfaces import DeliveryTarget

path, owner, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, sys.argv[4])
from bench.imap.run import message, bigMessage
size = int(sys.argv[5])
make = (lambda i: bigMessage(i, size)) if size else message


async def main(reactor):
    store = SQLiteStore.open(path, reactor)
    await store.start()
    try:
        for start in range(0, count, 200):
            batch = []
            for i in range(start, min(count, start + 200)):
                staged = store.mail.stage()
                staged.write(make(i))
                batch.append(store.mail.deliver(staged, [DeliveryTarget(owner)],
                                                1700000000.0 + i))
            await gatherResults(batch)
    finally:
        await store.stop()

task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
"""


def message(i: int) -> bytes:
    """Message number C{i}: about 4 KiB, every 500th with subject 'needle'."""
    subject = b"needle %d" % i if i % 500 == 0 else b"report %d" % i
    header = (
        b"From: Sender %d <sender%d@example.net>\r\n"
        b"To: Bench <bench@example.org>\r\n"
        b"Subject: %s\r\n"
        b"Date: Tue, 14 Nov 2023 22:13:%02d +0000\r\n"
        b"Message-ID: <%d@bench.example.net>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
    ) % (i, i, subject, i % 60, i)
    line = b"The quick brown fox jumps over the lazy dog, line %06d.\r\n"
    return header + b"".join(line % (i * 100 + n) for n in range(64))


def bigMessage(i: int, mib: int) -> bytes:
    """Message number C{i}: C{mib} MiB of text, every 5th has 'needle' last."""
    header = (
        b"From: Sender <sender@example.net>\r\nTo: Bench <bench@example.org>\r\n"
        b"Subject: big %d\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ) % i
    line = b"All work and no play makes Jack a dull boy, over and over. %08d\r\n"
    lines = (mib << 20) // len(line % 0)
    body = b"".join(line % n for n in range(lines))
    return header + body + (b"needle\r\n" if i % 5 == 0 else b"")


def peakRSS(pid: int) -> int:
    """The highest VmHWM (KiB) of C{pid} and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(parent, []).append(int(entry))
    best, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            with open(f"/proc/{current}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        best = max(best, int(line.split()[1]))
        except OSError:
            pass
    return best


def startAppnet(
    data: str, count: int, bigSize: int = 0
) -> tuple[subprocess.Popen[bytes], int]:
    os.makedirs(data)
    subprocess.run(
        [sys.executable, "-m", "appnet", "--data", data, "user", "add", USER,
         "--password-stdin"],
        input=PASSWORD.encode() + b"\n", check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-c", POPULATE, os.path.join(data, "store.sqlite"), USER,
         str(count), ROOT, str(bigSize)],
        check=True, cwd=ROOT,
    )  # fmt: skip
    args = ["--data", data, "--dns", "127.0.0.1:0"]
    for name in ("http", "ftp", "smtp", "submission", "pop3", "imap"):
        args += [f"--{name}", "tcp:0:interface=127.0.0.1"]
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "appnet", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=data,
    )  # fmt: skip
    assert process.stdout is not None
    port = None
    for raw in process.stdout:
        found = re.search(rb"imap listening on tcp 127\.0\.0\.1:(\d+)", raw)
        if found:
            port = int(found.group(1))
        if b"appnet ready" in raw:
            break
    if port is None:
        raise RuntimeError("appnet did not start")
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, port


def unpackDovecot(work: str) -> str | None:
    """
    Debian's dovecot-core and dovecot-imapd: installed ones (root C{/}),
    else unpacked here; their root, or None.
    """
    if os.path.exists("/usr/lib/dovecot/imap") and os.path.exists("/usr/bin/doveconf"):
        return "/"
    target = os.path.join(work, "dovecot-packages")
    os.makedirs(target)
    try:
        subprocess.run(
            ["apt-get", "download", "dovecot-core", "dovecot-imapd"],
            cwd=target, check=True, capture_output=True,
        )  # fmt: skip
        for deb in glob.glob(os.path.join(target, "*.deb")):
            subprocess.run(["dpkg", "-x", deb, "root"], cwd=target, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"dovecot: not available ({e})", file=sys.stderr)
        return None
    return os.path.join(target, "root")


def dovecotCommand(root: str, work: str, count: int, bigSize: int = 0) -> str:
    """Fill a Maildir; the command that runs Dovecot's imap on it."""
    home = os.path.join(work, "dovecot-big" if bigSize else "dovecot")
    maildir = os.path.join(home, "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub))
    for i in range(count):
        name = f"{1700000000 + i}.M{i}P1.bench:2,"
        with open(os.path.join(maildir, "cur", name), "wb") as f:
            f.write(bigMessage(i, bigSize) if bigSize else message(i))
    config = os.path.join(home, "dovecot.conf")
    with open(config, "w") as f:
        f.write(
            f"base_dir = {home}/run\nstate_dir = {home}/state\n"
            f"mail_location = maildir:{maildir}\nlog_path = {home}/log\n"
            "default_login_user = nobody\ndefault_internal_user = nobody\n"
            "ssl = no\n"
        )
    environment = f"env LD_LIBRARY_PATH={root}/usr/lib/dovecot USER=bench HOME={home}"
    command = (
        f"{environment} {root}/usr/bin/doveconf -c {config}"
        f" -e {root}/usr/lib/dovecot/imap 2>>{home}/stderr"
    )
    if os.geteuid() == 0:
        # Dovecot will not serve mail as root.
        os.chmod(work, 0o755)
        subprocess.run(["chown", "-R", "nobody:", home], check=True)
        command = f"setpriv --reuid=nobody --regid=nogroup --clear-groups {command}"
    return command


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bigSearch(
    start: Callable[[], tuple[subprocess.Popen[bytes], int]] | None,
    count: int,
    command: str = "",
) -> dict[str, float]:
    """
    SEARCH TEXT over a mailbox of large messages: time, and the server's
    resident memory before and at its peak (VmHWM, reset by a fresh
    process: the server is started for this alone).
    """
    process = None
    if start is not None:
        process, port = start()
        m = imaplib.IMAP4("127.0.0.1", port, timeout=600)
        m.login(USER, PASSWORD)
        pid = process.pid
    else:
        m = imaplib.IMAP4_stream(command)
        pid = m.process.pid
    try:
        m.select("INBOX")
        before = peakRSS(pid) / 1024
        found: list[bytes] = []
        seconds = timed(lambda: found.extend(m.search(None, "TEXT", "needle")[1]))
        assert len(found[0].split()) == (count + 4) // 5, found
        result = {"text": seconds, "before": before, "rss": peakRSS(pid) / 1024}
        if process is not None:
            # Then APPEND three such messages: the peak must not grow
            # by a message's size each.
            data = bigMessage(count, int(os.environ.get("BIG_SIZE", "8")))
            for _ in range(3):
                typ, _ = m.append("INBOX", None, None, data)
                assert typ == "OK", typ
            result["append"] = peakRSS(pid) / 1024
        m.logout()
    finally:
        if process is not None:
            stopProcess(process)
    return result


def measure(
    connect: Callable[[], imaplib.IMAP4], count: int, stream: bool = False
) -> dict[str, float]:
    m = connect()
    try:
        results = {"select-first": timed(lambda: m.select("INBOX"))}
        results["select"] = statistics.median(
            timed(lambda: m.select("INBOX")) for _ in range(5)
        )

        def flags() -> None:
            typ, data = m.fetch("1:*", "(FLAGS UID)")
            assert typ == "OK" and len(data) == count, (typ, len(data))

        results["flags"] = count / timed(flags)
        total = [0]

        def bodies() -> None:
            typ, data = m.fetch("1:*", "(BODY.PEEK[])")
            assert typ == "OK"
            total[0] = sum(len(item[1]) for item in data if isinstance(item, tuple))

        seconds = timed(bodies)
        results["bodies"] = total[0] / seconds / 1e6
        results["bodies-msgs"] = count / seconds

        def search() -> None:
            typ, data = m.search(None, "SUBJECT", "needle")
            assert len(data[0].split()) == (count + 499) // 500, data

        results["search"] = timed(search)

        def text() -> None:
            typ, data = m.search(None, "TEXT", "needle")
            assert len(data[0].split()) == (count + 499) // 500, data

        results["text"] = timed(text)

        def body() -> None:
            typ, data = m.search(None, "BODY", "line")
            assert len(data[0].split()) == count, data

        def bodyMissing() -> None:
            typ, data = m.search(None, "BODY", "absent")
            assert data == [b""], data

        results["body"] = timed(body)
        results["body-none"] = timed(bodyMissing)
        if stream:
            results["rss"] = peakRSS(m.process.pid) / 1024  # type: ignore[attr-defined]
    except BaseException:
        m.shutdown()
        raise
    m.logout()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument(
        "--dovecot", action="store_true", help="compare with Dovecot (apt-get download)"
    )
    parser.add_argument("--big", type=int, default=0, help="large messages")
    parser.add_argument("--big-size", type=int, default=8, help="MiB each")
    options = parser.parse_args()
    os.environ["BIG_SIZE"] = str(options.big_size)
    count = options.messages
    big: dict[str, dict[str, float]] = {}
    work = tempfile.mkdtemp(prefix="appnet-bench-imap-")
    try:
        process, port = startAppnet(os.path.join(work, "appnet"), count)
        try:

            def connectAppnet() -> imaplib.IMAP4:
                m = imaplib.IMAP4("127.0.0.1", port, timeout=120)
                m.login(USER, PASSWORD)
                return m

            ours = measure(connectAppnet, count)
            ours["rss"] = peakRSS(process.pid) / 1024
        finally:
            stopProcess(process)
        theirs: dict[str, float] = {}
        root = unpackDovecot(work) if options.dovecot else None
        if root is not None:
            command = dovecotCommand(root, work, count)
            theirs = measure(lambda: imaplib.IMAP4_stream(command), count, True)
        if options.big:
            big["appnet"] = bigSearch(
                lambda: startAppnet(
                    os.path.join(work, "appnet-big"), options.big, options.big_size
                ),
                options.big,
            )
            if root is not None:
                bigCommand = dovecotCommand(root, work, options.big, options.big_size)
                big["dovecot"] = bigSearch(None, options.big, bigCommand)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def show(results: dict[str, float], key: str, form: str) -> str:
        return form.format(results[key]) if key in results else "-"

    rows = [["test", "appnet", "Dovecot 2.3"]]
    for label, key, form in (
        (f"SELECT INBOX, first ({count} msgs)", "select-first", "{:.3f} s"),
        ("SELECT INBOX, median of 5", "select", "{:.3f} s"),
        ("FETCH 1:* (FLAGS UID)", "flags", "{:,.0f} msg/s"),
        ("FETCH 1:* BODY.PEEK[]", "bodies", "{:.1f} MB/s"),
        ("FETCH 1:* BODY.PEEK[] (msgs)", "bodies-msgs", "{:,.0f} msg/s"),
        ("SEARCH SUBJECT (headers)", "search", "{:.3f} s"),
        ("SEARCH TEXT (headers and bodies)", "text", "{:.3f} s"),
        ("SEARCH BODY, every message has it", "body", "{:.3f} s"),
        ("SEARCH BODY, none has it", "body-none", "{:.3f} s"),
        ("peak RSS of the server", "rss", "{:.0f} MiB"),
    ):
        rows.append([label, show(ours, key, form), show(theirs, key, form)])
    print(table(rows))
    if big:
        mine, other = big.get("appnet", {}), big.get("dovecot", {})
        label = f"{options.big} x {options.big_size} MiB"
        print()
        print(
            table(
                [
                    ["SEARCH TEXT, large messages", "appnet", "Dovecot 2.3"],
                    [f"{label}: time", show(mine, "text", "{:.2f} s"),
                     show(other, "text", "{:.2f} s")],
                    [f"{label}: RSS before", show(mine, "before", "{:.0f} MiB"),
                     show(other, "before", "{:.0f} MiB")],
                    [f"{label}: peak RSS", show(mine, "rss", "{:.0f} MiB"),
                     show(other, "rss", "{:.0f} MiB")],
                    ["then 3 APPENDs of one: peak RSS",
                     show(mine, "append", "{:.0f} MiB"), "-"],
                ]
            )
        )  # fmt: skip


if __name__ == "__main__":
    main()
