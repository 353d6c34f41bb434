"""
An aiosmtpd SMTP server for interop tests of appnet's SMTP clients, run as
a child process by L{tests.mail.test_aiosmtpd}:

    python aiosmtpd_server.py DIRECTORY USER PASSWORD CERT KEY REFUSED

It listens on 127.0.0.1, port 0, and prints C{port N} once listening. It
offers STARTTLS with the given certificate and requires it, and requires
AUTH (PLAIN or LOGIN) as USER with PASSWORD after it. RCPT TO the address
REFUSED gets 550; every message taken is written to DIRECTORY as
C{N.eml} (the data exactly as received, dot-stuffing undone) and
C{N.json} (envelope, whether TLS was on, who logged in, the client's
address and port), the JSON last.

aiosmtpd's C{Controller} is not used: its readiness check connects to the
configured port, which here is 0; the server is made with asyncio's
C{create_server} instead, which is what the controller does inside.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Keeper:
    """Refuses one recipient; writes every message and its envelope."""

    def __init__(self, directory: str, refused: str) -> None:
        self.directory = directory
        self.refused = refused
        self.count = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.lower() == self.refused.lower():
            return f"550 5.1.1 <{address}>: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        base = os.path.join(self.directory, str(self.count))
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        login = session.auth_data
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "login": login.decode() if isinstance(login, bytes) else login,
            "peer": list(session.peer),
        }
        with open(base + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(base + ".tmp", base + ".json")
        return "250 2.0.0 stored"


def authenticator(user: str, password: str) -> Any:
    def check(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        good = (
            isinstance(data, LoginPassword)
            and data.login == user.encode()
            and data.password == password.encode()
        )
        return AuthResult(
            success=good, handled=False, auth_data=data.login if good else None
        )

    return check


async def main(argv: list[str]) -> None:
    directory, user, password, cert, key, refused = argv
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Keeper(directory, refused)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="localhost",
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=authenticator(user, password),
        ),
        "127.0.0.1",
        0,
    )
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
