"""Indexing a library folder: formats and nested folders, categories, incremental updates, broken and
unreadable files, cancellation, and a real `atelier index` process killed mid-run and restarted."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from library_helpers import LIBRARY_SHAPES, one_thread, write_corrupt, write_plain_library, write_world_library
from backend.errors import InvalidInputError, JobCancelled
from backend.models.clip import load_clip
from backend.progress import CancelToken
from backend.retrieve.database import LibraryDB
from backend.retrieve.indexer import IndexConfig, index_library
from backend.retrieve.query import QueryEncoder
from backend.retrieve.search import search
from backend.retrieve.views import IndexViewConfig

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]
SMALL = IndexConfig(views=IndexViewConfig(views=2, thumbnail_size=32))
"""Two views per shape: these tests check bookkeeping, not retrieval quality."""


@pytest.fixture(scope="module")
def encoder():
    return QueryEncoder(load_clip("tiny"))


def _index(library, db, encoder, **kwargs):
    with one_thread():
        return index_library(library, db, encoder, kwargs.pop("config", SMALL), **kwargs)


def _relpaths(db_dir) -> list[str]:
    with LibraryDB.open(db_dir) as db:
        return sorted(r.relpath for r in db.shapes())


def test_every_format_in_nested_folders_is_indexed_with_its_metadata(tmp_path, encoder):
    files = write_plain_library(tmp_path / "lib")
    (tmp_path / "lib" / "boxes" / "notes.txt").write_text("not a mesh")
    (tmp_path / "lib" / ".hidden").mkdir()
    write_corrupt(tmp_path / "lib" / ".hidden" / "x.obj")
    (tmp_path / "lib" / "balls" / "categories.json").write_text(json.dumps({"sphere.obj": "orb"}))
    progress = []
    report = _index(tmp_path / "lib", tmp_path / "db", encoder, progress=lambda s, t, **m: progress.append((s, t, m)))
    assert (report.shapes, report.indexed, report.skipped, report.removed, report.failed) == (6, 6, 0, 0, [])
    assert progress[-1][:2] == (6, 6) and progress[-1][2]["shapes_per_s"] > 0 and report.shapes_per_s > 0
    with LibraryDB.open(tmp_path / "db") as db:
        records = {r.relpath: r for r in db.shapes()}
        assert sorted(records) == files
        assert records["balls/sphere.obj"].category == "orb"  # the sidecar wins
        assert records["balls/big/sphere.ply"].category == "big"  # else the folder name
        assert records["boxes/box.stl"].category == "boxes" and records["top.gltf"].category is None
        box = records["boxes/box.off"]
        assert (box.faces, box.vertices, box.name) == (12, 8, "box")
        assert box.bbox == [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]] and len(box.sha256) == 64
        assert db.shape(box.id).thumbnail.startswith(b"\x89PNG")
        assert db.clip_spec == "tiny" and db.library_root == str((tmp_path / "lib").resolve())
        assert db.vector_index("shaded").rows == 6 * 2 and db.vector_index("lines").rows == 6 * 2


def test_incremental_runs_skip_unchanged_reindex_changed_and_remove_deleted(tmp_path, encoder):
    library, _ = write_world_library(tmp_path / "world", shapes=6)
    first = _index(library, tmp_path / "db", encoder)
    assert (first.shapes, first.indexed, first.skipped) == (6, 6, 0)
    ids = {r.relpath: r.id for r in LibraryDB.open(tmp_path / "db").shapes()}
    files = sorted(ids)

    again = _index(library, tmp_path / "db", encoder)
    assert (again.shapes, again.indexed, again.skipped, again.removed) == (6, 0, 6, 0)

    os.utime(library / files[0], ns=(1, 1))  # touched: new mtime, same bytes -> hashed, skipped
    changed = library / files[1]
    changed.write_bytes((library / files[2]).read_bytes())  # new content
    (library / files[3]).unlink()
    (library / files[4]).rename(library / "moved.glb")  # same content, new path
    write_plain_library(tmp_path / "plain")
    (library / "new.obj").write_bytes((tmp_path / "plain" / "balls" / "sphere.obj").read_bytes())
    report = _index(library, tmp_path / "db", encoder)
    assert (report.indexed, report.removed, report.moved, report.failed) == (2, 1, 1, [])  # changed + new
    assert report.skipped == 4 and report.shapes == 6 and report.files == 6  # the moved file counts as skipped
    with LibraryDB.open(tmp_path / "db") as db:
        records = {r.relpath: r for r in db.shapes()}
        assert sorted(records) == sorted([*files[:3], files[5], "moved.glb", "new.obj"])
        assert records[files[0]].id == ids[files[0]]  # untouched rows keep their ids
        assert records[files[1]].id != ids[files[1]]  # re-indexed
        assert records["moved.glb"].id == ids[files[4]] and records["moved.glb"].name == "moved"
        assert records[files[1]].sha256 == records[files[2]].sha256
        assert db.vector_index("shaded").rows == 6 * 2
        # A touched file is recorded with its new mtime: the next run skips it without hashing.
        assert records[files[0]].mtime_ns == 1
    # A category edited in the sidecar is updated without re-indexing.
    sidecar = library / "categories.json"
    mapping = json.loads(sidecar.read_text())
    mapping[files[0]] = "renamed"
    sidecar.write_text(json.dumps(mapping))
    report = _index(library, tmp_path / "db", encoder)
    assert (report.indexed, report.skipped) == (0, 6)
    with LibraryDB.open(tmp_path / "db") as db:
        assert {r.relpath: r.category for r in db.shapes()}[files[0]] == "renamed"


def test_a_corrupt_or_unreadable_file_is_reported_and_skipped(tmp_path, encoder):
    write_plain_library(tmp_path / "lib")
    write_corrupt(tmp_path / "lib" / "broken.glb")
    write_corrupt(tmp_path / "lib" / "boxes" / "broken.obj")
    (tmp_path / "lib" / "empty.ply").write_bytes(b"")
    os.symlink(tmp_path / "nowhere.stl", tmp_path / "lib" / "dangling.stl")  # listed, but cannot be read
    report = _index(tmp_path / "lib", tmp_path / "db", encoder)
    failed = dict(report.failed)
    assert report.indexed == 6 and report.shapes == 6 and set(failed) == {"broken.glb", "boxes/broken.obj",
                                                                        "empty.ply", "dangling.stl"}
    assert "cannot read" in failed["dangling.stl"]
    assert all(reason for reason in failed.values())
    if os.geteuid() != 0:  # root reads any file: the dangling link stands in for an unreadable one there
        locked = tmp_path / "lib" / "locked.obj"
        locked.write_bytes((tmp_path / "lib" / "balls" / "sphere.obj").read_bytes())
        locked.chmod(0)
        try:
            assert "Permission denied" in dict(_index(tmp_path / "lib", tmp_path / "db", encoder).failed)["locked.obj"]
        finally:
            locked.chmod(0o644)
            locked.unlink()
    # A file that was fine and turns corrupt is reported and its old entry removed.
    write_corrupt(tmp_path / "lib" / "boxes" / "box.stl")
    report = _index(tmp_path / "lib", tmp_path / "db", encoder)
    assert "boxes/box.stl" in dict(report.failed) and report.removed == 1 and report.shapes == 5


def test_bad_libraries_are_clear_errors(tmp_path, encoder):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no meshes here")
    with pytest.raises(InvalidInputError, match="holds no mesh files") as caught:
        _index(tmp_path / "empty", tmp_path / "db", encoder)
    assert "obj" in caught.value.hint
    assert not (tmp_path / "db").exists(), "nothing is created for an empty library"
    with pytest.raises(InvalidInputError, match="does not exist"):
        _index(tmp_path / "missing", tmp_path / "db", encoder)
    (tmp_path / "file.obj").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        _index(tmp_path / "file.obj", tmp_path / "db", encoder)
    write_plain_library(tmp_path / "lib")
    _index(tmp_path / "lib", tmp_path / "db", encoder)
    with pytest.raises(InvalidInputError, match="indexed with CLIP 'tiny', not 'tiny-rn'"):
        _index(tmp_path / "lib", tmp_path / "db", QueryEncoder(load_clip("tiny-rn")))
    with pytest.raises(InvalidInputError, match="view settings"):
        _index(tmp_path / "lib", tmp_path / "db", encoder, config=IndexConfig(views=IndexViewConfig(views=3)))


def test_a_cancelled_run_keeps_what_it_committed_and_the_next_run_finishes(tmp_path, encoder):
    library, _ = write_world_library(tmp_path / "world", shapes=5)
    token = CancelToken()

    def progress(step, total, **metrics):
        if step == 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        _index(library, tmp_path / "db", encoder, progress=progress, cancel=token)
    assert len(_relpaths(tmp_path / "db")) == 2
    report = _index(library, tmp_path / "db", encoder)
    assert (report.indexed, report.skipped, report.shapes) == (3, 2, 5)


def _shape_count(db_file: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM shapes").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_an_indexer_killed_mid_run_resumes_without_losing_or_duplicating_shapes(tmp_path):
    library, _ = write_world_library(tmp_path / "world", shapes=LIBRARY_SHAPES * 2)
    db_dir = tmp_path / "db"
    command = [sys.executable, "-m", "backend.cli", "index", str(library), "--db", str(db_dir), "--clip", "tiny",
               "--device", "cpu", "--views", "2"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _shape_count(db_dir / "library.sqlite") < 2:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the indexer never committed two shapes"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # no chance to clean up
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    killed_at = _shape_count(db_dir / "library.sqlite")
    assert 2 <= killed_at < LIBRARY_SHAPES * 2, "killed mid-run"

    # Readable as it was left: the shapes, the vectors, and a search.
    with LibraryDB.open(db_dir) as db:
        assert db.count() == killed_at
        assert db.vector_index("shaded").rows == killed_at * 2
        assert len(search(db, QueryEncoder(load_clip("tiny")), text="a chair", k=2)) == 2

    report = tmp_path / "report.json"
    done = subprocess.run(command + ["--report", str(report)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    figures = json.loads(report.read_text())
    assert figures["shapes"] == LIBRARY_SHAPES * 2 and figures["failed"] == []
    assert figures["indexed"] + figures["skipped"] == LIBRARY_SHAPES * 2 and figures["skipped"] >= killed_at
    relpaths = _relpaths(db_dir)
    assert len(relpaths) == len(set(relpaths)) == LIBRARY_SHAPES * 2
    assert relpaths == sorted(p.name for p in library.glob("*.glb"))
    with sqlite3.connect(db_dir / "library.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == LIBRARY_SHAPES * 2 * 2 * 2
