"""The random texture features at drawn positions (`RandomTextureFeatures.sample`) and the Gram and sliced
Wasserstein terms computed from them, which a restyle step uses instead of the full maps."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.stylize.texture import (GramTerm, RandomTextureFeatures, SlicedWassersteinTerm, TextureTermConfig,
                                     conv_rows, coverage_at, draw_positions, gather_patches)
from tests.stylize.restyle_helpers import pattern_tensor as image

SMALL = TextureTermConfig(mode="gram+swd", levels=3, channels=16, kernel=5, colour=True)


def test_patches_times_the_filters_are_the_convolution_at_those_positions():
    features = RandomTextureFeatures(SMALL)
    x = torch.rand(2, 3, 20, 24)
    index = torch.tensor([[0, 23, 24 * 19, 24 * 20 - 1, 250], [7, 100, 101, 300, 479]])  # corners and edges too
    rows = conv_rows(gather_patches(x, index, 5), features.weights[0], features.biases[0])
    full = torch.nn.functional.conv2d(x, features.weights[0], features.biases[0], padding=2).flatten(2)
    expected = full.gather(2, index[:, None, :].expand(-1, 16, -1)).transpose(1, 2)
    torch.testing.assert_close(rows, expected, atol=1e-5, rtol=1e-5)


def test_positions_are_drawn_evenly_and_only_where_the_filter_sees_the_object():
    alpha = torch.zeros(2, 1, 32, 32)
    alpha[0, :, 4:12, 20:30] = 1.0  # view 1 shows nothing
    weight = coverage_at(alpha, (32, 32), 2)
    index, has = draw_positions(weight, 500, torch.Generator().manual_seed(0))
    assert has.tolist() == [True, False] and index.shape == (2, 500)
    rows, cols = index[0] // 32, index[0] % 32
    assert ((rows >= 6) & (rows < 10) & (cols >= 22) & (cols < 28)).all()
    assert len(set(index[0].tolist())) == 4 * 6  # 500 draws over 24 positions: each is drawn
    # Stratified: the k-th draw lies in the k-th run of 24 / 500 positions (raster order), so draws are sorted.
    assert (index[0][1:] >= index[0][:-1]).all()


def test_sampled_rows_match_the_full_maps_and_carry_the_colour():
    features = RandomTextureFeatures(SMALL)
    images, alpha = torch.rand(1, 3, 40, 40), torch.ones(1, 1, 40, 40)
    samples = features.sample(images, alpha, 64, torch.Generator().manual_seed(1))
    maps = features(images)
    assert [rows.shape for rows, _ in samples] == [(1, 64, 19), (1, 64, 19), (1, 25, 19)]  # a level's quarter
    for (rows, has), fmap in zip(samples, maps):
        flat = fmap[0].flatten(1).T  # [h w, C]
        # Every drawn row is one of the map's rows (the features at some covered position).
        distance = torch.cdist(rows[0], flat, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
        assert has.all() and distance.max() < 1e-4


@pytest.mark.parametrize("term_class", [GramTerm, SlicedWassersteinTerm])
def test_terms_from_samples_estimate_the_full_terms(term_class):
    features = RandomTextureFeatures(SMALL)
    term = term_class(features, [image("checks")])
    full = torch.ones(2, 1, 64, 64)
    for render in (image("checks").expand(2, -1, -1, -1), image("stripes", 90.0).expand(2, -1, -1, -1)):
        sampled = float(term.of_samples(features.sample(render, full, 4096, torch.Generator().manual_seed(2))))
        exact = float(term(features(render), full))
        assert sampled == pytest.approx(exact, rel=0.25, abs=0.05), (term_class.__name__, sampled, exact)


def test_sampled_gradient_reaches_covered_pixels_only():
    features = RandomTextureFeatures(replace(SMALL, mode="gram+swd"))
    gram, swd = GramTerm(features, [image("checks")]), SlicedWassersteinTerm(features, [image("checks")])
    render = torch.rand(2, 3, 64, 64, requires_grad=True)
    alpha = torch.zeros(2, 1, 64, 64)
    alpha[0, :, 8:56, 8:56] = 1.0  # view 1 shows no object: it adds nothing
    samples = features.sample(render, alpha, 512, torch.Generator().manual_seed(3))
    (gram.of_samples(samples) + swd.of_samples(samples)).backward()
    grad = render.grad.abs().sum(dim=1)
    assert grad[0, 8:56, 8:56].sum() > 0 and grad[0, :8].sum() == 0 and grad[1].sum() == 0
