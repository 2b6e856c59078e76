"""Texture restyle plumbing on tiny random CLIPs (the ResNet and the ViT paths), outputs and bad input.

Random weights prove only that gradients reach the style texture and the bookkeeping is right; whether
the result looks like the style is the domain tests' job (test_restyle_domain.py).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from backend.errors import InvalidInputError, JobCancelled
from backend.geometry.glb import read_glb
from backend.geometry.mesh import Mesh
from backend.geometry.primitives import icosphere, textured_cube
from backend.models.clip import load_clip
from backend.progress import CancelToken
from backend.stylize.output import export_restyled, style_path
from backend.stylize.restyle import MAX_STYLE_IMAGES, preset, restyle
from tests.stylize.restyle_helpers import flat_image, pattern_image, tiny_restyle_config


@pytest.fixture(scope="module")
def tiny_rn():
    return load_clip("tiny-rn")


@pytest.fixture(scope="module")
def cube_result(tiny_rn):
    styles = [pattern_image("stripes"), pattern_image("dots", accent=(200, 30, 30))]
    return restyle(textured_cube(), styles, tiny_rn, tiny_restyle_config(steps=3))


def test_resnet_path_keeps_the_original_texture_and_learns_a_style_texture(cube_result):
    source = textured_cube()
    assert cube_result.base_source == "texture" and not cube_result.unwrapped
    assert np.array_equal(cube_result.base_texture, source.texture[..., :3])
    assert np.abs(cube_result.style_texture).max() > 1e-3
    assert not np.array_equal(cube_result.combined_texture, cube_result.base_texture)
    assert cube_result.combined_texture.shape == source.texture[..., :3].shape
    assert cube_result.steps == 3 and all(np.isfinite(cube_result.losses))
    assert cube_result.extractor.startswith("clip-resnet")


def test_several_style_images_all_supply_neighbours(cube_result):
    share = cube_result.neighbour_share
    assert len(share) == 2 and abs(sum(share) - 1.0) < 1e-6
    assert min(share) > 0.0


def test_auto_palette_comes_from_the_style_images(cube_result):
    assert cube_result.palette_source == "auto"
    palette = cube_result.palette
    assert palette.shape[1] == 3 and 1 <= len(palette) <= 5
    # The blue stripe accent of the first image is one of the extracted colours.
    assert np.linalg.norm(palette - np.array([40, 60, 160]) / 255.0, axis=1).min() < 0.08


def test_vit_path_unwraps_a_mesh_without_uvs():
    tiny = load_clip("tiny")
    result = restyle(icosphere(2), [pattern_image("checks")], tiny, tiny_restyle_config(steps=2),
                     palette=np.array([[1.0, 0.0, 0.0]], dtype=np.float32))
    assert result.unwrapped and result.base_source == "plain"
    assert result.mesh.uv is not None and result.mesh.num_faces == 320
    assert result.extractor.startswith("clip-vit")
    assert result.palette_source == "user" and np.allclose(result.palette, [[1.0, 0.0, 0.0]])
    assert np.abs(result.style_texture).max() > 1e-3
    # The untouched base is the plain base colour.
    assert np.all(result.base_texture == round(0.8 * 255))


def test_vertex_colours_become_the_base_texture(tiny_rn):
    sphere = icosphere(2)
    colours = np.where(sphere.vertices[:, 1:2] > 0, [[0.9, 0.1, 0.1]], [[0.1, 0.1, 0.9]]).astype(np.float32)
    result = restyle(sphere.copy(vertex_colors=colours), [flat_image((0.2, 0.8, 0.2))], tiny_rn,
                     tiny_restyle_config(steps=1), use_palette=False)
    assert result.base_source == "vertex_colors" and result.palette_source == "none"
    reds = (result.base_texture[..., 0] > 150) & (result.base_texture[..., 2] < 100)
    blues = (result.base_texture[..., 2] > 150) & (result.base_texture[..., 0] < 100)
    assert reds.mean() > 0.1 and blues.mean() > 0.1


def test_progress_previews_and_cancel(tiny_rn):
    seen, previews = [], []
    restyle(textured_cube(), [flat_image((0.1, 0.2, 0.9))], tiny_rn, tiny_restyle_config(steps=3),
            progress=lambda step, total, **m: seen.append((step, total, m)),
            on_preview=lambda step, image: previews.append((step, image.shape, image.dtype)))
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    assert {"loss", "loss_style", "loss_content", "loss_palette", "palette_weight", "eta_s"} <= set(seen[0][2])
    assert seen[0][2]["palette_weight"] > seen[-1][2]["palette_weight"]
    assert previews == [(2, (64, 64, 3), np.uint8), (3, (64, 64, 3), np.uint8)]
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        restyle(textured_cube(), [flat_image((0.1, 0.2, 0.9))], tiny_rn, tiny_restyle_config(steps=3), cancel=token)


def test_a_seed_reproduces_a_run(tiny_rn):
    runs = [restyle(textured_cube(), [pattern_image("dots")], tiny_rn, tiny_restyle_config(steps=2, seed=5))
            for _ in range(2)]
    assert np.array_equal(runs[0].style_texture, runs[1].style_texture)
    assert runs[0].losses == runs[1].losses


def test_glb_carries_the_combined_texture_and_the_png_the_style(cube_result, tmp_path):
    out = tmp_path / "restyled.glb"
    glb, png = export_restyled(cube_result, out)
    assert out.read_bytes() == glb and style_path(out).read_bytes() == png
    document, binary = read_glb(glb)
    image_view = document["bufferViews"][document["images"][0]["bufferView"]]
    start = image_view.get("byteOffset", 0)
    embedded = np.asarray(Image.open(io.BytesIO(binary[start:start + image_view["byteLength"]])).convert("RGB"))
    assert np.array_equal(embedded, cube_result.combined_texture)
    assert "TEXCOORD_0" in document["meshes"][0]["primitives"][0]["attributes"]
    style = np.asarray(Image.open(io.BytesIO(png)))
    decoded = (style.astype(np.float32) - 128.0) / 127.5
    assert np.abs(decoded - np.clip(cube_result.style_texture, -1, 1)).max() <= 1.0 / 127.5 + 1e-6


# ----------------------------------------------------------------------------------------------- bad input


def test_mesh_without_faces_is_refused(tiny_rn):
    empty = Mesh(vertices=np.zeros((3, 3), np.float32), faces=np.zeros((0, 3), np.int32))
    with pytest.raises(InvalidInputError, match="face"):
        restyle(empty, [flat_image((1, 0, 0))], tiny_rn, tiny_restyle_config())


def test_style_image_count_is_checked(tiny_rn):
    with pytest.raises(InvalidInputError, match="no style image"):
        restyle(textured_cube(), [], tiny_rn, tiny_restyle_config())
    with pytest.raises(InvalidInputError, match=f"at most {MAX_STYLE_IMAGES}"):
        restyle(textured_cube(), [flat_image((1, 0, 0))] * (MAX_STYLE_IMAGES + 1), tiny_rn, tiny_restyle_config())


def test_style_images_must_be_colour_arrays(tiny_rn):
    with pytest.raises(InvalidInputError, match=r"style image 1 must be an \[H, W, 3\|4\] array"):
        restyle(textured_cube(), [flat_image((1, 0, 0)), np.zeros((16, 16))], tiny_rn, tiny_restyle_config())


@pytest.mark.parametrize("change, match", [
    ({"steps": 0}, "steps"), ({"batch": 0}, "batch"), ({"render_size": 8}, "render_size"),
    ({"pattern_scale": 0.0}, "pattern_scale"), ({"texture_size": 4}, "texture_size"),
])
def test_unusable_settings_are_refused(change, match):
    with pytest.raises(InvalidInputError, match=match):
        preset("draft", **change).check()


def test_unknown_quality_is_refused():
    with pytest.raises(InvalidInputError, match="quality"):
        preset("ultra")


def test_style_texture_gradient_is_nonzero_where_the_mesh_is_seen(tiny_rn):
    """One step moves only texels the views sample: the cube atlas's two spare cells stay exactly zero."""
    result = restyle(textured_cube(), [pattern_image("stripes")], tiny_rn, tiny_restyle_config(steps=1))
    touched = np.abs(result.style_texture).max(axis=-1) > 0
    assert 0.0 < touched.mean() < 1.0
