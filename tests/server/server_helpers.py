"""Starting a real backend process on loopback, and the test meshes sent to it."""

from __future__ import annotations

import time
from pathlib import Path

from backend.geometry.primitives import cube, textured_cube
from backend.server.client import Client
from backend.server.launch import BackendProcess, start_backend, stop_backend
from backend.server.meshes import payload_from_mesh
from shared_protocol import MeshPayload, Message, Status

ROOT = Path(__file__).resolve().parents[2]
MAX_BLOB_BYTES = 1 << 20
"""The shared test server runs with a 1 MiB blob limit so oversized-blob tests stay small."""
MAX_QUEUE = 2
"""...and at most 2 waiting jobs, so the full-queue test is short."""


RunningServer = BackendProcess


def start_server(tmp_dir: Path, *args: str, timeout: float = 60.0) -> BackendProcess:
    """A real backend process on loopback (a free port), CPU, logging into tmp_dir."""
    return start_backend(tmp_dir, *args, timeout=timeout)


stop_server = stop_backend


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


def cube_payload() -> MeshPayload:
    """The 12-triangle unit cube."""
    return payload_from_mesh(cube())


def textured_cube_payload(corner_uv: bool = True) -> MeshPayload:
    return payload_from_mesh(textured_cube(), corner_uv=corner_uv)
