"""Shape library search latency at scale, the approximate index's recall, and indexing throughput, in one run.

    python benchmarks/retrieval_latency.py [--shapes 100000] [--queries 200] [--threads 1] [--report FILE]

1. A library database of `shapes` shapes stored exactly as the indexer stores them: the real `LibraryDB`
   (SQLite rows per shape with a 128-px thumbnail PNG, one float32 row per view and kind) filled through
   `put_shape`, with random unit vectors for the K = 6 views of each kind at the domain CLIP's width (64).
   Rows go in 2,000 shapes per transaction (the indexer commits one shape per transaction: only the
   loading speed differs, not what is stored).
2. Search latency with the encoder excluded: `search_vector` (FAISS search, aggregation to shapes, the hits'
   metadata and thumbnails from SQLite) for `queries` queries, k = 10, against the shaded-view vectors, with
   the exact index (IndexFlatIP) and the approximate one (HNSW, what the database uses above
   `exact_below` vectors); p50 and p99. Target: p50 under 10 ms.
3. Recall@10 of the approximate index against exact search, shape level (the 10 shapes each returns), for
   random unit queries (no structure: the worst case for any approximate index) and for "near" queries, a
   stored view plus noise (cosine about 0.9 to it; CLIP queries have near neighbours in the library).
4. Indexing throughput: a small world library indexed for real with the domain CLIP (render, embed, commit).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from backend.external import require_faiss
from backend.retrieve.database import LibraryDB, ShapeRecord
from backend.retrieve.search import search_vector
from backend.retrieve.vector_index import VectorIndexConfig
from backend.retrieve.views import IndexViewConfig

RESULTS = Path(__file__).resolve().parent / "results" / "retrieval_latency.json"
CATEGORIES = ("chair", "table", "lamp", "mug", "vase", "shelf", "bed", "sofa")


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _thumbnail() -> bytes:
    """A real 128-px thumbnail PNG (a world chair), so rows have the size the indexer stores."""
    from backend.retrieve.views import render_index_views
    from backend.world import make_shape

    return render_index_views(make_shape(3, "chair").mesh, IndexViewConfig(views=1).resolved(64)).thumbnail


def fill_database(db_dir: Path, shapes: int, views: int, dim: int, seed: int = 0, batch: int = 2000) -> float:
    """Writes `shapes` random shapes into a new database; returns the seconds it took."""
    rng = np.random.default_rng(seed)
    thumbnail = _thumbnail()
    config = IndexViewConfig(views=views).resolved(64)
    started = time.perf_counter()
    with LibraryDB.create(db_dir, clip="random", encoder=f"random:{dim}", embed_dim=dim,
                          views_json=config.to_json()) as db:
        for start in range(0, shapes, batch):
            with db.batch():
                for i in range(start, min(shapes, start + batch)):
                    category = CATEGORIES[i % len(CATEGORIES)]
                    record = ShapeRecord(relpath=f"{category}/shape_{i:06d}.glb", sha256=f"{i:064x}", size=1000 + i,
                                         mtime_ns=i, name=f"shape_{i:06d}", category=category, faces=1000, vertices=600,
                                         bbox=[[-1.0, 0.0, -1.0], [1.0, 2.0, 1.0]], thumbnail=thumbnail)
                    db.put_shape(record, {"shaded": _unit(rng.standard_normal((views, dim))),
                                          "lines": _unit(rng.standard_normal((views, dim)))})
    return time.perf_counter() - started


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def _timed(db: LibraryDB, queries: np.ndarray, k: int, category: str | None = None) -> tuple[list[list[int]], dict]:
    results, seconds = [], []
    search_vector(db, queries[0], "shaded", k, category)  # warm: caches, first-call allocations
    for q in queries:
        tick = time.perf_counter()
        hits = search_vector(db, q, "shaded", k, category)
        seconds.append(time.perf_counter() - tick)
        results.append([h.shape_id for h in hits])
    return results, _percentiles(seconds)


def _recall(approx: list[list[int]], exact: list[list[int]]) -> float:
    return float(np.mean([len(set(a) & set(e)) / max(len(e), 1) for a, e in zip(approx, exact)]))


def latency_benchmark(shapes: int = 100_000, queries: int = 200, views: int = 6, dim: int = 64, k: int = 10,
                      seed: int = 0, work_dir: str | Path | None = None) -> dict:
    """Fills a database of `shapes` random shapes and measures search latency, recall and cache build times
    (module docstring). Returns the figures; the database is removed afterwards unless `work_dir` is given."""
    owned = work_dir is None
    root = Path(work_dir or tempfile.mkdtemp(prefix="atelier-retrieval-bench-"))
    db_dir = root / "db"
    if db_dir.exists():
        shutil.rmtree(db_dir)
    try:
        fill_seconds = fill_database(db_dir, shapes, views, dim, seed)
        sqlite_mb = (db_dir / "library.sqlite").stat().st_size / 2**20
        approx_config, exact_config = VectorIndexConfig(), VectorIndexConfig(exact_below=2**62)
        figures: dict = {"shapes": shapes, "views": views, "dim": dim, "k": k, "queries": queries,
                         "vectors_per_kind": shapes * views, "fill_seconds": round(fill_seconds, 2),
                         "fill_shapes_per_s": round(shapes / fill_seconds, 1), "sqlite_mib": round(sqlite_mb, 1)}
        rng = np.random.default_rng(seed + 1)
        random_queries = _unit(rng.standard_normal((queries, dim)))
        indexes = {}
        for name, config in (("exact", exact_config), ("approximate", approx_config)):
            db = LibraryDB.open(db_dir, config)
            tick = time.perf_counter()
            index = db.vector_index("shaded")  # read from SQLite, build, write the cache file
            build = time.perf_counter() - tick
            reopened = LibraryDB.open(db_dir, config)
            tick = time.perf_counter()
            reopened.vector_index("shaded")  # from the cache file just written
            load = time.perf_counter() - tick
            reopened.close()
            indexes[name] = (db, index)
            figures[name] = {"type": index.type, "build_seconds": round(build, 2), "cache_load_seconds": round(load, 2),
                             "cache_mib": round(db.index_path("shaded").stat().st_size / 2**20, 1)}
        stored = indexes["exact"][1].vectors()
        picks = rng.integers(0, len(stored), queries)
        near_queries = _unit(stored[picks] + rng.standard_normal((queries, dim)).astype(np.float32) * 0.06)
        for kind, qs in (("random", random_queries), ("near", near_queries)):
            exact_ids, exact_times = _timed(indexes["exact"][0], qs, k)
            approx_ids, approx_times = _timed(indexes["approximate"][0], qs, k)
            figures["exact"][f"latency_{kind}"] = exact_times
            figures["approximate"][f"latency_{kind}"] = approx_times
            figures["approximate"][f"recall_at_{k}_{kind}"] = round(_recall(approx_ids, exact_ids), 4)
        _, filtered = _timed(indexes["approximate"][0], random_queries, k, category="lamp")
        figures["approximate"]["latency_category_filter"] = filtered
        _, filtered = _timed(indexes["exact"][0], random_queries, k, category="lamp")
        figures["exact"]["latency_category_filter"] = filtered
        figures["approximate"]["settings"] = {"hnsw_m": approx_config.hnsw_m, "ef_construction":
                                              approx_config.ef_construction, "ef_search": approx_config.ef_search}
        for db, _ in indexes.values():
            db.close()
        return figures
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def indexing_throughput(shapes: int = 24, seed: int = 7) -> dict:
    """A world library of `shapes` shapes indexed for real with the domain CLIP: shapes/s."""
    from backend.models.clip import load_clip
    from backend.retrieve.indexer import index_library
    from backend.retrieve.query import QueryEncoder
    from backend.world.dataset import write_dataset

    root = Path(tempfile.mkdtemp(prefix="atelier-index-bench-"))
    try:
        write_dataset(root / "world", shapes, seed=seed, views=0, sketches=0, photos=0)
        encoder = QueryEncoder(load_clip("domain"))
        tick = time.perf_counter()
        report = index_library(root / "world" / "library", root / "db", encoder)
        wall = time.perf_counter() - tick
        return {"shapes": report.shapes, "views": IndexViewConfig().views, "clip": "domain",
                "shapes_per_s": round(report.shapes_per_s, 2), "wall_shapes_per_s": round(shapes / wall, 2),
                "seconds": round(wall, 2)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=100_000, help="shapes in the random database")
    parser.add_argument("--queries", type=int, default=200, help="queries timed per index and query kind")
    parser.add_argument("--dim", type=int, default=64, help="embedding width (64: the domain CLIP; 512: ViT-B-32)")
    parser.add_argument("--index-shapes", type=int, default=24, help="world shapes for the indexing throughput")
    parser.add_argument("--threads", type=int, default=1, help="torch and FAISS CPU threads")
    parser.add_argument("--report", default=str(RESULTS), help="write the JSON results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    require_faiss().omp_set_num_threads(args.threads)
    started = time.perf_counter()
    latency = latency_benchmark(args.shapes, args.queries, dim=args.dim)
    indexing = indexing_throughput(args.index_shapes)
    results = {"benchmark": "retrieval_latency", "latency": latency, "indexing": indexing,
               "machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "faiss": require_faiss().__version__, "threads": args.threads,
                           "processor": platform.processor() or platform.machine(), "gpu": "not measured"},
               "seconds": round(time.perf_counter() - started, 1)}

    print(f"retrieval_latency: {latency['shapes']:,} shapes x {latency['views']} views ({latency['vectors_per_kind']:,} "
          f"vectors per kind, {latency['dim']} dims), k={latency['k']}, {latency['queries']} queries, "
          f"{args.threads} thread(s); encoder excluded")
    print(f"database fill: {latency['fill_seconds']} s ({latency['fill_shapes_per_s']} shapes/s), "
          f"SQLite {latency['sqlite_mib']} MiB")
    header = (f"{'index':<18} {'p50 ms':>8} {'p99 ms':>8} {'p50 near':>9} {'p50 cat':>8} {'recall@10 rand':>15} "
              f"{'recall@10 near':>15} {'build s':>8} {'load s':>7}")
    print(header)
    print("-" * len(header))
    for name in ("exact", "approximate"):
        f = latency[name]
        recall_random = f.get(f"recall_at_{latency['k']}_random", 1.0)
        recall_near = f.get(f"recall_at_{latency['k']}_near", 1.0)
        print(f"{name + ' (' + f['type'] + ')':<18} {f['latency_random']['p50_ms']:>8.2f} "
              f"{f['latency_random']['p99_ms']:>8.2f} {f['latency_near']['p50_ms']:>9.2f} "
              f"{f['latency_category_filter']['p50_ms']:>8.2f} {recall_random:>15.3f} {recall_near:>15.3f} "
              f"{f['build_seconds']:>8.1f} {f['cache_load_seconds']:>7.2f}")
    print(f"indexing (domain CLIP, {indexing['shapes']} world shapes, {indexing['views']} views): "
          f"{indexing['shapes_per_s']} shapes/s (render + embed), {indexing['wall_shapes_per_s']} shapes/s wall")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
