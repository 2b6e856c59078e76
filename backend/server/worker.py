"""The one compute thread: takes jobs from the queue, runs their handlers, streams messages back.

The worker never touches the ROUTER socket (ZeroMQ sockets are not thread-safe). It sends already
encoded frames `[client identity, header, blobs...]` over its own inproc PUSH socket; the main loop
forwards them. Every exception inside a job becomes an `error` message: the worker never dies of one.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from pathlib import Path
from typing import Callable

import torch
import zmq

from backend.errors import AtelierError, JobCancelled
from backend.progress import EtaClock
from backend.server.arrays import from_numpy, to_numpy
from backend.server.context import JobContext, JobHandler, JobOutput
from backend.server.jobqueue import Job, JobQueue
from backend.server.meshes import decode_mesh
from backend.server.paths import PathPolicy
from shared_protocol import Array, Error, Message, Progress, Result, is_name, to_frames
from shared_protocol.limits import MAX_NAME_CHARS, MAX_STRING

log = logging.getLogger("backend.server")

_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")


def error_message(code: str, message: str, hint: str = "", job: str | None = None) -> Error:
    """An `Error` that always encodes: bad codes become "internal", long texts are cut to the limit."""
    if not _CODE_RE.match(code):
        code = "internal"
    return Error(code=code, message=message[:MAX_STRING], hint=hint[:MAX_STRING], job=job)


class ProgressReporter:
    """The `ctx.progress` of one job: checks cancellation, throttles, and sends `progress` messages.

    Throttling drops plain updates only: the first of a stage, the last step and any carrying a preview
    always go out (the handler asked for that preview; dropping it would lose it)."""

    def __init__(self, job: Job, send: Callable[[Job, Message], None], rate: float):
        self.job = job
        self.send = send
        self.min_interval = 1.0 / rate
        self.stage: str | None = None
        self.clock = EtaClock()
        self.last_sent = -math.inf

    def __call__(self, step: int, total: int, stage: str = "", preview_png: bytes | None = None,
                 **metrics: float) -> None:
        self.job.token.check()
        now = time.monotonic()
        first = stage != self.stage
        if first:
            # The first stage's clock runs from the job's start (set-up counts); later stages restart it.
            if self.stage is not None:
                self.clock = EtaClock()
            self.stage = stage
        step, total = max(int(step), 0), max(int(total), 0)
        last = total > 0 and step >= total
        if preview_png is None and not (first or last or now - self.last_sent >= self.min_interval):
            return
        eta = self.clock.eta(step, total)
        self.last_sent = now
        self.send(self.job, Progress(job=self.job.id, stage=_safe_name(stage), step=step, total=total,
                                     eta_s=eta if math.isfinite(eta) else None,
                                     metrics=_clean_metrics(metrics), preview=preview_png))


def _safe_name(name: str) -> str:
    """Metric and stage names must be protocol names; a stray '/' or space must not fail a job."""
    if not name or is_name(name):
        return name
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", str(name))[:MAX_NAME_CHARS] or "_"


def _clean_metrics(metrics: dict) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        try:
            number = float(value)  # also 0-d tensors and numpy scalars
        except (TypeError, ValueError):
            continue
        out[_safe_name(key)] = number if math.isfinite(number) else None
    return out


class Worker(threading.Thread):
    """Runs queued jobs one at a time until the queue is closed."""

    def __init__(self, queue: JobQueue, handlers: dict[str, JobHandler], device: torch.device,
                 context: zmq.Context, events_endpoint: str, log_path: Path, progress_rate: float,
                 linger_ms: int, paths: PathPolicy | None = None):
        super().__init__(name="atelier-worker", daemon=True)
        self.paths = paths or PathPolicy()
        self.queue = queue
        self.handlers = handlers
        self.device = device
        self.context = context
        self.events_endpoint = events_endpoint
        self.log_path = log_path
        self.progress_rate = progress_rate
        self.linger_ms = linger_ms
        self._push: zmq.Socket | None = None

    def run(self) -> None:
        self._push = self.context.socket(zmq.PUSH)
        self._push.connect(self.events_endpoint)
        try:
            while (job := self.queue.take()) is not None:
                self._run_job(job)
        finally:
            self._push.close(linger=self.linger_ms)

    def send(self, job: Job, msg: Message) -> None:
        """Encodes `msg` for `job`'s client and hands it to the main loop."""
        self._push.send_multipart([job.client, *to_frames(msg)])

    def _run_job(self, job: Job) -> None:
        started = time.monotonic()
        log.info("job %s (%s) from %s started after %.2fs in the queue", job.id, job.kind, job.client.hex(),
                 started - job.submitted_at)
        try:
            job.token.check()
            output = self.handlers[job.kind](self._context(job))
            # An unencodable result (bad blob name, NaN in fields) is the handler's bug: it lands below.
            frames = to_frames(self._result(job, output))
            log.info("job %s finished in %.2fs", job.id, time.monotonic() - started)
        except JobCancelled:
            log.info("job %s cancelled after %.2fs", job.id, time.monotonic() - started)
            frames = to_frames(error_message("cancelled", f"job {job.id!r} was cancelled", job=job.id))
        except AtelierError as exc:
            log.info("job %s failed: %s", job.id, exc)
            frames = to_frames(error_message(exc.code, exc.message, exc.hint, job=job.id))
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            log.exception("job %s ran out of memory", job.id)
            frames = to_frames(error_message(
                "out_of_memory", f"the {job.kind} job ran out of memory ({type(exc).__name__})",
                "use a smaller size or mesh, send `release` to free cached models, or run on another device",
                job=job.id))
        except Exception as exc:  # any bug in a job becomes an error reply; the worker keeps serving
            log.exception("job %s (%s) raised", job.id, job.kind)
            frames = to_frames(error_message(
                "internal", f"the {job.kind} job failed: {type(exc).__name__}: {exc}",
                f"this is a backend bug; the traceback is in the log at {self.log_path}", job=job.id))
        finally:
            # Before the last message goes out, so a status sent on receipt already shows the job done.
            self.queue.finish(job)
        self._push.send_multipart([job.client, *frames])

    def _context(self, job: Job) -> JobContext:
        submit = job.submit
        return JobContext(
            job=job.id, kind=job.kind, params=self.paths.confine_params(job.kind, submit.params),
            mesh=None if submit.mesh is None else decode_mesh(submit.mesh),
            arrays={name: to_numpy(arr) for name, arr in submit.arrays.items()},
            blobs=dict(submit.blobs), device=self.device,
            progress=ProgressReporter(job, self.send, self.progress_rate), cancel=job.token,
        )

    @staticmethod
    def _result(job: Job, output: JobOutput) -> Result:
        if not isinstance(output, JobOutput):
            raise TypeError(f"the {job.kind} handler returned {type(output).__name__}, not JobOutput")
        arrays = {name: arr if isinstance(arr, Array) else from_numpy(arr) for name, arr in output.arrays.items()}
        return Result(job=job.id, kind=job.kind, fields=output.fields, arrays=arrays, blobs=output.blobs)
