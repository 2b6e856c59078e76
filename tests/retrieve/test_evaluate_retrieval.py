"""Recall@K evaluation: ranks on hand-made tensors, the protocol on a tiny world, the domain CLIP's meaning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from taskformer_helpers import one_thread, tiny_world  # noqa: F401  (fixture)

from backend.errors import InvalidInputError
from backend.models import load_clip
from backend.retrieve.data import load_split
from backend.retrieve.evaluate import MODES, ZeroShot, evaluate, format_table, ranks, recall_at
from backend.retrieve.train import TrainConfig, build_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_world(tmp_path_factory.mktemp("world") / "data", photos=2)


def test_ranks_and_recall_on_hand_made_scores():
    gallery = torch.eye(4)
    queries = F.normalize(torch.tensor([[1.0, 0.1, 0, 0],    # shape 0 first: rank 0
                                        [0.9, 0.5, 0, 0],    # shape 1 behind shape 0: rank 1
                                        [0.3, 0.2, 0.1, 0.9],  # shape 2 last: rank 3
                                        [0, 0, 0, 1.0]]), dim=-1)
    rank = ranks(queries, gallery, torch.tensor([0, 1, 2, 3]))
    assert rank.tolist() == [0, 1, 3, 0]
    assert recall_at(rank, (1, 2, 4)) == {"r1": 0.5, "r2": 0.75, "r4": 1.0}


def test_evaluate_follows_the_protocol(world: Path):
    test = load_split(world, "test")
    result = evaluate(ZeroShot(load_clip("tiny")), test)
    n = len(test)
    assert result.gallery == n == 8
    assert list(result.recall) == list(MODES)
    assert result.queries == {"sketch": 2 * n, "text": n, "sketch+text": 2 * n, "photo": 2 * n}
    assert result.chance == {"r1": 1 / 8, "r5": 5 / 8, "r10": 1.0}
    for values in result.recall.values():
        assert 0 <= values["r1"] <= values["r5"] <= values["r10"] <= 1
        assert values["r10"] == 1.0  # K >= gallery size
    table = format_table({"tiny": result})
    assert "sketch+text" in table and "chance" in table
    assert set(result.to_dict()) == {"recall", "chance", "gallery", "queries", "mean_rank"}


def test_untrained_taskformer_scores_as_the_zero_shot_baseline(world: Path):
    train, test = load_split(world, "train"), load_split(world, "test")
    clip = load_clip("tiny-rn")
    model = build_model(clip, train, TrainConfig(decoder_layers=1, decoder_width=32))
    assert evaluate(model, test).recall == evaluate(ZeroShot(clip), test).recall


def test_sketches_are_scored_against_the_index_drawings_when_given(world: Path, tmp_path: Path):
    """Meaning: the domain CLIP finds a sketch's shape better among line drawings (the index's "lines" vectors,
    what a search compares a sketch with) than among shaded views; the old scoring stays as "sketch/views"."""
    from backend.retrieve.evaluate import SKETCH_VS_VIEWS
    from backend.retrieve.sketch_domain import cached_index_lines

    test = load_split(world, "test")
    lines = cached_index_lines(test, cache_dir=tmp_path)
    plain = evaluate(ZeroShot(load_clip("domain")), test)
    result = evaluate(ZeroShot(load_clip("domain")), test, index_lines=lines)
    assert list(result.recall) == ["sketch", SKETCH_VS_VIEWS, "text", "sketch+text", "photo"]
    assert result.recall[SKETCH_VS_VIEWS] == plain.recall["sketch"]
    assert result.recall["text"] == plain.recall["text"]
    assert result.mean_rank["sketch"] < result.mean_rank[SKETCH_VS_VIEWS]
    with pytest.raises(ValueError, match="index_lines must be"):
        evaluate(ZeroShot(load_clip("domain")), test, index_lines=lines[:2])


def test_photo_mode_is_left_out_without_photos(tmp_path: Path):
    data = load_split(tiny_world(tmp_path / "nophotos", photos=0), "test")
    result = evaluate(ZeroShot(load_clip("tiny")), data)
    assert list(result.recall) == ["sketch", "text", "sketch+text"]


def test_domain_clip_zero_shot_finds_shapes_far_above_chance(world: Path):
    """Meaning, not plumbing: the domain CLIP retrieves held-out world shapes from their captions and sketches."""
    result = evaluate(ZeroShot(load_clip("domain")), load_split(world, "test"))
    assert result.recall["text"]["r1"] >= 0.75  # chance 0.125
    assert result.recall["sketch+text"]["r1"] >= 0.5
    assert result.recall["sketch"]["r5"] > result.chance["r5"]


def test_bad_data_is_a_clear_error(tmp_path: Path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_split(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no world dataset"):
        load_split(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        load_split(tmp_path / "file.txt")
    one = tiny_world(tmp_path / "one", shapes=1)  # a single shape is never held out: the test split is empty
    with pytest.raises(InvalidInputError, match="'test' split .* holds no shapes"):
        load_split(one, "test")
    with pytest.raises(InvalidInputError, match="split must be"):
        load_split(one, "val")
    sketchless = tiny_world(tmp_path / "sketchless", shapes=2, views=1)
    manifest = json.loads((sketchless / "manifest.json").read_text())
    for record in manifest["shapes"]:
        record["sketches"] = []
    (sketchless / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidInputError, match="have no sketches"):
        load_split(sketchless, "all")
    with pytest.raises(ValueError, match="at least 2"):
        data = load_split(one, "all", need=("views",))
        evaluate(ZeroShot(load_clip("tiny")), data)
