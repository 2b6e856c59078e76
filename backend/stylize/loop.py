"""The optimisation loop both stylizers run: cancel checks, progress with an ETA, preview images.

Text2Mesh and the texture restyler differ in what one step does; how steps are driven, reported and
previewed is the same, so it lives here once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from backend.progress import CancelToken, EtaClock, ProgressFn, no_progress


@dataclass
class StepOutput:
    """What one optimisation step reports."""

    loss: float
    """The objective the step minimised."""
    metrics: dict[str, float]
    """`loss` and its parts (names are the step's), streamed as progress metrics."""
    front: torch.Tensor
    """[H, W, 3] float in [0, 1]: the first view rendered this step (detached), for previews."""


def preview_bytes(image: torch.Tensor) -> np.ndarray:
    """[H, W, 3] float in [0, 1] -> [H, W, 3] uint8 (rounded, clamped)."""
    return (image.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def optimise(steps: int, step: Callable[[int], StepOutput], *, progress: ProgressFn = no_progress,
             cancel: CancelToken | None = None, on_preview: Callable[[int, np.ndarray], None] | None = None,
             preview_every: int = 25) -> tuple[list[float], float]:
    """Runs step(0) .. step(steps - 1).

    Checks `cancel` before each step (JobCancelled ends the run), calls progress(done, steps, **metrics,
    eta_s=...) after each, and on_preview(done, front view uint8 [H, W, 3]) every `preview_every` steps
    and after the last. Returns (the loss of every step, wall seconds of the loop).
    """
    losses: list[float] = []
    clock = EtaClock()
    start = time.perf_counter()
    for index in range(steps):
        if cancel is not None:
            cancel.check()
        out = step(index)
        losses.append(out.loss)
        done = index + 1
        if on_preview is not None and (done % preview_every == 0 or done == steps):
            on_preview(done, preview_bytes(out.front))
        progress(done, steps, **out.metrics, eta_s=clock.eta(done, steps))
    return losses, time.perf_counter() - start
