"""Progress that suits where it is shown: bars in a terminal, a few plain lines anywhere else.

In a terminal (stderr is a TTY) :func:`progress` is a tqdm bar. In a notebook, under papermill or in
a log, it prints one line when it starts and one at each quarter of the work (count, rate, latest
values), so an executed notebook holds a few readable lines per loop instead of hundreds of bar
fragments, and the runner's terminal still sees epoch and run counts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class LineProgress:
    """The part of tqdm's interface the study uses, printing at most ``steps`` + 1 lines."""

    def __init__(self, total: int | None, desc: str, initial: int = 0, unit: str = "it", steps: int = 4) -> None:
        self.desc, self.n, self.unit, self.steps = desc, initial, unit, steps
        self.postfix = ""
        self.start = time.monotonic()
        self.total = total
        self._print(f"{desc}: {initial}/{total if total is not None else '?'} {unit} (starting)")

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        """Setting the total (once known) places the quarter marks."""
        self._total = value
        marks = [round(value * k / self.steps) for k in range(1, self.steps + 1)] if value else []
        self.marks = [m for m in marks if m > self.n]

    def _print(self, text: str) -> None:
        print(text, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.marks and self.n >= self.marks[0]:
            while self.marks and self.n >= self.marks[0]:
                self.marks.pop(0)
            elapsed = time.monotonic() - self.start
            extra = f", {self.postfix}" if self.postfix else ""
            self._print(f"{self.desc}: {self.n}/{self.total} {self.unit} in {elapsed:.0f} s{extra}")

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        """Nothing to clear: every line already stands on its own."""


def interactive() -> bool:
    """Whether progress is shown in a terminal that redraws bars."""
    return sys.stderr.isatty()


def progress(total: int | None, desc: str, initial: int = 0, unit: str = "it", disable: bool = False, steps: int = 4):
    """A progress counter: ``update(n)``, ``set_postfix(...)``, ``close()``; outside a terminal, a line at each
    of ``steps`` equal parts of the work."""
    if disable:
        return tqdm(total=total, disable=True)
    if interactive():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
    return LineProgress(total, desc, initial, unit, steps)


def track(
    items: Iterable[T], total: int | None, desc: str, unit: str = "it", disable: bool = False, steps: int = 4
) -> Iterator[T]:
    """Iterate ``items`` with a progress counter."""
    bar = progress(total, desc, unit=unit, disable=disable, steps=steps)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
