"""Device selection: `auto | cpu | cuda | mps` with a clear error when the choice is not available."""

from __future__ import annotations

import torch

from backend.errors import InvalidInputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """Turns a user's device choice into a `torch.device`, checking it exists here."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise InvalidInputError(f"unknown device {name!r}", hint=f"use one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' was asked for but CUDA is not available here",
                                hint="use --device cpu or auto, or install a CUDA build of torch")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InvalidInputError("device 'mps' was asked for but Apple MPS is not available here",
                                hint="use --device cpu or auto")
    return torch.device(name)
