"""The seed's merge rule on synthetic masks with known overlaps: IoU constrained by the SAM mask, |S ∩ R| / |S|,
masks above 0.5 united; the relevance threshold modes; the best-single fallback and 'nothing found'."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import InvalidInputError
from backend.segment.merge import MergeConfig, constrained_iou, merge_masks, relevance_region


def box(shape, y0, y1, x0, x1) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


SHAPE = (20, 40)
R = box(SHAPE, 0, 20, 0, 20)  # the left half of the image
RELEVANCE = R.astype(np.float32)  # 1 on the left half, 0 on the right


def masks_with_known_overlaps() -> tuple[np.ndarray, list[float]]:
    inside = box(SHAPE, 5, 15, 5, 15)  # 100 px, all inside R
    three_quarters = box(SHAPE, 0, 10, 5, 25)  # 200 px, columns 5-19 inside: 150/200 = 0.75
    half = box(SHAPE, 10, 20, 10, 30)  # 200 px, 100 inside: exactly 0.5, not above it
    outside = box(SHAPE, 0, 20, 30, 40)  # 0 inside
    return np.stack([half, inside, outside, three_quarters]), [0.5, 1.0, 0.0, 0.75]


def test_constrained_iou_is_the_share_of_the_mask_inside_the_region():
    masks, expected = masks_with_known_overlaps()
    assert constrained_iou(masks, R).tolist() == pytest.approx(expected)
    # Constrained by S, unlike the plain IoU: a small mask wholly inside a large R scores 1, not |S| / |R|.
    small = box(SHAPE, 9, 11, 9, 11)
    assert constrained_iou(small[None], R)[0] == 1.0
    assert np.logical_and(small, R).sum() / np.logical_or(small, R).sum() == pytest.approx(4 / 400)
    assert constrained_iou(np.zeros((1, *SHAPE), bool), R)[0] == 0.0  # an empty mask scores 0, no division by zero
    assert constrained_iou(np.zeros((0, *SHAPE), bool), R).shape == (0,)


def test_masks_above_one_half_are_united_highest_first():
    masks, _ = masks_with_known_overlaps()
    merged = merge_masks(masks, RELEVANCE)
    assert merged.rule == "iou-merge"
    assert merged.selected.tolist() == [1, 3]  # inside (1.0), then three quarters (0.75); 0.5 is not above 0.5
    assert merged.iou_merge == [1.0, 0.75]
    assert np.array_equal(merged.mask, masks[1] | masks[3])
    assert np.array_equal(merged.region, R)
    looser = merge_masks(masks, RELEVANCE, MergeConfig(iou_threshold=0.4))
    assert looser.selected.tolist() == [1, 3, 0]


def test_best_single_mask_when_none_passes_and_nothing_when_none_overlaps():
    weak = np.stack([box(SHAPE, 0, 10, 10, 30), box(SHAPE, 0, 20, 14, 40)])  # 0.5 and 6/26
    merged = merge_masks(weak, RELEVANCE)
    assert merged.rule == "best-single" and merged.selected.tolist() == [0] and merged.iou_merge == [0.5]
    assert np.array_equal(merged.mask, weak[0])
    strict = merge_masks(weak, RELEVANCE, MergeConfig(fallback_iou=1.01))  # the seed's rule, no fallback
    assert strict.rule == "none" and not strict.mask.any() and strict.iou_merge == []
    outside = merge_masks(box(SHAPE, 0, 20, 30, 40)[None], RELEVANCE)
    assert outside.rule == "none" and not outside.mask.any()
    assert merge_masks(np.zeros((0, *SHAPE), bool), RELEVANCE).rule == "none"


def test_specks_below_the_minimum_area_are_ignored():
    speck = box(SHAPE, 2, 3, 2, 3)  # 1 px of 800, inside R
    merged = merge_masks(np.stack([speck, box(SHAPE, 5, 15, 5, 15)]), RELEVANCE,
                         MergeConfig(min_area_fraction=0.01))
    assert merged.selected.tolist() == [1] and merged.ciou[0] == 0.0


def test_relevance_threshold_modes():
    ramp = np.tile(np.linspace(0.0, 0.8, 9, dtype=np.float32), (2, 1))  # 0, 0.1, ..., 0.8
    # relative (default): at least half the maximum, 0.4
    assert relevance_region(ramp)[0].tolist() == [False] * 4 + [True] * 5
    assert relevance_region(ramp, MergeConfig(relevance_threshold=0.75))[0].sum() == 3  # >= 0.6
    # absolute: at least the value itself
    assert relevance_region(ramp, MergeConfig(threshold_mode="absolute", relevance_threshold=0.7))[0].sum() == 2
    # mean + std: 0.4 + 0.258 -> 0.7 and 0.8
    assert relevance_region(ramp, MergeConfig(threshold_mode="mean+std"))[0].sum() == 2
    # threshold 0 keeps every positive pixel, never the zeros
    assert relevance_region(ramp, MergeConfig(relevance_threshold=0.0))[0].sum() == 8
    # an all-zero map, or one whose peak is below min_peak, has no region: the prompt is not in the image
    assert not relevance_region(np.zeros((4, 4), np.float32)).any()
    assert not relevance_region(ramp, MergeConfig(min_peak=0.9)).any()
    assert not relevance_region(np.full((4, 4), np.nan, np.float32)).any()


def test_bad_merge_settings_are_refused():
    for config, words in ((MergeConfig(threshold_mode="otsu"), "threshold_mode"),
                          (MergeConfig(relevance_threshold=1.5), "relevance_threshold"),
                          (MergeConfig(iou_threshold=float("nan")), "iou_threshold")):
        with pytest.raises(InvalidInputError, match=words):
            merge_masks(np.zeros((1, *SHAPE), bool), RELEVANCE, config)
    with pytest.raises(ValueError, match="do not match"):
        constrained_iou(np.zeros((1, 5, 5), bool), R)
