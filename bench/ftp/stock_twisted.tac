"""
Stock Twisted FTP, built the way ``twistd ftp`` builds it
(``twisted.tap.ftp.makeService``: ``FTPFactory`` + ``FTPRealm`` + a
portal), with two changes ``twistd ftp`` has no options for: it listens on
loopback only, and logged-in users' homes are under BENCH_HOMES instead of
/home. Run by bench/ftp/run.py::

    BENCH_PORT=2121 BENCH_HOMES=/tmp/x twistd -n -y stock_twisted.tac
"""

import os

from twisted.application import internet, service
from twisted.cred import checkers, portal
from twisted.protocols import ftp

homes = os.environ["BENCH_HOMES"]
factory = ftp.FTPFactory()
realm = ftp.FTPRealm(homes, userHome=homes)
users = checkers.InMemoryUsernamePasswordDatabaseDontUse()
# FTP.ftp_PASS passes the user name and password as str (decoded Latin-1),
# so the keyword form (which stores bytes) never matches; add them as str.
users.addUser("bench", "benchpass")  # type: ignore[arg-type]
factory.portal = portal.Portal(realm, [checkers.AllowAnonymousAccess(), users])
factory.protocol = ftp.FTP
application = service.Application("stock-twisted-ftp")
internet.TCPServer(
    int(os.environ["BENCH_PORT"]), factory, interface="127.0.0.1"
).setServiceParent(application)
