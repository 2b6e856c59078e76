"""The job queue between the main loop (submit, cancel, status) and the one compute worker.

Jobs are keyed by (client identity, job id): two clients may use the same job id.
All methods are thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from backend.errors import AtelierError
from backend.progress import CancelToken
from shared_protocol import Submit


@dataclass
class Job:
    """One submitted job."""

    client: bytes
    """The ROUTER identity of the client that submitted it: every reply goes there."""
    submit: Submit
    """The decoded submit message (params, mesh, arrays, blobs)."""
    token: CancelToken = field(default_factory=CancelToken)
    """Set by `cancel` (or shutdown); the handler checks it each step."""
    submitted_at: float = field(default_factory=time.monotonic)
    """When the job was queued (monotonic seconds)."""
    nbytes: int = 0
    """Bytes of its submit's frames, held until it ends (counted against the in-flight budgets)."""

    @property
    def id(self) -> str:
        return self.submit.job

    @property
    def kind(self) -> str:
        return self.submit.kind


class JobQueue:
    """FIFO of waiting jobs plus the one running job."""

    def __init__(self, max_queued: int, max_client_bytes: int | None = None, max_total_bytes: int | None = None):
        self.max_queued = max_queued
        self.max_client_bytes = max_client_bytes
        self.max_total_bytes = max_total_bytes
        self._cond = threading.Condition()
        self._queued: deque[Job] = deque()
        self._running: Job | None = None
        self._closed = False

    def put(self, job: Job) -> int:
        """Queues a job; returns how many jobs are ahead of it (0: it starts now).

        Raises AtelierError `duplicate_job` when the client already has an active job with this id,
        `queue_full` when `max_queued` jobs are waiting, `shutdown` after `close()`.
        """
        with self._cond:
            if self._closed:
                raise AtelierError("the backend is shutting down", hint="start it again", code="shutdown")
            if self._find(job.client, job.id) is not None:
                raise AtelierError(f"job {job.id!r} is already queued or running",
                                   hint="use a new job id for each submit", code="duplicate_job")
            idle = self._running is None and not self._queued
            if not idle and len(self._queued) >= self.max_queued:
                raise AtelierError(f"the job queue is full ({len(self._queued)} waiting)",
                                   hint="wait for a job to finish or cancel one", code="queue_full")
            self._check_budget(job)
            position = len(self._queued) + (self._running is not None)
            self._queued.append(job)
            self._cond.notify()
            return position

    def _check_budget(self, job: Job) -> None:
        """AtelierError when holding `job` would pass the bytes in flight allowed per client or in total: `too_large`
        when it could never fit, `busy` when it fits once other jobs end."""
        mib = lambda n: f"{n / (1 << 20):.1f} MiB"  # noqa: E731
        active = [*self._queued, *([self._running] if self._running is not None else [])]
        for limit, held, whose, flag in (
                (self.max_client_bytes, sum(j.nbytes for j in active if j.client == job.client), "this client's",
                 "--max-client-bytes"),
                (self.max_total_bytes, sum(j.nbytes for j in active), "all clients'", "--max-total-bytes")):
            if limit is None or held + job.nbytes <= limit:
                continue
            if job.nbytes > limit:
                raise AtelierError(f"the job's data is {mib(job.nbytes)}, over the {mib(limit)} {whose} jobs may hold",
                                   hint=f"send a smaller mesh or images, or start the backend with a larger {flag}",
                                   code="too_large")
            raise AtelierError(f"{whose} queued and running jobs hold {mib(held)}; this job's {mib(job.nbytes)} would "
                               f"pass the {mib(limit)} limit", hint="wait for a job to finish or cancel one",
                               code="busy")

    def take(self) -> Job | None:
        """Blocks until a job is waiting and marks it running; None once the queue is closed."""
        with self._cond:
            while not self._queued and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            self._running = self._queued.popleft()
            return self._running

    def finish(self, job: Job) -> None:
        """Marks the running job done (call before sending its last message, so status is already right)."""
        with self._cond:
            if self._running is job:
                self._running = None

    def cancel(self, client: bytes, job_id: str) -> str | None:
        """Cancels a job: "queued" (removed), "running" (its token is set), or None (no such active job)."""
        with self._cond:
            job = self._find(client, job_id)
            if job is None:
                return None
            job.token.cancel()
            if job is self._running:
                return "running"
            self._queued.remove(job)
            return "queued"

    def snapshot(self, client: bytes) -> tuple[list[str], str | None, bool, int]:
        """(this client's queued ids, its running id or None, whether any job runs, jobs queued in all)."""
        with self._cond:
            mine = [j.id for j in self._queued if j.client == client]
            running = self._running.id if self._running is not None and self._running.client == client else None
            return mine, running, self._running is not None, len(self._queued)

    def close(self) -> list[Job]:
        """Stops taking jobs: cancels the running one and returns the queued ones, removed."""
        with self._cond:
            self._closed = True
            dropped = list(self._queued)
            self._queued.clear()
            for job in dropped:
                job.token.cancel()
            if self._running is not None:
                self._running.token.cancel()
            self._cond.notify_all()
            return dropped

    def _find(self, client: bytes, job_id: str) -> Job | None:
        if self._running is not None and self._running.client == client and self._running.id == job_id:
            return self._running
        return next((j for j in self._queued if j.client == client and j.id == job_id), None)
