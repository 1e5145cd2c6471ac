"""The model off the event loop: one worker thread runs every classification, and at most ``capacity``
requests are in the server at once (reading their upload, waiting, or running); the next one gets 503
with ``Retry-After`` instead of queueing without bound. The event loop stays free, so ``/api/info`` and
the page answer while a prediction runs, and the memory held by uploads is at most ``capacity`` times
the request limit."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import HTTPException

T = TypeVar("T")


class ModelWorker:
    """A single model thread behind a bounded admission count."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fungalzsl-model")
        self._lock = threading.Lock()
        self._admitted = 0
        self._mean_s = 1.0  # running mean of a job's duration, for Retry-After

    @property
    def admitted(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead times the mean job time, 1 to 60."""
        return min(60, max(1, math.ceil(self._mean_s * self._admitted)))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``capacity`` places for the request; 503 + Retry-After when none is free."""
        with self._lock:
            full = self._admitted >= self.capacity
            if not full:
                self._admitted += 1
        if full:
            raise HTTPException(
                503,
                f"busy: {self.capacity} request(s) already in progress; try again shortly",
                headers={"Retry-After": str(self.retry_after())},
            )
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the model thread (after the jobs ahead of it) and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed, fn, args)

    def _timed(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._mean_s = 0.7 * self._mean_s + 0.3 * (time.perf_counter() - t)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
