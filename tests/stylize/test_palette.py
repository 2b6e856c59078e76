"""`backend.stylize.palette`: parsing user palettes, k-means extraction, the palette distance and its schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.errors import InvalidInputError
from backend.stylize.palette import extract_palette, nearest_palette_distance, palette_weight, parse_palette, to_hex

RED, GREEN, BLUE = (0.8, 0.1, 0.1), (0.2, 0.7, 0.3), (0.1, 0.2, 0.9)


def three_regions() -> np.ndarray:
    """[20, 20, 3]: half RED (200 px), then GREEN (120 px), then BLUE (80 px), as horizontal bands."""
    image = np.empty((20, 20, 3), np.float32)
    image[:10], image[10:16], image[16:] = RED, GREEN, BLUE
    return image


# ---------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text", ["auto", "AUTO", "  Auto \n"])
def test_auto_means_extract(text):
    assert parse_palette(text) is None


def test_hex_colours_with_and_without_hash_and_spaces():
    palette = parse_palette("#aa3311 ,f0e0c0,  #000000")
    assert palette.dtype == np.float32 and palette.shape == (3, 3)
    np.testing.assert_allclose(palette[0], np.array([0xaa, 0x33, 0x11]) / 255, atol=1e-7)
    np.testing.assert_allclose(palette[1], np.array([0xf0, 0xe0, 0xc0]) / 255, atol=1e-7)
    np.testing.assert_allclose(palette[2], 0.0)


def test_short_hex_is_expanded():
    np.testing.assert_array_equal(parse_palette("#a3F"), parse_palette("#aa33ff"))


def test_sixteen_colours_are_accepted():
    assert parse_palette(",".join(["#123456"] * 16)).shape == (16, 3)


@pytest.mark.parametrize("text, words", [
    ("", "the palette is empty"),
    ("   ", "the palette is empty"),
    ("#12345", "palette colour 1 of 1 '#12345' is not a hex colour"),
    ("#aa3311,#gg0000", "palette colour 2 of 2 '#gg0000' is not a hex colour"),
    ("red", "palette colour 1 of 1 'red' is not a hex colour"),
    ("#fff, blue, #000", "palette colour 2 of 3 'blue' is not a hex colour"),
    ("##aabbcc", "palette colour 1 of 1 '##aabbcc' is not a hex colour"),
    (",,", "palette colour 1 of 3 is empty"),
    ("#aa3311,", "palette colour 2 of 2 is empty"),
    ("none", "palette colour 1 of 1 'none' is not a hex colour"),
    (",".join(["#123456"] * 17), "the palette has 17 colours; at most 16 are used"),
])
def test_bad_palettes_name_the_bad_token(text, words):
    with pytest.raises(InvalidInputError) as err:
        parse_palette(text)
    assert words in err.value.message
    assert "--palette auto or --palette '#aa3311,#f0e0c0'" in err.value.hint


def test_to_hex_round_trips():
    text = ["#aa3311", "#f0e0c0", "#000000", "#ffffff"]
    assert to_hex(parse_palette(",".join(text))) == text


# ------------------------------------------------------------------------------------------- extraction


def test_extracts_three_flat_colours_largest_first():
    palette = extract_palette([three_regions()], count=3)
    assert palette.shape == (3, 3) and palette.dtype == np.float32
    np.testing.assert_allclose(palette, [RED, GREEN, BLUE], atol=0.02)


def test_extracts_from_a_sample_of_several_images():
    # 800 pixels, 300 drawn: the sampled path, across a numpy image and tensor images.
    image = three_regions()
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    palette = extract_palette([image, tensor[None]], count=3, max_samples=300)
    np.testing.assert_allclose(palette, [RED, GREEN, BLUE], atol=0.02)


def test_tensor_layouts_give_the_same_palette_as_numpy():
    image = np.random.default_rng(0).random((12, 10, 3)).astype(np.float32)
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    expected = extract_palette([image], count=4)
    np.testing.assert_array_equal(extract_palette([tensor], count=4), expected)
    np.testing.assert_array_equal(extract_palette([tensor[None]], count=4), expected)


def test_one_colour_gives_one_entry():
    palette = extract_palette([np.full((16, 16, 3), 0.4, np.float32)], count=5)
    np.testing.assert_allclose(palette, [[0.4, 0.4, 0.4]], atol=1e-6)


def test_fewer_distinct_colours_than_asked_gives_no_duplicates():
    palette = extract_palette([three_regions()], count=5)
    assert palette.shape == (3, 3)
    np.testing.assert_allclose(palette, [RED, GREEN, BLUE], atol=0.02)


def test_mask_white_leaves_out_the_background():
    image = np.ones((16, 16, 3), np.float32)
    image[:4] = BLUE  # a quarter blue on white
    np.testing.assert_allclose(extract_palette([image], count=2)[0], 1.0)  # white is the biggest cluster
    np.testing.assert_allclose(extract_palette([image], count=2, mask_white=True), [BLUE], atol=1e-6)


def test_the_same_seed_gives_the_same_palette():
    images = [np.random.default_rng(i).random((40, 30, 3)).astype(np.float32) for i in range(2)]
    first = extract_palette(images, count=6, seed=7, max_samples=500)
    assert first.shape == (6, 3)
    np.testing.assert_array_equal(extract_palette(images, count=6, seed=7, max_samples=500), first)


# --------------------------------------------------------------------------------------------- distance


BLACK_WHITE = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])


def test_distance_to_the_nearest_palette_colour():
    red = torch.tensor([0.5, 0.0, 0.0])
    assert nearest_palette_distance(red, BLACK_WHITE).item() == pytest.approx(0.5)
    assert nearest_palette_distance(red, BLACK_WHITE, squared=True).item() == pytest.approx(0.25)
    colors = torch.tensor([[0.5, 0.0, 0.0], [1.0, 1.0, 0.9]])  # 0.5 from black, 0.1 from white
    assert nearest_palette_distance(colors, BLACK_WHITE).item() == pytest.approx(0.3)


def test_weights_make_a_weighted_mean():
    colors = torch.tensor([[[0.5, 0.0, 0.0], [1.0, 1.0, 0.9]]])  # [1, 2, 3]
    assert nearest_palette_distance(colors, BLACK_WHITE, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.5)
    assert nearest_palette_distance(colors, BLACK_WHITE, torch.tensor([[1.0, 3.0]])).item() == pytest.approx(0.2)
    assert nearest_palette_distance(colors, BLACK_WHITE, torch.zeros(1, 2)).item() == 0.0


def test_gradient_descent_moves_colours_toward_their_nearest_palette_colour():
    palette = torch.tensor([RED, GREEN, BLUE])
    colors = torch.rand(4, 8, 8, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = nearest_palette_distance(colors, palette, weights=torch.ones(4, 8, 8), squared=True)
    loss.backward()
    nearest = palette[torch.cdist(colors.detach().reshape(-1, 3), palette).argmin(dim=1)].reshape(colors.shape)
    # The gradient points from the nearest palette colour to the pixel: descent goes straight to it.
    direction = torch.nn.functional.normalize(colors.detach() - nearest, dim=-1)
    torch.testing.assert_close(torch.nn.functional.normalize(colors.grad, dim=-1), direction)
    stepped = (colors - 10.0 * colors.grad).detach()
    assert nearest_palette_distance(stepped, palette) < nearest_palette_distance(colors.detach(), palette)


def test_euclidean_gradient_is_finite_on_the_palette():
    colors = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]], requires_grad=True)
    nearest_palette_distance(colors, BLACK_WHITE).backward()
    assert torch.isfinite(colors.grad).all() and torch.all(colors.grad[0] == 0)


# --------------------------------------------------------------------------------------------- schedule


def test_palette_weight_starts_at_start_and_ends_at_the_fraction():
    assert palette_weight(0, 100, 2000.0) == pytest.approx(2000.0)
    assert palette_weight(99, 100, 2000.0) == pytest.approx(200.0)
    assert palette_weight(99, 100, 2000.0, end_fraction=0.0) == pytest.approx(0.0, abs=1e-9)
    assert palette_weight(0, 1, 5.0) == 5.0


def test_palette_weight_decreases_monotonically():
    weights = [palette_weight(step, 50, 2000.0, 0.1) for step in range(50)]
    assert all(a > b for a, b in zip(weights, weights[1:]))
    assert weights[0] - weights[1] < weights[24] - weights[25]  # cosine: slow at first, fastest midway
