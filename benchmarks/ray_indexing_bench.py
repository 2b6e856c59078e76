"""Indexing throughput on a Ray cluster: shapes/s with 1 and with 2 worker nodes, in one run, and the same
library indexed in this process without Ray for reference.

    python benchmarks/ray_indexing_bench.py [--shapes 120] [--clip domain] [--views 6] [--report FILE]

A local cluster (`ray.cluster_utils.Cluster`): a head with no CPU for tasks (it only schedules) and worker
nodes of one CPU each, all on this machine, in a private network namespace (`unshare -rn`, see
tests/retrieve/ray_cluster.py) so nothing leaves loopback. The benchmark re-runs itself inside one.

1. The world library (`--shapes` GLB shapes, tests/retrieve/library_helpers.write_world_library).
2. Local: `index_library` in this process, no Ray (one torch thread, the default).
3. Ray, 1 worker node: `index_library(..., IndexConfig(ray=ADDRESS))` into a fresh database. Each worker
   process builds its encoder before the clock (a warm-up task per node), so the figures are steady-state.
4. Ray, 2 worker nodes: a second node is added, warmed, and the library indexed again into a fresh database.
shapes/s = shapes / wall time of the Ray phase (first task submitted to last file committed). The ratio
2 nodes / 1 node says how the work spreads; on a 2-core machine the driver (commits, scheduling) and Ray's
own processes share the cores with the two workers, so it cannot reach 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.retrieve.ray_cluster import netns_prefix, start_cluster  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ray_indexing_bench.json"


def warm(ray, encoder) -> float:
    """Builds the encoder in one worker process on every node with a CPU (what the first task would pay)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from backend.retrieve import ray_indexing

    recipe = ray_indexing.EncoderRecipe.of(encoder)

    def build(recipe):
        ray_indexing._worker_encoder(recipe, "cpu")
        return ray.get_runtime_context().get_node_id()

    task = ray.remote(build)
    started = time.perf_counter()
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    pinned = [task.options(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
              for node in nodes]
    ray.get([each.remote(recipe) for each in pinned])
    return time.perf_counter() - started


def measure(args) -> dict:
    import ray
    import torch

    from backend.models.clip import load_clip
    from backend.retrieve import ray_indexing
    from backend.retrieve.indexer import IndexConfig, index_library
    from backend.retrieve.query import QueryEncoder
    from backend.retrieve.views import IndexViewConfig
    from tests.retrieve.library_helpers import write_world_library

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="atelier-ray-bench-"))
    library, _ = write_world_library(root / "world", args.shapes)
    encoder = QueryEncoder(load_clip(args.clip))
    views = IndexViewConfig(views=args.views)
    out: dict = {"shapes": args.shapes, "clip": args.clip, "views": args.views, "cpu_count": os.cpu_count(),
                 "machine": platform.machine(), "ray": ray.__version__, "torch": torch.__version__,
                 "netns": os.environ.get("ATELIER_RAY_NETNS") == "1",
                 "load_average_before": [round(x, 2) for x in os.getloadavg()]}

    local = index_library(library, root / "db-local", encoder, IndexConfig(views=views))
    out["local"] = {"shapes_per_s": round(local.shapes_per_s, 3), "seconds": round(local.seconds, 3)}
    print(f"local, no Ray: {local.shapes_per_s:.2f} shapes/s", file=sys.stderr)

    started = time.perf_counter()
    cluster, _ = start_cluster(head_cpus=0, workers=1)
    out["cluster_start_s"] = round(time.perf_counter() - started, 2)
    try:
        for nodes in (1, 2):
            if nodes == 2:
                cluster.add_node(num_cpus=1, **({} if out["netns"] else {"node_ip_address": "127.0.0.1"}))
                cluster.wait_for_nodes()
            ray_indexing.connect(cluster.address)
            warm_s = warm(ray, encoder)
            config = IndexConfig(views=views, ray=cluster.address)
            report = index_library(library, root / f"db-ray{nodes}", encoder, config)
            stats = ray_indexing.last_stats
            assert report.indexed == args.shapes and not report.failed, report
            rate = stats.committed / stats.seconds
            out[f"ray_{nodes}_nodes"] = {"shapes_per_s": round(rate, 3), "seconds": round(stats.seconds, 3),
                                         "warm_up_s": round(warm_s, 2),
                                         "per_node": sorted(stats.by_node.values(), reverse=True)}
            print(f"Ray, {nodes} worker node(s): {rate:.2f} shapes/s ({stats.by_node})", file=sys.stderr)
    finally:
        ray_indexing.disconnect()
        cluster.shutdown()
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out["ratio_2_over_1"] = round(out["ray_2_nodes"]["shapes_per_s"] / out["ray_1_nodes"]["shapes_per_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=int, default=120)
    parser.add_argument("--clip", default="domain")
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--report", type=Path, default=RESULTS)
    args = parser.parse_args()
    if "ATELIER_RAY_NETNS" not in os.environ:  # re-run inside a private network namespace when allowed
        env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0",
                   ATELIER_RAY_NETNS="1" if netns_prefix() else "0")
        sys.exit(subprocess.call(netns_prefix() + [sys.executable, *sys.argv], env=env))
    out = measure(args)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
