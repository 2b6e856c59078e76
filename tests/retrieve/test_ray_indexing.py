"""Indexing on a Ray cluster (`backend.retrieve.ray_indexing`): a local cluster that loses its worker node
mid-run, addresses that do not answer, and Ray missing.

The cluster runs in a child process inside a private network namespace (`ray_cluster.py`), so its traffic
never leaves loopback. ray is in the `test` extra: a CI without it fails here rather than skipping.
"""

from __future__ import annotations

import socket
import sys
import time
from collections import Counter

import pytest
import ray  # noqa: F401  (the test extra installs it: a missing ray fails the run, never skips it)

from backend.errors import DependencyMissingError, InvalidInputError
from backend.external import require_ray
from backend.models.clip import load_clip
from backend.retrieve import ray_indexing
from backend.retrieve.database import db_exists
from backend.retrieve.indexer import IndexConfig, index_library
from backend.retrieve.library_files import find_mesh_files
from backend.retrieve.query import QueryEncoder
from backend.retrieve.views import IndexViewConfig
from tests.retrieve.library_helpers import write_corrupt, write_plain_library, write_world_library
from tests.retrieve.ray_cluster import run_in_netns

WORLD_SHAPES = 60
DRIVER_KILL_AFTER = 12
"""Files a first driver handles before it is killed with SIGKILL (its tasks in flight, its database open)."""
KILL_AFTER = 4
"""Files the worker node commits before it is killed (it has a task running then: its slot is never idle)."""


def test_a_killed_driver_and_a_lost_worker_node_leave_every_shape_indexed_once(tmp_path):
    library, _ = write_world_library(tmp_path / "world", WORLD_SHAPES)
    write_corrupt(library / "broken.obj")  # reported by its task, never stops the run
    out = run_in_netns({"library": str(library), "db": str(tmp_path / "db"), "clip": "tiny", "views": 2,
                        "head_cpus": 1, "workers": 1, "driver_kill_after": DRIVER_KILL_AFTER, "kill_after": KILL_AFTER,
                        "search": "a chair",
                        "rerun": True}, timeout_s=480)
    report, worker = out["report"], out["worker_id"]
    # A first driver was killed mid-run: what it committed stays, the second run does the rest.
    committed_first = out["killed_driver"]["shapes_left"]
    assert out["killed_driver"]["returncode"] == -9, out["killed_driver"]
    assert 0 < committed_first <= DRIVER_KILL_AFTER
    # The worker node did index, was killed mid-run (lost from the cluster), and nothing came from it afterwards.
    assert out["by_node"].get(worker, 0) >= KILL_AFTER, out["by_node"]
    assert out["killed"]["at_commit"] < WORLD_SHAPES - 10, out["killed"]
    # Results the worker had already sent back when it was killed may still be committed after; nothing else.
    after = out["commit_order"][out["killed"]["at_commit"]:]
    order = "".join("W" if node == worker else "h" for node in out["commit_order"])
    assert after.count(worker) <= ray_indexing.IN_FLIGHT_PER_SLOT, order
    assert out["lost_nodes"] == [worker]
    assert any("left the cluster" in w for w in report["warnings"]), report["warnings"]
    # Every shape exactly once: no failure, no duplicate, none missing.
    assert [f["path"] for f in report["failed"]] == ["broken.obj"], report["failed"]
    assert report["indexed"] == WORLD_SHAPES - committed_first and report["shapes"] == WORLD_SHAPES
    expected = [p.relative_to(library).as_posix() for p in find_mesh_files(library) if p.suffix == ".glb"]
    assert len(expected) == WORLD_SHAPES
    assert Counter(out["relpaths"]) == Counter(expected), "a shape is missing or stored twice"
    assert sorted(out["files"]) == sorted(expected + ["broken.obj"])  # the broken file's failure is recorded
    assert sum(out["by_node"].values()) == WORLD_SHAPES - committed_first
    # Search works on what the cluster built, and a second run finds everything committed.
    assert len(out["hits"]) == 5 and all(hit in expected for hit in out["hits"])
    assert out["rerun"]["indexed"] == 0 and out["rerun"]["skipped"] == WORLD_SHAPES + 1
    assert out["rerun"]["shapes"] == WORLD_SHAPES


def test_gpu_tasks_go_to_the_gpu_node_and_move_to_cpus_when_it_is_lost(tmp_path):
    """The worker node declares one GPU (a Ray resource: without CUDA the task runs on its CPU): tasks ask it
    for num_gpus=1 besides the CPU tasks; when it dies its GPU tasks, which no node can take any more, go to
    the head's CPU. The worker is killed at its first commit, while most files still wait in the queue: some
    GPU-lane task is then always pending (killed later, a fast run could drain the GPU lane first)."""
    library, _ = write_world_library(tmp_path / "world", 16)
    out = run_in_netns({"library": str(library), "db": str(tmp_path / "db"), "clip": "tiny", "views": 2,
                        "head_cpus": 1, "workers": 1, "worker_gpus": 1, "kill_after": 1, "search": "a chair"},
                       timeout_s=300)
    report, worker = out["report"], out["worker_id"]
    assert (out["gpu_slots"], out["cpu_slots"]) == (1, 2)
    assert out["lost_nodes"] == [worker] and out["rerouted"] >= 1, out
    assert any("every GPU node left" in w for w in report["warnings"]), report["warnings"]
    assert report["failed"] == [] and report["indexed"] == 16 and report["shapes"] == 16
    assert sorted(out["relpaths"]) == sorted(p.relative_to(library).as_posix() for p in find_mesh_files(library))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_address_that_does_not_answer_is_a_clear_error_within_seconds(tmp_path):
    write_plain_library(tmp_path / "lib")
    address = f"127.0.0.1:{_closed_port()}"
    started = time.perf_counter()
    with pytest.raises(InvalidInputError, match=f"Ray cluster at {address} does not answer") as info:
        index_library(tmp_path / "lib", tmp_path / "db", QueryEncoder(load_clip("tiny")), IndexConfig(ray=address))
    assert time.perf_counter() - started < 10
    assert "ray start --head" in info.value.hint
    assert not db_exists(tmp_path / "db"), "a failed connection must not create the database"


def test_a_listener_that_is_not_a_ray_head_is_a_clear_error_within_seconds():
    with socket.socket() as server:  # accepts TCP connections and never says a word
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        started = time.perf_counter()
        with pytest.raises(InvalidInputError, match=f"{address} accepts connections but is not a Ray head"):
            ray_indexing.connect(address)
        assert time.perf_counter() - started < 10


@pytest.mark.parametrize("address", ["nohost", "host:port", "10.0.0.5:0", "10.0.0.5:70000", ":6379"])
def test_a_malformed_ray_address_is_refused(address):
    with pytest.raises(InvalidInputError, match="is not HOST:PORT"):
        ray_indexing.connect(address)


def test_auto_without_a_cluster_says_how_to_start_one(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_indexing.tempfile, "gettempdir", lambda: str(tmp_path))  # no ray_current_cluster
    with pytest.raises(InvalidInputError, match="--ray auto found no Ray cluster") as info:
        ray_indexing.connect("auto")
    assert "ray start --head" in info.value.hint


def test_auto_takes_ray_address(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")
    assert ray_indexing.resolve_address("auto") == ray_indexing.os.environ["RAY_ADDRESS"]


def test_without_ray_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(DependencyMissingError, match="ray is not installed") as info:
        require_ray()
    assert "atelier[ray]" in info.value.hint
    write_plain_library(tmp_path / "lib")
    with pytest.raises(DependencyMissingError, match="ray is not installed"):
        index_library(tmp_path / "lib", tmp_path / "db", QueryEncoder(load_clip("tiny")), IndexConfig(ray="auto"))
    # Without --ray nothing needs it: the local indexing runs.
    report = index_library(tmp_path / "lib", tmp_path / "db", QueryEncoder(load_clip("tiny")),
                           IndexConfig(views=IndexViewConfig(views=2, thumbnail_size=32)))
    assert report.indexed == 6 and not report.failed


def test_the_cli_reports_an_unreachable_ray_address_in_one_line(tmp_path, capsys):
    from backend.cli import main

    write_plain_library(tmp_path / "lib")
    address = f"127.0.0.1:{_closed_port()}"
    capsys.readouterr()
    code = main(["index", str(tmp_path / "lib"), "--db", str(tmp_path / "db"), "--clip", "tiny", "--ray", address,
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and f"Ray cluster at {address} does not answer" in err[0] and "Traceback" not in err[0], err
