"""The sketch side of a split as a search sees it: framing, the index's line drawings, drawn sketches, stroke
augmentation; and the composition protocol's gallery and its tie-aware recall."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from taskformer_helpers import one_thread, tiny_world  # noqa: F401  (fixture)

from backend.errors import InvalidInputError
from backend.retrieve.composition import CompositionConfig, build_composition, evaluate_composition, tie_recall
from backend.retrieve.data import load_split, to_float
from backend.retrieve.sketch_domain import (SketchAugmentConfig, augment_sketches, cached_drawn_sketches,
                                            cached_index_lines, frame_sketches)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    return load_split(tiny_world(tmp_path_factory.mktemp("world") / "data", shapes=8, views=1, photos=0), "all")


def _ink_box(image: torch.Tensor) -> tuple[int, int, int, int]:
    ink = image[..., 0] < 128
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return rows[0], rows[-1], cols[0], cols[-1]


def test_frame_sketches_centres_the_ink_at_the_index_share():
    image = torch.full((1, 32, 32, 3), 255, dtype=torch.uint8)
    image[0, 2:8, 3:9] = 0  # a small mark in the top-left corner
    framed = frame_sketches(image)
    top, bottom, left, right = _ink_box(framed[0])
    assert abs((top + bottom) / 2 - 15.5) <= 1.5 and abs((left + right) / 2 - 15.5) <= 1.5
    assert 0.7 * 32 <= max(bottom - top, right - left) + 1 <= 0.9 * 32
    blank = torch.full((1, 32, 32, 3), 255, dtype=torch.uint8)
    assert torch.equal(frame_sketches(blank), blank)  # no ink: kept as it is


def test_index_lines_are_the_index_drawings_and_are_cached(split, tmp_path: Path):
    lines = cached_index_lines(split, cache_dir=tmp_path)
    assert lines.shape == (len(split), 6, split.image_size, split.image_size, 3) and lines.dtype == torch.uint8
    assert (lines < 128).flatten(1).any(1).all()  # every shape has ink
    assert len(list(tmp_path.glob("lines_*.pt"))) == 1
    assert torch.equal(cached_index_lines(split, cache_dir=tmp_path), lines)


def test_drawn_sketches_are_new_viewpoints_and_seeded(split, tmp_path: Path):
    drawn = cached_drawn_sketches(split, 2, seed=0, cache_dir=tmp_path)
    assert drawn.shape == (len(split), 2, split.image_size, split.image_size, 3)
    assert not torch.equal(drawn[:, 0], drawn[:, 1])
    other = cached_drawn_sketches(split, 2, seed=1, cache_dir=tmp_path)
    assert not torch.equal(drawn, other)
    assert torch.equal(cached_drawn_sketches(split, 2, seed=0, cache_dir=tmp_path / "again"), drawn)


def test_a_missing_mesh_is_named(split, tmp_path: Path):
    from dataclasses import replace

    broken = replace(split, files=["library/missing.glb"] + split.files[1:])
    with pytest.raises(InvalidInputError, match="missing.glb"):
        cached_index_lines(broken, cache_dir=tmp_path)


def test_stroke_augmentation_is_seeded_and_keeps_paper_white(split):
    sketches = to_float(frame_sketches(split.sketches[:, 0]))
    one = augment_sketches(sketches, torch.Generator().manual_seed(3))
    two = augment_sketches(sketches, torch.Generator().manual_seed(3))
    assert torch.equal(one, two) and one.shape == sketches.shape
    assert float(one.min()) >= 0 and float(one.max()) <= 1
    assert not torch.equal(one, augment_sketches(sketches, torch.Generator().manual_seed(4)))
    blank = torch.ones(2, 3, 32, 32)
    assert torch.allclose(augment_sketches(blank, torch.Generator().manual_seed(0)), blank)
    off = SketchAugmentConfig(width_change=0.0, erase=0.0, warp=0.0)
    assert torch.allclose(augment_sketches(sketches, torch.Generator().manual_seed(3), off), sketches, atol=1e-5)
    erase_all = SketchAugmentConfig(width_change=0.0, erase=1.0, erase_patches=(3, 3), warp=0.0)
    erased = augment_sketches(sketches, torch.Generator().manual_seed(3), erase_all)
    assert float((1 - erased).sum()) < float((1 - sketches).sum())  # partial strokes: less ink
    with pytest.raises(ValueError, match="erase"):
        SketchAugmentConfig(erase=1.5)


def test_tie_recall_counts_ties_as_a_random_order():
    scores = torch.tensor([[0.9, 0.9, 0.9, 0.1],    # own shape (0) tied with two others: 1/3 at R@1
                           [0.2, 0.8, 0.1, 0.1],    # a clear hit
                           [0.9, 0.1, 0.5, 0.1]])   # one above it: a miss at R@1, a hit at R@2
    recall = tie_recall(scores, torch.tensor([0, 1, 2]), ks=(1, 2))
    assert recall["r1"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert recall["r2"] == pytest.approx((2 / 3 + 1 + 1) / 3)


def test_composition_twins_match_the_sketch_or_the_text_alone():
    from backend.models import load_clip
    from backend.retrieve.evaluate import ZeroShot

    config = CompositionConfig(targets_per_category=1, sketch_twins=1, text_twins=1, views=1, sketches=1, size=32)
    data = build_composition(config)
    assert len(data.texts) == 8 and len(data.roles) == 24 and data.roles[:3] == ["target", "sketch twin", "text twin"]
    for t in data.targets.tolist():
        assert torch.equal(data.lines[t], data.lines[t + 1])  # the sketch twin has the target's geometry
        assert not torch.equal(data.views[t], data.views[t + 1])  # in another colour or pattern
        assert not torch.equal(data.lines[t], data.lines[t + 2])  # the text twin another geometry
    assert all(len(text.split()) <= 8 for text in data.texts)  # colour and pattern only, no attributes
    recall = evaluate_composition(ZeroShot(load_clip("domain")), data, ks=(1,))
    # A sketch cannot tell a target from its sketch twin: at most 1 / 2 at R@1, whatever the encoder.
    assert recall["sketch"]["r1"] <= 0.5 + 1e-6
    assert set(recall) == {"sketch", "text", "sketch+text", "chance"}
