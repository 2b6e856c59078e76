"""The default store's vector index at scale (1M x 512-d), and Milvus Lite beside it, in one run.

    python benchmarks/store_scale.py [--shapes 1000000] [--dim 512] [--data clustered|random] [--threads 2]
                                     [--milvus-shapes 100000] [--report FILE]

What the embedded store searches is `backend.retrieve.vector_index.VectorIndex` (HNSW above 20,000 rows, the
default `VectorIndexConfig`: M 32, efConstruction 80, efSearch 512): this benchmark times it directly, one row per
shape (an indexed shape has 6 views: 1M rows is 167k shapes' views, or 1M shapes of one view each).
1. Vectors: `clustered` (2,000 centres on the unit sphere, each vector a centre plus noise, cosine about 0.8 to
   it: CLIP embeddings of a library form such groups) or `random` (uniform on the sphere: the worst case for any
   approximate index). Queries: 200 new draws of the same kind.
2. Build time and the resident memory the index adds; search latency p50/p99 (k 10, one query at a time) and
   shape-level recall@10 against exact search (a matrix product over all rows) for efSearch 128, 256, 512, 1024.
3. Adding 1,000 rows to the built index in place (what an indexing run's update does).
4. Milvus Lite (`--milvus-shapes` rows, a pure-Python engine: its insert rate bounds the size): insert and index
   time, p50/p99 and recall@10 of its HNSW, on the same kind of data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.external import require_faiss  # noqa: E402
from backend.retrieve.vector_index import VectorIndex, VectorIndexConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "store_scale.json"
K = 10


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_vectors(n: int, dim: int, data: str, seed: int, centres: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if data == "random":
        return _unit(rng.standard_normal((n, dim), dtype=np.float32))
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # in blocks: the noise of 1M x 512 at once would double the memory
        stop = min(n, start + 100_000)
        picks = centres[rng.integers(0, len(centres), stop - start)]
        out[start:stop] = _unit(picks + 0.75 / np.sqrt(dim) * rng.standard_normal((stop - start, dim), dtype=np.float32))
    return out


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[set[int]]:
    tops = []
    for query in queries:
        scores = vectors @ query
        tops.append(set(np.argpartition(-scores, k)[:k].tolist()))
    return tops


def rss_mib() -> float:
    """The process's peak resident memory (vectors, queries and ground truth included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def embedded(vectors: np.ndarray, queries: np.ndarray, truth: list[set[int]], extra: np.ndarray) -> dict:
    config = VectorIndexConfig()
    tick = time.perf_counter()
    index = VectorIndex.build(vectors, np.arange(len(vectors), dtype=np.int64), config)
    build = time.perf_counter() - tick
    hnsw = index.index.hnsw
    n = len(vectors)
    # What the index holds: the vectors (float32) and the graph (int32 neighbour lists, levels, offsets).
    memory = n * vectors.shape[1] * 4 + hnsw.neighbors.size() * 4 + n * 4 + (n + 1) * 8
    out = {"type": index.type, "rows": index.rows, "build_seconds": round(build, 1),
           "index_mib": round(memory / 2**20), "graph_mib": round(hnsw.neighbors.size() * 4 / 2**20),
           "process_peak_rss_mib": None, "ef": {}}
    faiss = require_faiss()
    for ef in (128, 256, 512, 1024):
        params = faiss.SearchParametersHNSW(efSearch=ef)
        times, recall = [], []
        for query, expected in zip(queries, truth):
            tick = time.perf_counter()
            _, found = index.index.search(query[None], K, params=params)
            times.append(time.perf_counter() - tick)
            recall.append(len(expected & set(found[0].tolist())) / K)
        out["ef"][ef] = {"p50_ms": round(1000 * float(np.percentile(times, 50)), 3),
                         "p99_ms": round(1000 * float(np.percentile(times, 99)), 3),
                         "recall_at_10": round(float(np.mean(recall)), 4)}
    tick = time.perf_counter()
    index.index.add(extra)
    out["add_1000_seconds"] = round(time.perf_counter() - tick, 3)
    out["process_peak_rss_mib"] = round(rss_mib())
    return out


def milvus_lite(vectors: np.ndarray, queries: np.ndarray, truth: list[set[int]]) -> dict:
    from backend.external import require_pymilvus

    pymilvus = require_pymilvus()
    folder = Path(tempfile.mkdtemp(prefix="atelier-milvus-bench-"))
    try:
        client = pymilvus.MilvusClient(str(folder / "bench.db"))
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
        schema.add_field("v", pymilvus.DataType.FLOAT_VECTOR, dim=vectors.shape[1])
        params = client.prepare_index_params()
        params.add_index("v", index_type="HNSW", metric_type="IP", params={"M": 32, "efConstruction": 80})
        client.create_collection("bench", schema=schema, index_params=params)
        tick = time.perf_counter()
        for start in range(0, len(vectors), 2000):
            client.insert("bench", [{"id": start + i, "v": row.tolist()}
                                    for i, row in enumerate(vectors[start:start + 2000])])
        client.flush("bench")
        insert = time.perf_counter() - tick
        client.load_collection("bench")
        times, recall = [], []
        for query, expected in zip(queries, truth):
            tick = time.perf_counter()
            hits = client.search("bench", [query.tolist()], limit=K, search_params={"params": {"ef": 512}})
            times.append(time.perf_counter() - tick)
            recall.append(len(expected & {h["id"] for h in hits[0]}) / K)
        client.close()
        return {"rows": len(vectors), "insert_and_flush_seconds": round(insert, 1),
                "p50_ms": round(1000 * float(np.percentile(times, 50)), 2),
                "p99_ms": round(1000 * float(np.percentile(times, 99)), 2),
                "recall_at_10": round(float(np.mean(recall)), 4)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=1_000_000, help="rows of the embedded store's index")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--data", choices=("clustered", "random"), default="clustered")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="FAISS threads (build and add)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--milvus-shapes", type=int, default=100_000, help="rows for Milvus Lite (0: skip)")
    parser.add_argument("--skip-embedded", action="store_true", help="only the Milvus Lite part")
    parser.add_argument("--report", default=str(RESULTS))
    args = parser.parse_args()
    faiss = require_faiss()
    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    centres = _unit(rng.standard_normal((2000, args.dim), dtype=np.float32))
    vectors = make_vectors(args.shapes, args.dim, args.data, 1, centres)
    queries = make_vectors(args.queries, args.dim, args.data, 2, centres)
    extra = make_vectors(1000, args.dim, args.data, 3, centres)
    truth = exact_top(vectors, queries, K)
    results = {"benchmark": "store_scale", "data": args.data, "dim": args.dim, "queries": args.queries}
    if not args.skip_embedded:
        results["embedded"] = embedded(vectors, queries, truth, extra)
    faiss.omp_set_num_threads(1)
    if args.milvus_shapes:
        small = vectors[: args.milvus_shapes]
        results["milvus_lite"] = milvus_lite(small, queries, exact_top(small, queries, K))
    results["machine"] = {"python": platform.python_version(), "faiss": faiss.__version__, "cpus": os.cpu_count(),
                          "threads": args.threads, "gpu": "not measured"}
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(f"store_scale: {args.shapes:,} x {args.dim}-d {args.data} vectors, {args.queries} queries, k {K}, "
          f"{args.threads} FAISS thread(s) for the build")
    e = results.get("embedded", {"ef": {}})
    if "type" in e:
        print(f"embedded (FAISS {e['type']}, M 32, efC 80): build {e['build_seconds']} s, index {e['index_mib']} MiB "
              f"(graph {e['graph_mib']} MiB), process peak {e['process_peak_rss_mib']} MiB, add 1,000 rows "
              f"{e['add_1000_seconds']} s")
        print(f"{'efSearch':>9} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10}")
    for ef, row in e["ef"].items():
        print(f"{ef:>9} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} {row['recall_at_10']:>10.4f}")
    if "milvus_lite" in results:
        m = results["milvus_lite"]
        print(f"milvus lite ({m['rows']:,} rows, HNSW M 32, ef 512): insert+flush {m['insert_and_flush_seconds']} s, "
              f"p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, recall@10 {m['recall_at_10']}")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
