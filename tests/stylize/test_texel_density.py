"""The static mipmap choice of the style texture's levels (backend/stylize/texel_density.py)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.geometry.mesh import Mesh
from backend.models.clip import load_clip
from backend.stylize.restyle import restyle
from backend.stylize.texel_density import level_weights, log2_texels_per_pixel, pixels_per_unit
from tests.stylize.restyle_helpers import pattern_image, tiny_restyle_config

SIZE = 64


def two_charts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two unit squares side by side in space. The left one's UV chart fills the left half of the texture
    (32 x 64 texels, squeezed), the right one's a small 8 x 8 texel corner of the right half."""
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    vertices = np.concatenate([square, square + [2, 0, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], np.int32)
    uv = np.array([[0, 0], [0.5, 0], [0.5, 1], [0, 1],
                   [0.75, 0.75], [0.875, 0.75], [0.875, 0.875], [0.75, 0.875]], np.float32)
    return vertices, faces, uv


def test_texels_per_pixel_is_the_ratio_of_texel_to_pixel_areas():
    vertices, faces, uv = two_charts()
    log2k = log2_texels_per_pixel(vertices, faces, uv, SIZE, pixel_density=8.0)
    # Left: 32 x 64 = 2048 texels on 8 x 8 = 64 pixels -> k = sqrt(32); right: 64 texels on 64 pixels -> k = 1.
    np.testing.assert_allclose(log2k[:4], 0.5 * np.log2(32.0), atol=1e-5)
    np.testing.assert_allclose(log2k[4:], 0.0, atol=1e-5)


def test_dense_charts_keep_only_the_levels_a_pixel_can_show():
    vertices, faces, uv = two_charts()
    weights = [w[..., 0].numpy() for w in level_weights(vertices, faces, uv, SIZE, 4, pixel_density=8.0)]
    dense, sparse = (32, 16), (52, 52)  # (row, column) texels inside the left and the right chart
    # log2 k = 2.5 on the left: levels 0 and 1 off, level 2 half on (1 + 2 - 2.5), the coarsest always on.
    assert [round(float(w[dense]), 3) for w in weights] == [0.0, 0.0, 0.5, 1.0]
    assert [round(float(w[sparse]), 3) for w in weights] == [1.0, 1.0, 1.0, 1.0]


def test_pixels_per_unit_follows_render_size_and_pattern_scale():
    base = pixels_per_unit(256, 40.0, 1.0)
    assert pixels_per_unit(512, 40.0, 1.0) == pytest.approx(2 * base)
    assert pixels_per_unit(256, 40.0, 2.0) == pytest.approx(base / 2)
    assert 100 < base < 130  # the unit sphere spans about 0.95 of the 256 px view


def test_restyle_keeps_the_finest_levels_of_a_dense_chart_still():
    """One step: with density levels, texels of a chart too dense to show move only with the coarse levels, so
    the texture there stays piecewise linear (bilinear upsampling) and its second differences are far smaller
    than when every level moves (Adam moves each sampled finest texel by ~lr)."""
    vertices, faces, uv = two_charts()
    mesh = Mesh(vertices=vertices, faces=faces, uv=uv)
    roughness = {}
    for density_levels in (True, False):
        config = tiny_restyle_config(steps=1, texture_size=SIZE, style_levels=4, render_size=32,
                                     density_levels=density_levels)
        style = restyle(mesh, [pattern_image("stripes")], load_clip("tiny-rn"), config).style_texture
        roughness[density_levels] = np.abs(np.diff(style[8:56, 4:28], n=2, axis=0)).mean()
    assert roughness[True] < 0.3 * roughness[False], roughness
