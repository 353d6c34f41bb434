"""
The start-up sweep of the FTP staging directory: upload temporaries that a
crash left there (L{appnet.ftp.shell} writes them; none was ever visible)
are removed.
"""

from __future__ import annotations

import os

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from appnet.ftp._files import InThread

__all__ = ["StagingSweep", "sweepStaging"]


class StagingSweep(Service):
    """
    At start-up, removes upload temporaries a crash left in the staging
    directory (none of them was ever visible).
    """

    _log = Logger()

    def __init__(self, run: InThread, staging: str) -> None:
        self._run = run
        self._staging = staging
        self.swept: Deferred[int] | None = None

    def startService(self) -> None:
        super().startService()

        def swept(count: int) -> int:
            if count:
                self._log.info(
                    "Removed {count} unfinished uploads left by an earlier run",
                    count=count,
                )
            return count

        def failed(failure: Failure) -> int:
            self._log.failure("Sweeping FTP uploads failed", failure)
            return 0

        self.swept = self._run(sweepStaging, self._staging)
        self.swept.addCallbacks(swept, failed)


def sweepStaging(staging: str) -> int:
    removed = 0
    try:
        names = os.listdir(staging)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.startswith(".appnet-upload-"):
            try:
                os.unlink(os.path.join(staging, name))
                removed += 1
            except OSError:
                pass
    return removed
