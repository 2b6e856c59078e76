"""Server-side paths stay inside the folders the backend was started with (`atelier serve --data-root`): `../`,
absolute paths elsewhere and symlinks out are refused before anything touches the disk, and the server keeps
serving; a CurveZMQ backend started without roots takes no paths at all."""

from __future__ import annotations

import os

import pytest
from server_helpers import start_server, stop_server

from backend.errors import InvalidInputError
from backend.server.client import Client
from backend.server.paths import PathPolicy
from backend.world.dataset import write_dataset
from shared_protocol import Error, Result, Submit

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def confined(tmp_path_factory):
    base = tmp_path_factory.mktemp("confined")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    write_dataset(root / "world", 3, seed=1, views=0, sketches=0, photos=0)
    (root / "escape").symlink_to(outside)
    running = start_server(base, "--data-root", str(root))
    yield running, root, outside
    assert stop_server(running) == 0, running.stderr()


def run(endpoint, kind, params, job="j"):
    with Client(endpoint) as c:
        c.send(Submit(job=job, kind=kind, params=params))
        return list(c.job_messages(job, timeout=120))[-1]


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_dotdot_absolute_and_symlinked_paths_are_refused_and_nothing_is_created(confined):
    running, root, outside = confined
    library = str(root / "world" / "library")
    before_root, before_outside = listing(root), listing(outside)
    bad_paths = [f"{root}/../outside/db", str(outside / "db"), str(root / "escape" / "db")]
    for number, db in enumerate(bad_paths):
        for kind, params in (("index", {"library": library, "db": db, "clip": "tiny"}),
                             ("search", {"db": db, "text": "a chair", "clip": "tiny"}),
                             ("fetch_shape", {"db": db, "shape_id": 1})):
            error = run(running.endpoint, kind, params, job=f"{kind}{number}")
            assert isinstance(error, Error) and error.code == "invalid_input", (kind, db, error)
            assert "outside the folders this backend may use" in error.message and "--data-root" in error.hint
    error = run(running.endpoint, "index", {"library": str(outside), "db": str(root / "db"), "clip": "tiny"})
    assert isinstance(error, Error) and "'library'" in error.message
    error = run(running.endpoint, "search", {"db": str(root / "db"), "text": "x", "clip": "ViT-B-32:/etc/passwd"})
    assert isinstance(error, Error) and "'clip'" in error.message and "outside" in error.message
    error = run(running.endpoint, "generate", {"prompt": "a chair", "checkpoint": "/etc/passwd"})
    assert isinstance(error, Error) and error.code == "invalid_input" and "outside" in error.message
    assert listing(root) == before_root and listing(outside) == before_outside


def test_paths_inside_a_root_work(confined):
    running, root, _ = confined
    result = run(running.endpoint, "index", {"library": str(root / "world" / "library"),
                                             "db": f"{root}/world/../db", "clip": "tiny", "views": 1})
    assert isinstance(result, Result), result
    assert (root / "db").is_dir()


def test_the_policy_on_its_own(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    free = PathPolicy.build((), remote=False)
    assert free.confine("/anything/../at/all", "db") == "/anything/../at/all"
    remote = PathPolicy.build((), remote=True)
    with pytest.raises(InvalidInputError, match="started with no --data-root"):
        remote.confine(str(root / "db"), "db")
    policy = PathPolicy.build((str(root),), remote=True)
    assert policy.confine(str(root / "a" / ".." / "b"), "db") == os.path.realpath(root / "b")
    with pytest.raises(InvalidInputError, match="relative path"):
        policy.confine("db", "db")
    assert policy.confine_params("stylize", {"prompt": "p", "clip": "domain"})["clip"] == "domain"
    with pytest.raises(InvalidInputError, match="outside"):
        policy.confine_params("stylize", {"prompt": "p", "clip": "/etc/x.pt"})
    with pytest.raises(InvalidInputError, match="is not a folder"):
        PathPolicy.build((str(tmp_path / "missing"),), remote=False)
    # A Milvus server's URL is not a local path (the store checks it); a Milvus Lite file is, and is confined.
    assert policy.confine_params("search", {"db": "http://milvus:19530", "store": "milvus"})["db"] == "http://milvus:19530"
    with pytest.raises(InvalidInputError, match="outside"):
        policy.confine_params("search", {"db": "/etc/team.db", "store": "milvus"})
    with pytest.raises(InvalidInputError, match="relative path"):  # no other scheme passes as a server
        policy.confine_params("search", {"db": "file:///etc/team.db", "store": "milvus"})
