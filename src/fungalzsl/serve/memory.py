"""Giving freed memory back to the OS after requests that grew the server.

The CLI re-executes itself with glibc malloc tunables (:mod:`fungalzsl.runtime`) that keep freed memory
in the process: conv nets on CPU run faster, but a long-running server that once decoded a large upload
then stays that size. ``malloc_trim(0)`` returns the free pages (inside the heap too, not only at its
top), but trimming after *every* request also returns the conv net's warm buffers, and the next
request pays to fault them in again (1.5x slower in ``benchmarks/serve_memory.py``). So the server
keeps the tuned settings and trims only when the process has grown more than ``TRIM_SLACK_MB`` over the
smallest size seen after a request: ordinary requests keep their speed, one large upload is handed
back. The measurements are in docs/predict.md."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from typing import Any

TRIM_SLACK_MB = 256


@functools.cache
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    fn = getattr(libc, "malloc_trim", None)  # glibc only (musl has none)
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def trim_heap() -> bool:
    """Return free heap memory to the OS; True if glibc released some (False: none, or not glibc)."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn is not None else False


def rss_mb() -> float | None:
    """This process's resident memory in MB (None where /proc is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class HeapTrimmer:
    """Call after each request: trims when RSS is over ``floor + slack_mb``, where ``floor`` is the
    smallest RSS seen so far (at start-up, or right after a trim). Thread-safe."""

    def __init__(self, slack_mb: float = TRIM_SLACK_MB):
        self.slack_mb = slack_mb
        self.floor = rss_mb()
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            rss = rss_mb()
            if rss is None or self.floor is None:
                return False
            if rss < self.floor:
                self.floor = rss
            if rss - self.floor <= self.slack_mb:
                return False
            trimmed = trim_heap()
            after = rss_mb()
            if after is not None:
                self.floor = min(self.floor, after)
            return trimmed
