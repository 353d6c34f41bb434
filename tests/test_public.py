"""
The public surface: every module's C{__all__} names things that exist, the
public modules have one, and mypy sees every name they export.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from types import ModuleType

from twisted.trial.unittest import SynchronousTestCase

import appnet

#: The modules a user imports (a small public surface).
PUBLIC = [
    "appnet",
    "appnet.dns",
    "appnet.dns.interfaces",
    "appnet.dns.testing",
    "appnet.ftp",
    "appnet.ftp.interfaces",
    "appnet.ftp.testing",
    "appnet.mail",
    "appnet.mail.imap",
    "appnet.mail.testing",
    "appnet.store",
    "appnet.store.interfaces",
    "appnet.store.pg",
    "appnet.testing",
    "appnet.web",
    "appnet.web.proxy",
    "appnet.web.proxy.interfaces",
    "appnet.webmail",
]

#: The checkout: this file is tests/test_public.py.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def allModules() -> list[ModuleType]:
    """Every module of the package (not C{__main__}, which runs the CLI)."""
    names = ["appnet"] + [
        info.name
        for info in pkgutil.walk_packages(appnet.__path__, "appnet.")
        if not info.name.endswith("__main__")
    ]
    return [importlib.import_module(name) for name in sorted(names)]


class AllTests(SynchronousTestCase):
    """
    C{__all__} lists are true, and the public modules have them.
    """

    def test_namesExist(self) -> None:
        """Every name in every module's C{__all__} is defined there."""
        missing = [
            f"{module.__name__}.{name}"
            for module in allModules()
            for name in getattr(module, "__all__", ())
            if not hasattr(module, name)
        ]
        self.assertEqual(missing, [])

    def test_publicModulesHaveAll(self) -> None:
        """Each public module says what it exports, once each."""
        for name in PUBLIC:
            exported = importlib.import_module(name).__dict__.get("__all__")
            self.assertIsNotNone(exported, name)
            self.assertEqual(len(set(exported)), len(exported), name)

    def test_mypySeesThem(self) -> None:
        """
        mypy (with implicit re-export off, as the project runs it) accepts
        an import of every name every module's C{__all__} lists.
        """
        from mypy import api

        directory = self.mktemp()
        os.makedirs(directory)
        check = os.path.join(directory, "check_public.py")
        names = [
            (module.__name__, name)
            for module in allModules()
            for name in getattr(module, "__all__", ())
        ]
        with open(check, "w") as f:
            for i, (module, name) in enumerate(names):
                f.write(f"from {module} import {name} as _{i}\n")
        self.patch(os, "environ", {**os.environ, "MYPYPATH": ROOT})
        # mypy raises the interpreter's recursion limit and leaves it so;
        # put it back, or later tests in this process (a message nested
        # past the limit) see another interpreter than users do.
        self.addCleanup(sys.setrecursionlimit, sys.getrecursionlimit())
        out, err, status = api.run(
            [
                "--config-file",
                os.path.join(ROOT, "pyproject.toml"),
                "--cache-dir",
                os.path.join(directory, "cache"),
                check,
            ]
        )
        problems = [line for line in out.splitlines() if line.startswith(check)]
        self.assertEqual(problems, [], out + err)
        self.assertEqual(status, 0, out + err)


class DocumentationTests(SynchronousTestCase):
    """
    Module docstrings say what a module is for; design notes live in
    HACKING.rst, which stands on its own.
    """

    def test_shortModuleDocstrings(self) -> None:
        """No module docstring runs past 17 lines."""
        long = sorted(
            module.__name__
            for module in allModules()
            if len((module.__doc__ or "").strip().splitlines()) > 17
        )
        self.assertEqual(long, [])

    def test_hackingSelfContained(self) -> None:
        """HACKING.rst names no document outside the repository."""
        with open(os.path.join(ROOT, "HACKING.rst")) as f:
            text = f.read()
        for outside in ("shared/", ".md", "TWISTED_GAPS", "/work/"):
            self.assertNotIn(outside, text)
