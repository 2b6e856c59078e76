"""Loose meshes indexed on a Ray cluster (`atelier index LIBRARY --ray auto|HOST:PORT`).

The indexer (`indexer._Run`) decides what needs work exactly as without Ray (scan, stat, hash, compare with the
database's `files` table); only the loose mesh files to (re)index come here. Each is one Ray task: load,
validate, render the views, embed them with the run's encoder. Blender's formats stay on the local Blender pool.

- The encoder travels as a recipe (its CLIP spec and, for a TASK-former, the checkpoint path), never as
  weights: each Ray worker process builds it once, on its first task, and keeps it for the next ones. So every
  node needs the same Atelier environment, the CLIP weights (`atelier models pull`, or the domain CLIP's file)
  and read access to the library at the same path (a shared drive, as a render farm has).
- When the cluster has GPUs, tasks ask for one GPU each (and no CPU slot, so the GPU nodes' CPUs also take CPU
  tasks); the nodes without a GPU get CPU tasks. A bounded window of tasks is in flight per lane, refilled as
  results come back (`ray.wait`), so a library of 100k files never floods the scheduler.
- Retries: a task whose worker process or node dies is re-run by Ray (`max_retries`); a result lost with its
  node is rebuilt from lineage. A task that still fails is reported as crashed (tried again on the next run).
- Idempotent: only this driver writes, each file in one `put_file` transaction keyed by its path and content
  hash (SHA-256, computed again by the task, which refuses a file that changed since). A retried task
  returns one result; a driver killed mid-run leaves whole files committed, and the next run skips them.

`connect(address)` checks the address first (a TCP connection, then an HTTP/2 handshake with the Ray head's
GCS), so a Ray address that does not answer is an InvalidInputError naming it within seconds, instead of Ray's
own minutes of retries.
"""

from __future__ import annotations

import collections
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import InvalidInputError
from backend.external import require_ray

if TYPE_CHECKING:
    from backend.retrieve.database import FileState
    from backend.retrieve.library_files import LibraryFile
    from backend.retrieve.query import QueryEncoder

PROBE_TIMEOUT_S = 4.0
"""Seconds each check of a Ray address may take (TCP connect, then the gRPC handshake): under 10 s in all."""
IN_FLIGHT_PER_SLOT = 2
"""Tasks in flight per CPU (or GPU) of the cluster: one running, one queued, so a slot never waits on the
driver's round trip."""
MAX_RETRIES = 3
"""Times Ray re-runs a task whose worker or node died (and rebuilds a result lost with its node)."""
STALL_S = 60.0
"""With work left but no result for this long and no CPU or GPU left in the cluster, the run stops with an error."""
CHECK_S = 5.0
"""Seconds between looks at the cluster's resources (a GPU lane whose nodes are all gone moves to the CPUs)."""


@dataclass(frozen=True)
class EncoderRecipe:
    """What a Ray worker needs to build the run's encoder (never its weights)."""

    clip: str
    """The CLIP spec (`--clip`), resolved by `load_clip` on the worker."""
    checkpoint: str | None = None
    """A TASK-former checkpoint path (read on the worker), or None for the plain CLIP."""
    encoder_id: str = ""
    """The driver's `encoder_id`: a worker whose encoder differs refuses to embed (never mixed vectors)."""
    descriptor: str = "views"
    """What each shape is described by (`backend.retrieve.descriptors`)."""
    points: str | None = None
    """The point encoder's checkpoint path (read on the worker) for the points and both descriptors."""
    points_id: str = ""
    """The driver's point encoder id: a worker whose checkpoint differs refuses to embed."""

    @classmethod
    def of(cls, encoder: QueryEncoder) -> EncoderRecipe:
        checkpoint = None
        if encoder.taskformer is not None:
            checkpoint = encoder.checkpoint_path
            if checkpoint is None:
                raise InvalidInputError("this TASK-former encoder was not loaded from a checkpoint file, so Ray "
                                        "workers cannot rebuild it",
                                        hint="load it with QueryEncoder.from_checkpoint(path)")
        return cls(clip=encoder.spec, checkpoint=None if checkpoint is None else str(checkpoint),
                   encoder_id=encoder.encoder_id, descriptor=encoder.descriptor,
                   points=None if encoder.points is None else encoder.points.path, points_id=encoder.points_encoder_id)


@dataclass
class RayRunStats:
    """What the last Ray phase of an indexing run did (for the benchmark and the tests)."""

    address: str = ""
    """The Ray address the driver is connected to."""
    files: int = 0
    """Files sent to Ray."""
    committed: int = 0
    """Files whose shapes were committed."""
    failed: int = 0
    """Files reported as failed (bad content, or crashed after every retry)."""
    seconds: float = 0.0
    """Wall time of the Ray phase (first task submitted to last result committed)."""
    by_node: dict[str, int] = field(default_factory=dict)
    """Committed files per Ray node id (the node whose worker embedded them)."""
    commit_order: list[str] = field(default_factory=list)
    """Node id of each committed file, in commit order."""
    lost_nodes: list[str] = field(default_factory=list)
    """Node ids alive when the phase started and dead at its end."""
    gpu_slots: int = 0
    """GPUs used (tasks with num_gpus=1)."""
    cpu_slots: int = 0
    """CPUs used by CPU tasks (a GPU node's CPUs too: GPU tasks ask for no CPU slot)."""
    rerouted: int = 0
    """GPU tasks moved to CPUs because every GPU node left the cluster."""


last_stats = RayRunStats()
"""The figures of this process's last Ray phase."""


# ----------------------------------------------------------------------------------------------- connection
def resolve_address(address: str) -> str:
    """The Ray head's address for `address`: "auto" is $RAY_ADDRESS, else the cluster `ray start` started on
    this machine; anything else is HOST:PORT (or ray://HOST:PORT for Ray Client). InvalidInputError when
    "auto" finds no cluster or the address is malformed."""
    address = (address or "").strip()
    if address == "auto":
        found = os.environ.get("RAY_ADDRESS", "").strip()
        if not found:
            # Where `ray start --head` records the cluster of this machine (what ray.init("auto") reads).
            current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
            try:
                found = current.read_text(encoding="utf-8").strip()
            except OSError:
                found = ""
        if not found or found == "auto":
            raise InvalidInputError("--ray auto found no Ray cluster: RAY_ADDRESS is not set and no `ray start` "
                                    "cluster runs on this machine",
                                    hint="start one with `ray start --head`, or give its address: --ray HOST:6379")
        address = found
    _host_port(address)
    return address


def _host_port(address: str) -> tuple[str, int]:
    bare = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError(f"the Ray address {address!r} is not HOST:PORT",
                                hint="e.g. --ray 10.0.0.5:6379 (the head's GCS port), or --ray auto")
    return host.strip("[]"), int(port)


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """InvalidInputError naming `address` unless something there completes a gRPC (HTTP/2) handshake within
    `timeout_s` per step. Ray's own connection retries for minutes against a dead address."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise InvalidInputError(f"the Ray cluster at {address} does not answer ({why})",
                                hint="start it with `ray start --head --port PORT` on the head node, check the "
                                     "host and port, or use --ray auto for this machine's cluster") from exc
    if address.startswith("ray://"):
        return  # Ray Client's server: ray.init itself reports a non-Ray listener quickly
    import grpc  # a dependency of ray (imported only after require_ray)

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError as exc:
        raise InvalidInputError(f"{address} accepts connections but is not a Ray head (no gRPC answer within "
                                f"{timeout_s:g} s)",
                                hint="give the head's GCS port (6379 unless `ray start --port` said otherwise)",
                                ) from exc
    finally:
        channel.close()


_connected: str | None = None


def connect(address: str) -> str:
    """Connects this process to the Ray cluster at `address` (see `resolve_address`) and returns the resolved
    address. The connection is kept for later runs (a server indexing again reuses it); another address
    reconnects. DependencyMissingError without ray; InvalidInputError for an address that does not answer."""
    global _connected
    ray = require_ray()
    resolved = resolve_address(address)
    if ray.is_initialized() and _connected == resolved:
        return resolved
    probe(resolved)
    if ray.is_initialized():
        ray.shutdown()
    try:
        ray.init(address=resolved, logging_level="warning", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InvalidInputError(f"cannot join the Ray cluster at {resolved}: {exc}",
                                hint="check that it is a Ray head of the same Ray and Python versions as here") from exc
    _connected = resolved
    return resolved


def disconnect() -> None:
    """Leaves the Ray cluster (if this module joined one)."""
    global _connected
    if _connected is not None:
        require_ray().shutdown()
        _connected = None


# ----------------------------------------------------------------------------------------------- worker side
_encoders: dict[tuple[EncoderRecipe, str], Any] = {}
"""Per Ray worker process: the encoder of each recipe and device, built on the first task that needs it."""


def _worker_encoder(recipe: EncoderRecipe, device: str):
    key = (recipe, device)
    if key not in _encoders:
        from backend.retrieve.service import load_encoder

        encoder = load_encoder(recipe.clip, recipe.checkpoint, device, descriptor=recipe.descriptor,
                               points_encoder=recipe.points)
        for mine, run in ((encoder.encoder_id, recipe.encoder_id), (encoder.points_encoder_id, recipe.points_id)):
            if run and mine != run:
                raise InvalidInputError(f"this Ray node's encoder is {mine}, the run's is {run}",
                                        hint="give every node the same weights and checkpoints")
        _encoders[key] = encoder
    return _encoders[key]


def embed_file(job: dict, recipe: EncoderRecipe, views, max_faces: int, cpu_threads: int) -> dict:
    """The body of one Ray task: {"ok": (record, vectors)} or {"failed": reason}, with "node" (its Ray node id).
    A node that cannot build the encoder (missing weights, another checkpoint) raises: the driver stops the run
    with that reason rather than report every file as failed."""
    import ray
    import torch

    from backend.geometry.load import load_mesh
    from backend.geometry.validate import validate_mesh
    from backend.retrieve.database import ShapeRecord
    from backend.retrieve.entry_views import embed_mesh, reason
    from backend.retrieve.library_files import file_sha256

    node = ray.get_runtime_context().get_node_id()
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    if device == "cpu" and torch.get_num_threads() != cpu_threads:
        torch.set_num_threads(cpu_threads)  # small render kernels: one thread is fastest (IndexConfig.cpu_threads)
    encoder = _worker_encoder(recipe, device)
    path = Path(job["path"])
    try:
        if file_sha256(path) != job["sha256"]:
            return {"failed": "cannot read the file: it changed while it was being indexed", "node": node}
        # What indexer.index_shape does (not imported from there: the indexer imports this module).
        mesh = validate_mesh(load_mesh(path), max_faces=max_faces)
        vectors, thumbnail, geometry = embed_mesh(mesh, encoder, views, device)
    except Exception as exc:  # one broken file never stops the run: reported by the driver
        return {"failed": reason(exc), "node": node}
    record = ShapeRecord(relpath=job["relpath"], sha256=job["sha256"], size=job["size"], mtime_ns=job["mtime_ns"],
                         name=path.stem, category=job["category"], thumbnail=thumbnail, **geometry)
    return {"ok": (record, vectors), "node": node}


# ----------------------------------------------------------------------------------------------- driver side
def _slots(ray) -> tuple[int, int, dict[str, str]]:
    """(GPUs, CPUs, {node id: its address}) of the cluster's alive nodes."""
    gpus = cpus = 0
    alive = {}
    for node in ray.nodes():
        if node.get("Alive"):
            resources = node.get("Resources", {})
            gpus += int(resources.get("GPU", 0))
            cpus += int(resources.get("CPU", 0))
            alive[node["NodeID"]] = node.get("NodeManagerAddress", "?")
    return gpus, cpus, alive


def index_on_ray(run, items: list[tuple[LibraryFile, str, FileState | None]]) -> RayRunStats:
    """Indexes the loose mesh files `items` ((file, sha256, its recorded state)) of the indexer's `run` on the
    connected Ray cluster (`connect` first), committing each file's result through `run` as it comes back."""
    global last_stats
    ray = require_ray()
    if not ray.is_initialized():
        raise InvalidInputError("not connected to a Ray cluster", hint="call ray_indexing.connect(address) first")
    from backend.retrieve.database import FileState

    recipe = EncoderRecipe.of(run.encoder)
    gpu_slots, cpu_slots, alive_before = _slots(ray)
    stats = RayRunStats(address=_connected or "", files=len(items), gpu_slots=gpu_slots, cpu_slots=cpu_slots)
    last_stats = stats
    if gpu_slots + cpu_slots == 0:
        raise InvalidInputError(f"the Ray cluster at {stats.address} has no CPU or GPU to run tasks on",
                                hint="start worker nodes with `ray start --address HEAD:PORT`")
    task = ray.remote(embed_file)
    lanes = {"gpu": task.options(num_gpus=1, num_cpus=0, max_retries=MAX_RETRIES),
             "cpu": task.options(num_cpus=1, max_retries=MAX_RETRIES)}
    windows = {"gpu": IN_FLIGHT_PER_SLOT * gpu_slots, "cpu": IN_FLIGHT_PER_SLOT * cpu_slots}
    in_lane = collections.Counter()
    queue = collections.deque(items)
    pending: dict[Any, tuple[tuple, str]] = {}
    # Shipped once to the object store, not once per task.
    views_ref, recipe_ref = ray.put(run.views), ray.put(recipe)
    config = run.config
    started = last_result = last_check = time.perf_counter()

    def refill() -> None:
        for lane in ("gpu", "cpu"):
            while queue and in_lane[lane] < windows[lane]:
                item = queue.popleft()
                f, sha, _ = item
                job = {"path": str(f.path), "relpath": f.relpath, "sha256": sha, "size": f.size,
                       "mtime_ns": f.mtime_ns, "category": f.category}
                ref = lanes[lane].remote(job, recipe_ref, views_ref, config.max_faces, config.cpu_threads)
                pending[ref] = (item, lane)
                in_lane[lane] += 1

    try:
        while queue or pending:
            run._check_cancel()
            refill()
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            now = time.perf_counter()
            if now - last_check > CHECK_S:
                last_check = now
                resources = ray.cluster_resources()
                if windows["gpu"] and not resources.get("GPU", 0):
                    # Every GPU node is gone: their tasks would wait forever for a GPU, so CPUs take them.
                    for ref in [r for r, (_, lane) in pending.items() if lane == "gpu"]:
                        ray.cancel(ref, force=False)
                        queue.appendleft(pending.pop(ref)[0])
                        stats.rerouted += 1
                    windows["gpu"], in_lane["gpu"] = 0, 0
                    windows["cpu"] = max(windows["cpu"], IN_FLIGHT_PER_SLOT)
                    run.report.warnings.append("every GPU node left the Ray cluster; the rest ran on CPU nodes")
                if not ready and now - last_result > STALL_S and resources.get("CPU", 0) + resources.get("GPU", 0) <= 0:
                    raise InvalidInputError(f"the Ray cluster at {stats.address} has no node left to run tasks on "
                                            f"(no result for {STALL_S:g} s)",
                                            hint="restart its worker nodes; files already committed are kept and "
                                                 "the next run skips them")
            if not ready:
                continue
            last_result = time.perf_counter()
            for ref in ready:
                (f, sha, state), lane = pending.pop(ref)
                in_lane[lane] -= 1
                out = _result(ray, ref, stats.address)
                if "ok" in out:
                    record, vectors = out["ok"]
                    run.db.put_file(FileState(f.relpath, sha, f.size, f.mtime_ns, f.category, f.format),
                                    [(record, vectors)])
                    run.report.indexed += 1
                    stats.committed += 1
                    stats.by_node[out["node"]] = stats.by_node.get(out["node"], 0) + 1
                    stats.commit_order.append(out["node"])
                else:
                    run._fail(f, sha, out["failed"], state)
                    stats.failed += 1
                run._tick()
    except BaseException:
        for ref in pending:  # a cancelled or failed run leaves nothing running on the cluster
            ray.cancel(ref, force=False)
        raise
    finally:
        stats.seconds = time.perf_counter() - started
        run.indexing_seconds += stats.seconds
    _, _, alive_after = _slots(ray)
    for node_id, where in alive_before.items():
        if node_id not in alive_after:
            stats.lost_nodes.append(node_id)
            run.report.warnings.append(f"Ray node {node_id[:12]} ({where}) left the cluster during the run; "
                                       "Ray re-ran its tasks on the other nodes")
    return stats


def _result(ray, ref, address: str) -> dict:
    """A task's result; a task that crashed after every retry is a (transient) failure of its file, a node that
    cannot index at all stops the run."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # embed_file raised: the node cannot build the encoder
        cause = getattr(exc, "cause", None) or exc
        message = getattr(cause, "message", None) or str(cause).strip().splitlines()[-1]
        raise InvalidInputError(f"a worker of the Ray cluster at {address} cannot index: {message}",
                                hint="every node needs the same Atelier environment, the CLIP weights and the "
                                     "library at the same path") from exc
    except ray.exceptions.RayError as exc:  # worker or node died MAX_RETRIES + 1 times, or its result was lost
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return {"failed": f"crashed on the Ray cluster after {MAX_RETRIES} retries: {first[:200]}", "node": ""}

