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
