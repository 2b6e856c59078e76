"""A folder of meshes into a library database (`atelier index`, the `index` job).

What a run does:
1. Walks the folder and its subfolders for obj, ply, stl, off, glb and gltf files (hidden folders and files,
   names starting with '.', are skipped). No mesh file at all is an error: an empty or wrong folder, or an
   unmounted drive, must not empty an existing database.
2. Compares with the database: a file whose size and modification time are as recorded is unchanged
   without reading it (`IndexConfig.rehash` hashes every file instead); otherwise its SHA-256 decides.
   Unchanged files are skipped (a changed category is updated in place), moved files (the content of a
   vanished path at a new path) are renamed in place, changed and new files are indexed, and shapes whose
   file is gone are removed.
3. Indexes one shape per transaction: load (trimesh), validate, render K shaded views, K line drawings and
   a thumbnail (`backend.retrieve.views`), embed them, commit. A file that cannot be loaded, validated or
   rendered is reported with its reason and skipped; a previously indexed version of it is removed.
4. Rebuilds the FAISS caches.

Killing a run at any instant loses at most the shape in flight; running it again picks up where it stopped
(what is committed is unchanged, so it is skipped). Categories: a `categories.json` sidecar in a file's folder
({"chair_0007.glb": "chair", ...}, keys relative to that folder; the world writes one), else the name of
the file's folder; files at the top of the library without a sidecar entry have none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from backend.errors import AtelierError, InvalidInputError, JobCancelled
from backend.geometry.load import SUPPORTED_EXTENSIONS, load_mesh
from backend.geometry.validate import validate_mesh
from backend.models.training import torch_threads
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.retrieve.database import LibraryDB, ShapeRecord
from backend.retrieve.query import QueryEncoder
from backend.retrieve.vector_index import VectorIndexConfig
from backend.retrieve.views import IndexViewConfig, render_index_views

SIDECAR = "categories.json"
"""The per-folder file naming categories: {"file name": "category", ...}."""


@dataclass(frozen=True)
class IndexConfig:
    """How a library folder is indexed."""

    views: IndexViewConfig = field(default_factory=IndexViewConfig)
    """What is rendered per shape (recorded in the database; a database is always indexed with one config)."""
    vectors: VectorIndexConfig = field(default_factory=VectorIndexConfig)
    """Exact or approximate FAISS index, and its settings."""
    rehash: bool = False
    """Hash every file, even those whose size and modification time are unchanged."""
    max_faces: int = 2_000_000
    """Files with more triangles are reported as failed (decimate them first)."""
    cpu_threads: int = 1
    """Torch CPU threads while indexing on the CPU. One: index renders are small kernels, and on a shared
    2-core machine two threads indexed 8x slower than one (measured: 0.9 vs 6.8 shapes/s)."""


@dataclass
class IndexReport:
    """What an indexing run did."""

    shapes: int
    """Shapes in the database after the run."""
    files: int
    """Mesh files found in the library folder."""
    indexed: int
    """Shapes (re)indexed in this run: new and changed files."""
    skipped: int
    """Unchanged files left as they were (moved files included)."""
    removed: int
    """Shapes removed because their file is gone (or now fails)."""
    moved: int = 0
    """Files found at a new path with unchanged content (updated without re-rendering)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(relative path, reason) per file that could not be indexed."""
    seconds: float = 0.0
    """Wall time of the run."""
    shapes_per_s: float = 0.0
    """Indexing throughput: shapes indexed per second of the time spent indexing them."""
    warnings: list[str] = field(default_factory=list)
    """Problems that did not stop the run (an unreadable categories.json, ...)."""

    def as_dict(self) -> dict:
        return {"shapes": self.shapes, "files": self.files, "indexed": self.indexed, "skipped": self.skipped,
                "removed": self.removed, "moved": self.moved,
                "failed": [{"path": p, "reason": r} for p, r in self.failed], "seconds": round(self.seconds, 3),
                "shapes_per_s": round(self.shapes_per_s, 3), "warnings": list(self.warnings)}


@dataclass
class _File:
    relpath: str
    path: Path
    size: int
    mtime_ns: int
    category: str | None


def find_mesh_files(library: Path) -> list[Path]:
    """Mesh files under `library` (nested), sorted by relative path; hidden names are skipped."""
    found = []
    for folder, dirs, files in os.walk(library):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_EXTENSIONS:
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
    """The category of a mesh file: its folder's categories.json entry, else the folder name (None at the top)."""
    mapping = _sidecar(path.parent, cache, warnings, library)
    if path.name in mapping:
        return mapping[path.name]
    if path.parent == library:
        return None
    return path.parent.name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AtelierError):
        return exc.message
    if isinstance(exc, OSError):
        return f"cannot read the file: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def index_shape(path: Path, relpath: str, sha256: str, size: int, mtime_ns: int, category: str | None,
                encoder: QueryEncoder, views: IndexViewConfig, max_faces: int,
                device: torch.device | str) -> tuple[ShapeRecord, dict]:
    """One mesh file -> (its record with thumbnail, its vectors {"shaded", "lines"}). Raises on a bad file."""
    mesh = validate_mesh(load_mesh(path), max_faces=max_faces)
    pictured = render_index_views(mesh, views, device)
    vectors = encoder.encode_views(pictured.shaded, pictured.lines)
    low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    record = ShapeRecord(relpath=relpath, sha256=sha256, size=size, mtime_ns=mtime_ns, name=path.stem,
                         category=category, faces=mesh.num_faces, vertices=mesh.num_vertices,
                         bbox=[[float(v) for v in low], [float(v) for v in high]], thumbnail=pictured.thumbnail)
    return record, vectors


def index_library(library_dir: str | os.PathLike, db_dir: str | os.PathLike, encoder: QueryEncoder,
                  config: IndexConfig | None = None, progress: ProgressFn = no_progress,
                  cancel: CancelToken | None = None, device: torch.device | str = "cpu") -> IndexReport:
    """Indexes (or updates) the library database in `db_dir` from the meshes under `library_dir`.

    encoder: embeds the views (its CLIP spec and encoder id are recorded; an existing database built with
    another is an InvalidInputError naming both). progress(done, total, shapes_per_s=...) after each file
    that needed work; `cancel` is checked before each (JobCancelled leaves every committed shape in place).
    Raises InvalidInputError for a missing library folder or one with no mesh files.
    """
    started = time.perf_counter()
    config = config or IndexConfig()
    library = Path(library_dir).expanduser().resolve()
    if not library.exists():
        raise InvalidInputError(f"the library folder {library_dir} does not exist", "check the path")
    if not library.is_dir():
        raise InvalidInputError(f"the library {library_dir} is a file, not a folder",
                                "pass the folder that holds the meshes")
    paths = find_mesh_files(library)
    if not paths:
        raise InvalidInputError(f"the library folder {library_dir} holds no mesh files",
                                "put obj, ply, stl, off, glb or gltf files in it (subfolders are searched too)")
    views = config.views.resolved(encoder.image_size)
    db = LibraryDB.create(db_dir, clip=encoder.spec, encoder=encoder.encoder_id, embed_dim=encoder.embed_dim,
                          views_json=views.to_json(), vector_config=config.vectors)
    threads = torch_threads(config.cpu_threads) if torch.device(device).type == "cpu" else contextlib.nullcontext()
    try:
        with threads:
            return _run(library, paths, db, encoder, views, config, progress, cancel, device, started)
    finally:
        db.close()


def _run(library: Path, paths: list[Path], db: LibraryDB, encoder: QueryEncoder, views: IndexViewConfig,
         config: IndexConfig, progress: ProgressFn, cancel: CancelToken | None, device, started: float) -> IndexReport:
    warnings: list[str] = []
    sidecars: dict[Path, dict] = {}
    files = []
    for path in paths:
        relpath = path.relative_to(library).as_posix()
        try:
            stat = path.stat()
        except OSError:  # vanished or unreadable since the walk: hashing it below reports why
            files.append(_File(relpath, path, -1, -1, None))
            continue
        files.append(_File(relpath, path, stat.st_size, stat.st_mtime_ns, category_of(path, library, sidecars, warnings)))
    db.set_library_root(str(library))
    states = db.file_states()
    on_disk = {f.relpath for f in files}
    gone = {relpath: state for relpath, state in states.items() if relpath not in on_disk}
    gone_by_hash: dict[str, str] = {state[1]: relpath for relpath, state in gone.items()}

    report = IndexReport(shapes=0, files=len(files), indexed=0, skipped=0, removed=0, warnings=warnings)
    work: list[_File] = []
    for f in files:
        state = states.get(f.relpath)
        if state is not None and not config.rehash and (state[2], state[3]) == (f.size, f.mtime_ns):
            if state[4] != f.category:
                db.update_file_state(f.relpath, size=f.size, mtime_ns=f.mtime_ns, category=f.category,
                                     set_category=True)
            report.skipped += 1
        else:
            work.append(f)

    indexing_seconds = 0.0
    total = len(work)
    for done, f in enumerate(work, start=1):
        if cancel is not None:
            cancel.check()
        state = states.get(f.relpath)
        try:
            sha = file_sha256(f.path)
        except OSError as exc:
            report.failed.append((f.relpath, _reason(exc)))
            report.removed += int(state is not None and db.remove_shape(f.relpath))
            progress(done, total, shapes_per_s=_rate(report.indexed, indexing_seconds))
            continue
        if state is not None and state[1] == sha:
            # Touched but not changed: record the new stat so the next run skips it without hashing.
            db.update_file_state(f.relpath, size=f.size, mtime_ns=f.mtime_ns, category=f.category,
                                 set_category=state[4] != f.category)
            report.skipped += 1
        elif state is None and sha in gone_by_hash:
            old = gone_by_hash.pop(sha)
            gone.pop(old, None)
            db.update_file_state(old, size=f.size, mtime_ns=f.mtime_ns, new_relpath=f.relpath,
                                 name=f.path.stem, category=f.category, set_category=True)
            report.moved += 1
            report.skipped += 1
        else:
            tick = time.perf_counter()
            try:
                record, vectors = index_shape(f.path, f.relpath, sha, f.size, f.mtime_ns, f.category, encoder,
                                              views, config.max_faces, device)
            except (JobCancelled, KeyboardInterrupt):
                raise
            except Exception as exc:  # one broken file never stops the run: report it, go on
                report.failed.append((f.relpath, _reason(exc)))
                report.removed += int(state is not None and db.remove_shape(f.relpath))
            else:
                db.put_shape(record, vectors)
                report.indexed += 1
                indexing_seconds += time.perf_counter() - tick
        progress(done, total, shapes_per_s=_rate(report.indexed, indexing_seconds))

    for relpath in sorted(gone):
        report.removed += int(db.remove_shape(relpath))
    if cancel is not None:
        cancel.check()
    db.refresh_indexes()
    report.shapes = db.count()
    report.seconds = time.perf_counter() - started
    report.shapes_per_s = _rate(report.indexed, indexing_seconds)
    return report


def _rate(count: int, seconds: float) -> float:
    return float(count / seconds) if seconds > 0 else 0.0
