"""Small shape libraries for the retrieval tests: world shapes written as GLB (with categories.json), plain
meshes in nested folders, broken files, and one domain-CLIP index shared by every test module of a run."""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import trimesh

from backend.geometry.primitives import cube, icosphere
from backend.world.dataset import read_manifest, write_dataset

LIBRARY_SHAPES = 16
"""Shapes in the shared world library: two per category."""
WORLD_SEED = 5
"""World seed of the shared library (not the domain CLIP's training seed: unseen shapes)."""


@contextlib.contextmanager
def one_thread():
    """Torch on one CPU thread: small kernels run many times faster so on a shared 2-core machine (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def write_world_library(out: Path, shapes: int = LIBRARY_SHAPES, seed: int = WORLD_SEED) -> tuple[Path, dict]:
    """A world dataset with only its library (GLB meshes + categories.json): (library folder, manifest)."""
    with one_thread():
        write_dataset(out, shapes, seed=seed, views=0, sketches=0, photos=0)
    return out / "library", read_manifest(out)


def write_plain_library(root: Path) -> list[str]:
    """Untextured meshes in nested folders, one per format: returns their relative paths."""
    sphere, box = icosphere(1), cube()
    files = {
        "balls/sphere.obj": sphere, "balls/big/sphere.ply": sphere, "boxes/box.stl": box, "boxes/box.off": box,
        "boxes/box.glb": box, "top.gltf": sphere,
    }
    for relpath, mesh in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(path)
    return sorted(files)


def write_corrupt(path: Path) -> Path:
    """A file with a mesh extension and garbage inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a mesh\x00\x01\x02" * 10)
    return path


@functools.cache
def domain_index() -> tuple[Path, Path, dict]:
    """(library folder, database folder, manifest): the shared world library indexed with the domain CLIP,
    built once per test process (about 3 s) in a temporary folder removed at exit."""
    from backend.models.clip import load_clip
    from backend.retrieve.indexer import index_library
    from backend.retrieve.query import QueryEncoder

    root = Path(tempfile.mkdtemp(prefix="atelier-retrieve-"))
    atexit.register(shutil.rmtree, root, True)
    library, manifest = write_world_library(root / "world")
    report = index_library(library, root / "db", QueryEncoder(load_clip("domain")))
    assert report.indexed == LIBRARY_SHAPES and not report.failed, report
    return library, root / "db", manifest


def png_bytes(image: np.ndarray) -> bytes:
    from backend.geometry.png import encode_png

    return encode_png(np.ascontiguousarray(image))
