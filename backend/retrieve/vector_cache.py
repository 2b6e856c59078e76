"""The FAISS side of a library database (`LibraryDB` inherits it): vector search for `search`, and the two
FAISS caches (`index_shaded.npz`, `index_lines.npz`) kept current with SQLite: updated in place after a
change, rebuilt at once only when a cache does not match the database, and rebuilt in the background when a
fresh build would merely serve better (see `VectorCaches.vector_index`).

It uses the database's connection, lock and meta through `LibraryDB`'s attributes (`_db`, `_lock`, `_connect`,
`path`, `generation`, `embed_dim`, `encoder_id`, `vector_config`, `directory`, `shape_ids`, `meta`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import numpy as np

from backend.retrieve.filters import ShapeFilter
from backend.retrieve.query import KINDS
from backend.retrieve.vector_index import RowFilter, VectorDelta, VectorIndex

def _read_vectors(db: sqlite3.Connection, kind: str) -> tuple[int, np.ndarray, np.ndarray]:
    db.execute("BEGIN")
    try:
        generation = int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        dim = int(db.execute("SELECT value FROM meta WHERE key = 'embed_dim'").fetchone()[0])
        rows = db.execute("SELECT shape_id, vector FROM vectors WHERE kind = ? ORDER BY shape_id, view",
                          (kind,)).fetchall()
    finally:
        db.execute("COMMIT")
    labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dim)
    return generation, vectors.astype(np.float32, copy=False), labels


class VectorCaches:
    """Vector search and the FAISS caches of a `LibraryDB`."""

    # -- vector search (what a store offers `search`) --------------------------------------------------

    def search_vectors(self, kind: str, query: np.ndarray, k: int,
                       shape_filter: ShapeFilter | None = None) -> list[tuple[int, float]]:
        """The k best shapes for a [D] unit query against `kind` vectors: [(shape id, best view's cosine)],
        best first; only shapes `shape_filter` lets through."""
        index = self.vector_index(kind)
        allowed = None if shape_filter is None or shape_filter.empty else self.category_filter(kind, shape_filter)
        return index.search(query, k, allowed)

    def scores_of(self, kind: str, query: np.ndarray, shape_ids: list[int]) -> dict[int, float]:
        """Each listed shape's best-view cosine with a [D] unit query (exact, whatever the index type)."""
        if not shape_ids:
            return {}
        index = self.vector_index(kind)
        rows = np.flatnonzero(np.isin(index.labels, np.asarray(shape_ids, dtype=np.int64)))
        scores = index.vectors()[rows] @ np.asarray(query, dtype=np.float32).reshape(-1)
        best: dict[int, float] = {}
        for label, score in zip(index.labels[rows].tolist(), scores.tolist()):
            best[label] = max(score, best.get(label, -2.0))
        return best

    def read_vectors(self, kind: str) -> tuple[int, np.ndarray, np.ndarray]:
        """(generation, [N, D] float32 vectors, [N] int64 shape ids) of one kind, read in one transaction."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        with self._lock:
            return _read_vectors(self._db, kind)

    # -- the FAISS caches ----------------------------------------------------------------------------

    def index_path(self, kind: str) -> Path:
        return self.directory / f"index_{kind}.npz"

    def vector_index(self, kind: str) -> VectorIndex:
        """The FAISS index of `kind`, current with the database: from memory, else from its cache file; one
        older than the database is updated in place (`VectorIndex.catch_up`: new shapes' rows added, removed
        shapes' rows masked out) and rebuilt from SQLite at once only when it does not match the database. One
        that a rebuild would serve better (`stale`: many removed rows, or the other index type wanted) keeps
        answering while a background thread rebuilds it and swaps it in (`wait_for_rebuilds`), so a search never
        waits minutes for an HNSW build. The cache file is rewritten (atomically) whenever the index changed.
        The object returned earlier is the one updated (no copy of a large index): search and update it from
        one thread at a time (the server's worker does both)."""
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
                self._save_index(kind, index, generation)
            self._indexes[kind] = (generation, index)
            if index.stale and kind not in self._rebuilds:
                thread = threading.Thread(target=self._rebuild, args=(kind, index.stale), daemon=True,
                                          name=f"atelier-rebuild-{kind}")
                self._rebuilds[kind] = thread
                thread.start()
            return index

    def _save_index(self, kind: str, index: VectorIndex, generation: int) -> None:
        try:
            index.save(self.index_path(kind), {"generation": generation, "kind": kind, "encoder": self.encoder_id})
        except OSError:
            pass  # a read-only database folder: the index lives in memory only

    def _rebuild(self, kind: str, reason: str) -> None:
        """Builds `kind`'s index afresh outside the lock (its own connection reads the rows), then catches it
        up with what changed meanwhile and swaps it in. A failure leaves the stale (correct) index serving."""
        try:
            connection = self._connect(self.path)
            try:
                _, vectors, labels = _read_vectors(connection, kind)
            finally:
                connection.close()
            index = VectorIndex.build(vectors, labels, self.vector_config, origin=f"built in the background: {reason}")
            with self._lock:
                if self._closed:
                    return
                delta = self.read_vectors_after(kind, index.max_id, index.sample_ids())
                if index.catch_up(delta) is None:
                    self._save_index(kind, index, delta.generation)
                    self._indexes[kind] = (delta.generation, index)
        except Exception:  # noqa: BLE001 - the index in use stays correct; the next change tries again
            logging.getLogger(__name__).exception("rebuilding the %s index of %s failed", kind, self.directory)
        finally:
            with self._lock:
                self._rebuilds.pop(kind, None)

    def wait_for_rebuilds(self, timeout: float | None = None) -> None:
        """Waits for the background rebuilds in flight (an indexing run's end, tests)."""
        with self._lock:
            threads = list(self._rebuilds.values())
        for thread in threads:
            thread.join(timeout)

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

    def category_filter(self, kind: str, category: "str | ShapeFilter") -> RowFilter:
        """The rows of `kind`'s index whose shape has `category` (or passes a ShapeFilter; removed shapes' rows
        left out), cached until the catalog changes or the index is updated."""
        shape_filter = ShapeFilter(category=category) if isinstance(category, str) else category
        index = self.vector_index(kind)
        with self._lock:
            catalog = self.meta()["catalog"]
            held = self._filters.get((kind, shape_filter))
            if held is not None and held[0] is index and held[1] == (catalog, index.version):
                return held[2]
            allowed = index.row_filter(np.isin(index.labels, self.shape_ids(shape_filter)))
            self._filters[(kind, shape_filter)] = (index, (catalog, index.version), allowed)
            return allowed

    def refresh_indexes(self) -> None:
        """Brings both FAISS caches up to date, rebuilds included (the indexer calls this at the end of a run:
        the cache files it leaves need no rebuild by the next search)."""
        for kind in self.kinds:
            self.vector_index(kind)
        self.wait_for_rebuilds()
