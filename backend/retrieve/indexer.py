"""A library folder into a library database (`atelier index`, the `index` job).

What a run does:
1. Walks the folder and its subfolders (`library_files`): loose meshes (obj, ply, stl, off, glb, gltf) and
   Blender's formats (.blend, FBX, USD, Alembic). No indexable file at all is an error: an empty or wrong
   folder, or an unmounted drive, must not empty an existing database. Without any Blender, Blender's formats
   are skipped with one warning saying how to enable them (what they gave before stays); the rest index.
2. Compares with the database's `files` table: a file whose size, modification time and extraction options
   are as recorded is unchanged without reading it (`IndexConfig.rehash` hashes every file instead);
   otherwise its SHA-256 decides. Unchanged files are skipped (a changed category is updated in place), moved
   files (the content of a vanished path at a new path) are renamed in place, changed and new files are
   indexed, and everything a vanished file gave is removed.
3. Blender's formats go to a pool of Blender worker processes (`backend.geometry.blender_pool`), which extract
   each asset of a .blend (objects and collections marked as assets; every mesh object with
   `blend_objects="all"`), or the whole of an FBX/USD/Alembic file, to a GLB cached in the database folder
   (`extracted/`), with its metadata: catalog (resolved through blender_assets.cats.txt), tags, description,
   author, licence and preview image. Meanwhile this process indexes the loose meshes.
4. Each entry is validated, rendered (K shaded views, K line drawings and a thumbnail, the asset's own preview
   when it has one), embedded, and everything one file gave is committed in one transaction (`put_file`).
   A file (or one asset) that cannot be read, validated or rendered is reported with its reason and the run
   goes on; what a file that now fails gave before is removed. A file whose content fails (corrupt, from a
   newer Blender, ...) is remembered with its reason: later runs report it without reading it again until it
   changes (or `rehash`); one that timed out, crashed a worker or could not be opened is tried again.
5. Brings the FAISS caches up to date.

Killing a run at any instant loses at most the file in flight; running it again picks up where it stopped
(what is committed is unchanged, so it is skipped), and no entry is ever stored twice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from backend.errors import InvalidInputError, JobCancelled
from backend.geometry.load import load_mesh
from backend.geometry.validate import validate_mesh
from backend.models.training import torch_threads
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.retrieve import asset_entries, ray_indexing
from backend.retrieve.database import FileState, LibraryDB, ShapeRecord
from backend.retrieve.entry_views import embed_mesh, reason
from backend.retrieve.library_files import LibraryFile, file_sha256, scan_library
from backend.retrieve.stores import create_store
from backend.retrieve.query import QueryEncoder
from backend.retrieve.vector_index import VectorIndexConfig
from backend.retrieve.views import IndexViewConfig

BLEND_OBJECTS = ("assets", "all")
"""What a .blend's entries are: its asset-marked objects and collections, or also every mesh object."""
TRANSIENT = ("timed out", "crashed", "cannot read the file", "cancelled")
"""Failures that may pass on the next run (so they are not recorded against the file's content)."""


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
    blender: str | None = None
    """The Blender that reads .blend, FBX, USD and Alembic files: a Blender executable or a Python with the
    bpy module (None: $ATELIER_BLENDER, the `.venv-blender` build.py makes, or `blender` on PATH)."""
    workers: int = 0
    """Blender worker processes extracting files in parallel (0: one per CPU core)."""
    blend_objects: str = "assets"
    """"assets": a .blend's asset-marked objects and collections; "all": also every other mesh object."""
    file_timeout_s: float = 300.0
    """A Blender worker busy longer than this on one file is killed and replaced; the file is reported."""
    store: str = "embedded"
    """Where the library lives: "embedded" (SQLite + FAISS in the `db_dir` folder) or "milvus" (`db_dir` is a
    Milvus Lite file or a server URL, `backend.retrieve.stores`)."""
    ray: str | None = None
    """Index the loose meshes on a Ray cluster: "auto" (RAY_ADDRESS, else this machine's `ray start` cluster) or
    its head's HOST:PORT (`ray_indexing`); Blender's formats stay on the local pool. None: this process."""


@dataclass
class IndexReport:
    """What an indexing run did."""

    shapes: int
    """Shapes in the database after the run."""
    files: int
    """Indexable files found in the library folder."""
    indexed: int
    """Shapes (re)indexed in this run: from new and changed files."""
    skipped: int
    """Unchanged files left as they were (moved files included)."""
    removed: int
    """Shapes removed because their file is gone (or now fails)."""
    moved: int = 0
    """Files found at a new path with unchanged content (updated without re-rendering)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(relative path, reason) per file or asset that could not be indexed."""
    seconds: float = 0.0
    """Wall time of the run."""
    shapes_per_s: float = 0.0
    """Indexing throughput: shapes indexed per second of the time spent indexing them."""
    warnings: list[str] = field(default_factory=list)
    """Problems that did not stop the run (an unreadable categories.json, a .blend without assets, ...)."""
    extracted_files: int = 0
    """Files read by Blender workers in this run."""
    extract_seconds: float = 0.0
    """Wall time from the first Blender file submitted to the last one extracted."""

    def as_dict(self) -> dict:
        return {"shapes": self.shapes, "files": self.files, "indexed": self.indexed, "skipped": self.skipped,
                "removed": self.removed, "moved": self.moved,
                "failed": [{"path": p, "reason": r} for p, r in self.failed], "seconds": round(self.seconds, 3),
                "shapes_per_s": round(self.shapes_per_s, 3), "warnings": list(self.warnings),
                "extracted_files": self.extracted_files, "extract_seconds": round(self.extract_seconds, 3)}


def index_shape(path: Path, relpath: str, sha256: str, size: int, mtime_ns: int, category: str | None,
                encoder: QueryEncoder, views: IndexViewConfig, max_faces: int,
                device: torch.device | str) -> tuple[ShapeRecord, dict]:
    """One mesh file -> (its record with thumbnail, its vectors by kind). Raises on a bad file."""
    mesh = validate_mesh(load_mesh(path), max_faces=max_faces)
    vectors, thumbnail, geometry = embed_mesh(mesh, encoder, views, device)
    record = ShapeRecord(relpath=relpath, sha256=sha256, size=size, mtime_ns=mtime_ns, name=path.stem,
                         category=category, thumbnail=thumbnail, **geometry)
    return record, vectors


def index_library(library_dir: str | os.PathLike, db_dir: str | os.PathLike, encoder: QueryEncoder,
                  config: IndexConfig | None = None, progress: ProgressFn = no_progress,
                  cancel: CancelToken | None = None, device: torch.device | str = "cpu") -> IndexReport:
    """Indexes (or updates) the library database in `db_dir` from the files under `library_dir`.

    encoder: embeds the views and, for the points and both descriptors, the point clouds (`encoder.descriptor`,
    `encoder.points`; its CLIP spec, encoder id, descriptor and point encoder id are recorded: an existing
    database built with another is an InvalidInputError naming both). progress(done, total, shapes_per_s=...) after each file
    that needed work; `cancel` is checked before each (JobCancelled leaves every committed file in place).
    Raises InvalidInputError for a missing library folder, one with no indexable file, or a bad option.
    """
    started = time.perf_counter()
    config = config or IndexConfig()
    if config.blend_objects not in BLEND_OBJECTS:
        raise InvalidInputError(f"blend_objects must be one of {', '.join(BLEND_OBJECTS)}, got {config.blend_objects!r}",
                                "use assets (objects and collections marked as assets) or all (every mesh object)")
    if config.blender and not (Path(config.blender).expanduser().is_file() or shutil.which(config.blender)):
        raise InvalidInputError(f"the Blender {config.blender} does not exist",
                                "give the path of a Blender executable, or of a Python with the bpy module")
    if config.ray:  # before any file is read: a Ray address that does not answer fails in seconds
        ray_indexing.connect(config.ray)
    library = Path(library_dir).expanduser().resolve()
    if not library.exists():
        raise InvalidInputError(f"the library folder {library_dir} does not exist", "check the path")
    if not library.is_dir():
        raise InvalidInputError(f"the library {library_dir} is a file, not a folder",
                                "pass the folder that holds the meshes")
    warnings: list[str] = []
    files = scan_library(library, warnings)
    if not files:
        raise InvalidInputError(f"the library folder {library_dir} holds no mesh files",
                                "put .blend, fbx, usd, abc, obj, ply, stl, off, glb or gltf files in it "
                                "(subfolders are searched too)")
    views = config.views.resolved(encoder.image_size)
    options = {"vector_config": config.vectors} if config.store == "embedded" else {}
    if encoder.descriptor != "views":
        options.update(points_encoder=encoder.points_encoder_id, points_path=encoder.points.path)
    db = create_store(db_dir, config.store, clip=encoder.spec, encoder=encoder.encoder_id,
                      embed_dim=encoder.embed_dim, views_json=views.to_json(), descriptor=encoder.descriptor,
                      **options)
    threads = torch_threads(config.cpu_threads) if torch.device(device).type == "cpu" else contextlib.nullcontext()
    try:
        with threads:
            run = _Run(library, db, encoder, views, config, progress, cancel, device, warnings)
            return run.run(files, started)
    finally:
        db.close()


def _options(f: LibraryFile, config: IndexConfig) -> str:
    """The extraction options recorded with a file: reading it with others gives other entries."""
    return f"blend_objects={config.blend_objects}" if f.format == "blend" else ""


class _Run:
    """One indexing run (the steps of the module docstring)."""

    def __init__(self, library: Path, db: LibraryDB, encoder: QueryEncoder, views: IndexViewConfig,
                 config: IndexConfig, progress: ProgressFn, cancel: CancelToken | None, device, warnings: list[str]):
        self.library, self.db, self.encoder, self.views, self.config = library, db, encoder, views, config
        self.progress, self.cancel, self.device = progress, cancel, device
        self.report = IndexReport(shapes=0, files=0, indexed=0, skipped=0, removed=0, warnings=warnings)
        self.indexing_seconds = 0.0
        self.done = 0
        self.total = 0

    def _check_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.check()

    def _tick(self) -> None:
        self.done += 1
        self.progress(self.done, self.total, shapes_per_s=_rate(self.report.indexed, self.indexing_seconds))

    def run(self, files: list[LibraryFile], started: float) -> IndexReport:
        report, db, config = self.report, self.db, self.config
        report.files = len(files)
        db.set_library_root(str(self.library))
        blender = None
        if any(f.needs_blender for f in files):
            blender = asset_entries.find_blender_or_warn(config, files, report.warnings)
        states = db.file_states()
        on_disk = {f.relpath for f in files}
        gone = {relpath: state for relpath, state in states.items() if relpath not in on_disk}
        gone_by_hash = {(state.sha256, state.options): relpath for relpath, state in gone.items()}

        work: list[LibraryFile] = []
        for f in files:
            state = states.get(f.relpath)
            if f.needs_blender and blender is None:
                report.skipped += 1  # what it gave before stays until a Blender can read it again
            elif (state is not None and not config.rehash and (state.size, state.mtime_ns) == (f.size, f.mtime_ns)
                  and state.options == _options(f, config)):
                if state.category != f.category:
                    db.update_file_state(f.relpath, size=f.size, mtime_ns=f.mtime_ns, category=f.category,
                                         set_category=True)
                self._skip(state)
            else:
                work.append(f)

        self.total = len(work)
        to_extract: list[tuple[LibraryFile, str]] = []
        to_ray: list[tuple[LibraryFile, str, FileState | None]] = []
        for f in work:
            self._check_cancel()
            state = states.get(f.relpath)
            options = _options(f, config)
            try:
                sha = file_sha256(f.path)
            except OSError as exc:  # unreadable now (permissions, a dangling link): tried again next run
                report.failed.append((f.relpath, reason(exc)))
                report.removed += db.remove_file(f.relpath) if state is not None else 0
                self._tick()
                continue
            if state is not None and state.sha256 == sha and state.options == options and not (
                    config.rehash and state.error):
                # Touched but not changed: record the new stat so the next run skips it without hashing.
                db.update_file_state(f.relpath, size=f.size, mtime_ns=f.mtime_ns, category=f.category,
                                     set_category=state.category != f.category)
                self._skip(state)
                self._tick()
            elif state is None and (sha, options) in gone_by_hash:
                old = gone_by_hash.pop((sha, options))
                gone.pop(old, None)
                db.update_file_state(old, size=f.size, mtime_ns=f.mtime_ns, new_relpath=f.relpath,
                                     category=f.category, set_category=True)
                report.moved += 1
                report.skipped += 1
                self._tick()
            elif f.needs_blender:
                to_extract.append((f, sha))
            elif config.ray:
                to_ray.append((f, sha, state))
            else:
                self._index_loose(f, sha, state)

        if to_ray:
            ray_indexing.index_on_ray(self, to_ray)
        if to_extract:
            self._index_extracted(to_extract, blender, states)
        for relpath in sorted(gone):
            report.removed += db.remove_file(relpath)
        if to_extract or gone:
            asset_entries.prune_extracted(db.directory, db.mesh_paths())
        self._check_cancel()
        db.refresh_indexes()
        report.shapes = db.count()
        report.seconds = time.perf_counter() - started
        report.shapes_per_s = _rate(report.indexed, self.indexing_seconds)
        return report

    def _skip(self, state: FileState) -> None:
        """An unchanged file: nothing to do, but one that failed is still reported (not read again)."""
        self.report.skipped += 1
        if state.error:
            self.report.failed.append((state.relpath, state.error))

    def _fail(self, f: LibraryFile, sha: str, why: str, state: FileState | None) -> None:
        """Reports a file that cannot be indexed and drops what it gave before. Its failure is recorded, so it
        is not read again until it changes (or `rehash`), unless it may pass next time (a timeout, a crash)."""
        self.report.failed.append((f.relpath, why))
        self.report.removed += state.entries if state is not None else 0
        if any(word in why for word in TRANSIENT):
            if state is not None:
                self.db.remove_file(f.relpath)
        else:
            self.db.put_file(FileState(f.relpath, sha, f.size, f.mtime_ns, f.category, f.format,
                                       _options(f, self.config), error=why), [])

    def _index_loose(self, f: LibraryFile, sha: str, state: FileState | None) -> None:
        tick = time.perf_counter()
        try:
            record, vectors = index_shape(f.path, f.relpath, sha, f.size, f.mtime_ns, f.category, self.encoder,
                                          self.views, self.config.max_faces, self.device)
        except (JobCancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # one broken file never stops the run: report it, go on
            self._fail(f, sha, reason(exc), state)
        else:
            self.db.put_file(FileState(f.relpath, sha, f.size, f.mtime_ns, f.category, f.format), [(record, vectors)])
            self.report.indexed += 1
            self.indexing_seconds += time.perf_counter() - tick
        self._tick()

    def _index_extracted(self, to_extract: list[tuple[LibraryFile, str]], blender, states: dict) -> None:
        """Blender's formats: extracted by the worker pool while results are embedded here as they come."""
        report = self.report
        started = time.perf_counter()
        by_path = {f.path.resolve(): (f, sha) for f, sha in to_extract}
        with asset_entries.extracted_files([f.path for f, _ in to_extract], self.config, self.db.directory) as results:
            for result in results:
                self._check_cancel()
                f, sha = by_path[Path(result.path).resolve()]
                report.extracted_files += 1
                report.extract_seconds = time.perf_counter() - started
                tick = time.perf_counter()
                try:
                    entries, failures, warnings = asset_entries.file_entries(
                        result, f, sha, self.library, self.db.directory, self.encoder, self.views,
                        self.config.max_faces, self.device, self.config.blend_objects)
                except (JobCancelled, KeyboardInterrupt):
                    raise
                except Exception as exc:
                    self._fail(f, sha, reason(exc), states.get(f.relpath))
                    self._tick()
                    continue
                report.failed += failures
                report.warnings += warnings
                self.db.put_file(FileState(f.relpath, sha, f.size, f.mtime_ns, f.category, f.format,
                                           _options(f, self.config)), entries)
                report.indexed += len(entries)
                self.indexing_seconds += time.perf_counter() - tick
                self._tick()


def _rate(count: int, seconds: float) -> float:
    return float(count / seconds) if seconds > 0 else 0.0
