"""Writing torch files so that a kill never leaves half a file under the real name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_atomic(payload: Any, path: str | os.PathLike) -> Path:
    """torch.save(payload) to `path` through a `.part` file renamed into place (os.replace is atomic), so readers
    see the old file or the whole new one. Creates the parent folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        torch.save(payload, part)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


def save_model_checkpoint(path: str | os.PathLike, kind: str, model: torch.nn.Module, model_config: Any,
                          train_config: Any, optimizer: torch.optim.Optimizer | None, step: int,
                          losses: list[float]) -> Path:
    """The plain-dict training checkpoint of a model whose config is a dataclass (loadable with weights_only=True):
    {"kind", "model_config", "train_config", "step", "model", "optimizer", "losses"}, written atomically."""
    from dataclasses import asdict

    state = {
        "kind": kind,
        "model_config": asdict(model_config),
        "train_config": asdict(train_config),
        "step": int(step),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "losses": [float(x) for x in losses],
    }
    return save_atomic(state, path)


def read_model_checkpoint(path: str | os.PathLike, kind: str, missing: tuple[str, str],
                          wrong: tuple[str, str]) -> dict:
    """The dict `save_model_checkpoint` wrote with this `kind` (weights_only load, on the CPU).
    InvalidInputError(*missing) when there is no file, InvalidInputError(*wrong) for another kind of file
    (each a (message, hint) pair)."""
    from backend.errors import InvalidInputError

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(*missing)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("kind") != kind:
        raise InvalidInputError(*wrong)
    return state
