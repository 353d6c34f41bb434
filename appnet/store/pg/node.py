"""
A node's lasting identity among the nodes sharing one database.
"""

from __future__ import annotations

import os
import secrets

__all__ = ["nodeIdentity"]


def nodeIdentity(dataDir: str) -> str:
    """
    This node's identity: random, made on first use and kept in
    C{DATA/node-id}, so it survives restarts and differs between machines
    even when their configurations (host names included) are the same.
    Start-up I/O (blocking).
    """
    path = os.path.join(dataDir, "node-id")
    try:
        with open(path, encoding="ascii") as f:
            ident = f.read().strip()
        if ident:
            return ident
    except FileNotFoundError:
        pass
    ident = secrets.token_hex(6)
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w", encoding="ascii") as f:
        f.write(ident + "\n")
    os.replace(temporary, path)
    return ident
