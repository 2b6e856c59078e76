"""The random multi-scale texture features and their Gram term (backend/stylize/texture.py), the clamp that lets
saturated texels come back, and a tiny restyle run with the term on; bad settings refused with the fix named."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.errors import InvalidInputError
from backend.geometry.primitives import textured_cube
from backend.models.clip import load_clip
from backend.stylize.pattern_check import synthetic_pattern
from backend.stylize.restyle import ReturningClamp, preset, restyle
from backend.stylize.texture import (CombinedFeatures, GramTerm, RandomTextureFeatures, SlicedWassersteinTerm,
                                     TextureTermConfig, coverage_at, masked_gram)
from tests.stylize.restyle_helpers import pattern_tensor as image, tiny_restyle_config

SMALL = TextureTermConfig(mode="gram", levels=3, channels=16, kernel=5)


def test_features_have_one_map_per_level_at_halving_sizes():
    features = RandomTextureFeatures(SMALL)
    maps = features(torch.rand(2, 3, 64, 48))
    assert [tuple(m.shape) for m in maps] == [(2, 16, 64, 48), (2, 16, 32, 24), (2, 16, 16, 12)]
    assert all((m >= 0).all() for m in maps)  # ReLU maps
    assert features.layers == ("level0", "level1", "level2") and features.min_side == 20


def test_the_seed_fixes_the_feature_space():
    x = torch.rand(1, 3, 32, 32)
    same = RandomTextureFeatures(SMALL)(x), RandomTextureFeatures(SMALL)(x)
    other = RandomTextureFeatures(replace(SMALL, seed=1))(x)
    assert all(torch.equal(a, b) for a, b in zip(*same))
    assert not torch.allclose(same[0][0], other[0])


def test_features_refuse_images_they_cannot_take():
    features = RandomTextureFeatures(SMALL)
    with pytest.raises(InvalidInputError, match=r"\[B, 3, H, W\]"):
        features(torch.rand(3, 32, 32))
    with pytest.raises(InvalidInputError, match="at least 20 px"):
        features(torch.rand(1, 3, 16, 64))


def test_masked_gram_counts_only_the_weighted_pixels():
    features = torch.randn(2, 4, 6, 6)
    full = masked_gram(features, torch.ones(2, 1, 6, 6))
    flat = features.flatten(2)
    assert torch.allclose(full, flat @ flat.transpose(1, 2) / 36, atol=1e-5)
    weight = torch.zeros(2, 1, 6, 6)
    weight[..., :3] = 1.0
    left = features[..., :3].flatten(2)
    assert torch.allclose(masked_gram(features, weight), left @ left.transpose(1, 2) / 18, atol=1e-5)
    # Whatever lies outside the mask does not matter.
    changed = features.clone()
    changed[..., 3:] = 100.0
    assert torch.allclose(masked_gram(changed, weight), masked_gram(features, weight))


def test_coverage_is_eroded_by_the_filter_reach():
    alpha = torch.zeros(1, 1, 32, 32)
    alpha[..., 8:24, 8:24] = 1.0
    assert coverage_at(alpha, (32, 32), 0).sum() == 256
    assert coverage_at(alpha, (32, 32), 2).sum() == 12 * 12
    assert coverage_at(alpha, (16, 16), 1).sum() == 6 * 6


def test_gram_term_is_zero_on_the_style_itself_and_tells_angles_apart():
    features = RandomTextureFeatures(SMALL)
    term = GramTerm(features, [image("stripes")])
    full = torch.ones(1, 1, 64, 64)
    assert float(term(features(image("stripes")), full)) < 1e-6
    shifted = torch.roll(image("stripes"), 5, dims=-2)  # same stripes, other phase: same statistics
    turned = image("stripes", 90.0)
    assert float(term(features(shifted), full)) < 0.2 * float(term(features(turned), full))


@pytest.mark.parametrize("term_class", [GramTerm, SlicedWassersteinTerm])
def test_texture_term_gradient_reaches_covered_pixels_only(term_class):
    features = RandomTextureFeatures(SMALL)
    term = term_class(features, [image("checks")])
    render = torch.rand(2, 3, 64, 64, requires_grad=True)
    alpha = torch.zeros(2, 1, 64, 64)
    alpha[0, :, 8:56, 8:56] = 1.0  # view 1 shows no object: it adds nothing
    loss = term(features(render), alpha)
    loss.backward()
    grad = render.grad.abs().sum(dim=1)
    assert torch.isfinite(loss) and loss > 0
    assert grad[0, 8:56, 8:56].sum() > 0 and grad[0, :4].sum() == 0 and grad[1].sum() == 0


@pytest.mark.parametrize("term_class", [GramTerm, SlicedWassersteinTerm])
def test_texture_term_needs_a_style_image(term_class):
    with pytest.raises(InvalidInputError, match="no style image"):
        term_class(RandomTextureFeatures(SMALL), [])


def test_combined_features_put_both_banks_side_by_side():
    first, second = RandomTextureFeatures(SMALL), RandomTextureFeatures(replace(SMALL, levels=1, seed=3))
    both = CombinedFeatures(first, second)
    maps = both(torch.rand(1, 3, 32, 32))
    assert len(maps) == 4 and both.layers == ("level0", "level1", "level2", "level0")


def test_the_clamp_lets_out_of_range_values_come_back_but_not_drift_further():
    x = torch.tensor([-0.5, -0.5, 0.5, 1.5, 1.5], requires_grad=True)
    y = ReturningClamp.apply(x)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    # Gradients: descent moves x by -grad: back toward [0, 1] passes, further away is cut.
    y.backward(torch.tensor([-1.0, 1.0, 1.0, 1.0, -1.0]))
    assert torch.equal(x.grad, torch.tensor([-1.0, 0.0, 1.0, 1.0, 0.0]))


def test_a_tiny_restyle_with_the_gram_term_runs_on_cpu():
    config = tiny_restyle_config(steps=3, texture=SMALL, style_levels=3)
    result = restyle(textured_cube(), [synthetic_pattern("stripes", 64, 16.0)], load_clip("tiny-rn"), config)
    assert "loss_gram" in result.metrics_first and np.isfinite(result.metrics_last["loss_gram"])
    assert np.abs(result.style_texture).max() > 0 and np.isfinite(result.losses).all()


@pytest.mark.parametrize("change, match", [
    ({"mode": "vgg"}, "unknown texture mode"), ({"levels": 0}, "texture levels"), ({"levels": True}, "texture levels"),
    ({"channels": 2}, "texture channels"), ({"kernel": 4}, "odd integer"), ({"kernel": 1}, "odd integer"),
    ({"gram_weight": -1.0}, "gram_weight"), ({"gram_weight": float("nan")}, "gram_weight"),
    ({"gram_weight": "high"}, "gram_weight"),
])
def test_bad_texture_settings_are_refused(change, match):
    with pytest.raises(InvalidInputError, match=match):
        replace(SMALL, **change).check()


@pytest.mark.parametrize("change, match", [
    ({"style_levels": 0}, "style_levels"), ({"style_levels": 2.0}, "style_levels"),
    ({"style_levels": 8, "texture_size": 256}, "style_levels"),
    ({"texture": "gram"}, "TextureTermConfig"),
    ({"texture": TextureTermConfig(mode="gram", levels=5, kernel=9), "render_size": 128}, "at least 144 px"),
])
def test_bad_restyle_texture_settings_are_refused(change, match):
    with pytest.raises(InvalidInputError, match=match):
        preset("draft", **change).check()


@pytest.mark.parametrize("quality", ["draft", "standard"])
def test_the_presets_run_the_gram_term_within_their_renders(quality):
    config = preset(quality)
    config.check()  # the filters' reach fits the renders
    assert config.texture.grams and config.texture.colour and config.style_levels > 1
    assert not preset("high").texture.grams  # the paper's settings stay the paper's


def test_colour_channels_join_every_level():
    x = torch.rand(1, 3, 32, 32)
    maps = RandomTextureFeatures(replace(SMALL, colour=True))(x)
    assert [m.shape[1] for m in maps] == [19, 19, 19]
    assert torch.allclose(maps[1][:, 16:], 2.0 * torch.nn.functional.avg_pool2d(x, 2) - 1.0, atol=1e-6)


def test_a_preset_shrunk_below_its_texture_term_keeps_the_levels_that_fit():
    from backend.stylize.restyle import preset

    full = preset("draft")
    assert full.texture.mode == "gram+swd" and full.texture.levels == 4
    small = preset("draft", render_size=64, texture_size=64)  # 9 px x 2^3 = 72 px does not fit: 3 levels (36 px)
    assert small.texture.levels == 3 and small.texture.mode == "gram+swd"
    assert preset("draft", render_size=32, texture_size=64).texture.levels == 2
    assert preset("draft").texture.levels == 4  # the preset itself is unchanged
    # A term the caller gives is kept as given, and refused when it does not fit.
    with pytest.raises(InvalidInputError, match="texture term"):
        preset("draft", render_size=64, texture=full.texture).check()
    small.check()
