"""The point-cloud shape encoder (issue 23): coloured surface samples, an order-invariant Point-BERT-style encoder,
its training against the domain CLIP on world shapes, and its checkpoint's CLIP check."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from library_helpers import one_thread
from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.normalize import normalize_to_unit_sphere
from backend.geometry.point_samples import DEFAULT_GREY, coloured_points
from backend.models.clip import load_clip
from backend.retrieve.point_encoder import (PointEncoder, PointEncoderConfig, farthest_point_sample,
                                            load_point_encoder, save_point_encoder)
from backend.retrieve.train_points import PointTrainConfig, recall_at_1, train_point_encoder, world_teacher
from backend.world.shape import make_shape

pytestmark = pytest.mark.timeout(300)

TINY = PointEncoderConfig(embed_dim=16, centres=16, group_size=8, width=32, group_hidden=16, layers=1, heads=2)
SMALL = PointEncoderConfig(centres=32, group_size=16, width=64, group_hidden=32, layers=2, heads=4)
TRAIN = PointTrainConfig(shapes=16, seed=3, points=256, clouds_per_shape=2, views=2, captions_per_shape=2,
                         steps=40, batch=16, lr=1e-3, warmup=5)


def quad(texture: np.ndarray) -> Mesh:
    """A unit square in the z = 0 plane, +y up, whose uv (glTF: v down) put the texture's top row at the top."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float32)
    return Mesh(vertices, np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32), uv=uv, texture=texture)


# ------------------------------------------------------------------------------------------------ samples


def test_samples_read_the_texture_with_the_top_left_origin():
    texture = np.zeros((32, 32, 3), dtype=np.uint8)
    blocks = {(0, 0): (255, 0, 0), (0, 1): (0, 255, 0), (1, 0): (0, 0, 255), (1, 1): (255, 255, 255)}
    for (row, col), colour in blocks.items():
        texture[row * 16:(row + 1) * 16, col * 16:(col + 1) * 16] = colour
    mesh = quad(texture)
    points = coloured_points(mesh, 4000, np.random.default_rng(1))
    unit, similarity = normalize_to_unit_sphere(mesh)
    xy = similarity.invert(points[:, :3])[:, :2]  # back on the unit square: x right, y up
    assert np.abs(similarity.invert(points[:, :3])[:, 2]).max() < 1e-5
    # Away from block borders and the repeating edge (bilinear blends within a texel of them), colours are exact.
    inner = np.all((np.abs(xy - 0.5) > 1 / 32) & (np.abs(xy - 0.5) < 0.5 - 1 / 32), axis=1)
    assert inner.sum() > 3000
    top = xy[:, 1] > 0.5
    left = xy[:, 0] < 0.5
    for (row, col), colour in blocks.items():
        chosen = inner & (top == (row == 0)) & (left == (col == 0))
        assert chosen.sum() > 50
        np.testing.assert_allclose(points[chosen, 3:], np.tile(np.array(colour) / 255.0, (chosen.sum(), 1)), atol=1e-5)


def test_samples_of_a_textured_world_shape_take_its_pattern_colours():
    shape = make_shape(7, "chair", pattern="checks")
    points = coloured_points(shape.mesh, 3000, np.random.default_rng(0))
    assert points.shape == (3000, 6) and points.dtype == np.float32
    radius = np.linalg.norm(points[:, :3], axis=1)
    assert radius.max() <= 1.0 + 1e-5 and radius.max() > 0.8  # the unit sphere frame
    unit, _ = normalize_to_unit_sphere(shape.mesh)
    low, high = unit.vertices.min(axis=0), unit.vertices.max(axis=0)
    assert np.all(points[:, :3] >= low - 1e-5) and np.all(points[:, :3] <= high + 1e-5)
    texels = shape.mesh.texture[..., :3].reshape(-1, 3).astype(np.float64) / 255.0
    palette = np.unique(np.round(texels, 3), axis=0)
    nearest = np.linalg.norm(points[:, None, 3:] - palette[None], axis=-1).min(axis=1)
    assert np.mean(nearest < 0.03) > 0.8, "most samples fall inside a pattern cell and take a texel's colour"
    # Both tones of the checks show: the samples are not one flat colour.
    light = texels.sum(axis=1) > np.median(texels.sum(axis=1))
    dark_mean, light_mean = texels[~light].sum(axis=1).mean(), texels[light].sum(axis=1).mean()
    brightness = points[:, 3:].sum(axis=1)
    threshold = 0.5 * (dark_mean + light_mean)
    assert 0.1 < np.mean(brightness > threshold) < 0.9


def test_samples_take_vertex_colours_else_grey():
    mesh = quad(np.zeros((2, 2, 3), dtype=np.uint8)).copy(texture=None, uv=None)
    red = mesh.copy(vertex_colors=np.tile(np.array([[1.0, 0.0, 0.0]], dtype=np.float32), (4, 1)))
    np.testing.assert_allclose(coloured_points(red, 50)[:, 3:], np.tile([1.0, 0.0, 0.0], (50, 1)), atol=1e-6)
    np.testing.assert_allclose(coloured_points(mesh, 50)[:, 3:], np.tile(DEFAULT_GREY, (50, 1)), atol=1e-6)


def test_bad_sampling_inputs_say_the_fix():
    mesh = quad(np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(InvalidInputError, match="positive integer") as info:
        coloured_points(mesh, 0)
    assert info.value.hint
    with pytest.raises(InvalidInputError, match="no triangles"):
        coloured_points(mesh.copy(faces=np.zeros((0, 3), dtype=np.int32)), 10)
    with pytest.raises(InvalidInputError, match="uv") as info:
        coloured_points(mesh.copy(uv=np.zeros((3, 2), dtype=np.float32)), 10)
    assert "per vertex" in info.value.hint


# ------------------------------------------------------------------------------------------------ encoder


def world_cloud(seed: int, category: str, count: int = 256) -> torch.Tensor:
    return torch.as_tensor(coloured_points(make_shape(seed, category).mesh, count, np.random.default_rng(seed)))


def test_the_encoder_ignores_point_order_but_not_the_shape():
    torch.manual_seed(0)
    model = PointEncoder(TINY).eval()
    cloud = world_cloud(5, "table")
    shuffled = cloud[torch.randperm(len(cloud), generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        a, b = model(cloud), model(shuffled)
        other = model(world_cloud(6, "lamp"))
    assert a.shape == (1, TINY.embed_dim)
    torch.testing.assert_close(torch.linalg.norm(a, dim=-1), torch.ones(1))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert (a - other).abs().max() > 1e-3
    # FPS starts from the point farthest from the centroid, wherever it is in the rows.
    first = farthest_point_sample(cloud[None, :, :3], 4)[0, 0]
    assert first == (cloud[:, :3] - cloud[:, :3].mean(0)).norm(dim=1).argmax()


def test_bad_clouds_say_the_fix():
    model = PointEncoder(TINY)
    with pytest.raises(InvalidInputError, match="xyz \\+ rgb") as info:
        model(torch.zeros(2, 64, 3))
    assert "coloured_points" in info.value.hint
    with pytest.raises(InvalidInputError, match="too small") as info:
        model(torch.zeros(1, TINY.min_points - 1, 6))
    assert "larger count" in info.value.hint
    bad = world_cloud(5, "table")
    bad[3, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="finite"):
        model(bad)
    with pytest.raises(InvalidInputError, match="heads"):
        PointEncoderConfig(width=30, heads=4)
    with pytest.raises(InvalidInputError, match="loss"):
        PointTrainConfig(loss="triplet")


# ------------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("points") / "points.pt"
    with one_thread():
        clip = load_clip("domain")
        data = world_teacher(clip, TRAIN)
        model, records = train_point_encoder(data, TRAIN, SMALL, out=out)
    return clip, data, model, records, out


def test_training_against_the_domain_clip_lowers_the_loss(trained):
    clip, data, model, records, out = trained
    assert data.clouds.shape == (16, 2, 256, 6)
    assert data.image.shape == (16, clip.embed_dim) and data.text.shape == (16, 2, clip.embed_dim)
    assert len(records) == TRAIN.steps
    first = np.mean([r["loss"] for r in records[:5]])
    last = np.mean([r["loss"] for r in records[-5:]])
    assert last < 0.8 * first, (first, last)
    assert all(np.isfinite(r["image"]) and np.isfinite(r["text"]) for r in records)
    # After training, a shape's image target finds its own cloud among the 16 more often than chance (1/16).
    assert recall_at_1(model, data.clouds[:, 0], data.image) > 0.25


def test_the_checkpoint_reloads_for_its_clip_and_is_refused_for_another(trained, tmp_path):
    clip, data, model, records, out = trained
    loaded = load_point_encoder(out, "domain")
    assert loaded.clip_spec == clip.spec
    cloud = data.clouds[:3, 0]
    torch.testing.assert_close(loaded.encode(cloud), model.encode(cloud))
    assert load_point_encoder(out).clip_spec == clip.spec  # None: the recorded CLIP
    with pytest.raises(InvalidInputError, match="'domain'.*'tiny'") as info:
        load_point_encoder(out, "tiny")
    assert "--clip domain" in info.value.hint and "train_points" in info.value.hint

    other = PointEncoder(TINY)
    other.clip_spec = "tiny"
    path = save_point_encoder(tmp_path / "tiny.pt", other, TRAIN, None, 0, [])
    with pytest.raises(InvalidInputError, match="trained for the CLIP 'tiny', not 'domain'"):
        load_point_encoder(path, "domain")
    with pytest.raises(InvalidInputError, match="no point encoder"):
        load_point_encoder(tmp_path / "missing.pt", "domain")
    torch.save({"kind": "taskformer"}, tmp_path / "other.pt")
    with pytest.raises(InvalidInputError, match="not a point encoder"):
        load_point_encoder(tmp_path / "other.pt", "domain")


def test_hard_contrastive_training_runs_and_lowers_the_loss(trained):
    clip, data, model, records, out = trained
    config = replace(TRAIN, loss="hcl", steps=30, learn_temperature=False)
    with one_thread():
        _, hcl = train_point_encoder(data, config, TINY)
    assert all(r["temperature"] == pytest.approx(TRAIN.temperature) for r in hcl)
    assert np.mean([r["loss"] for r in hcl[-5:]]) < np.mean([r["loss"] for r in hcl[:5]])


def test_the_encoder_places_unseen_shapes_near_their_views():
    """The claim of issue 23, small: trained on 48 world shapes, the encoder embeds 24 shapes it never saw so that
    the domain CLIP's embedding of each one's views finds its own cloud among the 24 (chance: 1/24; 0.83 measured)."""
    config = PointTrainConfig(shapes=48, seed=11, points=512, clouds_per_shape=2, views=4, captions_per_shape=3,
                              steps=150, batch=32, lr=1e-3, warmup=20)
    with one_thread():
        clip = load_clip("domain")
        model, _ = train_point_encoder(world_teacher(clip, config), config, SMALL)
        unseen = world_teacher(clip, replace(config, shapes=24, seed=12345))
        assert recall_at_1(model, unseen.clouds[:, 0], unseen.image) > 0.5
        assert recall_at_1(model, unseen.clouds[:, 0], unseen.text[:, 0]) > 0.5
