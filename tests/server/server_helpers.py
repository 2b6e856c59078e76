"""Starting a real backend process on loopback, and the test meshes sent to it."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.geometry.mesh import gltf_to_blender
from backend.geometry.primitives import cube, textured_cube
from backend.server.arrays import from_numpy
from backend.server.client import Client
from backend.geometry.png import encode_png
from shared_protocol import MeshPayload, Message, Shutdown, Status

ROOT = Path(__file__).resolve().parents[2]
MAX_BLOB_BYTES = 1 << 20
"""The shared test server runs with a 1 MiB blob limit so oversized-blob tests stay small."""
MAX_QUEUE = 2
"""...and at most 2 waiting jobs, so the full-queue test is short."""


@dataclass
class RunningServer:
    endpoint: str
    process: subprocess.Popen
    log_path: Path
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def start_server(tmp_dir: Path, *args: str, timeout: float = 60.0) -> RunningServer:
    """Runs `python -m backend.server --bind tcp://127.0.0.1:* ...` and waits for its ready line."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log_path, stderr_path = tmp_dir / "server.log", tmp_dir / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "backend.server", "--bind", "tcp://127.0.0.1:*", "--device", "cpu",
             "--log", str(log_path), *args],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        info = json.loads(lines.get(timeout=timeout))
    except (queue.Empty, json.JSONDecodeError) as exc:
        process.kill()
        raise RuntimeError(f"the backend did not start: {stderr_path.read_text()}") from exc
    assert info["event"] == "ready" and info["protocol"] == 1
    return RunningServer(info["endpoint"], process, log_path, stderr_path)


def stop_server(server: RunningServer, timeout: float = 15.0) -> int:
    """Asks for a clean shutdown; kills the process if it does not exit. Returns the exit code."""
    if server.process.poll() is None:
        with Client(server.endpoint) as client:
            client.send(Shutdown())
            client.recv(5.0)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


def next_about(client: Client, job: str | None, timeout: float = 5.0) -> Message:
    """The next message whose `job` is `job` (None: a message about no job), skipping the rest."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = client.recv(left)
        if msg is not None and getattr(msg, "job", None) == job:
            return msg
    raise AssertionError(f"no message about job {job!r} within {timeout}s")


def status(client: Client, timeout: float = 5.0) -> Status:
    """Sends `status` and returns its reply, skipping other messages that arrive first."""
    client.send(Status())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = client.recv(deadline - time.monotonic())
        if isinstance(msg, Status):
            return msg
    raise AssertionError(f"no status reply within {timeout}s: the server stopped serving")


def payload_from_mesh(mesh, corner_uv: bool = False) -> MeshPayload:
    """A backend (glTF-frame) mesh -> the payload Blender would send (Z up, UV origin bottom-left)."""
    uv = None
    if mesh.uv is not None:
        blender_uv = np.stack([mesh.uv[:, 0], 1.0 - mesh.uv[:, 1]], axis=1).astype(np.float32)
        uv = blender_uv[mesh.faces.reshape(-1)] if corner_uv else blender_uv
    return MeshPayload(
        vertices=from_numpy(gltf_to_blender(mesh.vertices)), faces=from_numpy(mesh.faces.astype(np.int32)),
        uv=None if uv is None else from_numpy(uv), uv_domain="corner" if corner_uv else "vertex",
        vertex_colors=None if mesh.vertex_colors is None else from_numpy(mesh.vertex_colors.astype(np.float32)),
        texture=None if mesh.texture is None else encode_png(mesh.texture))


def cube_payload() -> MeshPayload:
    """The 12-triangle unit cube."""
    return payload_from_mesh(cube())


def textured_cube_payload(corner_uv: bool = True) -> MeshPayload:
    return payload_from_mesh(textured_cube(), corner_uv=corner_uv)
