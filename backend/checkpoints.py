"""Writing torch files so that a kill never leaves half a file under the real name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def unreadable_reason(exc: BaseException) -> str:
    """Why `torch.load` could not read a file, in a few words for a one-line error.

    torch raises many types for bytes that are not a checkpoint (KeyError, IndexError, EOFError, struct.error,
    UnpicklingError with a paragraph about `weights_only`); their texts mean nothing to a user, so only OS and
    archive errors keep theirs."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if "Weights only load failed" in str(exc):
        return "it holds data other than tensors and plain values, or is not a torch file at all"
    if isinstance(exc, (OSError, RuntimeError)) and text:
        return f"{type(exc).__name__}: {text[:200]}"
    return f"{type(exc).__name__}: not a torch file"


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


def load_cached(path: str | os.PathLike, fmt: str, key: str, rows: tuple[int, ...]) -> torch.Tensor | None:
    """The tensor `key` of a cache file written with `save_atomic({"format": fmt, key: tensor, ...})`, when the file
    exists, reads, has that format and the tensor's leading dimensions are `rows`; else None (missing, damaged or
    stale: the caller computes it again)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached.get("format") == fmt and tuple(cached[key].shape[:len(rows)]) == tuple(rows):
            return cached[key]
    except (OSError, RuntimeError, KeyError, AttributeError):
        pass  # a damaged cache file
    return None


def save_model_checkpoint(path: str | os.PathLike, kind: str, model: torch.nn.Module, model_config: Any,
                          train_config: Any, optimizer: torch.optim.Optimizer | None, step: int,
                          losses: list[float], extra: dict | None = None) -> Path:
    """The plain-dict training checkpoint of a model whose config is a dataclass (loadable with weights_only=True):
    {"kind", "model_config", "train_config", "step", "model", "optimizer", "losses"}, written atomically. `extra`:
    more plain entries (e.g. the CLIP it was trained for); they may not replace those."""
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
    clash = set(extra or {}) & set(state)
    if clash:
        raise ValueError(f"extra checkpoint entries may not replace {sorted(clash)}")
    state.update(extra or {})
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


def cosine_factor(step: int, steps: int, floor: float = 0.05) -> float:
    """The learning-rate factor at `step` of `steps`: a cosine from 1 down to `floor` (plain floats, so optimizer
    state stays loadable with weights_only=True)."""
    import math

    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(step / steps, 1.0)))


def resume_training(path: str | os.PathLike | None, kind: str, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, model_config: Any) -> tuple[int, list[float]]:
    """Loads the model and optimizer state of a `save_model_checkpoint` file to continue training from it.

    Returns (the step it reached, its losses); (0, []) when `path` is None or no file is there. InvalidInputError
    when the file is another kind or was written for another model shape (the fix: a new output path)."""
    from dataclasses import asdict

    from backend.errors import InvalidInputError

    if path is None or not Path(path).is_file():
        return 0, []
    state = read_model_checkpoint(path, kind, missing=("", ""), wrong=(
        f"cannot resume from {path}: it is not a {kind} checkpoint", "choose another output path, or delete the file"))
    if state["model_config"] != asdict(model_config):
        raise InvalidInputError(f"cannot resume from {path}: it was written for another model shape "
                                f"({state['model_config']})", "use the same model settings, or another output path")
    model.load_state_dict(state["model"])
    if state.get("optimizer"):
        optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), [float(x) for x in state["losses"]]
