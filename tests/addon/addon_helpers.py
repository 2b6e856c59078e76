"""Helpers for the add-on tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "torchvision", "open_clip", "backend", "trimesh", "nvdiffrast", "PIL")
"""Top-level modules the add-on must never import: Blender has none of them."""


def forbidden_loaded() -> list[str]:
    return sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)


def backend_python() -> Path:
    override = os.environ.get("ATELIER_BACKEND_PYTHON")
    path = Path(override) if override else ROOT / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not path.exists():
        pytest.fail(f"the backend environment is missing at {path}; run `python build.py test` to create it")
    return path

def configure_prefs(backend_py: Path, log_dir: Path):
    import bpy

    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.mode = "LOCAL"
    prefs.python = str(backend_py)
    prefs.device = "cpu"
    prefs.clip = "tiny"
    prefs.restyle_clip = "tiny-rn"
    prefs.log_dir = str(log_dir)
    prefs.start_timeout = 90.0
    prefs.connect_timeout = 10.0
    return prefs


def write_style_image(path: Path, seed: int = 0, size: int = 16) -> Path:
    """A small random RGB PNG (a style image) at `path`."""
    import numpy as np

    from blender_addon.core.meshpack import encode_png

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.write_bytes(encode_png(pixels))
    return path


def poll_until(tick, predicate, timeout: float, what: str, situation):
    """Calls `tick()` (a timer function bpy would call) until `predicate()` is true; after `timeout` s fails the
    test, naming `what` it waited for and `situation()` (the state worth reading)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick()
        value = predicate()
        if value:
            return value
        time.sleep(0.03)
    pytest.fail(f"timed out after {timeout} s waiting for {what}{situation()}")


def pump_until(predicate, timeout: float = 60.0, what: str = "the condition"):
    """Calls the add-on's timer function until `predicate()` is true; fails the test after `timeout` s."""
    from blender_addon.engine import session

    def situation() -> str:
        runtime = session.get_runtime(optional=True)
        jobs = "" if runtime is None else "; ".join(f"{j.id} {j.state} {j.error_text()}" for j in runtime.jobs.all())
        state = "" if runtime is None else f" (backend {runtime.state}: {runtime.message}; log {runtime.log_path})"
        return f"{state}; jobs: {jobs}"

    return poll_until(session.drain, predicate, timeout, what, situation)


def newest_job():
    from blender_addon.engine import session

    return session.get_runtime().jobs.all()[0]


def finish(record, timeout: float = 60.0):
    """Waits for the job to end; fails the test unless it is done."""
    pump_until(lambda: record.state in ("done", "failed", "cancelled"), timeout, f"job {record.id}")
    assert record.state == "done", record.error_text()
    return record


def running_backend():
    """The add-on's backend, started through its operator unless an earlier test module left it running."""
    import bpy

    from blender_addon.engine import session

    runtime = session.get_runtime()
    if not runtime.ready:
        assert bpy.ops.atelier.backend_start() == {"FINISHED"}
        pump_until(lambda: runtime.state not in ("starting", "connecting"), 90, "the backend to start")
    assert runtime.ready, f"{runtime.message} ({runtime.hint}); log {runtime.log_path}"
    return runtime


CUBE_OBJ = "\n".join(
    [f"v {x} {y} {z}" for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
    + ["f 1 2 4", "f 1 4 3", "f 5 7 8", "f 5 8 6", "f 1 5 6", "f 1 6 2", "f 3 4 8", "f 3 8 7", "f 1 3 7",
       "f 1 7 5", "f 2 6 8", "f 2 8 4"]) + "\n"
TETRA_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"


def index_two_shapes(root: Path) -> str:
    """A box and a tetrahedron written to root/lib and indexed through the Search Library panel's operator into
    root/db (the panel's database folder); returns the database folder."""
    import bpy

    (root / "lib").mkdir()
    (root / "lib" / "box.obj").write_text(CUBE_OBJ)
    (root / "lib" / "tetra.obj").write_text(TETRA_OBJ)
    s = bpy.context.scene.atelier
    s.library_folder, s.library_db, s.library_views = str(root / "lib"), str(root / "db"), 2
    assert bpy.ops.atelier.index_library() == {"FINISHED"}
    assert finish(newest_job(), 90).fields["shapes"] == 2
    return str(root / "db")


def decode_png(data: bytes):
    """PNG bytes -> (width, height, channels, rows as lists of ints), for 8-bit non-interlaced PNGs."""
    import struct
    import zlib

    import numpy as np

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = header
    assert depth == 8 and interlace == 0
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    raw = zlib.decompress(idat)
    stride = width * channels
    out = np.zeros((height, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x - channels] if x >= channels else 0
            b = prev[x]
            c = prev[x - channels] if x >= channels else 0
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[x] = (line[x] + p) & 0xFF
        out[y] = cur
        prev = cur
    return width, height, channels, out.reshape(height, width, channels).astype(np.uint8)


def clear_scene() -> None:
    """Removes every object, mesh, material, image and collection (a clean scene, preferences kept)."""
    import bpy

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for collection in (bpy.data.meshes, bpy.data.materials, bpy.data.images, bpy.data.cameras, bpy.data.curves,
                       bpy.data.collections):
        for item in list(collection):
            collection.remove(item)


def add_object(kind: str = "cube", name: str | None = None, subdivide: int = 0, location=(0, 0, 0),
               rotation=(0, 0, 0), scale=(1, 1, 1)):
    """A selected, active object: "cube", "monkey", "camera", "empty_mesh" (no geometry) or "points" (vertices,
    no faces)."""
    import bpy

    if kind == "cube":
        bpy.ops.mesh.primitive_cube_add()
    elif kind == "monkey":
        bpy.ops.mesh.primitive_monkey_add()
    elif kind == "camera":
        bpy.ops.object.camera_add()
    elif kind in ("empty_mesh", "points"):
        mesh = bpy.data.meshes.new(name or kind)
        if kind == "points":
            mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [])
        obj = bpy.data.objects.new(name or kind, mesh)
        bpy.context.scene.collection.objects.link(obj)
        bpy.context.view_layer.objects.active = obj
        obj.select_set(True)
    else:
        raise ValueError(kind)
    obj = bpy.context.active_object
    if name:
        obj.name = name
    if subdivide:
        obj.modifiers.new("Subdivision", "SUBSURF").levels = subdivide
    obj.location, obj.rotation_euler, obj.scale = location, rotation, scale
    bpy.context.view_layer.update()
    return obj


class FakeLayout:
    """Stands in for `UILayout` so a panel's `draw` can run here; collects every text it would show."""

    def __init__(self, texts: list[str]):
        object.__setattr__(self, "texts", texts)

    def __getattr__(self, name):
        def call(*args, **kwargs):
            if kwargs.get("text"):
                self.texts.append(str(kwargs["text"]))
            return FakeLayout(self.texts)
        return call

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)


class _Drawn:
    """`self` for a draw(): a FakeLayout as `layout`, everything else from `owner` (e.g. the preferences)."""

    def __init__(self, layout, owner=None):
        self.layout, self._owner = layout, owner

    def __getattr__(self, name):
        return getattr(self._owner, name)


def panel_texts(panel_cls, context=None, owner=None) -> str:
    """Everything a panel's (or the preferences') draw() shows, joined by newlines."""
    import bpy

    texts: list[str] = []
    panel_cls.draw(_Drawn(FakeLayout(texts), owner), context or bpy.context)
    return "\n".join(texts)
