"""What a job handler receives (`JobContext`) and returns (`JobOutput`).

A handler is `fn(ctx: JobContext) -> JobOutput`. It runs on the worker thread, calls
`ctx.progress(step, total, stage=..., **metrics)` once per step (which also checks for cancellation)
and raises `AtelierError` subclasses for problems the user can fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from backend.progress import CancelToken
from backend.server.meshes import MeshArrays


class JobProgress(Protocol):
    def __call__(self, step: int, total: int, stage: str = "", preview_png: bytes | None = None,
                 **metrics: float) -> None: ...


@dataclass
class JobContext:
    """Everything a handler gets for one job."""

    job: str
    """The client's job id (for logs)."""
    kind: str
    """The job kind being run."""
    params: dict
    """The job's JSON params, unvalidated: the handler checks them (see `backend.server.params`)."""
    mesh: MeshArrays | None
    """The submitted mesh in Blender conventions, or None when none was sent."""
    arrays: dict[str, np.ndarray]
    """Further named arrays from the submit message."""
    blobs: dict[str, bytes]
    """Further named blobs from the submit message (PNG images, ...)."""
    device: torch.device
    """Where to compute."""
    progress: JobProgress
    """progress(step, total, stage="", preview_png=None, **metrics): streams a `progress` message
    (throttled) and raises `JobCancelled` when the client cancelled."""
    cancel: CancelToken
    """The job's cancel flag; pass it to long loops, which call `cancel.check()` each step."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("backend.server.jobs"))
    """Logger whose records land in the server's log file."""


@dataclass
class JobOutput:
    """What a handler returns; becomes one `result` message."""

    fields: dict = field(default_factory=dict)
    """JSON figures and names."""
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Named float32 / int32 / uint8 arrays."""
    blobs: dict[str, bytes] = field(default_factory=dict)
    """Named blobs: "mesh" (GLB), "view_000" (PNG), ..."""


JobHandler = Callable[[JobContext], JobOutput]
"""A job kind's implementation; runs on the worker thread."""
