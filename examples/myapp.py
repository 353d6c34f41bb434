"""
A tiny application under test: it mails, resolves and fetches with the
standard library's blocking clients, as much real code does.
"""

from __future__ import annotations

import smtplib
import urllib.request
from email.message import EmailMessage


def sendWelcome(smtp: tuple[str, int], to: str) -> None:
    """Mail a new user their welcome message."""
    message = EmailMessage()
    message["From"] = "signup@myapp.test"
    message["To"] = to
    message["Subject"] = "Welcome"
    message.set_content("Thanks for signing up.")
    with smtplib.SMTP(*smtp, timeout=10) as client:
        client.send_message(message)


def fetchStatus(url: str) -> int:
    """The HTTP status of C{url}."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            code: int = response.status
            return code
    except urllib.error.HTTPError as e:
        return e.code
