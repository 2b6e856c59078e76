"""The files of a library folder: which are indexed, their categories, their content hash.

Loose mesh files (obj, ply, stl, off, glb, gltf) are read here; Blender's formats (.blend, FBX, USD,
Alembic) through Blender worker processes (`backend.geometry.blender_pool`). Hidden folders and files
(names starting with '.') are skipped. Categories: a `categories.json` sidecar in a file's folder
({"chair_0007.glb": "chair", ...}, keys relative to that folder; the world writes one), else the name of the
file's folder; files at the top of the library without a sidecar entry have none.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from backend.geometry.load import SUPPORTED_EXTENSIONS

BLENDER_EXTENSIONS = (".blend", ".fbx", ".usd", ".usda", ".usdc", ".usdz", ".abc")
"""Formats only Blender reads (through worker processes running Blender)."""
SIDECAR = "categories.json"
"""The per-folder file naming categories: {"file name": "category", ...}."""


@dataclass
class LibraryFile:
    """One file of the library as found on disk."""

    relpath: str
    """Relative to the library folder, '/'-separated."""
    path: Path
    size: int
    """-1 when it could not be read since the walk (hashing it reports why)."""
    mtime_ns: int
    category: str | None
    format: str
    """Extension without the dot, lower case."""

    @property
    def needs_blender(self) -> bool:
        return "." + self.format in BLENDER_EXTENSIONS


def find_library_files(library: Path, extensions=SUPPORTED_EXTENSIONS + BLENDER_EXTENSIONS) -> list[Path]:
    """Files with these extensions under `library` (nested), sorted by relative path; hidden names skipped."""
    wanted = set(extensions)
    found = []
    for folder, dirs, files in os.walk(library):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in wanted:
                found.append(Path(folder) / name)
    return sorted(found, key=lambda p: p.relative_to(library).as_posix())


def _sidecar(folder: Path, cache: dict[Path, dict], warnings: list[str], library: Path) -> dict:
    if folder not in cache:
        mapping: dict = {}
        path = folder / SIDECAR
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError("it is not a JSON object")
                mapping = {str(k): str(v) for k, v in data.items() if isinstance(v, str) and v.strip()}
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                warnings.append(f"{path.relative_to(library).as_posix()} was ignored: {exc}")
        cache[folder] = mapping
    return cache[folder]


def category_of(path: Path, library: Path, cache: dict[Path, dict], warnings: list[str]) -> str | None:
    """The category of a file: its folder's categories.json entry, else the folder name (None at the top)."""
    mapping = _sidecar(path.parent, cache, warnings, library)
    if path.name in mapping:
        return mapping[path.name]
    if path.parent == library:
        return None
    return path.parent.name


def scan_library(library: Path, warnings: list[str]) -> list[LibraryFile]:
    """Every indexable file with its stat and category."""
    sidecars: dict[Path, dict] = {}
    files = []
    for path in find_library_files(library):
        relpath = path.relative_to(library).as_posix()
        fmt = path.suffix.lower().lstrip(".")
        try:
            stat = path.stat()
        except OSError:  # vanished or unreadable since the walk: hashing it reports why
            files.append(LibraryFile(relpath, path, -1, -1, None, fmt))
            continue
        files.append(LibraryFile(relpath, path, stat.st_size, stat.st_mtime_ns,
                                 category_of(path, library, sidecars, warnings), fmt))
    return files


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_mesh_files(library: Path) -> list[Path]:
    """The loose mesh files (what `load_mesh` reads) under `library`, as `find_library_files`."""
    return find_library_files(library, SUPPORTED_EXTENSIONS)
