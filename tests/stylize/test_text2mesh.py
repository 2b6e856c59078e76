"""Text2Mesh plumbing on the tiny CLIP and a colour oracle (CPU, a few steps): bounds, frames, progress,
cancel, previews, seeds, seams, subdivision. Meaning with a trained CLIP: test_stylize_domain.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from stylize_helpers import TINY_FIELD, ColourOracle, tiny_config

from backend.errors import JobCancelled
from backend.geometry.mesh import Mesh
from backend.geometry.primitives import cube, icosphere, textured_cube
from backend.progress import CancelToken
from backend.stylize.losses import cosine_loss
from backend.stylize.text2mesh import (
    QUALITY_PRESETS,
    NeuralStyleField,
    StyleFieldConfig,
    Text2MeshConfig,
    preset,
    score_views,
    stylize,
)


def moved(mesh: Mesh, scale: float, offset) -> Mesh:
    """The same mesh in another frame: results must come back in this one."""
    return mesh.copy(vertices=(mesh.vertices * scale + np.asarray(offset, dtype=np.float32)).astype(np.float32))


def test_defaults_are_the_papers_and_presets_trade_steps():
    config = Text2MeshConfig()
    assert (config.steps, config.learning_rate, config.lr_decay, config.views) == (1500, 5e-4, 0.9, 5)
    assert (config.global_augs, config.local_augs, config.geometry_augs) == (1, 4, 4)
    assert config.local_augment.crop_scale == (0.1, 0.1) and config.global_augment.crop_scale == (1.0, 1.0)
    assert (config.network.sigma, config.network.width, config.network.max_displacement) == (5.0, 256, 0.1)
    assert preset("high") == config
    steps = [preset(q).steps for q in ("draft", "standard", "high")]
    assert steps == sorted(steps) and steps[0] < steps[-1]
    assert preset("draft", steps=7).steps == 7
    assert preset("draft", steps=None).steps == QUALITY_PRESETS["draft"]["steps"]


def test_field_starts_grey_and_flat_and_stays_bounded():
    config = StyleFieldConfig(width=16, depth=1, frequencies=8, max_displacement=0.1)
    field = NeuralStyleField(config, steps=100, generator=torch.Generator().manual_seed(0))
    points = torch.rand(50, 3) * 2 - 1
    colors, offsets = field(points, step=0)
    assert torch.all(colors == 0.5) and torch.all(offsets == 0)
    with torch.no_grad():  # push every output far into tanh's saturation
        for p in field.parameters():
            p.normal_(0, 30.0)
    colors, offsets = field(points, step=100)
    assert colors.min() >= 0.0 and colors.max() <= 1.0 and (colors - 0.5).abs().max() > 0.45
    assert offsets.abs().max() <= 0.1 and offsets.abs().max() > 0.09


def test_progressive_encoding_switches_bands_on_low_first():
    config = StyleFieldConfig(width=8, depth=0, frequencies=10, progressive_fraction=0.5)
    field = NeuralStyleField(config, steps=100, generator=torch.Generator().manual_seed(0))
    assert torch.all(field.band_weights(0) == 0) and torch.all(field.band_weights(50) == 1)
    middle = field.band_weights(20)
    assert torch.all(middle[:-1] >= middle[1:]) and 0 < middle.sum() < 10  # low bands first
    norms = field.basis.norm(dim=0)
    assert torch.all(norms[:-1] <= norms[1:]), "bands are ordered by frequency"
    instant = NeuralStyleField(replace(config, progressive_fraction=0.0), steps=100)
    assert torch.all(instant.band_weights(0) == 1)


def test_plumbing_on_tiny_clip_displacement_along_normals_within_bound(tiny_clip):
    mesh = moved(icosphere(2), scale=3.0, offset=(10.0, -2.0, 5.0))
    calls, previews = [], []
    config = tiny_config(steps=4, network=replace(TINY_FIELD, max_displacement=0.05))
    result = stylize(mesh, "a red ball", tiny_clip, config,
                     progress=lambda step, total, **m: calls.append((step, total, m)),
                     on_preview=lambda step, image: previews.append((step, image)))
    n = mesh.num_vertices
    assert result.colors.shape == (n, 3) and result.displacement.shape == (n, 3) and result.steps == 4
    assert result.max_displacement == pytest.approx(0.05 * 3.0, rel=1e-5), "the bound is in the source's units"
    along = np.einsum("ij,ij->i", result.displacement, result.directions)
    assert np.all(np.abs(along) <= result.max_displacement * (1 + 1e-5))
    across = result.displacement - along[:, None] * result.directions
    assert np.abs(across).max() <= 1e-6 + 1e-5 * np.abs(along).max()
    assert np.abs(along).max() > 0, "the displacement head trained"
    np.testing.assert_allclose(np.linalg.norm(result.directions, axis=1), 1.0, rtol=1e-5)
    # Directions are the outward normals of the sphere in the source frame (normalisation undone).
    radial = (mesh.vertices - np.array([10.0, -2.0, 5.0])) / 3.0
    assert np.einsum("ij,ij->i", radial, result.directions).min() > 0.95
    assert np.all((result.colors >= 0) & (result.colors <= 1))
    assert [c[0] for c in calls] == [1, 2, 3, 4] and all(c[1] == 4 for c in calls)
    assert all({"loss", "loss_global", "loss_local", "loss_geometry", "eta_s"} <= set(c[2]) for c in calls)
    assert calls[-1][2]["eta_s"] == 0.0 and result.losses == [c[2]["loss"] for c in calls]
    assert [p[0] for p in previews] == [2, 4]
    assert previews[0][1].shape == (64, 64, 3) and previews[0][1].dtype == np.uint8


def test_same_seed_same_result_other_seed_another(tiny_clip):
    mesh = icosphere(1)
    runs = [stylize(mesh, "a blue ball", tiny_clip, tiny_config(steps=2, seed=s)) for s in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0].colors, runs[1].colors)
    np.testing.assert_array_equal(runs[0].displacement, runs[1].displacement)
    assert runs[0].losses == runs[1].losses
    assert not np.array_equal(runs[0].colors, runs[2].colors)
    generator = torch.Generator().manual_seed(5)
    explicit = stylize(mesh, "a blue ball", tiny_clip, tiny_config(steps=2, seed=99), generator=generator)
    np.testing.assert_array_equal(explicit.colors, runs[0].colors)


def test_cancel_is_honoured_within_a_step(tiny_clip):
    token = CancelToken()
    seen = []

    def progress(step, total, **metrics):
        seen.append(step)
        if step == 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        stylize(icosphere(1), "a ball", tiny_clip, tiny_config(steps=50), progress=progress, cancel=token)
    assert seen == [1, 2]


def test_colour_gradient_has_the_right_sign():
    """With an oracle that only knows colours, 'red' must make the mesh redder and 'blue' bluer."""
    oracle = ColourOracle()
    config = tiny_config(steps=12, network=replace(TINY_FIELD, width=16))
    config = replace(config, learning_rate=1e-2, geometry_augs=0)
    means = {word: stylize(icosphere(1), f"a {word} ball", oracle, config).display_colors.mean(axis=0)
             for word in ("red", "blue")}
    red, blue = means["red"], means["blue"]
    assert red[0] > blue[0] + 0.05 and blue[2] > red[2] + 0.05, (red, blue)
    assert red[0] > 0.55 > red[2] and blue[2] > 0.55 > blue[0]


def test_split_vertices_move_together_and_uvs_survive(tiny_clip):
    mesh = textured_cube()  # 24 vertices: each corner split three ways by the UV atlas
    result = stylize(mesh, "a wooden box", tiny_clip, tiny_config(steps=2))
    assert result.mesh.num_vertices == 24 and result.mesh.texture is not None
    np.testing.assert_array_equal(result.mesh.uv, mesh.uv)
    displaced = result.stylized_vertices
    for corner in np.unique(mesh.vertices, axis=0):
        rows = np.all(mesh.vertices == corner, axis=1)
        assert rows.sum() == 3
        assert np.ptp(displaced[rows], axis=0).max() == 0.0, "copies of one corner must not tear apart"
        assert np.ptp(result.colors[rows], axis=0).max() == 0.0


def test_optional_subdivision_and_size_limit(tiny_clip):
    config = tiny_config(steps=1, subdivide=True, subdivide_min_vertices=90)
    result = stylize(cube(), "a box", tiny_clip, config)
    assert result.subdivision_levels == 2 and result.mesh.num_vertices == 98 and result.mesh.num_faces == 12 * 16
    assert result.colors.shape == (result.mesh.num_vertices, 3)
    capped = stylize(cube(), "a box", tiny_clip, replace(config, max_faces=100))
    assert capped.subdivision_levels == 1 and capped.mesh.num_faces == 48, "never past max_faces"
    plain = stylize(cube(), "a box", tiny_clip, tiny_config(steps=1))
    assert plain.subdivision_levels == 0 and plain.mesh.num_vertices == 8


def test_losses_average_views_then_compare():
    views = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one group of two views
    target = torch.tensor([[1.0, 1.0]])
    assert cosine_loss(views, target, "view").item() == pytest.approx(-1.0)
    assert cosine_loss(views, target, "image").item() == pytest.approx(-(0.5**0.5))
    assert cosine_loss(views[0], target).dim() == 0


def test_score_views_on_held_out_cameras(tiny_clip):
    mesh = icosphere(1)
    grey = score_views(mesh, "a ball", tiny_clip)
    red = score_views(mesh, "a ball", tiny_clip, colors=np.tile([[0.8, 0.05, 0.05]], (mesh.num_vertices, 1)))
    assert grey.shape == (8,) and np.all(np.abs(grey) <= 1) and not np.allclose(grey, red)


def test_field_can_take_normals_too():
    field = NeuralStyleField(StyleFieldConfig(width=8, depth=0, frequencies=4, input_normals=True), steps=10)
    points, normals = torch.rand(5, 3), torch.nn.functional.normalize(torch.rand(5, 3), dim=1)
    colors, offsets = field(points, normals, step=10)
    assert colors.shape == (5, 3) and offsets.shape == (5,) and field.basis.shape == (6, 4)
    with pytest.raises(ValueError, match="pass normals"):
        field(points)
