"""
pytest tests with appnet's plugin: C{appnet_start} starts services and
stops them after the test.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest_twisted
from twisted.internet.threads import deferToThread


def send(smtp: tuple[str, int], to: str) -> None:
    message = EmailMessage()
    message["From"] = "app@myapp.test"
    message["To"] = to
    message["Subject"] = "Hello from pytest"
    message.set_content("hi")
    with smtplib.SMTP(*smtp, timeout=10) as client:
        client.send_message(message)


@pytest_twisted.ensureDeferred
async def test_mail(appnet_start):
    """A message sent with smtplib is in the mailbox."""
    s = await appnet_start("smtp", users={"bob@example.org": "secret"})
    await deferToThread(send, s.address("smtp"), "bob@example.org")
    [mail] = await s.deliveredTo("bob@example.org")
    assert mail.message["Subject"] == "Hello from pytest"


@pytest_twisted.ensureDeferred
async def test_fault(appnet_start):
    """A scripted 550 on MAIL reaches smtplib as SMTPSenderRefused."""
    s = await appnet_start("smtp", users={"bob@example.org": "secret"})
    s.faults.smtp("MAIL", 550)
    try:
        await deferToThread(send, s.address("smtp"), "bob@example.org")
    except smtplib.SMTPSenderRefused as e:
        assert e.smtp_code == 550
    else:
        raise AssertionError("the fault did not fire")
    assert s.faults.count("smtp") == 1


@pytest_twisted.ensureDeferred
async def test_http(appnet_start):
    """The web root serves what the test gives it."""
    s = await appnet_start("http", www={"a.txt": b"A"})
    response = await s.web.client().get(s.url("/a.txt"))
    assert await response.content() == b"A"
