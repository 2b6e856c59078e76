"""One suite of store tests run against both stores (`stores.STORES`): the embedded one (SQLite + FAISS in a
tmp folder) and Milvus Lite (a .db in tmp, through pymilvus: the same code that talks to a Milvus server).
A file's entries replaced, deletes, metadata updates and moves, filters, keywords, vector search agreeing
between the stores, concurrent reads during writes, reopening after a writer killed with SIGKILL mid-write,
a library built with another CLIP or embedding size, an unreachable server, bad URIs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from backend.errors import InvalidInputError
from backend.retrieve.db_schema import FileState, ShapeRecord
from backend.retrieve.filters import ShapeFilter, check_filter
from backend.retrieve.search import search_vector
from backend.retrieve.stores import STORES, create_store, open_store, parse_store_uri

DIM = 8
VIEWS = 3


def _location(tmp_path, store: str) -> str:
    return str(tmp_path / ("lib" if store == "embedded" else "lib.db"))


def _create(tmp_path, store: str, **overrides):
    args = {"clip": "test-clip", "encoder": "test-enc", "embed_dim": DIM, "views_json": "{}", **overrides}
    return create_store(_location(tmp_path, store), store, **args)


def _unit(rng, n: int = VIEWS) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _entry(file: str, name: str, rng, asset: str | None = "Object", **meta) -> tuple[ShapeRecord, dict]:
    relpath = f"{file}/{asset}/{name}" if asset else file
    record = ShapeRecord(relpath=relpath, sha256="s", size=1, mtime_ns=1, name=name, category=meta.pop("category", None),
                         faces=12, vertices=8, bbox=[[0, 0, 0], [1, 1, 1]], thumbnail=b"\x89PNG" + name.encode(),
                         file=file, asset=f"{asset}/{name}" if asset else None, **meta)
    return record, {"shaded": _unit(rng), "lines": _unit(rng)}


def _state(relpath: str, sha: str = "s", fmt: str = "blend") -> FileState:
    return FileState(relpath, sha, 1, 1, None, fmt, "")


@pytest.fixture(params=STORES)
def store(request):
    return request.param


@pytest.fixture
def lib(tmp_path, store):
    rng = np.random.default_rng(0)
    db = _create(tmp_path, store)
    db.set_library_root(str(tmp_path / "library"))
    db.put_file(_state("furniture/chairs.blend"), [
        _entry("furniture/chairs.blend", "Chair_Oak", rng, catalog="Furniture/Chairs", tags=["Wood", "seat"],
               description="a sturdy chair", category="chairs"),
        _entry("furniture/chairs.blend", "DiningSet", rng, catalog="Furniture", tags=["set"], category="chairs"),
        _entry("furniture/chairs.blend", "Stool", rng, catalog="Furniture/Chairs/Stools", tags=["seat"]),
    ])
    db.put_file(_state("props/lamps.blend"), [
        _entry("props/lamps.blend", "LampBrass", rng, catalog="Props/Lighting", tags=["metal"], category="lamps"),
    ])
    db.put_file(_state("loose/vase.obj", fmt="obj"), [_entry("loose/vase.obj", "vase", rng, asset=None)])
    yield db
    db.close()


def _names(db, ids=None) -> list[str]:
    return sorted(r.name for r in db.shapes(ids))


def test_put_file_replaces_a_files_entries_and_records_its_state(lib):
    assert lib.count() == 5
    states = lib.file_states()
    assert set(states) == {"furniture/chairs.blend", "props/lamps.blend", "loose/vase.obj"}
    assert states["furniture/chairs.blend"].entries == 3
    rng = np.random.default_rng(1)
    ids = lib.put_file(_state("furniture/chairs.blend", sha="t"), [_entry("furniture/chairs.blend", "Bench", rng)])
    assert lib.count() == 3 and _names(lib) == ["Bench", "LampBrass", "vase"]
    assert lib.file_states()["furniture/chairs.blend"].entries == 1
    assert lib.file_states()["furniture/chairs.blend"].sha256 == "t"
    bench = lib.shape(ids[0])
    assert bench.thumbnail == b"\x89PNGBench" and bench.asset == "Object/Bench" and bench.format == "blend"
    assert lib.shapes([ids[0], 10**9], thumbnails=False)[0].thumbnail == b""
    with pytest.raises(InvalidInputError, match="no shape"):
        lib.shape(10**9)
    # A failed file: no entries, its error kept.
    lib.put_file(FileState("props/lamps.blend", "u", 1, 1, None, "blend", "", error="corrupt"), [])
    assert lib.file_states()["props/lamps.blend"].error == "corrupt" and lib.count() == 2


def test_delete_a_file_and_a_shape(lib):
    assert lib.remove_file("props/lamps.blend") == 1
    assert "props/lamps.blend" not in lib.file_states() and "LampBrass" not in _names(lib)
    assert lib.remove_file("props/lamps.blend") == 0
    assert lib.remove_shape("furniture/chairs.blend/Object/Stool") is True
    assert lib.remove_shape("furniture/chairs.blend/Object/Stool") is False
    assert lib.file_states()["furniture/chairs.blend"].entries == 2
    assert lib.remove_shape("loose/vase.obj") is True
    assert "loose/vase.obj" not in lib.file_states()
    assert lib.count() == 2
    hits = lib.search_vectors("shaded", _unit(np.random.default_rng(5), 1)[0], 10)
    assert {i for i, _ in hits} == {r.id for r in lib.shapes()}


def test_update_file_state_and_move(lib):
    lib.update_file_state("loose/vase.obj", size=7, mtime_ns=9, category="pots", set_category=True)
    vase = next(r for r in lib.shapes() if r.file == "loose/vase.obj")
    assert (vase.size, vase.mtime_ns, vase.category) == (7, 9, "pots")
    assert lib.categories() == {"chairs": 2, "lamps": 1, "pots": 1}
    lib.update_file_state("loose/vase.obj", size=7, mtime_ns=9, new_relpath="pots/urn.obj")
    moved = lib.shape(vase.id)
    assert (moved.relpath, moved.file, moved.name) == ("pots/urn.obj", "pots/urn.obj", "urn")
    assert "loose/vase.obj" not in lib.file_states() and lib.file_states()["pots/urn.obj"].size == 7
    assert [i for i, _ in lib.keyword_rows(["urn"], 10)] == [vase.id]
    lib.update_file_state("furniture/chairs.blend", size=2, mtime_ns=2, new_relpath="seating/chairs.blend")
    names = {r.relpath: r.name for r in lib.shapes() if r.file == "seating/chairs.blend"}
    assert names["seating/chairs.blend/Object/Stool"] == "Stool"  # an asset keeps its own name
    assert lib.count() == 5


def test_filters_catalog_subtree_tag_format_category(lib):
    assert lib.catalogs() == {"Furniture": 1, "Furniture/Chairs": 1, "Furniture/Chairs/Stools": 1,
                              "Props/Lighting": 1}
    assert lib.tags() == {"Wood": 1, "metal": 1, "seat": 2, "set": 1}
    assert lib.formats() == {"blend": 4, "obj": 1}
    assert _names(lib, lib.shape_ids(ShapeFilter(catalog="Furniture/Chairs")).tolist()) == ["Chair_Oak", "Stool"]
    assert _names(lib, lib.shape_ids(ShapeFilter(catalog="Furniture")).tolist()) == ["Chair_Oak", "DiningSet", "Stool"]
    assert _names(lib, lib.shape_ids(ShapeFilter(tag="wood")).tolist()) == ["Chair_Oak"]
    assert _names(lib, lib.shape_ids(ShapeFilter(format="obj")).tolist()) == ["vase"]
    assert _names(lib, lib.shape_ids("chairs").tolist()) == ["Chair_Oak", "DiningSet"]
    assert len(lib.shape_ids(ShapeFilter(category="chairs", tag="seat"))) == 1
    assert len(lib.shape_ids()) == 5
    with pytest.raises(InvalidInputError, match="no shape of catalog 'Furni'"):
        check_filter(lib, catalog="Furni")
    query = _unit(np.random.default_rng(2), 1)[0]
    hits = lib.search_vectors("lines", query, 10, ShapeFilter(catalog="Furniture/Chairs"))
    assert _names(lib, [i for i, _ in hits]) == ["Chair_Oak", "Stool"]
    assert lib.search_vectors("lines", query, 10, ShapeFilter(tag="nothing")) == []


def test_keyword_rows_and_hybrid_search(lib):
    rows = lib.keyword_rows(["oak"], 10)
    assert [lib.shape(i).name for i, _ in rows] == ["Chair_Oak"]
    assert rows[0][1] == ("chair oak", "wood seat", "furniture chair", "a sturdy chair")
    assert sorted(lib.shape(i).name for i, _ in lib.keyword_rows(["seat"], 10)) == ["Chair_Oak", "Stool"]
    assert len(lib.keyword_rows(["chair", "lamp"], 2)) == 2
    assert lib.keyword_rows([], 10) == [] and lib.keyword_rows(['"%'], 10) == []
    query = _unit(np.random.default_rng(3), 1)[0]
    hits = search_vector(lib, query, "shaded", 2, terms=["oak"])
    assert hits[0].name == "Chair_Oak" and hits[0].keyword_score == 1.0
    assert hits[0].record.tags == ["Wood", "seat"] and hits[0].library.endswith("library")


def test_search_and_scores_agree_between_the_stores(tmp_path):
    """The same random data in both stores: the same top hits and scores (exact at this size)."""
    rng = np.random.default_rng(7)
    entries = [_entry(f"f{n // 4}.blend", f"s{n}", rng) for n in range(120)]
    results = {}
    for store in STORES:
        (tmp_path / store).mkdir()
        with _create(tmp_path / store, store) as db:
            for n in range(0, 120, 4):
                db.put_file(_state(f"f{n // 4}.blend"), entries[n:n + 4])
            queries = _unit(np.random.default_rng(8), 5)
            by_name = {r.id: r.name for r in db.shapes()}
            found = []
            for query in queries:
                hits = db.search_vectors("shaded", query, 10)
                scores = db.scores_of("shaded", query, [i for i, _ in hits])
                found.append([(by_name[i], round(s, 5), round(scores[i], 5)) for i, s in hits])
            results[store] = found
    assert results["embedded"] == results["milvus"]
    exact = [max(float(v @ queries[0]) for v in vectors["shaded"]) for _, vectors in entries]
    assert results["milvus"][0][0][1] == round(max(exact), 5)


def test_concurrent_reads_during_writes(tmp_path, store):
    """A reader thread searching and counting while the writer replaces files: never an error, never a
    duplicate shape, never a half file (each file has 0 or 3 entries)."""
    rng = np.random.default_rng(11)
    db = _create(tmp_path, store)
    db.put_file(_state("a.blend"), [_entry("a.blend", f"a{n}", rng) for n in range(3)])
    done, problems, reads = threading.Event(), [], [0]
    query = _unit(rng, 1)[0]
    reader = db if store == "milvus" else open_store(_location(tmp_path, store), store)

    def read():
        try:
            while not done.is_set():
                hits = reader.search_vectors("shaded", query, 50)
                ids = [i for i, _ in hits]
                if len(ids) != len(set(ids)):
                    problems.append(f"duplicate hits {ids}")
                per_file: dict[str, int] = {}
                for record in reader.shapes(ids):
                    per_file[record.file] = per_file.get(record.file, 0) + 1
                if any(count != 3 for count in per_file.values()):
                    problems.append(f"a half file {per_file}")
                reads[0] += 1
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            problems.append(repr(exc))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for n in range(12):
            db.put_file(_state("a.blend", sha=str(n)), [_entry("a.blend", f"a{n}_{m}", rng) for m in range(3)])
            db.put_file(_state(f"b{n}.blend"), [_entry(f"b{n}.blend", f"b{n}_{m}", rng) for m in range(3)])
    finally:
        done.set()
        thread.join(60)
    assert problems == [] and reads[0] > 0
    assert reader.count() == 3 + 12 * 3
    if reader is not db:
        reader.close()
    db.close()


_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from backend.retrieve.db_schema import FileState, ShapeRecord
    from backend.retrieve.stores import create_store
    db = create_store(sys.argv[1], sys.argv[2], clip="test-clip", encoder="test-enc", embed_dim=8, views_json="{}")
    rng = np.random.default_rng(0)
    def unit():
        v = rng.normal(size=(3, 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    n = 0
    while True:
        file = f"f{n % 5}.blend"
        shapes = [(ShapeRecord(relpath=f"{file}/Object/s{n}_{m}", sha256=str(n), size=1, mtime_ns=1, name=f"s{n}_{m}",
                               category=None, faces=1, vertices=3, bbox=[[0, 0, 0], [1, 1, 1]], file=file,
                               asset=f"Object/s{n}_{m}"), {"shaded": unit(), "lines": unit()}) for m in range(4)]
        db.put_file(FileState(file, str(n), 1, 1, None, "blend", ""), shapes)
        n += 1
        if n == 8:
            print("ready", flush=True)
""")


def test_reopen_after_kill_9_of_the_writer_mid_write(tmp_path, store):
    """A writer subprocess replacing files in a loop is killed with SIGKILL: the reopened library holds every
    file exactly once, each with all 4 of its entries, and the next writer cleans up what was in flight."""
    location = _location(tmp_path, store)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for delay in (0.05, 0.4):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, location, store], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        if store == "milvus":  # Milvus Lite: one process per file (a team runs a server instead)
            with pytest.raises(InvalidInputError, match="another process may hold it"):
                open_store(location, store)
        else:  # SQLite: readers beside the writer
            with open_store(location, store) as reader:
                assert reader.count() >= 16
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        for opener in (lambda: open_store(location, store), lambda: _create(tmp_path, store)):
            with opener() as db:
                records = db.shapes()
                per_file: dict[str, set] = {}
                for record in records:
                    per_file.setdefault(record.file, set()).add(record.sha256)
                assert len(records) == 20 == db.count() == len(db.shape_ids())
                assert set(per_file) == {f"f{n}.blend" for n in range(5)}
                assert all(len(shas) == 1 for shas in per_file.values())  # one version of each file
                hits = db.search_vectors("shaded", np.ones(DIM, np.float32) / np.sqrt(DIM), 100)
                assert sorted(i for i, _ in hits) == sorted(r.id for r in records)
                assert {s.relpath: s.entries for s in db.file_states().values()} == {f: 4 for f in per_file}


def test_another_clip_or_embedding_size_is_refused(tmp_path, store):
    _create(tmp_path, store).close()
    with pytest.raises(InvalidInputError, match="'test-clip', not 'other-clip'"):
        _create(tmp_path, store, clip="other-clip")
    with pytest.raises(InvalidInputError, match="8-d vectors.*not 16-d"):
        _create(tmp_path, store, embed_dim=16)
    with pytest.raises(InvalidInputError, match="encoder 'test-enc', not 'x'"):
        _create(tmp_path, store, encoder="x")
    with open_store(_location(tmp_path, store), store) as db:
        with pytest.raises(InvalidInputError, match="other-clip"):
            db.check_compatible(clip="other-clip")
        assert (db.clip_spec, db.embed_dim, db.count()) == ("test-clip", DIM, 0)
    with _create(tmp_path, store) as db:  # the same settings open again
        with pytest.raises(ValueError, match=r"\[K, 8\]"):
            db.put_file(_state("x.blend"), [(_entry("x.blend", "x", np.random.default_rng(0))[0],
                                             {"shaded": np.zeros((3, 16), np.float32),
                                              "lines": np.zeros((3, 16), np.float32)})])
        assert db.count() == 0


def test_opening_a_missing_library_says_how_to_make_one(tmp_path, store):
    with pytest.raises(InvalidInputError, match="atelier index"):
        open_store(_location(tmp_path, store), store)


def test_an_unreachable_server_fails_fast_naming_the_address():
    started = time.monotonic()
    with pytest.raises(InvalidInputError, match=r"Milvus server at http://127\.0\.0\.1:1\b") as caught:
        open_store("http://127.0.0.1:1", "milvus")
    assert time.monotonic() - started < 5
    assert "docker" in caught.value.hint


@pytest.mark.parametrize("db, store, message", [
    ("ftp://host:19530", "milvus", "scheme 'ftp'"),
    ("http://:19530", "milvus", "names no host"),
    ("http://host:99999", "milvus", "bad port"),
    ("http://user:secret@host:19530", "milvus", "carries credentials"),
    ("http://host:19530/x?y=1", "milvus", "path or query"),
    ("lib.sqlite", "milvus", "does not end in .db"),
    ("/no/such/folder/lib.db", "milvus", "does not exist"),
    ("http://host:19530", "embedded", "takes a folder"),
    ("", "milvus", "non-empty"),
    ("lib", "faiss", "unknown store 'faiss'"),
])
def test_bad_uris_are_refused_with_the_fix(db, store, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_store_uri(db, store)


def test_uris_are_normalised(tmp_path):
    assert parse_store_uri("http://milvus.studio", "milvus").uri == "http://milvus.studio:19530"
    assert parse_store_uri("https://10.0.0.5:443/", "milvus").uri == "https://10.0.0.5:443"
    assert parse_store_uri(tmp_path / "a.db", "milvus").uri == str(tmp_path / "a.db")
    assert parse_store_uri(str(tmp_path / "x"), "embedded").store == "embedded"
    (tmp_path / "file.db").write_text("")
    with pytest.raises(InvalidInputError, match="is a file"):
        parse_store_uri(tmp_path / "file.db", "milvus")


@pytest.mark.parametrize("crash_at", range(1, 11))
def test_a_milvus_write_cut_at_any_step_shows_old_or_new_entries_never_both(tmp_path, crash_at):
    """put_file's Milvus calls (allocate + op record, 2 vector inserts, shape insert, commit, files row, 3 deletes,
    op record away) cut after each in turn, as a kill would: readers meanwhile see the file's old entries
    (cut before the commit point) or its new ones, exactly once; the next writer leaves no trace of the op."""
    from backend.retrieve.milvus_store import MilvusStore

    rng = np.random.default_rng(3)
    db = _create(tmp_path, "milvus")
    db.put_file(_state("a.blend", sha="old"), [_entry("a.blend", f"old{m}", rng) for m in range(3)])
    db.put_file(_state("b.blend"), [_entry("b.blend", "b", rng)])
    calls, real = [0], db._call

    def cut(fn, *args, **kwargs):
        if fn.__name__ in ("upsert", "insert", "delete"):
            calls[0] += 1
            if calls[0] == crash_at:
                raise KeyboardInterrupt("killed")
        return real(fn, *args, **kwargs)

    db._call = cut
    with pytest.raises(KeyboardInterrupt):
        db.put_file(_state("a.blend", sha="new"), [_entry("a.blend", f"new{m}", rng) for m in range(3)])
    db._call = real
    committed = crash_at > 5  # the 5th call is the commit point: cut at call n, the calls before it went through
    want = ["new0", "new1", "new2"] if committed else ["old0", "old1", "old2"]
    query = np.ones(DIM, np.float32) / np.sqrt(DIM)
    assert sorted(r.name for r in db.shapes() if r.file == "a.blend") == want and db.count() == 4
    assert _names(db, [i for i, _ in db.search_vectors("shaded", query, 20)]) == sorted(want + ["b"])
    assert [db.shape(i).name for i, _ in db.keyword_rows(["old0", "new0"], 10)] == want[:1]
    assert len(db.shape_ids()) == 4 and sum(db.formats().values()) == 4
    db.close()
    with _create(tmp_path, "milvus") as again:
        assert not [k for k in again._meta_rows() if k.startswith("op:")]
        assert sorted(r.name for r in again.shapes() if r.file == "a.blend") == want
        assert again.file_states()["a.blend"].sha256 == ("new" if committed else "old")
        total = sum(again._call(again._client.query, again._names[f"vectors_{k}"], filter="",
                                output_fields=["count(*)"])[0]["count(*)"] for k in ("shaded", "lines"))
        assert total == 2 * VIEWS * 4  # no orphan vector rows
        assert isinstance(again, MilvusStore) and again.count() == 4


def _with_points(entry, rng):
    record, vectors = entry
    return record, {**vectors, "points": _unit(rng, 1)}


def test_a_both_library_fuses_view_and_point_scores_alike_in_both_stores(tmp_path):
    """Descriptor "both": three vector kinds a shape; the fused score is the weighted mean of the best view's and
    the points' cosines (exact), the same in both stores; wrong kinds are refused."""
    from backend.retrieve.descriptors import POINTS_WEIGHT

    rng = np.random.default_rng(11)
    entries = [_with_points(_entry(f"f{n}.obj", f"s{n}", rng, asset=None), rng) for n in range(40)]
    query = _unit(np.random.default_rng(12), 1)[0]
    found = {}
    for store in STORES:
        (tmp_path / store).mkdir()
        with _create(tmp_path / store, store, descriptor="both", points_encoder="points:abc:test-clip") as db:
            assert db.descriptor == "both" and db.kinds == ("shaded", "lines", "points")
            for n, entry in enumerate(entries):
                db.put_file(_state(f"f{n}.obj", fmt="obj"), [entry])
            with pytest.raises(ValueError, match="stores shaded, lines, points vectors"):
                db.put_file(_state("x.obj", fmt="obj"), [_entry("x.obj", "x", rng, asset=None)])
            hits = search_vector(db, query, ("shaded", "points"), 5, keyword_weight=0.0)
            by_name = {name: vectors for (record, vectors) in entries for name in [record.name]}
            for hit in hits:
                vectors = by_name[hit.name]
                expected = ((1 - POINTS_WEIGHT) * float((vectors["shaded"] @ query).max())
                            + POINTS_WEIGHT * float(vectors["points"][0] @ query))
                assert hit.clip_score == pytest.approx(expected, abs=1e-5)
            found[store] = [(h.name, round(h.clip_score, 5)) for h in hits]
            everything = {name: (1 - POINTS_WEIGHT) * float((v["shaded"] @ query).max())
                          + POINTS_WEIGHT * float(v["points"][0] @ query) for name, v in by_name.items()}
            assert [h.name for h in hits] == sorted(everything, key=lambda n: -everything[n])[:5]
    assert found["embedded"] == found["milvus"]


def test_a_points_library_holds_one_vector_a_shape_and_refuses_mixing(tmp_path, store):
    rng = np.random.default_rng(13)
    db = _create(tmp_path, store, descriptor="points", points_encoder="points:abc:test-clip", points_path="/p.pt")
    record, _ = _entry("a.obj", "a", rng, asset=None)
    db.put_file(_state("a.obj", fmt="obj"), [(record, {"points": _unit(rng, 1)})])
    with pytest.raises(ValueError, match="stores points vectors"):
        db.put_file(_state("b.obj", fmt="obj"), [_entry("b.obj", "b", rng, asset=None)])
    assert [i for i, _ in db.search_vectors("points", _unit(rng, 1)[0], 3)] == [record.id]
    db.close()
    with pytest.raises(InvalidInputError, match="points descriptor, not views") as caught:
        _create(tmp_path, store)
    assert "--descriptor points" in caught.value.hint
    with pytest.raises(InvalidInputError, match="point encoder points:abc:test-clip, not points:def") as caught:
        _create(tmp_path, store, descriptor="points", points_encoder="points:def:test-clip")
    assert "/p.pt" in caught.value.hint
    with _create(tmp_path, store, descriptor="points", points_encoder="points:abc:test-clip", points_path="/q.pt") as db:
        assert db.points_path == "/q.pt" and db.count() == 1  # the checkpoint moved: the same content is accepted
    with open_store(_location(tmp_path, store), store) as db:
        assert db.descriptor == "points" and db.points_encoder_id == "points:abc:test-clip"


def test_a_views_library_made_before_descriptors_reads_as_views(tmp_path):
    """A database without descriptor meta rows (written by an earlier version) is a views library."""
    import sqlite3

    with _create(tmp_path, "embedded") as db:
        pass
    connection = sqlite3.connect(tmp_path / "lib" / "library.sqlite")
    connection.execute("DELETE FROM meta WHERE key IN ('descriptor', 'points_encoder', 'points_path')")
    connection.commit()
    connection.close()
    with open_store(_location(tmp_path, "embedded"), "embedded") as db:
        assert db.descriptor == "views" and db.kinds == ("shaded", "lines") and db.points_encoder_id == ""
    with pytest.raises(InvalidInputError, match="views descriptor, not both"):
        _create(tmp_path, "embedded", descriptor="both", points_encoder="points:abc:test-clip")
