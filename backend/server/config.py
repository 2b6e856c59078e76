"""`ServerConfig`: everything `serve()` needs, one documented field each."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shared_protocol.limits import MAX_BLOB_BYTES


def default_log_path() -> Path:
    """<temp>/atelier/server-<pid>.log: one file per backend process, so two Blender instances do not mix logs."""
    return Path(tempfile.gettempdir()) / "atelier" / f"server-{os.getpid()}.log"


@dataclass
class ServerConfig:
    """Configures `backend.server.app.Server` (built and run by `serve(config)`)."""

    bind: str = "tcp://127.0.0.1:5557"
    """ZeroMQ endpoint to listen on. `tcp://127.0.0.1:*` picks a free port, announced on the ready line."""
    device: str = "auto"
    """Where jobs compute: auto | cpu | cuda | cuda:N | mps (checked at start-up)."""
    curve_dir: Path | None = None
    """Folder made by `make_keys` (`atelier keys`): serve CurveZMQ-encrypted, and only to client keys in
    its `authorized_clients/`. Needed whenever the bind address is reachable from another machine."""
    data_roots: tuple[str, ...] = ()
    """Folders job paths (databases, libraries, checkpoints, CLIP files) must lie in (`atelier serve --data-root`);
    a path outside is refused before anything touches the disk. Empty: a local server takes any path, a CurveZMQ
    (remote) server none (`backend.server.paths`)."""
    max_blob_bytes: int = MAX_BLOB_BYTES
    """Largest blob frame accepted; a bigger one gets a `too_large` error. At most the protocol limit."""
    max_client_bytes: int = 1 << 30
    """Bytes of submitted data one client's queued and running jobs may hold (1 GiB: a 4M-face mesh is ~100 MiB);
    a submit past it is refused (`busy`, or `too_large` when it could never fit) and nothing of it is kept."""
    max_total_bytes: int = 2 << 30
    """Bytes of submitted data all clients' jobs may hold together (2 GiB), so a few clients cannot fill memory."""
    max_queue: int = 16
    """Jobs waiting (not counting the running one) before `submit` is refused with `queue_full`."""
    log_path: Path | None = None
    """Log file; None means `default_log_path()`. Its path is sent in `welcome` and in internal errors."""
    log_level: str = "INFO"
    """Logging level for the log file: DEBUG | INFO | WARNING | ERROR."""
    progress_rate: float = 20.0
    """Most progress messages per second per job; the first, stage changes and the last step always go out."""
    blender: str | None = None
    """The Blender that `index` jobs read .blend, FBX, USD and Alembic files with (an executable, or a Python with
    the bpy module); None: $ATELIER_BLENDER, .venv-blender, `blender` on PATH. A server setting, never a job
    param: a client must not choose what program the server runs."""
    ray: str | None = None
    """The Ray cluster `index` jobs shard loose meshes over (`atelier serve --ray auto|HOST:PORT`); None: the
    server's own process. A server setting, never a job param: clients do not choose where the server connects."""
    test_jobs: bool = False
    """Also offer the diagnostic job kinds `echo`, `sleep` and `fail` (used by tests and `doctor`)."""
    poll_ms: int = 100
    """How often the main loop wakes when idle, to notice a stop request (SIGINT/SIGTERM, `stop()`)."""
    linger_ms: int = 250
    """How long closing the socket may wait to flush the last replies (shutdown ack, cancellations);
    bounded so shutdown never hangs on a vanished client."""
    join_timeout_s: float = 10.0
    """How long shutdown waits for a cancelled job to reach its next step before leaving it behind."""
    watch_pid: int | None = None
    """Stop when this process is gone (checked every `watch_interval_s`): the add-on passes Blender's pid, so a
    crashed Blender does not leave its backend computing. None: run until told to stop."""
    watch_interval_s: float = 1.0
    """How often `watch_pid` is checked."""

    def __post_init__(self) -> None:
        if not 0 < self.max_blob_bytes <= MAX_BLOB_BYTES:
            raise ValueError(f"max_blob_bytes must be in (0, {MAX_BLOB_BYTES}], got {self.max_blob_bytes}")
        if not 0 < self.max_client_bytes <= self.max_total_bytes:
            raise ValueError(f"need 0 < max_client_bytes <= max_total_bytes, got {self.max_client_bytes} and "
                             f"{self.max_total_bytes}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")
        if self.progress_rate <= 0:
            raise ValueError(f"progress_rate must be > 0, got {self.progress_rate}")
        if self.curve_dir is not None:
            self.curve_dir = Path(self.curve_dir)
        self.log_path = Path(self.log_path) if self.log_path is not None else default_log_path()
