"""The optimisation loop every trainer shares (the occupancy autoencoder, the latent flow, TASK-former, the domain
CLIP): cancel check, learning-rate schedule, loss, update, record, progress, periodic checkpoint.

Each trainer keeps what is its own (batches, losses, resume rules) in the callbacks it passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from backend.errors import JobCancelled
from backend.progress import CancelToken, ProgressFn, no_progress

LossFn = Callable[[int], "torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor | float]]"]
"""loss_at(step) -> the loss, or (the loss, other metrics to record)."""


@dataclass
class TrainLoop:
    """How `run_training_loop` steps: the span, the schedule, checkpoints and cancellation."""

    steps: int
    """The step the run ends at (exclusive)."""
    lr_at: Callable[[int, dict], float]
    """Learning rate of a param group at a step: lr_at(step, group). Absolute, not a factor of the group's stored
    lr, because a resumed optimiser state brings back the lr of the step it was saved at."""
    start: int = 0
    """The first step (a resumed run's saved step)."""
    checkpoint_every: int = 0
    """Call `save(step)` every this many steps (0: never; the final checkpoint is the caller's)."""
    save: Callable[[int], None] | None = None
    """Writes the checkpoint of `step` (steps done)."""
    save_on_cancel: bool = False
    """On cancel, save the steps done before raising JobCancelled (else the last checkpoint stays)."""
    after_step: Callable[[], dict[str, float] | None] | None = None
    """Runs after each update (e.g. a clamp); may return extra metrics for `progress`."""
    report_lr: bool = False
    """Pass the first group's lr to `progress` as `lr`."""
    on_record: Callable[[dict[str, float]], None] = field(default=lambda record: None)
    """Receives each step's record ({"loss": ..., other metrics}) before `progress` and any checkpoint."""


def run_training_loop(optimizer: torch.optim.Optimizer, loss_at: LossFn, loop: TrainLoop,
                      progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> list[dict[str, float]]:
    """Steps `optimizer` from loop.start to loop.steps on loss_at(step); returns each step's record.

    Per step: check `cancel` (JobCancelled propagates), set every group's lr, compute the loss, zero the grads,
    backward, update, `after_step`, record, progress(step + 1, steps, **record), and a periodic checkpoint (not at
    the last step: the caller writes the final one).
    """
    records = []
    for step in range(loop.start, loop.steps):
        if cancel is not None:
            if loop.save_on_cancel and loop.save is not None and cancel.cancelled:
                loop.save(step)
                raise JobCancelled()
            cancel.check()
        for group in optimizer.param_groups:
            group["lr"] = loop.lr_at(step, group)
        out = loss_at(step)
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        # Read before the update: a metric may be a view of a parameter.
        record = {"loss": float(loss.detach()), **{name: float(value) for name, value in metrics.items()}}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        extra = (loop.after_step() or {}) if loop.after_step is not None else {}
        records.append(record)
        loop.on_record(record)
        if loop.report_lr:
            extra = {"lr": optimizer.param_groups[0]["lr"], **extra}
        progress(step + 1, loop.steps, **record, **extra)
        if (loop.save is not None and loop.checkpoint_every and (step + 1) % loop.checkpoint_every == 0
                and step + 1 < loop.steps):
            loop.save(step + 1)
    return records
