"""Updating a library's FAISS index in place after a small change, against rebuilding it, in one run.

    python benchmarks/index_update.py [--shapes 16667] [--views 6] [--dim 512] [--change 100] [--threads 1]

1. A library database of `shapes` shapes x `views` views of random unit vectors per kind (16,667 x 6 =
   100,002 vectors of the shaded kind, 512 dimensions: ViT-B-32's width), filled in bulk (`LibraryDB.batch`)
   as benchmarks/retrieval_latency.py fills it.
2. The shaded kind's HNSW index built once from SQLite and its cache file written (`LibraryDB.vector_index`,
   the default `VectorIndexConfig`): what a rebuild from scratch costs.
3. `change` shapes added, one `put_shape` commit each as the indexer commits, then the index brought up to
   date (`vector_index`): in memory (a server holding the index), and again `change` more after reopening
   the database (an `atelier index` run: the cache file read, updated, written back). Then `change` shapes
   removed the same way, and `change` more added with every CPU core for FAISS (the others: `--threads`).
4. Checks after each step: against an exact index rebuilt from the database (IndexFlatIP, also the recall
   reference), the exact index updated in place returns the same hits; the HNSW index's recall@10 for
   random queries and for queries at the added shapes' views (their shape found first), and no removed
   shape in any hit. The exact index's update and rebuild are timed too.

Only the shaded kind is timed: `refresh_indexes` at the end of an indexing run does the same for the lines
kind (twice the time). Results in benchmarks/results/index_update.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend.external import require_faiss  # noqa: E402
from backend.retrieve.database import LibraryDB, ShapeRecord  # noqa: E402
from backend.retrieve.vector_index import VectorIndex, VectorIndexConfig  # noqa: E402
from retrieval_latency import CATEGORIES, _thumbnail, _unit, fill_database  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "index_update.json"
EXACT = VectorIndexConfig(exact_below=2**62)


def _put(db: LibraryDB, start: int, count: int, views: int, dim: int, rng, thumbnail: bytes) -> list[np.ndarray]:
    """`count` new shapes, one commit each (as the indexer does); returns their shaded vectors."""
    added = []
    for i in range(start, start + count):
        category = CATEGORIES[i % len(CATEGORIES)]
        record = ShapeRecord(relpath=f"{category}/new_{i:06d}.glb", sha256=f"{i:064x}", size=1000, mtime_ns=i,
                             name=f"new_{i:06d}", category=category, faces=1000, vertices=600,
                             bbox=[[-1.0, 0.0, -1.0], [1.0, 2.0, 1.0]], thumbnail=thumbnail)
        shaded = _unit(rng.standard_normal((views, dim)))
        db.put_shape(record, {"shaded": shaded, "lines": _unit(rng.standard_normal((views, dim)))})
        added.append(shaded)
    return added


def _timed_refresh(db: LibraryDB) -> tuple[VectorIndex, float]:
    tick = time.perf_counter()
    index = db.vector_index("shaded")
    return index, time.perf_counter() - tick


def _exact_pair(db: LibraryDB, stale: VectorIndex) -> tuple[VectorIndex, dict]:
    """Brings the exact index `stale` up to date in place and rebuilds one; times both, checks they agree."""
    tick = time.perf_counter()
    reason = stale.catch_up(db.read_vectors_after("shaded", stale.max_id, stale.sample_ids()))
    update = time.perf_counter() - tick
    assert reason is None, reason
    tick = time.perf_counter()
    _, vectors, labels = db.read_vectors("shaded")
    rebuilt = VectorIndex.build(vectors, labels, EXACT)
    rebuild = time.perf_counter() - tick
    return rebuilt, {"exact_update_seconds": round(update, 3), "exact_rebuild_seconds": round(rebuild, 3)}


def _check(hnsw: VectorIndex, exact_updated: VectorIndex, exact_rebuilt: VectorIndex, queries: np.ndarray,
           near: np.ndarray, near_ids: list[int], removed: set[int], k: int = 10) -> dict:
    recall, same, found = [], 0, 0
    for q in queries:
        truth = exact_rebuilt.search(q, k)
        mine = exact_updated.search(q, k)
        # Same shapes in the same order; scores equal but for FAISS's last bit (its multi-threaded flat search
        # without a row filter sums in another order than with one).
        same += [s for s, _ in mine] == [s for s, _ in truth] and np.allclose([v for _, v in mine],
                                                                            [v for _, v in truth], atol=1e-6)
        got = hnsw.search(q, k)
        recall.append(len({s for s, _ in got} & {s for s, _ in truth}) / k)
        assert not removed & {s for s, _ in got}, "a removed shape was returned"
    for i, q in enumerate(near):
        got = hnsw.search(q, k)
        found += bool(near_ids) and bool(got) and got[0][0] == near_ids[i]
        assert not removed & {s for s, _ in got}, "a removed shape was returned"
    return {"exact_updated_equals_rebuilt": same / len(queries),
            f"hnsw_recall_at_{k}_random": round(float(np.mean(recall)), 4),
            "hnsw_near_found_first": round(found / max(len(near_ids), 1), 4)}


def update_benchmark(shapes: int, views: int, dim: int, change: int, queries: int = 100, seed: int = 0) -> dict:
    root = Path(tempfile.mkdtemp(prefix="atelier-index-update-"))
    db_dir = root / "db"
    rng = np.random.default_rng(seed + 1)
    thumbnail = _thumbnail()
    random_queries = _unit(rng.standard_normal((queries, dim)))
    try:
        fill = fill_database(db_dir, shapes, views, dim, seed)
        db = LibraryDB.open(db_dir)
        hnsw, build = _timed_refresh(db)
        cache_mib = db.index_path("shaded").stat().st_size / 2**20
        _, vectors, labels = db.read_vectors("shaded")
        exact = VectorIndex.build(vectors, labels, EXACT)
        del vectors
        figures: dict = {"shapes": shapes, "views": views, "dim": dim, "vectors": hnsw.rows, "change": change,
                         "fill_seconds": round(fill, 1), "hnsw_build_seconds": round(build, 2),
                         "cache_mib": round(cache_mib, 1), "steps": {}}

        def step(name: str, index: VectorIndex, seconds: float, near: list[np.ndarray], near_ids: list[int],
                 removed: set[int], puts: float) -> VectorIndex:
            nonlocal exact
            assert index.type == "hnsw", index.type
            rebuilt, times = _exact_pair(db, exact)
            noise = rng.standard_normal((len(near), dim)).astype(np.float32) * 0.02
            near_q = _unit(np.stack([v[0] for v in near]) + noise) if near else np.zeros((0, dim), np.float32)
            figures["steps"][name] = {"update_seconds": round(seconds, 3), "sqlite_commits_seconds": round(puts, 3),
                                      "rows": index.rows, "removed_rows": index.removed_rows, **times,
                                      **_check(index, exact, rebuilt, random_queries, near_q, near_ids, removed)}
            return index

        # Added shapes, the index held in memory (a server).
        tick = time.perf_counter()
        added = _put(db, 10**6, change, views, dim, rng, thumbnail)
        puts = time.perf_counter() - tick
        index, seconds = _timed_refresh(db)
        assert index is hnsw, "updated in place"
        new_ids = [int(i) for i in np.sort(db.shape_ids())[-change:]]
        step("add_in_memory", index, seconds, added, new_ids, set(), puts)
        # Added shapes after reopening (an indexing run: the cache file read, updated, written).
        db.close()
        db = LibraryDB.open(db_dir)
        tick = time.perf_counter()
        added = _put(db, 2 * 10**6, change, views, dim, rng, thumbnail)
        puts = time.perf_counter() - tick
        index, seconds = _timed_refresh(db)
        assert index.origin == "cache" and index.version == 1, index.origin
        new_ids = [int(i) for i in np.sort(db.shape_ids())[-change:]]
        step("add_from_cache_file", index, seconds, added, new_ids, set(), puts)
        # Removed shapes (random old ones), in memory.
        records = db.shapes()
        gone = [records[int(i)] for i in rng.choice(len(records) - 2 * change, change, replace=False)]
        tick = time.perf_counter()
        for record in gone:
            db.remove_shape(record.relpath)
        puts = time.perf_counter() - tick
        held = index
        index, seconds = _timed_refresh(db)
        assert index is held and index.version == 2, "updated in place"
        removed_ids = {r.id for r in gone}
        # Queries at the removed shapes' own views: the removed shapes would rank first if not masked out.
        removed_vectors = [exact.vectors()[np.searchsorted(exact.labels, r.id)][None] for r in gone]
        step("remove_in_memory", index, seconds, removed_vectors, [], removed_ids, puts)
        figures["steps"]["remove_in_memory"].pop("hnsw_near_found_first")
        # Added shapes again with every core for FAISS (HNSW insertion is parallel over the new rows).
        threads = require_faiss().omp_get_max_threads()
        require_faiss().omp_set_num_threads(os.cpu_count() or 1)
        tick = time.perf_counter()
        added = _put(db, 3 * 10**6, change, views, dim, rng, thumbnail)
        puts = time.perf_counter() - tick
        held = index
        index, seconds = _timed_refresh(db)
        assert index is held and index.version == 3, "updated in place"
        new_ids = [int(i) for i in np.sort(db.shape_ids())[-change:]]
        step(f"add_{os.cpu_count()}_threads", index, seconds, added, new_ids, removed_ids, puts)
        require_faiss().omp_set_num_threads(threads)
        figures["faiss_threads"] = require_faiss().omp_get_max_threads()
        db.close()
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=16_667, help="shapes in the database (x views: vectors per kind)")
    parser.add_argument("--views", type=int, default=6, help="views per shape and kind")
    parser.add_argument("--dim", type=int, default=512, help="embedding width (512: ViT-B-32; 64: the domain CLIP)")
    parser.add_argument("--change", type=int, default=100, help="shapes added (twice) and removed")
    parser.add_argument("--threads", type=int, default=1, help="FAISS CPU threads")
    parser.add_argument("--report", default=str(RESULTS), help="write the JSON results here")
    args = parser.parse_args()
    require_faiss().omp_set_num_threads(args.threads)
    started = time.perf_counter()
    figures = update_benchmark(args.shapes, args.views, args.dim, args.change)
    results = {"benchmark": "index_update", **figures,
               "machine": {"python": platform.python_version(), "faiss": require_faiss().__version__,
                           "threads": args.threads, "processor": platform.processor() or platform.machine()},
               "seconds": round(time.perf_counter() - started, 1)}
    build = figures["hnsw_build_seconds"]
    print(f"index_update: {figures['shapes']:,} shapes x {figures['views']} views = {figures['vectors']:,} vectors "
          f"({figures['dim']} dims), change {figures['change']} shapes, {args.threads} FAISS thread(s)")
    print(f"database fill {figures['fill_seconds']} s; HNSW build from SQLite (= a rebuild) {build} s; "
          f"cache file {figures['cache_mib']} MiB")
    header = (f"{'step':<20} {'update s':>9} {'rebuild/update':>15} {'commits s':>10} {'exact upd s':>12} "
              f"{'exact rebuild s':>16} {'exact same':>11} {'recall@10':>10} {'near first':>11}")
    print(header)
    print("-" * len(header))
    for name, f in figures["steps"].items():
        print(f"{name:<20} {f['update_seconds']:>9.2f} {build / f['update_seconds']:>14.0f}x "
              f"{f['sqlite_commits_seconds']:>10.2f} {f['exact_update_seconds']:>12.3f} "
              f"{f['exact_rebuild_seconds']:>16.3f} {f['exact_updated_equals_rebuilt']:>11.2f} "
              f"{f['hnsw_recall_at_10_random']:>10.3f} {f.get('hnsw_near_found_first', float('nan')):>11.2f}")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
