"""
A small DNS tree for resolver tests: a root on 127.0.0.2, C{edu.} on
127.0.0.3 and C{hamburger.edu.} on 127.0.0.4, and hints naming only the
root.
"""

ROOT_IP, EDU_IP, HAMBURGER_IP = "127.0.0.2", "127.0.0.3", "127.0.0.4"

HINTS = f"""\
; root hints: only the root
.                     3600000  NS  a.root-servers.test.
a.root-servers.test.  3600000  A   {ROOT_IP}
"""

ROOT = f"""\
$TTL 86400
.                    SOA  a.root-servers.test. hostmaster.root-servers.test. (
                          2024010101 1800 900 604800 86400 )
.                    NS   a.root-servers.test.
a.root-servers.test. A    {ROOT_IP}
edu.                 NS   ns.edu.
ns.edu.              A    {EDU_IP}
"""

EDU = f"""\
$ORIGIN edu.
$TTL 86400
@              SOA  ns hostmaster 2024010101 1800 900 604800 3600
               NS   ns
ns             A    {EDU_IP}
hamburger      NS   ns1.hamburger
ns1.hamburger  A    {HAMBURGER_IP}
"""

HAMBURGER = f"""\
$ORIGIN hamburger.edu.
$TTL 300
@     SOA   ns1 hostmaster 2024010101 3600 900 604800 60
      NS    ns1
      MX    10 mx1
      MX    20 mx2
      A     192.0.2.1
      A     192.0.2.2
ns1   A     {HAMBURGER_IP}
mx1   A     192.0.2.10
mx2   A     192.0.2.20
www   CNAME @
"""

ZONES = {
    ROOT_IP: ("", ROOT),
    EDU_IP: ("edu", EDU),
    HAMBURGER_IP: ("hamburger.edu", HAMBURGER),
}
