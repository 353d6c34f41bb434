"""
Third-party programs the interop tests drive (curl, dig, lftp, Chromium).

On a developer's machine a missing program skips its tests. CI sets
C{APPNET_REQUIRE_INTEROP=1} after installing them all (see C{.ci/run}), and
then a missing program fails the test instead: an interop test that
silently skipped would prove nothing.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

from twisted.trial.unittest import SkipTest

REQUIRE = "APPNET_REQUIRE_INTEROP"


def unavailable(what: str) -> NoReturn:
    """
    Skip the test because C{what} is missing, or fail it under CI.
    """
    if os.environ.get(REQUIRE):
        raise AssertionError(f"{what}, and {REQUIRE} is set")
    raise SkipTest(what)


def need(program: str, package: str | None = None) -> str:
    """
    The path of C{program}, or L{unavailable}.
    """
    path = shutil.which(program)
    if path is None:
        where = f" (Debian package {package})" if package else ""
        unavailable(f"{program} is not installed{where}")
    return path
