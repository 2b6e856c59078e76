"""Nearest views by inner product (cosine on unit vectors) with FAISS, aggregated to shapes.

Each row of an index is one view of one shape; `labels[row]` is its shape id. A shape's score is the best
score over its views. Small libraries get an exact index (`IndexFlatIP`); from `exact_below` vectors on, an
approximate HNSW graph (`IndexHNSWFlat`, inner product).

Why HNSW and not IVF-Flat: HNSW needs no training (an IVF's centroids are fitted to the vectors present,
and a library grows from a few shapes to many between runs), has no nlist/nprobe pair to retune as it grows,
and answers in about a millisecond at 600,000 vectors. Its costs: a slow single-threaded build (about 3
minutes for 600,000 vectors of 64 dimensions; the index is a derived cache, rebuilt after an indexing run
that changed the vectors, not per query) and about 2 x M x 4 bytes of graph per vector beside the vectors.
Measured on 100,000 shapes x 6 views of random unit vectors (benchmarks/retrieval_latency.py; random data is
the hardest case for any approximate index), shape-level recall@10 against exact search with M = 32:
efSearch 128: 0.59, 256: 0.77, 512: 0.91, 1024: 0.98 at 0.4, 0.8, 1.5 and 2.9 ms a query; queries near a
stored view: 0.76, 0.87, 0.96, 0.995. The default efSearch is 512.

Shape aggregation is exact for exact indexes: the first k distinct shapes among the top-n views, best first,
are the k shapes with the best max-over-views scores (any other shape's best view ranks below all of
them). n starts at k x `candidate_factor` and grows until k shapes are found or the index is exhausted.

Updates in place (`catch_up`): shape ids only grow and are never reused (a changed shape is removed and
inserted again with a new id), so an index holding the shapes up to id M is brought up to date by adding the
rows of the shapes above M (`index.add`: an HNSW graph takes new nodes without a rebuild) and masking out the
rows of the shapes removed since (tombstones: excluded from every search by the row filter; an HNSW graph
cannot drop nodes cheaply). It is rebuilt from scratch only when the tombstones pass
`rebuild_removed_fraction` of its rows, when the exact/HNSW threshold is crossed, or when it does not match
the database. Measured (benchmarks/index_update.py, 1 thread): adding 100 shapes x 6 views to a 100,000-vector
HNSW index of 512 dimensions and rewriting its 222 MiB cache file takes about 2 s (4 s when the cache file
is read first), removing 100 about 1 s, against 150 s for a rebuild. Exact indexes are updated in place too:
0.2 to 0.4 s against 0.6 to 1.3 s for a rebuild at 100,000 vectors, the same hits.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from backend.external import require_faiss


@dataclass(frozen=True)
class VectorIndexConfig:
    """Which FAISS index a library's vectors go into and how it is searched."""

    exact_below: int = 20_000
    """Below this many vectors the index is exact (flat); from it on, HNSW (approximate)."""
    hnsw_m: int = 32
    """HNSW graph degree (neighbours per node per layer); more: better recall, more memory, slower build."""
    ef_construction: int = 80
    """HNSW build-time search width; more: a better graph, a slower build."""
    ef_search: int = 512
    """HNSW query-time search width (raised to the candidate count when that is larger); recall against
    speed, see the module docstring."""
    candidate_factor: int = 4
    """Views fetched per wanted shape in the first round (k x factor), before aggregating by shape."""
    rebuild_removed_fraction: float = 0.25
    """An index updated in place is rebuilt from scratch once more than this fraction of its rows belong to
    removed shapes (until then they are masked out of every search but still cost memory and search time);
    0: rebuild after any removal, 1: only when the exact/HNSW threshold is crossed."""

    def __post_init__(self):
        if not 0.0 <= self.rebuild_removed_fraction <= 1.0:
            raise ValueError(f"rebuild_removed_fraction must be between 0 and 1, got {self.rebuild_removed_fraction}")

    def index_type(self, rows: int) -> str:
        """"exact" or "hnsw" for an index of `rows` vectors."""
        return "exact" if rows < self.exact_below else "hnsw"


class RowFilter:
    """Which rows of an index may match (a category filter), prepared once for many searches."""

    def __init__(self, mask: np.ndarray):
        self.mask = np.ascontiguousarray(mask, dtype=bool)
        """[N] bool per row."""
        self.state: tuple | None = None
        """(index, version) when made by `VectorIndex.row_filter` (removed shapes already masked out)."""
        self.rows = np.flatnonzero(self.mask)
        """[M] int64 allowed row positions, ascending."""
        self._bits = np.packbits(self.mask, bitorder="little")  # faiss's IDSelectorBitmap layout

    @property
    def count(self) -> int:
        return int(self.rows.shape[0])

    def selector(self):
        """A faiss IDSelector over the allowed rows (valid while this filter lives)."""
        faiss = require_faiss()
        return faiss.IDSelectorBitmap(len(self.mask), faiss.swig_ptr(self._bits))


@dataclass
class VectorDelta:
    """What an index holding the shapes up to id `after_id` lacks, read from the database in one transaction."""

    generation: int
    """The database's generation when read."""
    after_id: int
    """The greatest shape id the index holds (0 for none)."""
    known_ids: np.ndarray
    """[S] int64 ids, ascending, of the shapes up to `after_id` with vectors of this kind still in the database."""
    known_rows: np.ndarray
    """[S] int64 rows (views) of each of them."""
    vectors: np.ndarray
    """[M, D] float32 rows of the shapes above `after_id`, by shape id then view."""
    labels: np.ndarray
    """[M] int64 shape id per row of `vectors`."""
    samples: dict[int, np.ndarray] = field(default_factory=dict)
    """shape id -> [K, D] its stored rows, for shapes the index holds (to check the index against)."""


@dataclass
class VectorIndex:
    """A FAISS index over unit vectors and the shape id of each row."""

    index: object
    """The faiss index (IndexFlatIP or IndexHNSWFlat with inner product)."""
    labels: np.ndarray
    """[N] int64 shape id per stored row, ascending when the index comes from a database."""
    type: str
    """"exact" or "hnsw"."""
    config: VectorIndexConfig
    """The settings it was built and is searched with."""
    removed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """[T] int64 ids, ascending, of shapes removed since the index was built: their rows stay stored and are
    masked out of every search (tombstones)."""
    origin: str = "built"
    """How this object came to be: "built" (with the reason a cached index could not be updated, when there
    was one) or "cache" (read from a cache file)."""
    version: int = 0
    """In-place updates applied since it was built or read (a `RowFilter` made before one is made again)."""
    stale: str | None = None
    """Why a fresh build would serve better (removed shapes past `rebuild_removed_fraction`, or the live rows
    wanting the other index type); the index stays correct meanwhile, and the database rebuilds it in the
    background (`LibraryDB.vector_index`). None: it is as good as a rebuild."""

    def __post_init__(self):
        self._live: tuple[int, RowFilter | None] | None = None  # (version, filter of the rows not removed)

    @property
    def stored_rows(self) -> int:
        """Rows stored, removed shapes' included."""
        return int(self.labels.shape[0])

    @property
    def rows(self) -> int:
        """Rows that can match: the views of the shapes not removed."""
        live = self._live_filter()
        return self.stored_rows if live is None else live.count

    @property
    def removed_rows(self) -> int:
        return self.stored_rows - self.rows

    @classmethod
    def build(cls, vectors: np.ndarray, labels: np.ndarray, config: VectorIndexConfig | None = None,
              origin: str = "built") -> "VectorIndex":
        """vectors: [N, D] float32 unit rows; labels: [N] int64 shape ids (rows of one shape adjacent or not)."""
        config = config or VectorIndexConfig()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if vectors.ndim != 2 or labels.shape != (vectors.shape[0],):
            raise ValueError(f"vectors must be [N, D] and labels [N], got {vectors.shape} and {labels.shape}")
        kind = config.index_type(len(vectors))
        index = cls(_empty_faiss_index(kind, vectors.shape[1], config), labels, kind, config, origin=origin)
        if len(vectors):
            index.index.add(vectors)
        return index

    # -- updates in place (module docstring) ----------------------------------------------------------

    @property
    def max_id(self) -> int:
        """The greatest shape id stored (0 for an empty index): the database's rows above it are new."""
        return int(self.labels.max()) if self.stored_rows else 0

    def sample_ids(self, count: int = 8) -> list[int]:
        """Up to `count` shape ids the index holds and has not removed, spread over it and the greatest among
        them: those whose stored rows `catch_up` compares with the database's."""
        known = np.setdiff1d(np.unique(self.labels), self.removed)
        if len(known) == 0:
            return []
        picks = np.linspace(0, len(known) - 1, min(count, len(known))).round().astype(np.int64)
        return sorted({int(known[i]) for i in picks} | {int(known[-1])})

    def catch_up(self, delta: VectorDelta) -> str | None:
        """Brings the index up to the database state `delta` describes, in place: None when done, else why it
        must be rebuilt instead (left unchanged then): it does not match the database. When the removed shapes'
        rows pass `rebuild_removed_fraction` or the live rows cross the exact/HNSW threshold, it is updated all
        the same and `stale` says why a rebuild would serve better."""
        if delta.after_id != self.max_id or (delta.vectors.ndim != 2 or delta.vectors.shape[1] != self.index.d):
            return "the cache does not match the database (ids or dimensions)"
        if len(delta.labels) and (delta.labels.min() <= self.max_id or np.any(np.diff(delta.labels) < 0)):
            return "the cache does not match the database (new ids not above the cached ones)"
        if np.any(np.diff(self.labels) < 0):
            return "the cache's rows are not in shape id order"
        ids, rows = np.unique(self.labels, return_counts=True)
        live = ~np.isin(ids, self.removed)
        present = np.isin(ids, delta.known_ids)
        if np.any(present & ~live) or len(delta.known_ids) != int(present.sum()):
            return "the cache does not match the database (shapes it never held, or removed ones back)"
        if not np.array_equal(rows[present], delta.known_rows):
            return "the cache does not match the database (views per shape differ)"
        for shape_id, stored in delta.samples.items():
            start, stop = np.searchsorted(self.labels, [shape_id, shape_id + 1])
            if stop > start and not np.array_equal(self.vectors()[start:stop], stored):
                return f"the cache does not match the database (shape {shape_id}'s vectors differ)"
        newly_removed = ids[live & ~present]
        removed_rows = self.removed_rows + int(rows[live & ~present].sum())
        stored_rows = self.stored_rows + len(delta.labels)
        wanted = self.config.index_type(stored_rows - removed_rows)
        # Past these the index still answers correctly (tombstones are masked; an exact index is only slower,
        # an HNSW one over few rows only less needed): it is updated now and rebuilt in the background.
        self.stale = None
        if wanted != self.type:
            self.stale = f"{stored_rows - removed_rows} rows need an {wanted} index, not {self.type}"
        elif stored_rows and removed_rows / stored_rows > self.config.rebuild_removed_fraction:
            self.stale = (f"removed shapes hold {removed_rows} of {stored_rows} rows (more than "
                          f"rebuild_removed_fraction {self.config.rebuild_removed_fraction})")
        if len(delta.labels):
            self.index.add(np.ascontiguousarray(delta.vectors, dtype=np.float32))
            self.labels = np.concatenate([self.labels, delta.labels.astype(np.int64)])
        self.removed = np.union1d(self.removed, newly_removed).astype(np.int64)
        if len(delta.labels) or len(newly_removed):
            self.version += 1
        return None

    def row_filter(self, mask: np.ndarray) -> RowFilter:
        """A filter of the rows in `mask` ([N] bool over stored rows) without the removed shapes' rows, to
        pass to `search` as long as the index is not updated again."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.stored_rows,):
            raise ValueError(f"the row mask has shape {mask.shape}, the index {self.stored_rows} rows")
        live = self._live_filter()
        allowed = RowFilter(mask if live is None else mask & live.mask)
        allowed.state = (self, self.version)
        return allowed

    def _live_filter(self) -> RowFilter | None:
        """The rows of shapes not removed (None when none is), cached per version."""
        if self._live is None or self._live[0] != self.version:
            alive = None
            if len(self.removed):
                alive = RowFilter(~np.isin(self.labels, self.removed))
                alive.state = (self, self.version)
            self._live = (self.version, alive)
        return self._live[1]

    def _allowed(self, allowed: RowFilter | np.ndarray | None) -> RowFilter | None:
        """The rows a search may return: `allowed` (any form) less the removed shapes' rows."""
        if allowed is None:
            return self._live_filter()
        if isinstance(allowed, RowFilter):
            if allowed.state is not None and allowed.state[0] is self and allowed.state[1] == self.version:
                return allowed
            if len(self.removed) == 0 and allowed.mask.shape == (self.stored_rows,):
                return allowed
            allowed = allowed.mask
        return self.row_filter(allowed)

    # -- persistence (a derived cache: atomic writes, validated by the caller's meta) -------------------

    def save(self, path: str | os.PathLike, meta: dict) -> None:
        """Writes index, labels, removed ids and `meta` (JSON-able) to one .npz file, atomically (temp file +
        os.replace)."""
        faiss = require_faiss()
        path = Path(path)
        record = {**meta, "type": self.type, "rows": self.rows, "stored_rows": self.stored_rows,
                  "max_id": self.max_id, "config": asdict(self.config)}
        handle, temp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, index=faiss.serialize_index(self.index), labels=self.labels, removed=self.removed,
                         meta=np.frombuffer(json.dumps(record).encode(), dtype=np.uint8))
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike, config: VectorIndexConfig | None = None) -> tuple["VectorIndex", dict] | None:
        """(index, meta) from a file written by `save`, or None when it is missing or unreadable."""
        faiss = require_faiss()
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                labels = np.array(data["labels"], dtype=np.int64)
                # Files written before updates in place have no removed ids.
                removed = np.array(data["removed"] if "removed" in data.files else [], dtype=np.int64)
                index = faiss.deserialize_index(np.asarray(data["index"]))  # no second copy of a large index
        except (OSError, ValueError, KeyError, RuntimeError, EOFError, zipfile.BadZipFile, io.UnsupportedOperation):
            return None  # a truncated file is not a zip archive any more (BadZipFile)
        if not isinstance(meta, dict) or index.ntotal != len(labels) or labels.ndim != 1 or removed.ndim != 1:
            return None
        config = config or VectorIndexConfig()
        if meta.get("type") == "hnsw":
            index.hnsw.efSearch = config.ef_search
        return cls(index, labels, str(meta.get("type")), config, removed=np.unique(removed), origin="cache"), meta

    # -- search ---------------------------------------------------------------------------------------

    def vectors(self) -> np.ndarray:
        """[N, D] float32 view of the stored vectors (no copy; valid while this index lives and is not updated)."""
        faiss = require_faiss()
        flat = self.index if self.type == "exact" else faiss.downcast_index(self.index.storage)
        if self.stored_rows == 0:
            return np.zeros((0, self.index.d), dtype=np.float32)
        return faiss.rev_swig_ptr(flat.get_xb(), self.stored_rows * self.index.d).reshape(self.stored_rows, self.index.d)

    def search(self, query: np.ndarray, k: int, allowed: RowFilter | np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k best shapes for one query: [(shape id, max score over its views)], best first.

        query: [D] float32 unit vector. allowed: optional rows that may match (a `RowFilter`, best made by
        `row_filter`, or an [N] bool mask over the stored rows), e.g. a category. Removed shapes never match.
        Fewer than k pairs come back only when fewer shapes are allowed.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.index.d:
            raise ValueError(f"the query has {query.shape[1]} dimensions, the index {self.index.d}")
        allowed = self._allowed(allowed)
        if allowed is not None and self.type == "hnsw" and allowed.count < self.config.exact_below:
            # A small subset: exact over its rows beats a graph walk that skips most nodes.
            return self._exact_subset(query[0], k, allowed.rows)
        total = self.stored_rows if allowed is None else allowed.count
        if total == 0:
            return []
        selector = None if allowed is None else allowed.selector()
        n = min(total, k * max(1, self.config.candidate_factor))
        while True:
            scores, positions = self._search(query, n, selector)
            hits = _first_shapes(self.labels, scores, positions, k)
            if len(hits) >= k or n >= total:
                return hits
            n = min(total, n * 4)

    def _search(self, query: np.ndarray, n: int, selector) -> tuple[np.ndarray, np.ndarray]:
        faiss = require_faiss()
        if self.type == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.config.ef_search, n))
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        scores, positions = self.index.search(query, n, params=params)
        return scores[0], positions[0]

    def _exact_subset(self, query: np.ndarray, k: int, rows: np.ndarray) -> list[tuple[int, float]]:
        if len(rows) == 0:
            return []
        scores = self.vectors()[rows] @ query
        order = np.argsort(-scores, kind="stable")
        return _first_shapes(self.labels, scores[order], rows[order], k)


def _first_shapes(labels: np.ndarray, scores: np.ndarray, positions: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The first k distinct shapes of a ranked list of rows, with their best (first) score."""
    hits: list[tuple[int, float]] = []
    seen: set[int] = set()
    for score, position in zip(scores.tolist(), positions.tolist()):
        if position < 0:  # faiss pads with -1 when fewer rows qualify
            break
        label = int(labels[position])
        if label not in seen:
            seen.add(label)
            hits.append((label, float(score)))
            if len(hits) == k:
                break
    return hits


def _empty_faiss_index(kind: str, dim: int, config: VectorIndexConfig):
    faiss = require_faiss()
    if kind == "exact":
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = config.ef_construction
    return index
