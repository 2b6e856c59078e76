"""The one optimisation loop the trainers share: schedule per group, records, progress, checkpoints, cancel."""

from __future__ import annotations

import pytest
import torch

from backend.errors import JobCancelled
from backend.progress import CancelToken
from backend.train_loop import TrainLoop, run_training_loop


def _problem():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    bias = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([{"params": [weight], "peak": 0.1}, {"params": [bias], "peak": 0.01}], lr=0.0)

    def loss_at(step: int):
        return (weight ** 2).sum() + bias[0] ** 2, {"bias": bias.detach()[0]}

    return weight, bias, optimizer, loss_at


def test_loss_falls_with_the_schedule_of_each_group():
    weight, bias, optimizer, loss_at = _problem()
    seen_lr = []
    loop = TrainLoop(steps=5, lr_at=lambda step, group: group["peak"] / (step + 1),
                     after_step=lambda: seen_lr.append([g["lr"] for g in optimizer.param_groups]))
    records = run_training_loop(optimizer, loss_at, loop)
    assert [r["loss"] for r in records] == sorted((r["loss"] for r in records), reverse=True)
    assert seen_lr[0] == [0.1, 0.01] and seen_lr[4] == pytest.approx([0.02, 0.002])
    # SGD by hand for the first step: w <- w - lr * 2w.
    assert records[1]["bias"] == pytest.approx(1.0 - 0.01 * 2.0)


def test_progress_gets_records_lr_and_extra_metrics():
    _, _, optimizer, loss_at = _problem()
    calls = []
    loop = TrainLoop(steps=3, start=1, lr_at=lambda step, group: 0.05, report_lr=True,
                     after_step=lambda: {"temperature": 0.5})
    run_training_loop(optimizer, loss_at, loop, progress=lambda step, total, **m: calls.append((step, total, m)))
    assert [(s, t) for s, t, _ in calls] == [(2, 3), (3, 3)]
    assert set(calls[0][2]) == {"loss", "bias", "lr", "temperature"} and calls[0][2]["lr"] == 0.05


def test_periodic_checkpoints_skip_the_last_step():
    _, _, optimizer, loss_at = _problem()
    saved, recorded = [], []
    loop = TrainLoop(steps=7, lr_at=lambda step, group: 0.01, checkpoint_every=3, save=saved.append,
                     on_record=recorded.append)
    run_training_loop(optimizer, loss_at, loop)
    assert saved == [3, 6] and len(recorded) == 7


class _CancelAt(CancelToken):
    def __init__(self, after: int, counter: list):
        super().__init__()
        self.after, self.counter = after, counter

    @property
    def cancelled(self) -> bool:
        return len(self.counter) >= self.after

    def check(self) -> None:
        if self.cancelled:
            raise JobCancelled()


@pytest.mark.parametrize("save_on_cancel", [False, True])
def test_cancel_stops_before_the_next_step(save_on_cancel):
    _, _, optimizer, loss_at = _problem()
    records, saved = [], []
    loop = TrainLoop(steps=10, lr_at=lambda step, group: 0.01, save=saved.append, save_on_cancel=save_on_cancel,
                     on_record=records.append)
    with pytest.raises(JobCancelled):
        run_training_loop(optimizer, loss_at, loop, cancel=_CancelAt(4, records))
    assert len(records) == 4
    assert saved == ([4] if save_on_cancel else [])
