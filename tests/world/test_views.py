"""Renders, sketches and photos of world shapes: shapes, ranges, determinism, masks that tell the truth."""

from __future__ import annotations

import pytest
import torch

from backend.world import CATEGORIES, PhotoConfig, make_shape, render_photo, render_sketches, render_views
from backend.world.views import random_background

SIZE = 64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def chair():
    return make_shape(3, "chair")


def test_views_are_batched_images_of_the_object_over_white(chair):
    images = render_views(chair, 3, SIZE, _gen())
    assert images.shape == (3, SIZE, SIZE, 3) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    corners = images[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, torch.ones_like(corners))
    for image in images:
        covered = (image < 0.97).any(-1).float().mean()
        assert 0.05 < float(covered) < 0.9
    assert not torch.equal(images[0], images[1])  # random viewpoints differ


def test_views_sketches_and_photos_are_deterministic_per_generator_seed(chair):
    assert torch.equal(render_views(chair, 2, SIZE, _gen(4)), render_views(chair, 2, SIZE, _gen(4)))
    assert torch.equal(render_sketches(chair, 2, SIZE, _gen(4)), render_sketches(chair, 2, SIZE, _gen(4)))
    a, b = render_photo(chair, SIZE, _gen(4)), render_photo(chair, SIZE, _gen(4))
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)


def test_sketches_are_mostly_paper_with_some_ink():
    for category in CATEGORIES:
        sketches = render_sketches(make_shape(11, category), 2, SIZE, _gen(1))
        assert sketches.shape == (2, SIZE, SIZE) and sketches.dtype == torch.float32
        assert 0.0 <= float(sketches.min()) and float(sketches.max()) <= 1.0
        for sketch in sketches:
            ink = float((sketch < 0.5).float().mean())
            assert 0.01 < ink < 0.35, (category, ink)
            assert float((sketch > 0.95).float().mean()) > 0.6


def test_sketch_damage_removes_strokes():
    from backend.world.views import SketchConfig

    shape = make_shape(2, "shelf")
    clean = SketchConfig(drop_fraction=(0.0, 0.0), jitter_px=(0.0, 0.0), width_px=(1.0, 1.0), thick_fraction=0.0,
                         ink=(1.0, 1.0))
    dropped = SketchConfig(drop_fraction=(0.5, 0.5), jitter_px=(0.0, 0.0), width_px=(1.0, 1.0), thick_fraction=0.0,
                           ink=(1.0, 1.0))
    full = render_sketches(shape, 1, SIZE, _gen(2), config=clean)
    some = render_sketches(shape, 1, SIZE, _gen(2), config=dropped)
    ink_full, ink_some = float((1 - full).sum()), float((1 - some).sum())
    assert 0.25 * ink_full < ink_some < 0.8 * ink_full
    assert bool(((1 - some) <= (1 - full) + 1e-5).all())  # dropping only ever removes ink


def test_photo_mask_is_the_visible_part_of_the_target(chair):
    occluded_somewhere = False
    for seed in range(6):
        photo = render_photo(chair, SIZE, _gen(seed), config=PhotoConfig(distractors=(2, 3)))
        assert photo.image.shape == (SIZE, SIZE, 3) and photo.mask.shape == (SIZE, SIZE)
        assert photo.mask.dtype == torch.bool and photo.mask.any()
        alone = photo.target_alpha > 0.5
        assert bool((photo.mask <= alone).all())  # never outside the target's own silhouette
        assert photo.visible_fraction >= PhotoConfig().min_visible
        assert float(photo.mask.sum()) >= PhotoConfig().min_visible * float(alone.sum()) - 1
        if photo.visible_fraction < 1.0:
            occluded_somewhere = True
    assert occluded_somewhere, "no distractor ever overlapped the target; the occlusion path went untested"


def test_photo_without_distractors_masks_exactly_the_target_alpha(chair):
    photo = render_photo(chair, SIZE, _gen(5), config=PhotoConfig(distractors=(0, 0)))
    assert photo.distractors == [] and photo.visible_fraction == 1.0
    assert torch.equal(photo.mask, photo.target_alpha > 0.5)
    # Inside the mask the photo shows the object, outside it the cluttered background.
    background = random_background(SIZE, _gen(99))
    assert float(background.std()) > 0.05


def test_bad_counts_and_sizes_are_rejected(chair):
    with pytest.raises(ValueError, match="count"):
        render_views(chair, 0, SIZE)
    with pytest.raises(ValueError, match="size"):
        render_sketches(chair, 1, 8)
    with pytest.raises(TypeError, match="make_shape"):
        render_views(chair.mesh, 1, SIZE)
