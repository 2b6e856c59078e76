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
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass
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

    def index_type(self, rows: int) -> str:
        """"exact" or "hnsw" for an index of `rows` vectors."""
        return "exact" if rows < self.exact_below else "hnsw"


class RowFilter:
    """Which rows of an index may match (a category filter), prepared once for many searches."""

    def __init__(self, mask: np.ndarray):
        self.mask = np.ascontiguousarray(mask, dtype=bool)
        """[N] bool per row."""
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
class VectorIndex:
    """A FAISS index over unit vectors and the shape id of each row."""

    index: object
    """The faiss index (IndexFlatIP or IndexHNSWFlat with inner product)."""
    labels: np.ndarray
    """[N] int64 shape id per row."""
    type: str
    """"exact" or "hnsw"."""
    config: VectorIndexConfig
    """The settings it was built and is searched with."""

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def build(cls, vectors: np.ndarray, labels: np.ndarray, config: VectorIndexConfig | None = None) -> "VectorIndex":
        """vectors: [N, D] float32 unit rows; labels: [N] int64 shape ids (rows of one shape adjacent or not)."""
        faiss = require_faiss()
        config = config or VectorIndexConfig()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if vectors.ndim != 2 or labels.shape != (vectors.shape[0],):
            raise ValueError(f"vectors must be [N, D] and labels [N], got {vectors.shape} and {labels.shape}")
        kind = config.index_type(len(vectors))
        if kind == "exact":
            index = faiss.IndexFlatIP(vectors.shape[1])
        else:
            index = faiss.IndexHNSWFlat(vectors.shape[1], config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.ef_construction
        if len(vectors):
            index.add(vectors)
        return cls(index, labels, kind, config)

    # -- persistence (a derived cache: atomic writes, validated by the caller's meta) -------------------

    def save(self, path: str | os.PathLike, meta: dict) -> None:
        """Writes index, labels and `meta` (JSON-able) to one .npz file, atomically (temp file + os.replace)."""
        faiss = require_faiss()
        path = Path(path)
        record = {**meta, "type": self.type, "rows": self.rows, "config": asdict(self.config)}
        handle, temp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, index=faiss.serialize_index(self.index), labels=self.labels,
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
                index = faiss.deserialize_index(np.array(data["index"]))
        except (OSError, ValueError, KeyError, RuntimeError, io.UnsupportedOperation):
            return None
        if index.ntotal != len(labels):
            return None
        config = config or VectorIndexConfig()
        if meta.get("type") == "hnsw":
            index.hnsw.efSearch = config.ef_search
        return cls(index, labels, str(meta.get("type")), config), meta

    # -- search ---------------------------------------------------------------------------------------

    def vectors(self) -> np.ndarray:
        """[N, D] float32 view of the stored vectors (no copy; valid while this index lives)."""
        faiss = require_faiss()
        flat = self.index if self.type == "exact" else faiss.downcast_index(self.index.storage)
        if self.rows == 0:
            return np.zeros((0, self.index.d), dtype=np.float32)
        return faiss.rev_swig_ptr(flat.get_xb(), self.rows * self.index.d).reshape(self.rows, self.index.d)

    def search(self, query: np.ndarray, k: int, allowed: RowFilter | np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k best shapes for one query: [(shape id, max score over its views)], best first.

        query: [D] float32 unit vector. allowed: optional rows that may match (a `RowFilter`, or an [N] bool
        mask), e.g. a category. Fewer than k pairs come back only when fewer shapes are allowed.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.index.d:
            raise ValueError(f"the query has {query.shape[1]} dimensions, the index {self.index.d}")
        if allowed is not None and not isinstance(allowed, RowFilter):
            allowed = RowFilter(allowed)
        if allowed is not None and self.type == "hnsw" and allowed.count < self.config.exact_below:
            # A small subset: exact over its rows beats a graph walk that skips most nodes.
            return self._exact_subset(query[0], k, allowed.rows)
        total = self.rows if allowed is None else allowed.count
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
