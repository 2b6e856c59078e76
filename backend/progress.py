"""The progress/cancel contract every long loop takes (DESIGN §3)."""

from __future__ import annotations

import threading
import time
from typing import Protocol

from backend.errors import JobCancelled


class ProgressFn(Protocol):
    def __call__(self, step: int, total: int, **metrics: float) -> None: ...


def no_progress(step: int, total: int, **metrics: float) -> None:
    """A progress callback that ignores everything."""


class CancelToken:
    """A cancel flag a loop checks once per step: `token.check()` raises `JobCancelled`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise JobCancelled()


class EtaClock:
    """Estimates seconds left from the mean step time so far."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def eta(self, step: int, total: int) -> float:
        if step <= 0:
            return float("nan")
        elapsed = time.perf_counter() - self.start
        return elapsed / step * max(total - step, 0)
