"""`backend.images`: every Pillow mode a user image arrives in, and every image it refuses."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from backend.errors import InvalidInputError
from backend.images import image_to_tensor, load_image, resize_short_side


def save(tmp_path, image: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def raw_png(width: int, height: int, color_type: int, depth: int, rows: bytes) -> bytes:
    """A PNG written by hand: Pillow cannot write 16-bit colour, and a header can claim any size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------------ modes


def test_rgb_png_is_float_in_unit_range_top_row_first(tmp_path):
    pixels = np.zeros((8, 12, 3), np.uint8)
    pixels[0] = (255, 128, 0)
    out = load_image(save(tmp_path, Image.fromarray(pixels), "rgb.png"))
    assert out.shape == (8, 12, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [1.0, 128 / 255, 0.0], atol=1e-6)
    assert out[1:].max() == 0.0


def test_grayscale_fills_all_three_channels(tmp_path):
    out = load_image(save(tmp_path, Image.new("L", (8, 8), 128), "gray.png"))
    assert out.shape == (8, 8, 3)
    np.testing.assert_allclose(out, 128 / 255, atol=1e-6)


def test_bilevel_image(tmp_path):
    np.testing.assert_allclose(load_image(save(tmp_path, Image.new("1", (8, 8), 1), "bw.png")), 1.0)


def test_gray_alpha_is_composited_and_kept_on_request(tmp_path):
    image = Image.new("LA", (8, 8), (0, 255))
    image.putpixel((0, 0), (0, 0))  # transparent black
    path = save(tmp_path, image, "la.png")
    out = load_image(path)
    np.testing.assert_allclose(out[0, 0], 1.0)  # the white background shows through
    np.testing.assert_allclose(out[1, 1], 0.0)
    rgba = load_image(path, keep_alpha=True)
    assert rgba.shape == (8, 8, 4) and rgba[0, 0, 3] == 0.0 and rgba[1, 1, 3] == 1.0


def test_sixteen_bit_gray_png_is_scaled_by_65535(tmp_path):
    values = np.full((8, 8), 32768, np.uint16)
    values[0, 0], values[0, 1], values[0, 2] = 65535, 0, 257
    path = save(tmp_path, Image.fromarray(values), "gray16.png")
    assert Image.open(path).mode == "I;16"  # what Pillow opens a 16-bit grayscale PNG as
    out = load_image(path)
    np.testing.assert_allclose(out[0, 0], 1.0)
    np.testing.assert_allclose(out[0, 1], 0.0)
    np.testing.assert_allclose(out[0, 2], 1 / 255, atol=1e-7)
    np.testing.assert_allclose(out[1, 1], 0.5, atol=1e-4)


def test_big_endian_sixteen_bit_tiff(tmp_path):
    values = np.full((8, 8), 32768, np.uint16)
    values[0, 0] = 65535
    image = Image.frombytes("I;16B", (8, 8), values.astype(">u2").tobytes())
    path = save(tmp_path, image, "gray16b.tif")
    assert Image.open(path).mode == "I;16B"
    out = load_image(path)
    np.testing.assert_allclose(out[0, 0], 1.0)
    np.testing.assert_allclose(out[1, 1], 0.5, atol=1e-4)


def test_thirty_two_bit_integer_is_read_as_sixteen_bit_and_clipped(tmp_path):
    values = np.full((8, 8), 32768, np.int32)
    values[0, :3] = (70000, -5, 65535)
    path = save(tmp_path, Image.fromarray(values), "int.tif")
    assert Image.open(path).mode == "I"
    out = load_image(path)[0, :4, 0]
    np.testing.assert_allclose(out, [1.0, 0.0, 1.0, 0.5], atol=1e-4)


def test_float_image_is_clipped_to_unit_range(tmp_path):
    values = np.full((8, 8), 0.25, np.float32)
    values[0, :3] = (2.0, -1.0, np.nan)
    out = load_image(save(tmp_path, Image.fromarray(values), "float.tif"))[0, :4, 0]
    np.testing.assert_allclose(out, [1.0, 0.0, 0.0, 0.25])


def test_sixteen_bit_colour_png_keeps_eight_bits(tmp_path):
    channels = np.zeros((8, 8, 3), ">u2")
    channels[..., 0], channels[..., 1], channels[..., 2] = 65535, 32768, 0
    rows = b"".join(b"\0" + row.tobytes() for row in channels)
    path = tmp_path / "rgb48.png"
    path.write_bytes(raw_png(8, 8, 2, 16, rows))
    out = load_image(path)
    np.testing.assert_allclose(out[3, 3], [1.0, 0.5, 0.0], atol=1 / 255)


def test_rgba_is_composited_over_the_background(tmp_path):
    image = Image.new("RGBA", (8, 8), (0, 0, 255, 255))
    image.putpixel((0, 0), (255, 0, 0, 128))  # half-transparent red
    path = save(tmp_path, image, "rgba.png")
    a = 128 / 255
    np.testing.assert_allclose(load_image(path)[0, 0], [1.0, 1 - a, 1 - a], atol=1e-6)
    np.testing.assert_allclose(load_image(path, background=(0.0, 0.0, 0.0))[0, 0], [a, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(load_image(path)[1, 1], [0.0, 0.0, 1.0])
    rgba = load_image(path, keep_alpha=True)
    np.testing.assert_allclose(rgba[0, 0], [1.0, 0.0, 0.0, a], atol=1e-6)  # straight alpha
    assert rgba[1, 1, 3] == 1.0


def test_keep_alpha_on_an_opaque_image_gives_alpha_one(tmp_path):
    rgba = load_image(save(tmp_path, Image.new("RGB", (8, 8), (10, 20, 30)), "rgb.png"), keep_alpha=True)
    assert rgba.shape == (8, 8, 4) and np.all(rgba[..., 3] == 1.0)


def test_palette_image_with_a_transparent_index(tmp_path):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.putpixel((0, 0), 1)
    path = save(tmp_path, image, "p.png", transparency=1)
    out = load_image(path)
    np.testing.assert_allclose(out[0, 0], 1.0)  # transparent blue shows the white background
    np.testing.assert_allclose(out[1, 1], [1.0, 0.0, 0.0])
    assert load_image(path, keep_alpha=True)[0, 0, 3] == 0.0


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = save(tmp_path, Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "cyan.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    np.testing.assert_allclose(load_image(path)[8, 8], [0.0, 1.0, 1.0], atol=0.03)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((16, 32, 3), np.uint8)
    pixels[:, :, 2] = 255
    pixels[:, :8] = (255, 0, 0)  # the left quarter red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turns it 90 degrees clockwise
    path = save(tmp_path, Image.fromarray(pixels), "rotated.jpg", exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (32, 16, 3)
    # Turned clockwise, the stored left edge is the top.
    assert out[:6, :, 0].mean() > 0.9 and out[:6, :, 2].mean() < 0.1
    assert out[-20:, :, 2].mean() > 0.9


def test_bytes_give_the_same_image_as_the_path(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (9, 11, 4), dtype=np.uint8)
    path = save(tmp_path, Image.fromarray(pixels, "RGBA"), "noise.png")
    np.testing.assert_array_equal(load_image(path.read_bytes()), load_image(path))
    np.testing.assert_array_equal(load_image(str(path), keep_alpha=True), load_image(path, keep_alpha=True))


# ----------------------------------------------------------------------------------------------- errors


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere" / "style.png"
    with pytest.raises(InvalidInputError, match=rf"the style image {missing} does not exist") as err:
        load_image(missing, what="style image")
    assert err.value.hint


def test_folder_instead_of_a_file(tmp_path):
    with pytest.raises(InvalidInputError, match="is a folder, not an image file"):
        load_image(tmp_path, what="style image")


def test_empty_file_and_empty_bytes(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InvalidInputError, match=rf"the style image {path} is empty \(0 bytes\)") as err:
        load_image(path, what="style image")
    assert "PNG or JPEG" in err.value.hint
    with pytest.raises(InvalidInputError, match=r"the photo is empty \(0 bytes\)"):
        load_image(b"", what="photo")


def test_bytes_that_are_not_an_image(tmp_path):
    junk = np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes()
    path = tmp_path / "junk.png"
    path.write_bytes(junk)
    with pytest.raises(InvalidInputError, match=rf"the style image {path} is not an image") as err:
        load_image(path, what="style image")
    assert err.value.hint == "send a PNG or JPEG"
    with pytest.raises(InvalidInputError, match="the style image 2 is not an image"):
        load_image(junk, what="style image 2")


def test_truncated_png(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = (save(tmp_path, Image.fromarray(pixels), "whole.png")).read_bytes()
    with pytest.raises(InvalidInputError, match="the style image is truncated or corrupt") as err:
        load_image(data[: len(data) // 2], what="style image")
    assert err.value.hint


def test_too_small(tmp_path):
    path = save(tmp_path, Image.new("RGB", (1, 1)), "dot.png")
    with pytest.raises(InvalidInputError, match="is 1x1 pixels; it needs at least 8x8") as err:
        load_image(path, what="style image")
    assert "at least 8 pixels" in err.value.hint
    with pytest.raises(InvalidInputError, match="is 20x4 pixels; it needs at least 8x8"):
        load_image(save(tmp_path, Image.new("RGB", (20, 4)), "strip.png"))


def test_too_large(tmp_path):
    path = save(tmp_path, Image.new("RGB", (32, 8)), "wide.png")
    with pytest.raises(InvalidInputError, match="is 32x8 pixels, larger than 16 on a side") as err:
        load_image(path, max_side=16)
    assert "at most 16 pixels" in err.value.hint


def test_too_large_is_refused_from_the_header_alone(tmp_path):
    # The header claims 9000x9000 and no pixel data follows: refused before any decoding.
    with pytest.raises(InvalidInputError, match="is 9000x9000 pixels, larger than 8192 on a side"):
        load_image(raw_png(9000, 9000, 0, 8, b""))


def test_decompression_bomb(tmp_path):
    with pytest.raises(InvalidInputError, match="too large to decode"):
        load_image(raw_png(20000, 20000, 0, 8, b""), max_side=30000)


# ------------------------------------------------------------------------------------------------ tensors


def test_image_to_tensor_is_nchw():
    image = np.random.default_rng(3).random((5, 7, 4)).astype(np.float32)
    tensor = image_to_tensor(image)
    assert tensor.shape == (1, 4, 5, 7) and tensor.dtype == torch.float32
    assert torch.equal(tensor[0, :, 2, 3], torch.from_numpy(image[2, 3]))


@pytest.mark.parametrize("shape, side, expected", [
    ((1, 3, 20, 40), 10, (10, 20)),
    ((2, 3, 30, 10), 5, (15, 5)),
    ((1, 3, 10, 10), 32, (32, 32)),
    ((1, 3, 33, 100), 16, (16, 48)),
])
def test_resize_short_side_keeps_the_aspect_ratio(shape, side, expected):
    out = resize_short_side(torch.rand(shape), side)
    assert out.shape == (*shape[:2], *expected) and min(out.shape[-2:]) == side


def test_resize_short_side_returns_a_same_size_image_unchanged():
    image = torch.rand(1, 3, 16, 24)
    assert resize_short_side(image, 16) is image


def test_resize_short_side_antialiases():
    # One white column in eight: plain bilinear at 1/8 would sample only black; antialiasing averages.
    image = torch.zeros(1, 1, 64, 64)
    image[..., ::8] = 1.0
    out = resize_short_side(image, 8)[..., 1:-1]  # the filter is cut short at the borders
    torch.testing.assert_close(out, torch.full_like(out, 1 / 8), atol=0.01, rtol=0)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data): enough for Pillow's open-time checks."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_huge_image_is_one_clear_error_without_pillows_warning():
    import warnings

    from backend.errors import InvalidInputError
    from backend.images import load_image

    # 10,000 x 10,000 = 100 M pixels: over Pillow's 89 M warning threshold, under its 179 M error.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InvalidInputError, match="10000"):
            load_image(_png_header(10_000, 10_000), what="style image")
    assert not [w for w in caught if "DecompressionBomb" in type(w.message).__name__], caught


def test_the_large_mesh_refusal_names_a_real_fix():
    import numpy as np

    from backend.errors import InvalidInputError
    from backend.stylize.surface import check_size

    class Big:
        faces = np.zeros((200_001, 3), np.int32)

    with pytest.raises(InvalidInputError) as err:
        check_size(Big(), 200_000)
    assert "Decimate modifier" in err.value.hint and "max_faces" not in err.value.hint
