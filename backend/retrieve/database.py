"""A shape library database: one folder, SQLite for everything, FAISS files as derived caches.

Layout of the folder:
    library.sqlite          the database (WAL journal: library.sqlite-wal / -shm beside it while open)
    index_shaded.npz        FAISS index of the shaded-view vectors   } caches, brought up to date from SQLite
    index_lines.npz         FAISS index of the line-drawing vectors  } whenever their recorded generation is stale

Tables:
    meta(key, value)        format, version, clip (spec), encoder (id), embed_dim, views (IndexViewConfig
                            JSON), library (the folder last indexed), generation (bumped by every change)
    shapes                  id, relpath (unique, '/'-separated, relative to the library folder), sha256,
                            size, mtime_ns, name, category, faces, vertices, bbox (JSON [min xyz, max xyz]),
                            thumbnail (PNG), indexed_at (unix seconds)
    vectors                 shape_id, kind ('shaded' | 'lines'), view, vector (float32 little-endian [D])

Crash safety: a shape and its vectors go in with one transaction (`put_shape`), so killing the indexer loses
at most the shape in flight, and SQLite's journal keeps the file readable whatever instant the process dies.
The FAISS files are written to a temp file and renamed over the old one. A cache older than the database is
updated in place (the rows of shapes with ids above its greatest added, removed shapes masked out), which
relies on shape ids only growing: a shape whose vectors change is deleted and inserted again, never updated in
place. A cache that is unreadable, or whose shapes, row counts or sampled vectors differ from the database's,
is ignored and rebuilt, so a stale or half-written cache is never used.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.errors import InvalidInputError
from backend.retrieve.query import KINDS
from backend.retrieve.vector_index import RowFilter, VectorDelta, VectorIndex, VectorIndexConfig

DB_FILE = "library.sqlite"
"""The SQLite file inside a database folder."""
FORMAT = "atelier-library"
VERSION = 1
"""Database format version; `LibraryDB.open` refuses others."""
INDEX_HINT = "index a library first: `atelier index LIBRARY_DIR --db DIR`"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shapes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    relpath TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    name TEXT NOT NULL,
    category TEXT,
    faces INTEGER NOT NULL,
    vertices INTEGER NOT NULL,
    bbox TEXT NOT NULL,
    thumbnail BLOB NOT NULL,
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS shapes_category ON shapes (category);
CREATE TABLE IF NOT EXISTS vectors (
    shape_id INTEGER NOT NULL REFERENCES shapes (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('shaded', 'lines')),
    view INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (kind, shape_id, view)
) WITHOUT ROWID;
"""


@dataclass
class ShapeRecord:
    """One library shape's row (without its vectors)."""

    relpath: str
    """Path relative to the library folder, '/'-separated."""
    sha256: str
    """Hex digest of the file's bytes."""
    size: int
    """File size in bytes when indexed."""
    mtime_ns: int
    """File modification time when indexed (a fast "unchanged" check before hashing)."""
    name: str
    """Display name (the file stem)."""
    category: str | None
    """From a categories.json sidecar or the parent folder's name; None at the library's top level."""
    faces: int
    """Triangle count."""
    vertices: int
    """Vertex count."""
    bbox: list[list[float]]
    """[[min x, y, z], [max x, y, z]] in the file's units and frame."""
    thumbnail: bytes = b""
    """PNG bytes (empty when not loaded)."""
    indexed_at: float = field(default_factory=time.time)
    """Unix time of indexing."""
    id: int | None = None
    """Row id (None before insertion)."""


_COLUMNS = "id, relpath, sha256, size, mtime_ns, name, category, faces, vertices, bbox, indexed_at"


def _record(row, thumbnail: bytes = b"") -> ShapeRecord:
    return ShapeRecord(id=row[0], relpath=row[1], sha256=row[2], size=row[3], mtime_ns=row[4], name=row[5],
                       category=row[6], faces=row[7], vertices=row[8], bbox=json.loads(row[9]), indexed_at=row[10],
                       thumbnail=thumbnail)


def db_exists(directory: str | Path) -> bool:
    """Whether `directory` holds a library database."""
    return (Path(directory) / DB_FILE).is_file()


class LibraryDB:
    """A library database folder. Open with `LibraryDB.open` (search) or `LibraryDB.create` (indexing)."""

    def __init__(self, directory: Path, connection: sqlite3.Connection, vector_config: VectorIndexConfig):
        self.directory = directory
        self._db = connection
        self.vector_config = vector_config
        self._lock = threading.RLock()
        self._indexes: dict[str, tuple[int, VectorIndex]] = {}
        self._filters: dict[tuple[str, str], tuple[VectorIndex, tuple[str, int], RowFilter]] = {}

    # -- opening -------------------------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT in `_write`).
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA busy_timeout = 30000")
        return db

    @classmethod
    def open(cls, directory: str | Path, vector_config: VectorIndexConfig | None = None) -> "LibraryDB":
        """An existing database; InvalidInputError (with the `atelier index` hint) when there is none."""
        directory = Path(directory)
        if not directory.exists():
            raise InvalidInputError(f"no shape library database at {directory}: the folder does not exist", INDEX_HINT)
        if not directory.is_dir():
            raise InvalidInputError(f"{directory} is a file, not a shape library database folder", INDEX_HINT)
        if not db_exists(directory):
            raise InvalidInputError(f"{directory} holds no shape library database ({DB_FILE} is missing)", INDEX_HINT)
        try:
            db = cls._connect(directory / DB_FILE)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise InvalidInputError(f"{directory / DB_FILE} is not a readable shape library database: {exc}",
                                    "index the library again into a new folder") from exc
        if not meta:
            db.close()
            raise InvalidInputError(f"the shape library database in {directory} is empty (indexing never finished "
                                    "its first shape)", INDEX_HINT)
        if meta.get("format") != FORMAT or meta.get("version") != str(VERSION):
            db.close()
            raise InvalidInputError(f"{directory / DB_FILE} is format {meta.get('format')!r} version "
                                    f"{meta.get('version')!r}, expected {FORMAT!r} version {VERSION}",
                                    "index the library again into a new folder with this version of Atelier")
        return cls(directory, db, vector_config or VectorIndexConfig())

    @classmethod
    def create(cls, directory: str | Path, *, clip: str, encoder: str, embed_dim: int, views_json: str,
               vector_config: VectorIndexConfig | None = None) -> "LibraryDB":
        """Opens the database in `directory` for indexing, creating folder and tables when missing.

        An existing database must have been built with the same CLIP, encoder and view settings, else
        InvalidInputError naming both.
        """
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInputError(f"cannot create the database folder {directory}: {exc.strerror or exc}",
                                    "choose a writable folder for --db") from exc
        try:
            db = cls._connect(directory / DB_FILE)
            db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a killed process loses nothing committed; only a power cut may drop the last commits.
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        except sqlite3.DatabaseError as exc:
            raise InvalidInputError(f"{directory / DB_FILE} is not a shape library database: {exc}",
                                    "choose an empty folder for --db") from exc
        for leftover in directory.glob("index_*.npz.*.tmp"):  # a cache write cut short by a kill
            leftover.unlink(missing_ok=True)
        self = cls(directory, db, vector_config or VectorIndexConfig())
        wanted = {"format": FORMAT, "version": str(VERSION), "clip": clip, "encoder": encoder,
                  "embed_dim": str(int(embed_dim)), "views": views_json}
        with self._write():
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                               [*wanted.items(), ("generation", "0"), ("catalog", "0"), ("library", "")])
                return self
        self.check_compatible(clip=clip, encoder=encoder, views_json=views_json)
        return self

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._indexes.clear()
            self._filters.clear()

    def __enter__(self) -> "LibraryDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- meta ----------------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    @property
    def clip_spec(self) -> str:
        """The CLIP spec the library was indexed with (the default `--clip` for searching it)."""
        return self.meta()["clip"]

    @property
    def encoder_id(self) -> str:
        return self.meta()["encoder"]

    @property
    def embed_dim(self) -> int:
        return int(self.meta()["embed_dim"])

    @property
    def views_json(self) -> str:
        return self.meta()["views"]

    @property
    def generation(self) -> int:
        return int(self.meta()["generation"])

    @property
    def library_root(self) -> str:
        """The library folder last indexed into this database ("" before the first run)."""
        return self.meta().get("library", "")

    def check_compatible(self, *, clip: str, encoder: str | None = None, views_json: str | None = None) -> None:
        """InvalidInputError naming both when the database was built with another CLIP, encoder or views."""
        meta = self.meta()
        where = self.directory
        if clip != meta["clip"]:
            raise InvalidInputError(
                f"the shape library database {where} was indexed with CLIP {meta['clip']!r}, not {clip!r}",
                f"search it with --clip {meta['clip']} (or leave --clip out), or index the library again into "
                "another folder with the CLIP you want")
        if encoder is not None and encoder != meta["encoder"]:
            raise InvalidInputError(
                f"the shape library database {where} was indexed with encoder {meta['encoder']!r}, not {encoder!r}",
                "use the same TASK-former checkpoint (or none) that built it, or index the library again")
        if views_json is not None and views_json != meta["views"]:
            raise InvalidInputError(
                f"the shape library database {where} was indexed with other view settings ({meta['views']})",
                "index with the same --views, or into a new folder")

    def set_library_root(self, root: str) -> None:
        with self._write():
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'library'", (root,))

    # -- writing -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self):
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error) that bumps nothing itself."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _bump(self, db: sqlite3.Connection, vectors: bool = True) -> None:
        """Counts a change: `catalog` for any (metadata too), `generation` when vectors or shape ids changed."""
        keys = ("generation", "catalog") if vectors else ("catalog",)
        for key in keys:
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ?", (key,))

    @contextlib.contextmanager
    def batch(self):
        """Groups several `put_shape` calls into one transaction (bulk loading; the indexer commits per shape)."""
        with self._write() as db:
            self._in_batch = True
            try:
                yield self
            finally:
                self._in_batch = False
            self._bump(db)

    _in_batch = False

    def _maybe_write(self):
        return contextlib.nullcontext(self._db) if self._in_batch else self._write()

    def put_shape(self, record: ShapeRecord, vectors: dict[str, np.ndarray]) -> int:
        """Inserts a shape and its vectors ({"shaded": [K, D], "lines": [K, D]} float32), replacing any shape
        at the same relpath, in one transaction. Returns the shape id."""
        dim = self.embed_dim
        for kind in KINDS:
            array = vectors.get(kind)
            if array is None or array.ndim != 2 or array.shape[1] != dim:
                raise ValueError(f"vectors[{kind!r}] must be [K, {dim}], got "
                                 f"{None if array is None else array.shape}")
        with self._maybe_write() as db:
            db.execute("DELETE FROM shapes WHERE relpath = ?", (record.relpath,))
            cursor = db.execute(
                "INSERT INTO shapes (relpath, sha256, size, mtime_ns, name, category, faces, vertices, bbox, "
                "thumbnail, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.relpath, record.sha256, int(record.size), int(record.mtime_ns), record.name,
                 record.category, int(record.faces), int(record.vertices), json.dumps(record.bbox),
                 record.thumbnail, float(record.indexed_at)))
            shape_id = int(cursor.lastrowid)
            db.executemany("INSERT INTO vectors (shape_id, kind, view, vector) VALUES (?, ?, ?, ?)",
                           [(shape_id, kind, view, np.ascontiguousarray(row, dtype="<f4").tobytes())
                            for kind in KINDS for view, row in enumerate(vectors[kind])])
            if not self._in_batch:
                self._bump(db)
        record.id = shape_id
        return shape_id

    def remove_shape(self, relpath: str) -> bool:
        """Removes a shape and its vectors; False when there was none at `relpath`."""
        with self._write() as db:
            removed = db.execute("DELETE FROM shapes WHERE relpath = ?", (relpath,)).rowcount > 0
            if removed:
                self._bump(db)
        return removed

    def update_file_state(self, relpath: str, *, size: int, mtime_ns: int, new_relpath: str | None = None,
                          name: str | None = None, category: str | None = None, set_category: bool = False) -> None:
        """Records a file's new size/mtime (content unchanged), and optionally a move or a new category. The
        vectors and shape ids stay, so the generation (what the FAISS caches depend on) does not change."""
        with self._write() as db:
            db.execute("UPDATE shapes SET size = ?, mtime_ns = ? WHERE relpath = ?", (int(size), int(mtime_ns), relpath))
            if set_category:
                db.execute("UPDATE shapes SET category = ? WHERE relpath = ?", (category, relpath))
            if new_relpath is not None:
                db.execute("UPDATE shapes SET relpath = ?, name = ? WHERE relpath = ?",
                           (new_relpath, name if name is not None else Path(new_relpath).stem, relpath))
            self._bump(db, vectors=False)

    # -- reading -------------------------------------------------------------------------------------

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM shapes").fetchone()[0])

    def file_states(self) -> dict[str, tuple[int, str, int, int, str | None]]:
        """relpath -> (id, sha256, size, mtime_ns, category) for every shape."""
        with self._lock:
            rows = self._db.execute("SELECT relpath, id, sha256, size, mtime_ns, category FROM shapes").fetchall()
        return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def shapes(self, ids: list[int] | None = None, thumbnails: bool = False) -> list[ShapeRecord]:
        """Shape records (all, or those of `ids` in that order; unknown ids are left out)."""
        columns = _COLUMNS + (", thumbnail" if thumbnails else "")
        with self._lock:
            if ids is None:
                rows = self._db.execute(f"SELECT {columns} FROM shapes ORDER BY id").fetchall()
            else:
                wanted = [int(i) for i in ids]
                rows = []
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start:start + 500]
                    rows += self._db.execute(f"SELECT {columns} FROM shapes WHERE id IN "
                                             f"({','.join('?' * len(chunk))})", chunk).fetchall()
                order = {i: n for n, i in enumerate(wanted)}
                rows.sort(key=lambda r: order[r[0]])
        return [_record(r[:11], r[11] if thumbnails else b"") for r in rows]

    def shape(self, shape_id: int) -> ShapeRecord:
        """One shape with its thumbnail; InvalidInputError for an unknown id."""
        found = self.shapes([shape_id], thumbnails=True)
        if not found:
            raise InvalidInputError(f"the shape library database {self.directory} has no shape {shape_id}",
                                    "use a shape_id from a search result of this database")
        return found[0]

    def categories(self) -> dict[str, int]:
        """category -> shape count (shapes without a category are left out)."""
        with self._lock:
            rows = self._db.execute("SELECT category, COUNT(*) FROM shapes WHERE category IS NOT NULL "
                                    "GROUP BY category ORDER BY category").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def shape_ids(self, category: str | None = None) -> np.ndarray:
        """[M] int64 ids of every shape, or of one category's."""
        with self._lock:
            if category is None:
                rows = self._db.execute("SELECT id FROM shapes").fetchall()
            else:
                rows = self._db.execute("SELECT id FROM shapes WHERE category = ?", (category,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def read_vectors(self, kind: str) -> tuple[int, np.ndarray, np.ndarray]:
        """(generation, [N, D] float32 vectors, [N] int64 shape ids) of one kind, read in one transaction."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        with self._lock:
            self._db.execute("BEGIN")
            try:
                generation = int(self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
                dim = int(self._db.execute("SELECT value FROM meta WHERE key = 'embed_dim'").fetchone()[0])
                rows = self._db.execute("SELECT shape_id, vector FROM vectors WHERE kind = ? ORDER BY shape_id, view",
                                        (kind,)).fetchall()
            finally:
                self._db.execute("COMMIT")
        labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dim)
        return generation, vectors.astype(np.float32, copy=False), labels

    # -- the FAISS caches ----------------------------------------------------------------------------

    def index_path(self, kind: str) -> Path:
        return self.directory / f"index_{kind}.npz"

    def vector_index(self, kind: str) -> VectorIndex:
        """The FAISS index of `kind`, current with the database: from memory, else from its cache file; one
        older than the database is updated in place (`VectorIndex.catch_up`: new shapes' rows added, removed
        shapes' rows masked out) and rebuilt from SQLite only when that cannot be done. The cache file is
        rewritten (atomically) whenever the index changed. The object returned earlier is the one updated (no
        copy of a large index): search and update it from one thread at a time (the server's worker does both)."""
        with self._lock:
            generation = self.generation
            held = self._indexes.get(kind)
            if held is not None and held[0] == generation:
                return held[1]
            if held is None:
                held = self._load_index(kind)
            reason = "no usable cache file"
            if held is not None:
                index = held[1]
                delta = self.read_vectors_after(kind, index.max_id, index.sample_ids())
                reason = index.catch_up(delta)
                generation = delta.generation
            if reason is not None:
                generation, vectors, labels = self.read_vectors(kind)
                index = VectorIndex.build(vectors, labels, self.vector_config, origin=f"built: {reason}")
            if held is None or held[0] != generation or reason is not None:
                try:
                    index.save(self.index_path(kind), {"generation": generation, "kind": kind,
                                                       "encoder": self.encoder_id})
                except OSError:
                    pass  # a read-only database folder: the index lives in memory only
            self._indexes[kind] = (generation, index)
            return index

    def _load_index(self, kind: str) -> tuple[int, VectorIndex] | None:
        """(generation, index) from `kind`'s cache file when it is readable and was built for this database's
        encoder, settings and dimensions; whether it matches the rows is `catch_up`'s check."""
        loaded = VectorIndex.load(self.index_path(kind), self.vector_config)
        if loaded is None:
            return None
        index, meta = loaded
        generation = meta.get("generation")
        if (meta.get("encoder") != self.encoder_id or meta.get("kind", kind) != kind or index.index.d != self.embed_dim
                or index.type not in ("exact", "hnsw") or not isinstance(generation, int)
                or not 0 <= generation <= self.generation):  # a newer generation: another database's cache
            return None
        return generation, index

    def read_vectors_after(self, kind: str, after_id: int, samples: tuple[int, ...] | list[int] = ()
                           ) -> VectorDelta:
        """What an index holding `kind`'s vectors of the shapes up to id `after_id` lacks (read in one
        transaction): the rows of the shapes above it, which shapes up to it are still present (and their row
        counts), and the stored rows of the `samples` shapes still present (to check the index against)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        with self._lock:
            self._db.execute("BEGIN")
            try:
                generation = int(self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
                dim = int(self._db.execute("SELECT value FROM meta WHERE key = 'embed_dim'").fetchone()[0])
                known = self._db.execute("SELECT shape_id, COUNT(*) FROM vectors WHERE kind = ? AND shape_id <= ? "
                                         "GROUP BY shape_id ORDER BY shape_id", (kind, int(after_id))).fetchall()
                rows = self._db.execute("SELECT shape_id, vector FROM vectors WHERE kind = ? AND shape_id > ? "
                                        "ORDER BY shape_id, view", (kind, int(after_id))).fetchall()
                sampled = {int(i): self._db.execute("SELECT vector FROM vectors WHERE kind = ? AND shape_id = ? "
                                                    "ORDER BY view", (kind, int(i))).fetchall() for i in samples}
            finally:
                self._db.execute("COMMIT")

        def unpack(blobs) -> np.ndarray:
            return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, dim).astype(np.float32)

        return VectorDelta(generation, int(after_id), np.array([r[0] for r in known], dtype=np.int64),
                           np.array([r[1] for r in known], dtype=np.int64), unpack(r[1] for r in rows),
                           np.array([r[0] for r in rows], dtype=np.int64),
                           {i: unpack(r[0] for r in found) for i, found in sampled.items() if found})

    def category_filter(self, kind: str, category: str) -> RowFilter:
        """The rows of `kind`'s index whose shape has `category` (removed shapes' rows left out), cached until
        the catalog changes or the index is updated."""
        index = self.vector_index(kind)
        with self._lock:
            catalog = self.meta()["catalog"]
            held = self._filters.get((kind, category))
            if held is not None and held[0] is index and held[1] == (catalog, index.version):
                return held[2]
            allowed = index.row_filter(np.isin(index.labels, self.shape_ids(category)))
            self._filters[(kind, category)] = (index, (catalog, index.version), allowed)
            return allowed

    def refresh_indexes(self) -> None:
        """Brings both FAISS caches up to date (the indexer calls this at the end of a run)."""
        for kind in KINDS:
            self.vector_index(kind)
