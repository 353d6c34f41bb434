"""
The web: an HTTP/1.1 server for static files with validators, ranges and
compression; cookie sessions in the store with CSRF protection; form login
with the shared accounts; C{/status} and C{/metrics}; and an HTTP client
(C{appnet fetch}, L{appnet.web.client}).

Applications attach to the server through L{appnet.web.server.MOUNTS}; see
that module.
"""

from appnet.web.csrf import CSRFError
from appnet.web.login import LoginFailed, LoginService
from appnet.web.server import MOUNTS, WebContext, buildWeb, webBuilder
from appnet.web.sessions import SessionGate, SessionManager, WebSession, sessionOf

__all__ = [
    "CSRFError",
    "LoginFailed",
    "LoginService",
    "MOUNTS",
    "SessionGate",
    "SessionManager",
    "WebContext",
    "WebSession",
    "buildWeb",
    "sessionOf",
    "webBuilder",
]
