"""The add-on's backend session: settings, the local process, the client thread and the jobs. No bpy.

Everything here runs on Blender's main thread and returns at once; waiting happens in the client's and
the launcher's threads. `poll()` is what the add-on's timer calls: it takes what those threads reported,
moves the state machine on, and returns the jobs whose results are ready to import.

States: stopped -> starting (local process launched, waiting for its ready line) -> connecting (hello
sent) -> ready (welcome received); failed (could not start or connect: `message` says why) and lost (died
or stopped answering). A job submitted in any state but ready waits and starts the backend; the next
action after failed/lost starts it again.

Supervision: a local backend that exits by itself is restarted once, `restart_delay` seconds later, without
any action; if the restarted one dies before it has run `healthy_after` seconds, it stays lost (the error
names the log) until the artist starts it. `restart_note` says what happened, for the panel. A remote
backend is pinged every `ping_interval` seconds, idle or not; an idle one that misses `idle_ping_timeout`
counts as lost.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import AddonError
from ..core.protocol import Cancel, Error, ProtocolError, Release, Shutdown, Status, Submit, Welcome, to_frames
from .client import BackendClient
from .jobs import JobRecord, JobTracker
from .supervisor import BackendProcess

CLIENT_NAME = "atelier-blender"


def default_log_dir() -> Path:
    return Path(tempfile.gettempdir()) / "atelier-blender"


@dataclass
class BackendSettings:
    """How to reach a backend; the add-on builds it from its preferences."""

    mode: str = "local"
    """"local": start `python -m backend.server` from `python` on this machine; "remote": connect to
    `remote_address`, encrypted with the CurveZMQ keys in `curve_dir`."""
    python: str = ""
    """The backend environment's python executable (local mode)."""
    device: str = "auto"
    """auto | cpu | cuda | mps (local mode)."""
    bind: str = "tcp://127.0.0.1:*"
    """Where a local backend listens; `*` picks a free port, so two Blender instances never collide."""
    remote_address: str = ""
    """e.g. tcp://gpu-box:5557 (remote mode)."""
    curve_dir: str = ""
    """Folder with client.key_secret and server.key (remote mode; empty: no encryption, loopback only)."""
    log_dir: Path = field(default_factory=default_log_dir)
    """Where a local backend's log goes (one file per Blender process)."""
    start_timeout: float = 120.0
    """Seconds a local backend may take to print its ready line."""
    connect_timeout: float = 10.0
    """Seconds to wait for `welcome` after `hello`."""
    ping_interval: float = 0.5
    """Seconds of silence from a connected backend before the add-on pings it with `status`."""
    ping_timeout: float = 15.0
    """Seconds a busy backend (this Blender's jobs are active) may leave a status ping unanswered before it
    counts as lost: a training step may hold the backend's interpreter for seconds."""
    idle_ping_timeout: float = 3.0
    """Seconds an idle backend may leave a status ping unanswered: with `ping_interval`, a dead remote backend
    shows within about 4 s."""
    restart_delay: float = 1.0
    """Seconds between a local backend's unexpected exit and its automatic restart (the back-off)."""
    healthy_after: float = 60.0
    """Seconds an automatically restarted backend must stay ready before another death is restarted again;
    an earlier death is left to the artist, so a backend that keeps crashing is not restarted in a loop."""
    extra_args: tuple[str, ...] = ()
    """More `backend.server` arguments (tests: e.g. "--test-jobs")."""
    blender: str = ""
    """The Blender a local backend's index jobs read .blend, FBX and USD files with (`--blender`): the
    preference, else this Blender's own executable; "" (the bpy module has none): the backend's default."""
    client_name: str = CLIENT_NAME
    """Sent in `hello`, for the backend's log."""

    def server_args(self) -> tuple[str, ...]:
        """The local backend's extra arguments: `extra_args`, and `--blender` when one is known."""
        return (*self.extra_args, *(("--blender", self.blender) if self.blender else ()))

    def validate(self) -> None:
        if self.mode not in ("local", "remote"):
            raise AddonError(f"backend mode must be 'local' or 'remote', got {self.mode!r}")
        if self.mode == "remote":
            address = self.remote_address.strip()
            if not address:
                raise AddonError("no remote backend address is set",
                                 "enter it in the preferences, e.g. tcp://gpu-box:5557", code="backend_address")
            if "://" not in address:
                raise AddonError(f"the backend address {address!r} has no transport",
                                 "write it as tcp://HOST:PORT", code="backend_address")

    @property
    def log_path(self) -> Path:
        return Path(self.log_dir) / f"backend-{os.getpid()}.log"


class Runtime:
    """One backend connection and its jobs (the add-on holds one; tests may make their own)."""

    def __init__(self, settings: BackendSettings | None = None):
        self.settings = settings or BackendSettings()
        self.jobs = JobTracker()
        self.state = "stopped"
        self.message = ""
        """Why the backend is failed / lost, or "" when all is well."""
        self.hint = ""
        self.welcome: Welcome | None = None
        self.status: Status | None = None
        """The last `status` reply (queue, busy)."""
        self.process: BackendProcess | None = None
        self.client: BackendClient | None = None
        self.endpoint = ""
        self.releases = 0
        """How many `release` requests the backend has acknowledged."""
        self.restart_note = ""
        """What supervision did ("the backend exited (code -9); restarted it at 14:02:11"), for the panel;
        cleared by the artist's start and stop."""
        self._dead_log = ""
        """The log of the local backend that died last (what `log_path` names until another one starts)."""
        self.restarts = 0
        """Automatic restarts so far (tests and the panel)."""
        self._restart_at: float | None = None
        """When a pending automatic restart is due (time.monotonic), or None."""
        self._auto_started = False
        """Whether the current backend was started by an automatic restart (it gets no second one soon)."""
        self._ready_since: float | None = None
        self._exit: tuple[int, str] = (0, "")
        """The last unexpected exit's code and log, for the restart's note."""
        self._notices: list[tuple[str, str]] = []

    # -- what the panel reads -------------------------------------------------------------------------

    @property
    def log_path(self) -> str:
        """The backend's log: the local process's, or the one the remote backend named in `welcome`."""
        if self.process is not None:
            return str(self.process.log_path)
        if self.settings.mode == "local" and self._dead_log:
            return self._dead_log  # the log of the process that died, not where a new one would write
        if self.welcome is not None and self.welcome.log_path:
            return self.welcome.log_path
        return str(self.settings.log_path) if self.settings.mode == "local" else ""

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def busy(self) -> bool:
        """Whether anything is under way (the timer then runs more often)."""
        return self.state in ("starting", "connecting") or self.restart_pending or any(
            j.active or j.state == "importing" for j in self.jobs.all())

    @property
    def restart_pending(self) -> bool:
        """Whether a local backend that died is about to be restarted by itself."""
        return self._restart_at is not None

    @property
    def job_kinds(self) -> list[str]:
        return list(self.welcome.job_kinds) if self.welcome else []

    def take_notices(self) -> list[tuple[str, str]]:
        """(level, text) pairs for the status bar since the last call: failures the artist should see."""
        notices, self._notices = self._notices, []
        return notices

    # -- actions (main thread, never block) -----------------------------------------------------------

    def configure(self, settings: BackendSettings) -> None:
        """New settings; they apply at the next start (Restart applies them now)."""
        self.settings = settings

    def start(self) -> None:
        """Starts (local) or connects to (remote) the backend unless it is on its way or ready.

        Raises AddonError for settings that cannot work (no python, no address); the failure is also
        kept in `message` for the panel."""
        if self.state in ("starting", "connecting", "ready"):
            return
        self._teardown()
        self.message = self.hint = ""
        # The artist (or a job) starts it: a fresh supervision budget.
        self._restart_at, self._auto_started, self.restart_note = None, False, ""
        settings = self.settings
        try:
            settings.validate()
            if settings.mode == "remote":
                self._connect(settings.remote_address.strip(), settings.curve_dir or None)
            else:
                self.process = BackendProcess(settings.python, log_path=settings.log_path, bind=settings.bind,
                                              device=settings.device, extra_args=settings.server_args(),
                                              start_timeout=settings.start_timeout)
                self.process.launch()
                self.state = "starting"
        except AddonError as exc:
            self._set_failed("failed", exc.message, exc.hint, with_log=False)  # nothing ran: no log to read
            raise

    def stop(self, wait: bool = False, grace: float = 5.0) -> None:
        """Asks the backend to shut down (local: and ends the process). Active jobs end as cancelled."""
        for job in self.jobs.active():
            job.fail("cancelled", "cancelled: the backend was stopped")
        if self.client is not None and self.client.connected and self.process is not None:
            self.client.send(Shutdown())  # only to a backend this add-on started, never a shared remote one
        if self.client is not None:
            self.client.close(timeout=1.0 if wait else 0.0)  # the thread flushes the shutdown, then ends
            self.client = None
        if self.process is not None:
            self.process.stop(grace=grace, wait=wait)
            self.process = None
        self.state, self.welcome, self.status, self.endpoint = "stopped", None, None, ""
        self.message = self.hint = self.restart_note = ""
        self._restart_at, self._auto_started = None, False

    def restart(self) -> None:
        self.stop()
        self.start()

    def shutdown(self, timeout: float = 3.0) -> None:
        """Blender is quitting or the add-on is unregistered: stop the backend and wait for it."""
        self.stop(wait=True, grace=timeout)

    def submit(self, kind: str, params: dict, mesh=None, *, label: str, source: str = "",
               meta: dict | None = None, blobs: dict[str, bytes] | None = None) -> JobRecord:
        """Queues a job and returns its record at once; starts the backend if it is not running.

        `blobs` are the job's named binary inputs (e.g. restyle's style images "style_0", "style_1", ...).

        Raises AddonError for a message that cannot be sent (too large, invalid): nothing is queued then.
        A backend that cannot start fails the job (record.state "failed", with the reason)."""
        job_id = self.jobs.new_id(kind)
        try:
            frames = to_frames(Submit(job=job_id, kind=kind, params=params, mesh=mesh, blobs=dict(blobs or {})))
        except ProtocolError as exc:
            raise AddonError(f"the {kind} job cannot be sent: {exc.message}", exc.hint) from exc
        max_blob = self.welcome.max_blob_bytes if self.welcome and self.welcome.max_blob_bytes else None
        if max_blob is not None and any(len(f) > max_blob for f in frames[1:]):
            raise AddonError(f"the {kind} job's data is over the backend's limit of {max_blob >> 20} MiB per array",
                             "use a mesh with fewer vertices (apply a Decimate modifier) or smaller images")
        record = self.jobs.add(JobRecord(id=job_id, kind=kind, label=label, params=dict(params), source=source,
                                         meta=dict(meta or {}), frames=frames, log_path=self.log_path))
        if self.ready:
            self._send_pending()
        else:
            notices = len(self._notices)
            try:
                self.start()
            except AddonError:
                # start() failed the job with the reason; the operator reports it, so no second notice.
                del self._notices[notices:]
        return record

    def fail_now(self, kind: str, label: str, error: AddonError, params: dict | None = None,
                 source: str = "") -> JobRecord:
        """Records a job that never left Blender (bad input) so the job list shows why."""
        record = self.jobs.add(JobRecord(id=self.jobs.new_id(kind), kind=kind, label=label, params=params or {},
                                         source=source))
        record.fail(error.code, error.message, error.hint)
        return record

    def cancel(self, job_id: str) -> None:
        """Asks the backend to stop a job; a job still waiting for the backend is dropped here."""
        job = self.jobs.get(job_id)
        if job is None or not job.active:
            return
        if job.frames is not None:
            job.fail("cancelled", "cancelled before it was sent")
            return
        job.cancel_requested = True
        if self.client is not None:
            self.client.send(Cancel(job=job_id))

    def release(self) -> None:
        """Asks the backend to drop cached models and free GPU memory (answered with a `release` ack)."""
        if not self.ready:
            raise AddonError("the backend is not running", "start it first")
        self.client.send(Release())

    def request_status(self) -> None:
        if self.ready:
            self.client.send(Status())

    # -- the timer's work -----------------------------------------------------------------------------

    def poll(self) -> list[JobRecord]:
        """Takes in what the threads reported; returns the jobs whose results now wait for import."""
        results: list[JobRecord] = []
        if self.state == "starting" and self.process is not None:
            outcome = self.process.poll()
            if outcome is not None:
                if outcome.ok:
                    self._connect(outcome.endpoint, None)
                else:
                    self._set_failed("failed", outcome.message, outcome.hint)
        if self.process is not None and self.state in ("connecting", "ready"):
            code = self.process.exit_code()
            if code is not None:
                self._on_exit(code)
        if self._restart_at is not None and time.monotonic() >= self._restart_at:
            self._restart()
        if self.client is not None:
            for event in self.client.drain():
                if event.kind == "message":
                    record = self._on_message(event.message)
                    if record is not None and record.state == "importing":
                        results.append(record)
                elif event.kind == "lost":
                    if self.state in ("connecting", "ready"):
                        state = "failed" if self.state == "connecting" else "lost"
                        self._set_failed(state, event.text, "check the address and that the backend runs; the "
                                                            "next job or Start tries again")
                    break
                else:
                    self._notices.append(("WARNING", event.text))
            if self.client is not None:
                self.client.watch = bool(self.jobs.active())
        return results

    # -- supervision ----------------------------------------------------------------------------------

    def _on_exit(self, code: int) -> None:
        """The local backend exited by itself: fail its jobs, then restart it once after the back-off, unless it
        is itself a recent automatic restart (then it stays lost, with its log named)."""
        tail = self.process.stderr_tail(300)
        log_path = self._dead_log = self.log_path
        what = f"the backend stopped unexpectedly (exit code {code})" + (f": {tail}" if tail else "")
        now = time.monotonic()
        recent = self._auto_started and (self._ready_since is None
                                         or now - self._ready_since < self.settings.healthy_after)
        if recent:
            self._set_failed("lost", f"{what}; it was restarted once already and died again within "
                                     f"{self.settings.healthy_after:g} s, so it is left stopped",
                             "read its log (named below); Start or the next job starts it again")
            self.restart_note = f"the backend exited again (code {code}) after its restart; not restarting it " \
                                f"(log: {log_path})"
            self._notices.append(("ERROR", self.restart_note))
            return
        self._set_failed("lost", what, f"it restarts by itself in {self.settings.restart_delay:g} s")
        self._restart_at = now + self.settings.restart_delay
        self._exit = (code, log_path)
        self.restart_note = f"the backend exited (code {code}); restarting it in {self.settings.restart_delay:g} s " \
                            f"(log: {log_path})"
        self._notices.append(("WARNING", self.restart_note))

    def _restart(self) -> None:
        code, log_path = self._exit
        self._restart_at = None
        if self.state != "lost":  # started or stopped meanwhile: nothing left to do
            return
        try:
            self.start()
        except AddonError as exc:  # the settings changed under it (e.g. the python was removed)
            self._notices.append(("ERROR", f"the backend could not be restarted: {exc}"))
            return
        self.restarts += 1
        self._auto_started = True
        self.restart_note = (f"the backend exited (code {code}) and was restarted at {time.strftime('%H:%M:%S')} "
                             f"(log: {log_path})")
        self._notices.append(("INFO", self.restart_note))

    # -- internals ------------------------------------------------------------------------------------

    def _connect(self, endpoint: str, curve_dir: str | None) -> None:
        self.endpoint = endpoint
        self.client = BackendClient(endpoint, curve_dir=curve_dir, client_name=self.settings.client_name,
                                    connect_timeout=self.settings.connect_timeout,
                                    ping_interval=self.settings.ping_interval, ping_timeout=self.settings.ping_timeout,
                                    idle_ping_timeout=self.settings.idle_ping_timeout)
        self.client.start()
        self.state = "connecting"

    def _on_message(self, msg) -> JobRecord | None:
        if isinstance(msg, Welcome):
            self.welcome = msg
            self.state, self.message, self.hint = "ready", "", ""
            self._ready_since = time.monotonic()
            self._send_pending()
            return None
        if isinstance(msg, Status):
            self.status = msg
            return None
        if isinstance(msg, Release):
            self.releases += 1
            self._notices.append(("INFO", "the backend dropped its cached models and freed GPU memory"))
            return None
        if isinstance(msg, Shutdown):
            return None
        if isinstance(msg, Error) and msg.job is None:
            if self.state == "connecting":  # the handshake was refused (protocol mismatch)
                self._set_failed("failed", msg.message, msg.hint)
            else:
                self._notices.append(("ERROR", f"{msg.message} ({msg.hint})" if msg.hint else msg.message))
            return None
        record = self.jobs.apply(msg, self.log_path)
        if record is not None and record.state == "failed":
            self._notices.append(("ERROR", f"{record.label} failed: {record.error_text()}"))
        return record

    def _send_pending(self) -> None:
        offered = set(self.welcome.job_kinds) if self.welcome else set()
        for job in self.jobs.active():
            if job.frames is None:
                continue
            if job.kind not in offered:
                job.fail("unknown_kind", f"this backend offers no {job.kind} job (it offers: "
                                         f"{', '.join(sorted(offered)) or 'none'})",
                         "update the Atelier backend to the add-on's release", self.log_path)
                continue
            self.client.send_frames(job.frames)
            job.frames = None

    def _set_failed(self, state: str, message: str, hint: str, with_log: bool = True) -> None:
        """The backend is unusable: say why, fail every active job with the same words, drop the connection."""
        self.state, self.message, self.hint = state, message, hint
        log_path = self.log_path if with_log else ""
        for job in self.jobs.active():
            if not with_log:
                job.log_path = ""
            job.fail("backend_lost" if state == "lost" else "backend_unavailable", message, hint, log_path)
            self._notices.append(("ERROR", f"{job.label} failed: {job.error_text()}"))
        self._teardown()

    def _teardown(self) -> None:
        if self.client is not None:
            self.client.close(timeout=0.5)
            self.client = None
        if self.process is not None:
            self.process.stop(grace=1.0)
            self.process = None
        self.welcome, self.status, self._ready_since = None, None, None
