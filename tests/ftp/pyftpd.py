"""
A pyftpdlib FTP server for interop tests of appnet's FTP client, run as a
child process by L{tests.ftp.test_pyftpdlib}:

    python pyftpd.py HOME USER PASSWORD [--tls CERT KEY] [--no-epsv]

It serves HOME (full permissions) to one user on 127.0.0.1, port 0, and
prints C{port N} once listening. C{--tls} offers AUTH TLS with the given
certificate; C{--no-epsv} withdraws EPSV so clients must fall back to
PASV. Every command received is logged to standard error
(C{... <- PASV}), so tests can check what the client sent. It runs until
it is signalled.
"""

from __future__ import annotations

import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main(argv: list[str]) -> None:
    home, user, password, *options = argv
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, home, perm="elradfmwMT")
    handler: type[FTPHandler] = FTPHandler
    if "--tls" in options:
        from pyftpdlib.handlers import TLS_FTPHandler

        at = options.index("--tls")

        class Secure(TLS_FTPHandler):  # type: ignore[misc]
            certfile = options[at + 1]
            keyfile = options[at + 2]

        handler = Secure
    if "--no-epsv" in options:

        class NoEPSV(handler):  # type: ignore[misc, valid-type]
            proto_cmds = {k: v for k, v in handler.proto_cmds.items() if k != "EPSV"}

        handler = NoEPSV
    handler.authorizer = authorizer
    logging.basicConfig(level=logging.DEBUG, format="%(message)s")
    server = FTPServer(("127.0.0.1", 0), handler)
    print(f"port {server.address[1]}", flush=True)
    server.serve_forever(handle_exit=False)


if __name__ == "__main__":
    main(sys.argv[1:])
