"""The sliced Wasserstein term on the random texture features (backend/stylize/texture.py) and the amplitude-spectrum
term on whole views (backend/stylize/spectrum.py): zero at the style, lower as a render approaches it, repeatable
for a seed, telling patterns apart; both run in a tiny restyle; bad settings refused with the fix named."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.errors import InvalidInputError
from backend.geometry.primitives import textured_cube
from backend.models.clip import load_clip
from backend.stylize.pattern_check import synthetic_pattern
from backend.stylize.restyle import restyle
from backend.stylize.spectrum import SpectrumTerm, fit, window
from backend.stylize.texture import RandomTextureFeatures, SlicedWassersteinTerm, TextureTermConfig
from tests.stylize.restyle_helpers import pattern_tensor as image, tiny_restyle_config

SMALL = TextureTermConfig(mode="swd", levels=3, channels=16, kernel=5, colour=True, slices=16)


def disc(size: int = 64, radius: float = 28.0, views: int = 1) -> torch.Tensor:
    """[views, 1, size, size] coverage of a centred disc (an object's silhouette)."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    inside = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2).float()
    return inside.expand(views, 1, size, size).clone()


def blend(t: float, pattern: str = "checks") -> torch.Tensor:
    """The style pattern faded toward its mean colour: t = 1 is the style, 0 a plain render."""
    style = image(pattern)
    return style.mean(dim=(2, 3), keepdim=True) + t * (style - style.mean(dim=(2, 3), keepdim=True))


# ----------------------------------------------------------------------------------------- sliced Wasserstein


def test_swd_is_zero_at_the_style_and_lowers_as_the_render_approaches_it():
    features = RandomTextureFeatures(SMALL)
    term = SlicedWassersteinTerm(features, [image("checks")])
    full = torch.ones(1, 1, 64, 64)
    assert float(term(features(image("checks")), full)) < 1e-6
    values = [float(term(features(blend(t)), full)) for t in (0.0, 0.3, 0.6, 0.9)]
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_swd_is_repeatable_for_a_seed_and_draws_new_directions_each_call():
    render = torch.rand(2, 3, 64, 64)
    alpha = disc(views=2)
    runs = []
    for _ in range(2):
        features = RandomTextureFeatures(SMALL)
        term = SlicedWassersteinTerm(features, [image("dots")])
        runs.append([float(term(features(render), alpha)) for _ in range(3)])
    assert runs[0] == runs[1]  # the same seed: the same directions, call by call
    assert len(set(runs[0])) == 3  # fresh directions every call
    other = RandomTextureFeatures(replace(SMALL, seed=5))
    assert float(SlicedWassersteinTerm(other, [image("dots")])(other(render), alpha)) != runs[0][0]


def test_swd_tells_patterns_apart_and_ignores_phase():
    features = RandomTextureFeatures(SMALL)
    term = SlicedWassersteinTerm(features, [image("stripes")])
    full = torch.ones(1, 1, 64, 64)
    shifted = float(term(features(torch.roll(image("stripes"), 5, dims=-2)), full))
    for other in (image("stripes", 90.0), image("checks"), image("dots")):
        assert shifted < 0.5 * float(term(features(other), full))


# ----------------------------------------------------------------------------------------- amplitude spectrum


def test_spectrum_is_zero_at_the_style_one_when_plain_and_lowers_on_the_way():
    term = SpectrumTerm([image("checks")])
    alpha = disc()
    assert float(term(image("checks"), alpha)) < 1e-6
    values = [float(term(blend(t), alpha)) for t in (0.0, 0.3, 0.6, 0.9)]
    assert values[0] == pytest.approx(1.0, abs=1e-5)  # a plain view has none of the style's spectrum
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_spectrum_ignores_where_the_pattern_lies_but_not_its_direction_or_kind():
    term = SpectrumTerm([image("waves", size=128)])
    alpha = disc()
    shifted = float(term(image("waves", size=128)[..., 7:71, 3:67], alpha))
    for other in (image("waves", 90.0), image("stripes"), image("checks"), image("dots")):
        assert shifted < 0.5 * float(term(other, alpha))


def test_spectrum_is_deterministic_and_reaches_covered_pixels_only():
    term = SpectrumTerm([image("dots")])
    render = torch.rand(2, 3, 64, 64, requires_grad=True)
    alpha = disc(views=2)
    alpha[1] = 0.0  # view 1 shows no object: it adds nothing
    loss = term(render, alpha)
    assert float(loss.detach()) == float(term(render, alpha).detach())
    loss.backward()
    grad = render.grad.abs().sum(dim=1)
    inside = window(alpha)[0, 0] > 0
    assert grad[0][inside].sum() > 0 and grad[0][~inside].sum() == 0 and grad[1].sum() == 0


def test_spectrum_tiles_small_styles_and_crops_large_ones():
    style = image("checks", size=32)
    assert tuple(fit(style, (64, 48)).shape) == (1, 3, 64, 48)
    assert torch.equal(fit(style, (64, 64))[..., :32, :32], style)
    assert tuple(fit(image("checks", size=128), (64, 64)).shape) == (1, 3, 64, 64)


def test_spectrum_refuses_what_it_cannot_take():
    with pytest.raises(InvalidInputError, match="no style image"):
        SpectrumTerm([])
    with pytest.raises(InvalidInputError, match=r"\[B, 3, H, W\]"):
        SpectrumTerm([image("dots")])(torch.rand(1, 4, 64, 64), disc())


# ----------------------------------------------------------------------------------------- in a run, settings


def test_a_tiny_restyle_with_swd_and_spectrum_runs_on_cpu():
    texture = replace(SMALL, mode="gram+swd", levels=2, kernel=5, spectrum_weight=1e3)
    config = tiny_restyle_config(steps=3, texture=texture, style_levels=3)
    result = restyle(textured_cube(), [synthetic_pattern("waves", 64, 16.0)], load_clip("tiny-rn"), config)
    for name in ("loss_gram", "loss_swd", "loss_spectrum"):
        assert name in result.metrics_first and np.isfinite(result.metrics_last[name])
    assert np.abs(result.style_texture).max() > 0 and np.isfinite(result.losses).all()


@pytest.mark.parametrize("change, match", [
    ({"swd_weight": -1.0}, "swd_weight"), ({"swd_weight": float("nan")}, "swd_weight"),
    ({"swd_weight": True}, "swd_weight"),
    ({"slices": 0}, "slices"), ({"slices": 2.5}, "slices"),
    ({"spectrum_weight": -1.0}, "spectrum_weight"), ({"spectrum_weight": "strong"}, "spectrum_weight"),
])
def test_bad_distribution_settings_are_refused(change, match):
    with pytest.raises(InvalidInputError, match=match):
        replace(SMALL, **change).check()


def test_the_learning_rate_decays_to_its_end_fraction_by_the_last_step():
    config = tiny_restyle_config(steps=4, learning_rate=2e-2, learning_rate_end=0.1)
    result = restyle(textured_cube(), [synthetic_pattern("dots", 64, 16.0)], load_clip("tiny-rn"), config)
    assert result.metrics_first["learning_rate"] == pytest.approx(2e-2)
    assert result.metrics_last["learning_rate"] == pytest.approx(2e-3)
    constant = restyle(textured_cube(), [synthetic_pattern("dots", 64, 16.0)], load_clip("tiny-rn"),
                       replace(config, learning_rate_end=1.0))
    assert constant.metrics_last["learning_rate"] == pytest.approx(2e-2)


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5, True, "slow"])
def test_a_bad_learning_rate_end_is_refused(value):
    with pytest.raises(InvalidInputError, match="learning_rate_end"):
        tiny_restyle_config(learning_rate_end=value).check()
