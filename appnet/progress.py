"""
The progress bar of the command-line transfers (C{appnet ftp},
C{appnet fetch}): tqdm on standard error.
"""

from __future__ import annotations

from typing import Never, TextIO

from tqdm import tqdm

__all__ = ["Progress"]

#: Percentage, a bar of C{#}, bytes done and of the total, rate.
_WITH_TOTAL = "{percentage:3.0f}% [{bar:24}] {n_fmt}B/{total_fmt}B {rate_fmt}"
#: Without a known total: bytes, rate.
_WITHOUT_TOTAL = "{n_fmt}B {rate_fmt}"


class Progress:
    """
    A one-line progress bar: redrawn at most ten times a second, in binary
    units; nothing at all when not C{enabled}.

    @ivar total: the bytes expected, or C{None} when unknown.
    """

    def __init__(
        self, out: TextIO, label: str, total: int | None, enabled: bool = True
    ) -> None:
        self.total = total
        self._done = 0
        self._bar: tqdm[Never] | None = None
        if enabled:
            self._bar = tqdm(
                file=out,
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                mininterval=0.1,
                ascii=" #",
                desc=label,
                bar_format=("{desc} " if label else "")
                + (_WITH_TOTAL if total else _WITHOUT_TOTAL),
                dynamic_ncols=False,
            )

    @property
    def done(self) -> int:
        """The bytes moved so far (settable: a resumed transfer's start)."""
        return self._done

    @done.setter
    def done(self, value: int) -> None:
        if self._bar is not None:
            self._bar.update(value - self._done)
        self._done = value

    def __call__(self, amount: int) -> None:
        """C{amount} more bytes moved."""
        self.done += amount

    def finish(self) -> None:
        """Show the transfer complete and end the line."""
        if self.total is not None:
            self.done = max(self.done, self.total)
        self.close()

    def close(self) -> None:
        """End the line as it stands."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
