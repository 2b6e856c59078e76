"""Starting and stopping a local backend process. No bpy.

`BackendProcess.launch()` runs `PYTHON -m backend.server --bind tcp://127.0.0.1:* ...` from the configured
environment; a helper thread reads the one JSON ready line the server prints once it listens (with the
real port), so Blender's main thread never waits on the start-up (torch takes seconds to import). The
main thread calls `poll()` to learn the outcome and, later, whether the process died.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import AddonError

_PYTHON_HINT = ("set the backend's Python in Edit > Preferences > Add-ons > Atelier: the python executable of "
                "an environment where the Atelier backend is installed (e.g. .venv/bin/python)")


@dataclass
class LaunchOutcome:
    """What the launch thread learned: the ready line's contents, or why there is none."""

    ok: bool
    endpoint: str = ""
    """The address the backend listens on, port included."""
    info: dict | None = None
    """The whole ready line ({"event": "ready", "endpoint", "log", "pid", "protocol", "device"})."""
    message: str = ""
    """Why the start failed (when not ok)."""
    hint: str = ""


def check_python(python: str) -> Path:
    """The backend interpreter as a path that exists and is a file; AddonError that says the fix otherwise."""
    if not python or not python.strip():
        raise AddonError("no backend Python is configured", _PYTHON_HINT, code="backend_python")
    path = Path(python.strip()).expanduser()
    if not path.is_file():
        raise AddonError(f"the backend Python {path} does not exist", _PYTHON_HINT, code="backend_python")
    return path


class BackendProcess:
    """One local backend process: `launch()`, then `poll()` from the main thread, `stop()` at the end."""

    def __init__(self, python: str, *, log_path: Path, bind: str = "tcp://127.0.0.1:*", device: str = "auto",
                 extra_args: tuple[str, ...] = (), start_timeout: float = 120.0):
        self.python = check_python(python)
        self.log_path = Path(log_path)
        """The backend's log file (`--log`): named in every error about this backend."""
        self.stderr_path = self.log_path.with_suffix(".stderr.txt")
        """Where the process's stderr goes (import errors, crashes before logging starts)."""
        # --watch-pid: the backend stops by itself if this Blender dies without stopping it (a crash).
        self.command = [str(self.python), "-m", "backend.server", "--bind", bind, "--device", device,
                        "--log", str(self.log_path), "--watch-pid", str(os.getpid()), *extra_args]
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.started_at: float | None = None
        self._outcome: queue.Queue[LaunchOutcome] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._done = False
        self._lock = threading.Lock()
        self._stopping = False

    # -- start ----------------------------------------------------------------------------------------

    def launch(self) -> None:
        """Starts the process and the thread that waits for its ready line; returns at once."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._launch, name="atelier-backend-launch", daemon=True)
        self._thread.start()

    def _launch(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONEXECUTABLE")}
        env["PYTHONUNBUFFERED"] = "1"
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
        try:
            with self._lock, open(self.stderr_path, "ab") as stderr:
                if self._stopping:  # stopped before it started: start nothing
                    return
                self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=stderr, cwd=str(self.log_path.parent), env=env,
                                                creationflags=flags)
        except OSError as exc:
            self._outcome.put(LaunchOutcome(False, message=f"cannot run the backend Python {self.python}: {exc}",
                                            hint=_PYTHON_HINT))
            return
        line = self.process.stdout.readline()  # returns "" when the process exits (or is killed on timeout)
        try:
            info = json.loads(line)
        except ValueError:
            info = None
        if isinstance(info, dict) and info.get("event") == "ready" and isinstance(info.get("endpoint"), str):
            self._outcome.put(LaunchOutcome(True, endpoint=info["endpoint"], info=info))
            # Keep reading so a chatty backend never blocks on a full stdout pipe.
            for _ in iter(self.process.stdout.readline, b""):
                pass
            return
        code = self.process.wait()
        self._outcome.put(LaunchOutcome(
            False, message=f"the backend exited (code {code}) before it was ready: "
                    f"{self.stderr_tail() or line.decode(errors='replace').strip() or 'no output'}",
            hint=f"see its log {self.log_path} and {self.stderr_path}; check that {self.python} has the "
                 f"Atelier backend installed (`{self.python} -m backend.server --help`)"))

    def poll(self) -> LaunchOutcome | None:
        """The launch's outcome once known (once); kills the process and reports a timeout past `start_timeout`."""
        if self._done:
            return None
        try:
            outcome = self._outcome.get_nowait()
            self._done = True
            return outcome
        except queue.Empty:
            pass
        if self.started_at is not None and time.monotonic() - self.started_at > self.start_timeout:
            self.kill()
            self._done = True
            return LaunchOutcome(False, message=f"the backend did not start within {self.start_timeout:g} s",
                                 hint=f"see its log {self.log_path} and {self.stderr_path}; a first start may "
                                      "take longer (raise the start timeout in the preferences)")
        return None

    # -- life -----------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def exit_code(self) -> int | None:
        """The exit code once the process has ended; None while it runs (or before it started)."""
        return None if self.process is None else self.process.poll()

    def stderr_tail(self, chars: int = 600) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-chars:].strip()

    def kill(self) -> None:
        with self._lock:
            self._stopping = True
            if self.process is not None and self.process.poll() is None:
                self.process.kill()

    def stop(self, grace: float = 5.0, wait: bool = False) -> None:
        """Ends the process: it has `grace` seconds to exit by itself (after a `shutdown` message the caller
        sent), then SIGTERM, then SIGKILL. Waits only when `wait` (at Blender's exit); else a thread does."""
        with self._lock:
            self._stopping = True
            process = self.process
        if process is None:
            return

        def reap() -> None:
            for action in (None, process.terminate, process.kill):
                if action is not None:
                    try:
                        action()
                    except OSError:
                        return
                try:
                    process.wait(grace if action is None else 3.0)
                    return
                except subprocess.TimeoutExpired:
                    continue

        if wait:
            reap()
        else:
            threading.Thread(target=reap, name="atelier-backend-stop", daemon=True).start()
