"""Progress for the steps that can take minutes (model start-up, feature caches, embedding images and
texts), on stderr so stdout stays for results — the same rich bar ``generate`` shows.

A step only speaks once it has run for ``DELAY`` seconds, so the many quick calls (a three-prompt
template, a cached pass during training) stay silent and only slow ones are announced. On a terminal
that is a rich bar; in a log (stderr not a terminal) one line when the step turns slow and one when it
ends, so a log never sits silent for minutes either."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any

DELAY = 1.0  # seconds a step runs before it shows progress (tests set 0)


class Step:
    """``with Step("embedding 600 images", total=600) as step: ... step.advance(n)``."""

    def __init__(self, what: str, total: int | None = None, enabled: bool = True, now: bool = False):
        self.what, self.total, self.enabled, self.now = what, total, enabled, now
        self.done, self.t0 = 0, time.perf_counter()
        self.bar: Any = None
        self.task: Any = None
        self.shown = False
        self.timer: threading.Timer | None = None

    def __enter__(self) -> Step:
        self.t0 = time.perf_counter()
        if self.enabled and DELAY <= 0:
            self._show()
        elif self.enabled and self.now:  # nothing will advance: a timer announces a slow one
            self.timer = threading.Timer(DELAY, self._show)
            self.timer.daemon = True
            self.timer.start()
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if not self.shown and time.perf_counter() - self.t0 >= DELAY:
            self._show()
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def _show(self) -> None:
        from rich.console import Console

        self.shown = True
        console = Console(stderr=True)
        if not console.is_terminal:
            total = f" {self.done}/{self.total}" if self.total is not None else ""
            console.print(f"{self.what}…{total}", highlight=False, markup=False)
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )  # fmt: skip
        self.bar.start()
        self.task = self.bar.add_task(self.what, total=self.total, completed=self.done)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
            self.bar.stop()
        elif self.shown and kind is None:
            seconds = time.perf_counter() - self.t0
            print(f"{self.what}: done in {seconds:.0f} s", file=sys.stderr)


def step(what: str, total: int | None = None, now: bool = False, enabled: bool = True) -> Step:
    """A :class:`Step` for ``what`` (a gerund phrase: "embedding 600 images"); ``now``: a step with
    nothing to advance (starting a model), announced by a timer after ``DELAY`` seconds."""
    return Step(what, total, enabled, now)
