"""A shape library database: one folder, SQLite for everything, FAISS files as derived caches.

Layout of the folder:
    library.sqlite          the database (WAL journal: library.sqlite-wal / -shm beside it while open)
    index_shaded.npz        FAISS index of the shaded-view vectors   } caches, brought up to date from SQLite
    index_lines.npz         FAISS index of the line-drawing vectors  } whenever their recorded generation is stale
    index_points.npz        FAISS index of the point-cloud vectors   } (the kinds of the library's descriptor)

Tables: see `backend.retrieve.db_schema` (meta, files, shapes, vectors, and the keyword index shape_text).
A library file gives one shape (a loose mesh, an FBX, USD, ...) or one per asset (a .blend); everything a
file gave is replaced in one transaction (`put_file`).

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
from pathlib import Path

import numpy as np

from backend.errors import InvalidInputError
from backend.retrieve import db_schema
from backend.retrieve.filters import ShapeFilter
from backend.retrieve.db_schema import SHAPE_COLUMNS, SHAPE_WIDTH, FileState, ShapeRecord, shape_from_row
from backend.retrieve.keywords import fts_query, index_text
from backend.retrieve.store_meta import StoreMeta, check_vector_kinds
from backend.retrieve.vector_cache import VectorCaches
from backend.retrieve.vector_index import RowFilter, VectorIndex, VectorIndexConfig

DB_FILE = "library.sqlite"
"""The SQLite file inside a database folder."""
FORMAT = "atelier-library"
VERSION = db_schema.VERSION
"""Database format version; `LibraryDB.open` upgrades version 1 in place and refuses others."""
INDEX_HINT = "index a library first: `atelier index LIBRARY_DIR --db DIR`"


def db_exists(directory: str | Path) -> bool:
    """Whether `directory` holds a library database."""
    return (Path(directory) / DB_FILE).is_file()


class LibraryDB(StoreMeta, VectorCaches):
    """A library database folder. Open with `LibraryDB.open` (search) or `LibraryDB.create` (indexing)."""

    def __init__(self, directory: Path, connection: sqlite3.Connection, vector_config: VectorIndexConfig):
        self.directory = directory
        self._db = connection
        self.vector_config = vector_config
        self._lock = threading.RLock()
        self._indexes: dict[str, tuple[int, VectorIndex]] = {}
        self._rebuilds: dict[str, threading.Thread] = {}
        self._closed = False
        self._filters: dict[tuple[str, ShapeFilter], tuple[VectorIndex, tuple[str, int], RowFilter]] = {}

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self.directory / DB_FILE

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
        if meta.get("format") == FORMAT and meta.get("version") == "1":
            cls._upgrade(db, directory)
            meta["version"] = str(VERSION)
        if meta.get("format") != FORMAT or meta.get("version") != str(VERSION):
            db.close()
            raise InvalidInputError(f"{directory / DB_FILE} is format {meta.get('format')!r} version "
                                    f"{meta.get('version')!r}, expected {FORMAT!r} version {VERSION}",
                                    "index the library again into a new folder with this version of Atelier")
        return cls(directory, db, vector_config or VectorIndexConfig())

    @staticmethod
    def _has_meta(db: sqlite3.Connection) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is not None

    @staticmethod
    def _upgrade(db: sqlite3.Connection, directory: Path) -> None:
        """A version-1 database to the current version, in one transaction (a kill leaves version 1)."""
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db_schema.upgrade_v1(db, index_text)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.close()
            raise InvalidInputError(f"cannot upgrade the shape library database {directory} to version {VERSION}: "
                                    f"{exc}", "make its folder writable, or index the library again into a new "
                                    "folder") from exc

    @classmethod
    def create(cls, directory: str | Path, *, clip: str, encoder: str, embed_dim: int, views_json: str,
               vector_config: VectorIndexConfig | None = None, descriptor: str = "views", points_encoder: str = "",
               points_path: str = "") -> "LibraryDB":
        """Opens the database in `directory` for indexing, creating folder and tables when missing.

        An existing database must have been built with the same CLIP, encoder, view settings, descriptor and
        point encoder, else InvalidInputError naming both. points_path: the point encoder's checkpoint (recorded,
        the next run's default).
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
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall()) if cls._has_meta(db) else {}
            if meta.get("format") == FORMAT and meta.get("version") == "1":
                cls._upgrade(db, directory)
            db.executescript("BEGIN IMMEDIATE;" + db_schema.SCHEMA + "COMMIT;")
        except sqlite3.DatabaseError as exc:
            raise InvalidInputError(f"{directory / DB_FILE} is not a shape library database: {exc}",
                                    "choose an empty folder for --db") from exc
        for leftover in directory.glob("index_*.npz.*.tmp"):  # a cache write cut short by a kill
            leftover.unlink(missing_ok=True)
        self = cls(directory, db, vector_config or VectorIndexConfig())
        wanted = {"format": FORMAT, "version": str(VERSION), "clip": clip, "encoder": encoder,
                  "embed_dim": str(int(embed_dim)), "views": views_json, "descriptor": descriptor,
                  "points_encoder": points_encoder, "points_path": points_path}
        with self._write():
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                               [*wanted.items(), ("generation", "0"), ("catalog", "0"), ("library", "")])
                return self
        self.check_compatible(clip=clip, encoder=encoder, views_json=views_json, descriptor=descriptor,
                              points_encoder=points_encoder)
        if points_path and points_path != meta.get("points_path"):
            with self._write():
                db.execute("UPDATE meta SET value = ? WHERE key = 'points_path'", (points_path,))
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True  # a background rebuild still running drops its result
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
    def where(self) -> str:
        """Where the library is (the folder), for messages."""
        return str(self.directory)

    @property
    def library_label(self) -> str:
        return f"shape library database {self.directory}"

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

    def _check_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        check_vector_kinds(vectors, self.kinds, self.embed_dim)

    def _insert(self, db: sqlite3.Connection, record: ShapeRecord, vectors: dict[str, np.ndarray]) -> int:
        db.execute("DELETE FROM shapes WHERE relpath = ?", (record.relpath,))
        cursor = db.execute(
            "INSERT INTO shapes (relpath, sha256, size, mtime_ns, name, category, faces, vertices, bbox, thumbnail, "
            "indexed_at, file, asset, format, catalog, tags, description, author, license, mesh) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.relpath, record.sha256, int(record.size), int(record.mtime_ns), record.name, record.category,
             int(record.faces), int(record.vertices), json.dumps(record.bbox), record.thumbnail,
             float(record.indexed_at), record.file, record.asset, record.format, record.catalog,
             json.dumps(list(record.tags)), record.description, record.author, record.license, record.mesh))
        shape_id = int(cursor.lastrowid)
        db.executemany("INSERT INTO vectors (shape_id, kind, view, vector) VALUES (?, ?, ?, ?)",
                       [(shape_id, kind, view, np.ascontiguousarray(row, dtype="<f4").tobytes())
                        for kind, rows in vectors.items() for view, row in enumerate(rows)])
        db.execute("INSERT INTO shape_text (rowid, name, tags, catalog, description) VALUES (?, ?, ?, ?, ?)",
                   (shape_id, *index_text(record.name, record.tags, record.catalog, record.description)))
        record.id = shape_id
        return shape_id

    @staticmethod
    def _put_file_row(db: sqlite3.Connection, state: FileState) -> None:
        db.execute("INSERT OR REPLACE INTO files (relpath, sha256, size, mtime_ns, category, format, options, entries, "
                   "indexed_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (state.relpath, state.sha256, int(state.size), int(state.mtime_ns), state.category, state.format,
                    state.options, int(state.entries), time.time(), state.error))

    def put_shape(self, record: ShapeRecord, vectors: dict[str, np.ndarray]) -> int:
        """Inserts a shape that is a whole file (a loose mesh) and its vectors ({"shaded": [K, D], "lines":
        [K, D]} float32), replacing any shape at the same relpath, in one transaction. Returns the shape id."""
        self._check_vectors(vectors)
        with self._maybe_write() as db:
            shape_id = self._insert(db, record, vectors)
            self._put_file_row(db, FileState(record.file, record.sha256, record.size, record.mtime_ns,
                                             record.category, record.format, entries=1))
            if not self._in_batch:
                self._bump(db)
        return shape_id

    def put_file(self, state: FileState, shapes: list[tuple[ShapeRecord, dict[str, np.ndarray]]]) -> list[int]:
        """Replaces everything one library file gave (a .blend's assets, ...) with `shapes` (none for a file
        that failed: `state.error`), and records the file's state, in ONE transaction: a run killed at any
        instant leaves the file's old entries or its new ones, never a mix or a duplicate. Returns the new ids."""
        for _, vectors in shapes:
            self._check_vectors(vectors)
        state.entries = len(shapes)
        with self._maybe_write() as db:
            db.execute("DELETE FROM shapes WHERE file = ?", (state.relpath,))
            ids = [self._insert(db, record, vectors) for record, vectors in shapes]
            self._put_file_row(db, state)
            if not self._in_batch:
                self._bump(db)
        return ids

    def remove_file(self, relpath: str) -> int:
        """Removes a library file's record and every shape it gave; the number of shapes removed."""
        with self._write() as db:
            removed = db.execute("DELETE FROM shapes WHERE file = ?", (relpath,)).rowcount
            known = db.execute("DELETE FROM files WHERE relpath = ?", (relpath,)).rowcount
            if removed or known:
                self._bump(db, vectors=removed > 0)
        return int(removed)

    def remove_shape(self, relpath: str) -> bool:
        """Removes one shape and its vectors; False when there was none at `relpath`."""
        with self._write() as db:
            row = db.execute("SELECT file FROM shapes WHERE relpath = ?", (relpath,)).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM shapes WHERE relpath = ?", (relpath,))
            db.execute("UPDATE files SET entries = entries - 1 WHERE relpath = ?", (row[0],))
            db.execute("DELETE FROM files WHERE relpath = ? AND entries <= 0", (row[0],))
            self._bump(db)
        return True

    def update_file_state(self, relpath: str, *, size: int, mtime_ns: int, new_relpath: str | None = None,
                          category: str | None = None, set_category: bool = False) -> None:
        """Records a file's new size/mtime (content unchanged), and optionally a move or a new category, for
        the file and every shape it gave. The vectors and shape ids stay, so the generation (what the FAISS
        caches depend on) does not change."""
        with self._write() as db:
            db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE relpath = ?", (int(size), int(mtime_ns), relpath))
            db.execute("UPDATE shapes SET size = ?, mtime_ns = ? WHERE file = ?", (int(size), int(mtime_ns), relpath))
            if set_category:
                db.execute("UPDATE files SET category = ? WHERE relpath = ?", (category, relpath))
                db.execute("UPDATE shapes SET category = ? WHERE file = ?", (category, relpath))
            if new_relpath is not None:
                db.execute("UPDATE files SET relpath = ? WHERE relpath = ?", (new_relpath, relpath))
                # A loose file's shape is named after the file; a .blend asset keeps its own name.
                db.execute("UPDATE shapes SET name = ? WHERE file = ? AND asset IS NULL",
                           (Path(new_relpath).stem, relpath))
                db.execute("UPDATE shapes SET relpath = ? || substr(relpath, ?), file = ? WHERE file = ?",
                           (new_relpath, len(relpath) + 1, new_relpath, relpath))
                for shape_id, name, tags, catalog, description in db.execute(
                        "SELECT id, name, tags, catalog, description FROM shapes WHERE file = ? AND asset IS NULL",
                        (new_relpath,)).fetchall():
                    db.execute("UPDATE shape_text SET name = ? WHERE rowid = ?",
                               (index_text(name, json.loads(tags), catalog, description)[0], shape_id))
            self._bump(db, vectors=False)

    # -- reading -------------------------------------------------------------------------------------

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM shapes").fetchone()[0])

    def file_states(self) -> dict[str, FileState]:
        """relpath -> what is recorded of each library file indexed."""
        with self._lock:
            rows = self._db.execute("SELECT relpath, sha256, size, mtime_ns, category, format, options, entries, "
                                    "error FROM files").fetchall()
        return {r[0]: FileState(*r) for r in rows}

    def shapes(self, ids: list[int] | None = None, thumbnails: bool = False) -> list[ShapeRecord]:
        """Shape records (all, or those of `ids` in that order; unknown ids are left out)."""
        columns = SHAPE_COLUMNS + (", thumbnail" if thumbnails else "")
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
        return [shape_from_row(r[:SHAPE_WIDTH], r[SHAPE_WIDTH] if thumbnails else b"") for r in rows]

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

    def catalogs(self) -> dict[str, int]:
        """Blender asset catalog path -> shape count."""
        return self._counts("SELECT catalog, COUNT(*) FROM shapes WHERE catalog IS NOT NULL GROUP BY catalog")

    def tags(self) -> dict[str, int]:
        """Asset tag -> shape count."""
        return self._counts("SELECT json_each.value, COUNT(*) FROM shapes, json_each(shapes.tags) "
                            "GROUP BY json_each.value")

    def formats(self) -> dict[str, int]:
        """File format (extension) -> shape count."""
        return self._counts("SELECT format, COUNT(*) FROM shapes GROUP BY format")

    def _counts(self, sql: str) -> dict[str, int]:
        with self._lock:
            return {r[0]: int(r[1]) for r in sorted(self._db.execute(sql).fetchall())}

    def shape_ids(self, category: "str | ShapeFilter | None" = None) -> np.ndarray:
        """[M] int64 ids of every shape, of one category's, or of those a ShapeFilter lets through."""
        if isinstance(category, str):
            category = ShapeFilter(category=category)
        where, args = (category or ShapeFilter()).where()
        with self._lock:
            rows = self._db.execute(f"SELECT id FROM shapes WHERE {where}", args).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def mesh_paths(self) -> set[str]:
        """The extracted GLBs shapes refer to (relative to the database folder)."""
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT mesh FROM shapes WHERE mesh IS NOT NULL").fetchall()}

    def keyword_rows(self, terms: list[str], limit: int) -> list[tuple[int, tuple[str, str, str, str]]]:
        """(shape id, its four keyword columns) of the best `limit` shapes holding any of `terms` (words as
        `keywords.words` makes them), best BM25 first (the name weighs most)."""
        if not terms:
            return []
        with self._lock:
            rows = self._db.execute("SELECT rowid, name, tags, catalog, description FROM shape_text "
                                    "WHERE shape_text MATCH ? ORDER BY bm25(shape_text, 4.0, 2.0, 1.5, 1.0) LIMIT ?",
                                    (fts_query(terms), int(limit))).fetchall()
        return [(int(r[0]), tuple(r[1:])) for r in rows]
