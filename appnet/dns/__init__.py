"""
DNS: authoritative zones, a caching recursive resolver (forwarding or
iterating from root hints), a client, and C{appnet dig}.

The public surface:

  - L{resolverFor}: the resolver appnet's own lookups use (the mail
    relay's MX and address lookups, SPF), an L{IDNSResolver}, and
    L{SystemResolvers}, the servers of a C{resolv.conf};
  - L{DNSClient}, L{Response}, L{MailExchanger}: lookups against a given
    server;
  - the errors lookups raise (L{NameNotFound}, L{NoRecords}, L{NullMX},
    L{TemporaryFailure}) and L{ZoneError};
  - fixtures in L{appnet.dns.testing} (re-exported by L{appnet.testing}).

The server itself (L{appnet.dns.server}) joins a stack through
L{appnet.stack.BUILDERS}.
"""

from appnet.dns.client import (
    DNSClient,
    MailExchanger,
    Response,
    SystemResolvers,
    resolverFor,
)
from appnet.dns.errors import (
    DNSError,
    LookupFailed,
    NameNotFound,
    NoRecords,
    NullMX,
    TemporaryFailure,
    ZoneError,
)
from appnet.dns.interfaces import IDNSResolver

__all__ = [
    "DNSClient",
    "DNSError",
    "IDNSResolver",
    "LookupFailed",
    "MailExchanger",
    "NameNotFound",
    "NoRecords",
    "NullMX",
    "Response",
    "SystemResolvers",
    "TemporaryFailure",
    "ZoneError",
    "resolverFor",
]
