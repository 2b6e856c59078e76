"""The FAISS caches are updated in place after a small change (new shapes added, removed ones masked out),
rebuilt only when they must be, and never used when they do not match the database."""

from __future__ import annotations

import numpy as np
import pytest

from backend.retrieve.database import LibraryDB, ShapeRecord
from backend.retrieve.vector_index import VectorDelta, VectorIndex, VectorIndexConfig

DIM, VIEWS = 8, 2
CATEGORIES = ("box", "ball", "cone")
# HNSW from 20 rows on, so that a few shapes get an approximate index; ef_search above the row count makes
# its search visit every node, so on this small data it must agree with exact search.
HNSW = VectorIndexConfig(exact_below=20, ef_search=512)
EXACT = VectorIndexConfig(exact_below=10_000)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _record(i: int) -> ShapeRecord:
    category = CATEGORIES[i % len(CATEGORIES)]
    return ShapeRecord(relpath=f"{category}/s{i}.obj", sha256="0" * 64, size=1, mtime_ns=1, name=f"s{i}",
                       category=category, faces=12, vertices=8, bbox=[[0, 0, 0], [1, 1, 1]], thumbnail=b"png")


def _vectors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"shaded": _unit(rng.standard_normal((VIEWS, DIM))), "lines": _unit(rng.standard_normal((VIEWS, DIM)))}


def _create(path, config: VectorIndexConfig, shapes: int = 30, seed: int = 0) -> LibraryDB:
    db = LibraryDB.create(path, clip="tiny", encoder="clip:tiny", embed_dim=DIM, views_json='{"views": 2}',
                          vector_config=config)
    with db.batch():
        for i in range(shapes):
            db.put_shape(_record(i), _vectors(seed + i))
    return db


def _queries(n: int = 12) -> np.ndarray:
    return _unit(np.random.default_rng(99).standard_normal((n, DIM)))


def _fresh(db: LibraryDB, kind: str = "shaded") -> VectorIndex:
    """The index a rebuild from scratch would give."""
    _, vectors, labels = db.read_vectors(kind)
    return VectorIndex.build(vectors, labels, db.vector_config)


def _small_change(db: LibraryDB) -> set[int]:
    """Adds 3 shapes, removes 2 and replaces 1 (as the indexer does, one commit each); returns the ids gone."""
    ids = {r.relpath: r.id for r in db.shapes()}
    for i in range(100, 103):
        db.put_shape(_record(i), _vectors(i))
    gone = {ids[_record(3).relpath], ids[_record(4).relpath], ids[_record(7).relpath]}
    assert db.remove_shape(_record(3).relpath) and db.remove_shape(_record(4).relpath)
    db.put_shape(_record(7), _vectors(1007))  # changed content: a new id, the old one removed
    return gone


@pytest.mark.parametrize("config", [HNSW, EXACT], ids=["hnsw", "exact"])
def test_a_small_change_updates_the_cache_in_place_and_searches_like_a_rebuild(tmp_path, config):
    with _create(tmp_path / "db", config) as db:
        index = db.vector_index("shaded")
        assert index.type == ("hnsw" if config is HNSW else "exact") and index.stored_rows == 60
        stale = db.category_filter("shaded", "box")
        gone = _small_change(db)
        updated = db.vector_index("shaded")
        assert updated is index and updated.version == 1  # not rebuilt
        assert updated.origin == "built: no usable cache file"  # the first build's, when the database had none
        assert updated.stored_rows == 60 + 4 * VIEWS and updated.rows == 60 + (4 - 3) * VIEWS
        assert set(updated.removed.tolist()) == gone
        fresh = _fresh(db)
        assert fresh.rows == updated.rows
        live = set(db.shape_ids().tolist())
        for q in _queries():
            got, want = updated.search(q, 10), fresh.search(q, 10)
            # The same shapes in the same order, the same scores (but for FAISS's last bit: with several threads
            # its flat search sums in another order without a row filter than with one).
            assert [s for s, _ in got] == [s for s, _ in want]
            assert np.allclose([v for _, v in got], [v for _, v in want], rtol=0, atol=1e-6)
            everything = updated.search(q, 1000)
            assert {s for s, _ in everything} == live and not gone & {s for s, _ in everything}
            for category in CATEGORIES:
                allowed = db.category_filter("shaded", category)
                hits = updated.search(q, 1000, allowed)
                assert {s for s, _ in hits} == set(db.shape_ids(category).tolist())
                assert [s for s, _ in updated.search(q, 3, allowed)] == \
                    [s for s, _ in fresh.search(q, 3, np.isin(fresh.labels, db.shape_ids(category)))]
        # A filter made before the update is made again, and one passed by hand is refused, never misapplied.
        assert db.category_filter("shaded", "box") is not stale
        with pytest.raises(ValueError, match="the row mask has shape"):
            updated.search(_queries()[0], 3, stale)
        saved = db.generation
    # The cache file holds the updated index: a reopened database reads it and needs no update.
    with LibraryDB.open(tmp_path / "db", config) as db:
        reopened = db.vector_index("shaded")
        assert reopened.origin == "cache" and reopened.version == 0 and db.generation == saved
        assert reopened.stored_rows == 60 + 4 * VIEWS and set(reopened.removed.tolist()) == gone
        assert [updated.search(q, 10) for q in _queries()] == [reopened.search(q, 10) for q in _queries()]
        # A reopened database's next change is again an update of the loaded cache, not a rebuild.
        db.put_shape(_record(200), _vectors(200))
        again = db.vector_index("shaded")
        assert again is reopened and again.version == 1 and again.stored_rows == 60 + 5 * VIEWS


def test_removed_shapes_past_the_fraction_trigger_a_rebuild_in_the_background(tmp_path):
    config = VectorIndexConfig(exact_below=20, rebuild_removed_fraction=0.1)
    with _create(tmp_path / "db", config) as db:
        index = db.vector_index("lines")
        db.remove_shape(_record(0).relpath)
        db.remove_shape(_record(1).relpath)  # 4 of 60 rows: under 10%, masked out
        assert db.vector_index("lines") is index and index.removed_rows == 4 and index.stale is None
        db.remove_shape(_record(2).relpath)  # 6 of 60: still under
        db.remove_shape(_record(5).relpath)  # 8 of 60: past 10%
        # The index in use is updated and answers at once (the removed shapes masked), while a rebuild runs.
        serving = db.vector_index("lines")
        assert serving is index and index.removed_rows == 8 and index.stale.startswith("removed shapes hold 8 of 60")
        assert [s for s, _ in serving.search(_queries()[0], 30)] == [s for s, _ in _fresh(db, "lines").search(
            _queries()[0], 30)]
        db.wait_for_rebuilds(60)
        rebuilt = db.vector_index("lines")
        assert rebuilt is not index and rebuilt.origin.startswith("built in the background: removed shapes hold 8")
        assert rebuilt.removed_rows == 0 and rebuilt.stored_rows == 52 and rebuilt.type == "hnsw"
        assert rebuilt.stale is None


def test_crossing_the_exact_threshold_rebuilds_as_the_other_type(tmp_path):
    config = VectorIndexConfig(exact_below=70)
    with _create(tmp_path / "db", config) as db:
        assert db.vector_index("shaded").type == "exact"
        for i in range(100, 106):
            db.put_shape(_record(i), _vectors(i))  # 72 rows
        serving = db.vector_index("shaded")
        assert serving.type == "exact" and serving.stored_rows == 72 and serving.stale  # answers while HNSW builds
        db.wait_for_rebuilds(60)
        index = db.vector_index("shaded")
        assert index.type == "hnsw" and index.origin.startswith("built in the background: 72 rows need an hnsw")
        for i in range(100, 106):
            db.remove_shape(_record(i).relpath)  # 60 live rows: back to exact
        db.vector_index("shaded")
        db.wait_for_rebuilds(60)
        index = db.vector_index("shaded")
        assert index.type == "exact" and index.stored_rows == 60


def test_a_cache_from_a_crashed_write_or_another_database_is_never_used(tmp_path):
    with _create(tmp_path / "db", HNSW) as db:
        db.vector_index("shaded")
        cache = db.index_path("shaded")
        whole = cache.read_bytes()
        db.put_shape(_record(100), _vectors(100))
    # A write cut short: half a file in place (not the atomic rename the cache is written with) and a temp file.
    cache.write_bytes(whole[: len(whole) // 2])
    (cache.parent / (cache.name + ".123.tmp")).write_bytes(whole)
    with LibraryDB.open(tmp_path / "db", HNSW) as db:
        index = db.vector_index("shaded")
        assert index.origin == "built: no usable cache file" and index.stored_rows == 62
        assert [index.search(q, 5) for q in _queries()] == [_fresh(db).search(q, 5) for q in _queries()]
    # The cache of another database left in the folder: the same ids and row counts, other vectors.
    with _create(tmp_path / "other", HNSW, seed=500) as other:
        other.put_shape(_record(100), _vectors(100))
        other.vector_index("shaded")
        (tmp_path / "db" / "index_shaded.npz").write_bytes(other.index_path("shaded").read_bytes())
    with LibraryDB.open(tmp_path / "db", HNSW) as db:
        index = db.vector_index("shaded")
        assert index.origin.startswith("built: the cache does not match the database")
        assert [index.search(q, 5) for q in _queries()] == [_fresh(db).search(q, 5) for q in _queries()]
    # A cache from a newer generation than the database: another database's, not used.
    with _create(tmp_path / "small", HNSW, shapes=12) as small:
        (tmp_path / "small" / "index_shaded.npz").write_bytes((tmp_path / "db" / "index_shaded.npz").read_bytes())
    with LibraryDB.open(tmp_path / "small", HNSW) as small:
        assert small.vector_index("shaded").origin == "built: no usable cache file"


def test_a_read_only_folder_updates_in_memory(tmp_path, monkeypatch):
    with _create(tmp_path / "db", HNSW) as db:
        index = db.vector_index("shaded")

        def refuse(*args, **kwargs):
            raise PermissionError("read-only file system")

        monkeypatch.setattr(VectorIndex, "save", refuse)
        gone = _small_change(db)
        assert db.vector_index("shaded") is index and set(index.removed.tolist()) == gone
        assert not gone & {s for s, _ in index.search(_queries()[0], 1000)}


def test_catch_up_refuses_a_delta_that_does_not_fit_and_leaves_the_index_alone():
    vectors = _unit(np.random.default_rng(3).standard_normal((12, DIM)))
    labels = np.repeat(np.arange(1, 7), 2)
    index = VectorIndex.build(vectors, labels, VectorIndexConfig(exact_below=5))
    none = np.zeros((0, DIM), np.float32)
    ids, rows = np.arange(1, 7), np.full(6, 2)
    cases = {
        "ids or dimensions": VectorDelta(1, 5, ids, rows, none, np.zeros(0, np.int64)),
        "new ids not above": VectorDelta(1, 6, ids, rows, vectors[:2], np.array([6, 6])),
        "shapes it never held": VectorDelta(1, 6, np.arange(0, 7), np.full(7, 2), none, np.zeros(0, np.int64)),
        "views per shape differ": VectorDelta(1, 6, ids, np.full(6, 3), none, np.zeros(0, np.int64)),
        "shape 2's vectors differ": VectorDelta(1, 6, ids, rows, none, np.zeros(0, np.int64), {2: vectors[4:6]}),
    }
    for why, delta in cases.items():
        assert why in index.catch_up(delta)
        assert index.version == 0 and index.stored_rows == 12 and len(index.removed) == 0
    # One that fits: shape 2 removed, shape 7 added.
    assert index.catch_up(VectorDelta(2, 6, np.array([1, 3, 4, 5, 6]), np.full(5, 2), vectors[:2],
                                      np.array([7, 7]), {6: vectors[10:12]})) is None
    assert index.version == 1 and index.removed.tolist() == [2] and index.rows == 12 and index.stored_rows == 14
    # A shape removed before cannot come back under the same id.
    assert "removed ones back" in index.catch_up(VectorDelta(3, 7, np.arange(1, 8), np.full(7, 2), none,
                                                             np.zeros(0, np.int64)))


def test_bad_settings_and_filters_are_refused():
    with pytest.raises(ValueError, match="rebuild_removed_fraction must be between 0 and 1"):
        VectorIndexConfig(rebuild_removed_fraction=1.5)
    index = VectorIndex.build(_unit(np.ones((4, DIM))), np.array([1, 1, 2, 2]))
    with pytest.raises(ValueError, match="the row mask has shape"):
        index.search(_unit(np.ones(DIM)), 1, np.ones(3, bool))
