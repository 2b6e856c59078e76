"""Timing helpers the benchmarks share: device synchronisation and a lap clock for one step's phases."""

from __future__ import annotations

import time

import torch


def sync(device: str) -> None:
    """Waits for queued CUDA work so that a wall-clock reading covers it (a no-op elsewhere)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class PhaseClock:
    """`lap(name)` records the seconds since the previous lap (after syncing the device) under `name` in `times`."""

    def __init__(self, device: str):
        self.device = device
        self.times: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, name: str) -> None:
        sync(self.device)
        now = time.perf_counter()
        self.times[name] = now - self._clock
        self._clock = now
