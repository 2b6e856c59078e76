"""A local Ray cluster (a head and worker nodes, `ray.cluster_utils.Cluster`) for the Ray indexing test and
benchmark, run in a child process inside a private network namespace.

Ray binds the machine's interface address, not loopback; `unshare -rn` (a user and network namespace with only
a loopback interface, brought up) keeps every packet of the cluster on loopback and the cluster invisible to
the rest of the machine. Where unprivileged user namespaces are refused (some CI kernels), the child runs
without one and Ray binds 127.0.0.1 (`node_ip_address`); its traffic still stays on this machine.

As a script: `python -m tests.retrieve.ray_cluster SCENARIO.json` runs one scenario (see `run_scenario`) and
prints its figures as JSON on the last line of stdout.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

NETNS = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
"""Prefix running a command in a new user + network namespace with loopback up."""


@functools.cache
def netns_prefix() -> list[str]:
    """NETNS where this machine allows it, else [] (the child then pins Ray to 127.0.0.1)."""
    try:
        ok = subprocess.run(NETNS + ["true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return NETNS if ok else []


def run_in_netns(scenario: dict, timeout_s: float) -> dict:
    """Runs `scenario` in a child process (in a private network namespace when possible); its JSON figures.
    Raises AssertionError with the child's output when it fails."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               RAY_USAGE_STATS_ENABLED="0", ATELIER_RAY_NETNS="1" if netns_prefix() else "0")
    command = netns_prefix() + [sys.executable, "-m", "tests.retrieve.ray_cluster", json.dumps(scenario)]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"the Ray scenario failed (rc {done.returncode}):\n{done.stdout[-4000:]}\n"
                             f"{done.stderr[-6000:]}")
    return json.loads(lines[-1])


def start_cluster(head_cpus: int, workers: int, worker_cpus: int = 1, worker_gpus: int = 0):
    """(cluster, [worker nodes]): a head and `workers` worker nodes on this machine. worker_gpus: GPUs each
    worker node declares (Ray schedules GPU tasks there; without CUDA the task itself runs on the CPU)."""
    from ray.cluster_utils import Cluster

    pinned = {} if os.environ.get("ATELIER_RAY_NETNS") == "1" else {"node_ip_address": "127.0.0.1"}
    # A killed node is declared dead after about 2 s (the default waits for 5 missed 3-s health checks).
    system = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 4}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, "include_dashboard": False,
                                                            "_system_config": system, **pinned})
    nodes = [cluster.add_node(num_cpus=worker_cpus, num_gpus=worker_gpus, **pinned) for _ in range(workers)]
    cluster.wait_for_nodes()
    return cluster, nodes


KILLED_DRIVER = """
import json, os, signal, sys
from backend.models.clip import load_clip
from backend.retrieve.indexer import IndexConfig, index_library
from backend.retrieve.query import QueryEncoder
from backend.retrieve.views import IndexViewConfig
s = json.loads(sys.argv[1])
def progress(done, total, **metrics):
    if done >= s["driver_kill_after"]:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind: tasks in flight, database open
config = IndexConfig(views=IndexViewConfig(views=s["views"], thumbnail_size=32), ray=s["address"])
index_library(s["library"], s["db"], QueryEncoder(load_clip(s["clip"])), config, progress=progress)
"""
"""A driver that SIGKILLs itself after `driver_kill_after` files of its run."""


def run_scenario(scenario: dict) -> dict:
    """scenario: library, db, clip, views, head_cpus, workers, worker_gpus (optional); driver_kill_after (a
    first driver process is killed after this many files; 0: none); kill_after (commits from the worker node
    after which that node is removed, killing its processes; 0: never); search (a text to search for
    afterwards); rerun (index again)."""
    import torch

    from backend.models.clip import load_clip
    from backend.retrieve import ray_indexing
    from backend.retrieve.database import LibraryDB
    from backend.retrieve.indexer import IndexConfig, index_library
    from backend.retrieve.query import QueryEncoder
    from backend.retrieve.search import search
    from backend.retrieve.views import IndexViewConfig

    torch.set_num_threads(1)
    started = time.perf_counter()
    cluster, nodes = start_cluster(scenario["head_cpus"], scenario["workers"],
                                   worker_gpus=scenario.get("worker_gpus", 0))
    out: dict = {"cluster_start_s": round(time.perf_counter() - started, 2),
                 "netns": os.environ.get("ATELIER_RAY_NETNS") == "1"}
    try:
        encoder = QueryEncoder(load_clip(scenario["clip"]))
        worker_id = nodes[0].node_id if nodes else None
        killed: dict = {}
        if scenario.get("driver_kill_after"):
            import subprocess

            argument = json.dumps(dict(scenario, address=cluster.address))
            first = subprocess.run([sys.executable, "-c", KILLED_DRIVER, argument], capture_output=True, text=True,
                                   timeout=300)
            with LibraryDB.open(scenario["db"]) as db:
                out["killed_driver"] = {"returncode": first.returncode, "shapes_left": db.count()}

        def progress(done: int, total: int, **metrics: float) -> None:
            order = ray_indexing.last_stats.commit_order
            if scenario["kill_after"] and not killed and order.count(worker_id) >= scenario["kill_after"]:
                killed["at_commit"] = len(order)
                cluster.remove_node(nodes[0], allow_graceful=False)  # SIGKILL: its running task is lost
                # The GCS marks the node dead after its health checks fail (about 2 s here); the run's end
                # compares the live nodes, so a run that finishes sooner would not see the loss. Wait for it.
                import ray

                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and any(
                        n["NodeID"] == worker_id and n["Alive"] for n in ray.nodes()):
                    time.sleep(0.2)

        config = IndexConfig(views=IndexViewConfig(views=scenario["views"], thumbnail_size=32), ray=cluster.address)
        report = index_library(scenario["library"], scenario["db"], encoder, config, progress=progress)
        stats = ray_indexing.last_stats
        out.update(report=report.as_dict(), worker_id=worker_id, killed=killed, by_node=stats.by_node,
                   commit_order=stats.commit_order, lost_nodes=stats.lost_nodes, ray_seconds=stats.seconds,
                   gpu_slots=stats.gpu_slots, cpu_slots=stats.cpu_slots, rerouted=stats.rerouted,
                   ray_shapes_per_s=stats.committed / stats.seconds if stats.seconds else 0.0)
        if scenario.get("search"):
            with LibraryDB.open(scenario["db"]) as db:
                rows = db._db.execute("SELECT relpath, file FROM shapes").fetchall()
                out["relpaths"] = [r[0] for r in rows]
                out["files"] = [r[0] for r in db._db.execute("SELECT relpath FROM files").fetchall()]
                hits = search(db, encoder, text=scenario["search"], k=5)
                out["hits"] = [h.path for h in hits]
        rerun = scenario.get("rerun")
        if rerun:  # the same run again (the worker node gone): everything committed is skipped
            out["rerun"] = index_library(scenario["library"], scenario["db"], encoder, config).as_dict()
    finally:
        ray_indexing.disconnect()
        cluster.shutdown()
    return out


if __name__ == "__main__":
    print(json.dumps(run_scenario(json.loads(sys.argv[1]))))
