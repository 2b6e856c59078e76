"""Job records: what the Jobs panel shows and what the importers read. No bpy.

A job's life here: waiting (for the backend to start) -> queued (accepted) -> running (progress) ->
importing (result in hand, the timer brings it into Blender) -> done; or failed / cancelled at any point.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ..core.protocol import Accepted, Error, Progress, Result

ACTIVE_STATES = ("waiting", "queued", "running")
"""States in which a job still waits for the backend."""
FINAL_STATES = ("done", "failed", "cancelled")


@dataclass
class JobRecord:
    """One job as the add-on tracks it."""

    id: str
    """The client-chosen job id sent in `submit`."""
    kind: str
    """The backend job kind, e.g. "stylize"."""
    label: str
    """What the panel calls it, e.g. "Stylize Suzanne"."""
    params: dict = field(default_factory=dict)
    """The params sent (kept for the history and for "Run again")."""
    source: str = ""
    """Name of the Blender object the job started from ("" when none)."""
    meta: dict = field(default_factory=dict)
    """Add-on data for the importer, e.g. {"transform": [16 floats]} (the source's matrix_world, row-major)."""
    state: str = "waiting"
    """waiting | queued | running | importing | done | failed | cancelled."""
    stage: str = ""
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    metrics: dict = field(default_factory=dict)
    """Latest progress figures, e.g. {"loss": -0.31}."""
    preview: bytes | None = None
    """Latest preview PNG."""
    preview_serial: int = 0
    """Bumped for every new preview, so the panel reloads it."""
    position: int = 0
    """Jobs ahead of this one in the backend's queue."""
    code: str = ""
    """Error code when failed ("cancelled" when cancelled)."""
    message: str = ""
    """What went wrong, or what was made."""
    hint: str = ""
    """How to fix it."""
    log_path: str = ""
    """The backend log to name alongside a failure."""
    created: float = field(default_factory=time.time)
    finished: float | None = None
    frames: list[bytes] | None = None
    """The encoded `submit` message, until it is sent (a job waits while the backend starts)."""
    result: Result | None = None
    """The backend's result until the importer has used it (then dropped to free memory)."""
    fields: dict = field(default_factory=dict)
    """The result's JSON fields (kept after import: loss figures, seed, steps)."""
    outputs: list[str] = field(default_factory=list)
    """Names of what the import created (objects, images)."""
    cancel_requested: bool = False

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def finished_ok(self) -> bool:
        return self.state == "done"

    @property
    def fraction(self) -> float:
        """Progress in [0, 1] for the progress bar."""
        if self.state in ("importing", "done"):
            return 1.0
        return min(max(self.step / self.total, 0.0), 1.0) if self.total else 0.0

    @property
    def loss(self) -> float | None:
        value = self.metrics.get("loss")
        return value if isinstance(value, (int, float)) else None

    def summary(self) -> str:
        """One line of parameters for the history, e.g. "'a red box' draft 150 steps seed 0"."""
        parts = []
        for key, value in self.params.items():
            if key == "prompt":
                parts.insert(0, repr(value if len(value) <= 40 else value[:37] + "..."))
            elif key in ("clip", "preview_every"):
                continue
            else:
                parts.append(f"{key} {value}")
        return ", ".join(parts)

    def error_text(self) -> str:
        """The failure as one paragraph: message, hint and the backend log."""
        text = self.message
        if self.hint:
            text += f" ({self.hint})"
        if self.log_path and self.log_path not in text:
            text += f" [backend log: {self.log_path}]"
        return text

    def fail(self, code: str, message: str, hint: str = "", log_path: str = "") -> None:
        self.state = "cancelled" if code == "cancelled" else "failed"
        self.code, self.message, self.hint = code, message, hint
        self.log_path = log_path or self.log_path
        self.finished = time.time()
        self.frames = None
        self.result = None


class JobTracker:
    """Every job of this Blender session, newest last; keeps at most `history` finished ones."""

    def __init__(self, history: int = 50):
        self.history = history
        self._jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self._counter = itertools.count(1)
        self._prefix = f"b{os.getpid() % 100000}-{int(time.time()) % 100000}"

    def new_id(self, kind: str) -> str:
        """A job id unique in this process: kind-pid-time-counter (valid as a protocol job id)."""
        return f"{kind}-{self._prefix}-{next(self._counter)}"

    def add(self, record: JobRecord) -> JobRecord:
        self._jobs[record.id] = record
        self._trim()
        return record

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in FINAL_STATES]
        for old in finished[:max(len(finished) - self.history, 0)]:
            del self._jobs[old.id]

    def get(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    def all(self) -> list[JobRecord]:
        """Every job, newest first (at most `history` finished ones)."""
        self._trim()
        return list(reversed(self._jobs.values()))

    def active(self) -> list[JobRecord]:
        return [j for j in self._jobs.values() if j.active]

    def clear_finished(self) -> None:
        for job in [j for j in self._jobs.values() if j.state in FINAL_STATES]:
            del self._jobs[job.id]

    def apply(self, msg, log_path: str = "") -> JobRecord | None:
        """Updates the job a message is about; returns it (None for messages about unknown jobs)."""
        job = self._jobs.get(getattr(msg, "job", None) or "")
        if job is None or job.state in FINAL_STATES:
            return None
        if isinstance(msg, Accepted):
            job.state, job.position = "queued", msg.position
        elif isinstance(msg, Progress):
            job.state = "running"
            job.stage, job.step, job.total, job.eta_s = msg.stage, msg.step, msg.total, msg.eta_s
            job.metrics.update({k: v for k, v in msg.metrics.items()})
            if msg.preview is not None:
                job.preview = msg.preview
                job.preview_serial += 1
        elif isinstance(msg, Result):
            job.state, job.result, job.fields = "importing", msg, dict(msg.fields)
        elif isinstance(msg, Error):
            if msg.code == "cancelled":
                job.fail("cancelled", "cancelled")
            else:
                job.fail(msg.code, msg.message, msg.hint, log_path)
        return job
