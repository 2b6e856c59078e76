"""Starting a backend in a child process and stopping it: used by the demo, benchmarks and tests.

(The Blender add-on has its own launcher: it may not import the backend.)
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from backend.errors import AtelierError
from backend.server.client import Client
from shared_protocol import Shutdown

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class BackendProcess:
    """A running `atelier serve` child process."""

    endpoint: str
    """The address it listens on (the real port when bound to `tcp://127.0.0.1:*`)."""
    process: subprocess.Popen
    """The child process."""
    log_path: Path
    """The server's log file."""
    stderr_path: Path
    """Where its stderr goes."""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def start_backend(log_dir: Path, *args: str, device: str = "cpu", timeout: float = 60.0,
                  python: str = sys.executable) -> BackendProcess:
    """Runs `python -m backend.server --bind tcp://127.0.0.1:* ...` and waits for its ready line."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path, stderr_path = log_dir / "server.log", log_dir / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [python, "-m", "backend.server", "--bind", "tcp://127.0.0.1:*", "--device", device,
             "--log", str(log_path), "--watch-pid", str(os.getpid()), *args],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        info = json.loads(lines.get(timeout=timeout))
    except (queue.Empty, json.JSONDecodeError) as exc:
        process.kill()
        raise AtelierError(f"the backend did not start: {stderr_path.read_text(errors='replace')[-2000:]}",
                           hint=f"see {log_path}") from exc
    if info.get("event") != "ready":
        process.kill()
        raise AtelierError(f"the backend printed {info!r} instead of its ready line", hint=f"see {log_path}")
    return BackendProcess(info["endpoint"], process, log_path, stderr_path)


def stop_backend(backend: BackendProcess, timeout: float = 15.0) -> int:
    """Asks for a clean shutdown; kills the process if it does not exit. Returns the exit code."""
    if backend.process.poll() is None:
        with Client(backend.endpoint) as client:
            client.send(Shutdown())
            client.recv(5.0)
        try:
            backend.process.wait(timeout)
        except subprocess.TimeoutExpired:
            backend.process.kill()
            backend.process.wait()
    return backend.process.returncode
