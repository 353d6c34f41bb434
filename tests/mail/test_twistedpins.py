"""
Pins on Twisted's C{SMTPClient} internals that L{appnet.mail.relay.RelayClient}
and L{appnet.mail.client.StuffingClient} drive: Twisted offers no public
hook for its reply dispatch. Each test fails if a Twisted release changes
what the relay relies on.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport
from twisted.mail.smtp import SUCCESS, SMTPClient
from twisted.trial.unittest import SynchronousTestCase


class _Client(SMTPClient):
    def __init__(self) -> None:
        super().__init__(b"localhost")
        self.sent: list[tuple[int, bytes]] = []

    def getMailFrom(self) -> None:
        return None

    def sentMail(self, code: int, resp: bytes, *args: Any) -> None:
        self.sent.append((code, resp))


def connected() -> tuple[_Client, StringTransport]:
    client = _Client()
    transport = StringTransport()
    client.makeConnection(transport)
    return client, transport


class SMTPClientDispatchTests(SynchronousTestCase):
    """
    A final reply goes to C{_okresponse} when its code is in C{_expected},
    else to C{_failresponse}; continuation lines are joined first.
    """

    def test_dispatch(self) -> None:
        """Expected codes reach C{_okresponse}, others C{_failresponse}."""
        client, _ = connected()
        seen: list[tuple[str, int, bytes]] = []
        client._expected = [250]
        client._okresponse = lambda c, r: seen.append(("ok", c, r))
        client._failresponse = lambda c, r: seen.append(("fail", c, r))
        client.lineReceived(b"250-one")
        client.lineReceived(b"250 two")
        client.lineReceived(b"550 no")
        self.assertEqual(seen, [("ok", 250, b"one\ntwo"), ("fail", 550, b"no")])

    def test_msgSentNeedsFrom(self) -> None:
        """
        C{smtpState_msgSent} reports through C{sentMail} only while
        C{_from} is set, clears it, and sends RSET expecting success.
        """
        client, transport = connected()
        client._from = b"a@example.org"
        client.smtpState_msgSent(250, b"queued")
        client.smtpState_msgSent(250, b"again")
        self.assertEqual(client.sent, [(250, b"queued")])
        self.assertIsNone(client._from)
        self.assertEqual(client._expected, SUCCESS)
        self.assertEqual(client._okresponse, client.smtpState_from)
        self.assertTrue(transport.value().endswith(b"RSET\r\n"))

    def test_disconnect(self) -> None:
        """C{_disconnectFromServer} sends QUIT and takes any reply."""
        client, transport = connected()
        transport.clear()
        client._disconnectFromServer()
        self.assertEqual(transport.value(), b"QUIT\r\n")
        self.assertEqual(client._expected, range(0, 1000))
        self.assertEqual(client._okresponse, client.smtpState_disconnect)
