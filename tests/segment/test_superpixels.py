"""The offline proposer: SLIC superpixels grouped by colour recover flat-coloured regions as candidate masks."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import InvalidInputError
from backend.segment.superpixels import (
    METHOD_CHOSEN, METHOD_FALLBACK, SuperpixelConfig, group_superpixels, propose_superpixels,
)
from tests.segment.segment_helpers import disc_photo


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def test_groups_recover_each_flat_region():
    image, disc = disc_photo()
    proposals = propose_superpixels(image)
    assert proposals.method == METHOD_FALLBACK and proposals.masks.shape[1:] == image.shape[:2]
    assert proposals.masks.dtype == bool and np.all(proposals.scores == 1.0)
    top = np.zeros(image.shape[:2], bool)
    top[: image.shape[0] // 3] = True
    green = ~top & ~disc
    for region in (disc, top & ~disc, green):
        assert max(iou(m, region) for m in proposals.masks) > 0.9
    # The finest level is the superpixels themselves: they tile the image.
    assert proposals.labels.shape == image.shape[:2]
    assert propose_superpixels(image, fallback=False).method == METHOD_CHOSEN


def test_grouping_merges_close_colours_first():
    labels = np.repeat(np.arange(4)[None, :], 3, axis=0).repeat(5, axis=1)  # 4 vertical strips, 3x20
    lab = np.zeros((3, 20, 3))
    lab[..., 0] = np.repeat(np.array([10.0, 14.0, 60.0, 95.0]), 5)[None, :]  # L* of each strip
    fine, coarse, all_one = group_superpixels(labels, lab, (5.0, 40.0, 100.0))
    assert len(set(fine)) == 3 and fine[0] == fine[1]  # 10 and 14 are within 5
    assert len(set(coarse)) == 2 and coarse[2] == coarse[3] != coarse[0]  # 60 and 95 merge before 12 and 60
    assert len(set(all_one)) == 1


def test_bad_settings_are_refused():
    image, _ = disc_photo()
    for config, words in ((SuperpixelConfig(levels=(20.0, 10.0)), "ascending"),
                          (SuperpixelConfig(n_segments=1), "n_segments"),
                          (SuperpixelConfig(prompt_level=5), "prompt_level")):
        with pytest.raises(InvalidInputError, match=words):
            propose_superpixels(image, config)
