"""Style images in the storage modes users actually have (grayscale, RGBA, 16-bit, palette PNGs) run through
`restyle`, and their colours reach the auto palette as the image shows them.

How `load_image` decodes each mode is test_images.py's job; here the decoded arrays go through a real
restyle step (tiny random ResNet CLIP: plumbing only).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from restyle_helpers import tiny_restyle_config

from backend.geometry.primitives import textured_cube
from backend.images import load_image
from backend.models.clip import load_clip
from backend.stylize.restyle import restyle

LOW, HIGH = 50, 200
"""The two grey levels (of 255) of the grayscale test images."""


@pytest.fixture(scope="module")
def tiny_rn():
    return load_clip("tiny-rn")


def png(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def bands(low, high, dtype=np.uint8, side: int = 32) -> np.ndarray:
    """[side, side] horizontal bands 8 px high alternating `low` and `high`."""
    rows = np.where((np.arange(side) // 8) % 2 == 0, low, high).astype(dtype)
    return np.repeat(rows[:, None], side, axis=1)


def gray_png() -> bytes:
    return png(Image.fromarray(bands(LOW, HIGH), "L"))


def gray16_png() -> bytes:
    image = Image.fromarray(bands(LOW * 257, HIGH * 257, np.uint16))  # 257 * v / 65535 == v / 255
    assert image.mode == "I;16"
    return png(image)


def rgba_png() -> bytes:
    """An opaque red square on a fully transparent background."""
    pixels = np.zeros((32, 32, 4), np.uint8)
    pixels[8:24, 8:24] = (220, 20, 20, 255)
    return png(Image.fromarray(pixels, "RGBA"))


def palette_png() -> bytes:
    """Mode P: bands of palette entries 0 (red) and 1 (blue)."""
    image = Image.fromarray(bands(0, 1), "L").convert("P")
    image.putpalette([220, 20, 20, 20, 20, 220])
    return png(image)


def run_one_step(tiny_rn, image: np.ndarray):
    result = restyle(textured_cube(), [image], tiny_rn, tiny_restyle_config(steps=1))
    assert result.steps == 1 and np.isfinite(result.losses).all()
    assert np.isfinite(result.style_texture).all() and np.abs(result.style_texture).max() > 0
    assert result.palette_source == "auto" and result.neighbour_share == [1.0]
    return result


def near(palette: np.ndarray, rgb) -> float:
    """Distance from `rgb` (0-255) to its nearest palette colour, in [0, 1] units."""
    return float(np.linalg.norm(palette - np.asarray(rgb, np.float32) / 255.0, axis=1).min())


@pytest.mark.parametrize("make", [gray_png, gray16_png], ids=["L", "I;16"])
def test_grayscale_styles_give_a_grey_palette_at_their_levels(tiny_rn, make):
    assert Image.open(io.BytesIO(make())).mode in ("L", "I;16")
    image = load_image(make(), what="style image")
    result = run_one_step(tiny_rn, image)
    palette = result.palette
    # Grey in, grey out: the channels agree (8-bit and 16-bit storage give the same levels).
    np.testing.assert_allclose(palette, np.repeat(palette[:, :1], 3, axis=1), atol=1e-6)
    assert near(palette, (LOW,) * 3) < 0.02 and near(palette, (HIGH,) * 3) < 0.02


def test_sixteen_and_eight_bit_grey_restyle_alike(tiny_rn):
    eight = load_image(gray_png(), what="style image")
    sixteen = load_image(gray16_png(), what="style image")
    np.testing.assert_allclose(eight, sixteen, atol=1e-6)
    a, b = (restyle(textured_cube(), [image], tiny_rn, tiny_restyle_config(steps=1)) for image in (eight, sixteen))
    np.testing.assert_allclose(a.palette, b.palette, atol=1e-5)
    assert a.losses == pytest.approx(b.losses, rel=1e-4)


def test_rgba_style_shows_its_transparent_part_as_the_white_backdrop(tiny_rn):
    image = load_image(rgba_png(), what="style image")
    assert image.shape == (32, 32, 3)
    palette = run_one_step(tiny_rn, image).palette
    assert near(palette, (220, 20, 20)) < 0.05 and near(palette, (255, 255, 255)) < 0.02


def test_rgba_array_with_alpha_kept_restyles_like_its_rgb(tiny_rn):
    """A caller may pass load_image(..., keep_alpha=True): the alpha channel is ignored by restyle."""
    rgba = load_image(rgba_png(), what="style image", keep_alpha=True)
    assert rgba.shape == (32, 32, 4)
    with_alpha = restyle(textured_cube(), [rgba], tiny_rn, tiny_restyle_config(steps=1))
    without = restyle(textured_cube(), [np.ascontiguousarray(rgba[..., :3])], tiny_rn, tiny_restyle_config(steps=1))
    np.testing.assert_array_equal(with_alpha.style_texture, without.style_texture)
    np.testing.assert_array_equal(with_alpha.palette, without.palette)


def test_palette_mode_png_gives_its_palette_colours(tiny_rn):
    assert Image.open(io.BytesIO(palette_png())).mode == "P"
    palette = run_one_step(tiny_rn, load_image(palette_png(), what="style image")).palette
    assert near(palette, (220, 20, 20)) < 0.05 and near(palette, (20, 20, 220)) < 0.05


def test_all_modes_together_each_supply_neighbours(tiny_rn):
    images = [load_image(make(), what=f"style image {i}")
              for i, make in enumerate((gray_png, gray16_png, rgba_png, palette_png))]
    result = restyle(textured_cube(), images, tiny_rn, tiny_restyle_config(steps=1))
    assert result.steps == 1 and len(result.neighbour_share) == 4
    assert abs(sum(result.neighbour_share) - 1.0) < 1e-6


def test_smallest_and_non_square_styles_are_accepted(tiny_rn):
    """An 8x8 image (the least load_image takes) is upsampled to the render size; a 8x40 strip keeps its shape."""
    smallest = load_image(png(Image.fromarray(bands(0, 255, side=8), "L")), what="style image")
    strip = load_image(png(Image.new("RGB", (40, 8), (30, 160, 60))), what="style image")
    assert smallest.shape == (8, 8, 3) and strip.shape == (8, 40, 3)
    result = restyle(textured_cube(), [smallest, strip], tiny_rn, tiny_restyle_config(steps=1))
    assert result.steps == 1 and np.isfinite(result.losses).all() and len(result.neighbour_share) == 2
    assert near(result.palette, (30, 160, 60)) < 0.02
