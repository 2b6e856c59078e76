"""Photo to 3D by Gaussians (`backend.reconstruct`): the camera search, the photo's colours, densify and prune, the
mesh from the density, a whole small reconstruction, and its bad input. The splatting rasterizer itself is tested
in tests/render/test_splat.py; the job through the server in tests/server/test_server_retrieve.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.errors import InvalidInputError
from backend.geometry.validate import validate_mesh
from backend.models.clip import load_clip
from backend.reconstruct.extract import MeshExtractConfig, density_mesh, gaussian_colors
from backend.reconstruct.fit_gaussians import GaussianFitConfig
from backend.reconstruct.gaussian_model import DensifyConfig, GaussianModel
from backend.reconstruct.priors import unit_prior, volume_samples
from backend.reconstruct.reconstruct import ReconstructConfig, reconstruct
from backend.reconstruct.reference_view import ViewFitConfig, assumed_view, fitted_view, photo_colors
from backend.render.camera import orbit_cameras
from backend.render.renderer import MeshRenderer, RenderConfig
from backend.world.shape import make_shape


def _l_shape():
    """An L of two boxes, asymmetric about every vertical plane: one pose per silhouette."""
    from backend.world.parts import assemble, box

    joined = assemble([box((0.0, 0.0, 0.0), (1.2, 0.3, 0.3)), box((0.45, 0.45, 0.0), (0.3, 0.6, 0.3)),
                       box((-0.45, 0.0, 0.35), (0.3, 0.3, 0.4))], 1.0)
    from backend.geometry.mesh import Mesh

    return unit_prior(Mesh(joined.vertices, joined.faces), "retrieve", "L").mesh


def _photo_of(mesh, azimuth: float, elevation: float, size: int = 96):
    renderer = MeshRenderer(RenderConfig(size=size, background=(1.0, 1.0, 1.0)))
    camera = orbit_cameras([azimuth], [elevation], ViewFitConfig().distance * 1.3, 40.0)
    out = renderer.render(torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces).int(), camera)
    return out.image[0].numpy(), out.alpha[0, ..., 0].numpy() > 0.5


def test_the_camera_search_finds_the_pose_a_photo_was_taken_from():
    mesh = _l_shape()
    for azimuth, elevation in ((45.0, 20.0), (240.0, 40.0)):
        image, mask = _photo_of(mesh, azimuth, elevation)
        view = fitted_view(image, mask, mesh, ViewFitConfig(appearance_weight=0.0))
        assert (view.azimuth, view.elevation) == (azimuth, elevation)
        assert view.silhouette_iou > 0.8
        assert view.image.shape == (96, 96, 3) and view.mask.shape == (96, 96)


def test_without_a_prior_the_object_is_recentred_to_fill_the_frame():
    image = np.ones((120, 200, 3), np.float32)
    mask = np.zeros((120, 200), bool)
    mask[10:50, 150:170] = True  # 40 x 20 pixels, off-centre
    image[mask] = (0.8, 0.1, 0.1)
    view = assumed_view(image, mask, ViewFitConfig(size=64, fill=0.5))
    rows, cols = np.nonzero(view.mask.numpy() > 0.5)
    assert abs(rows.mean() - 32) < 1.5 and abs(cols.mean() - 32) < 1.5
    assert abs((rows.max() - rows.min() + 1) - 32) <= 2  # the longer side fills half the frame
    assert torch.allclose(view.image[32, 32], torch.tensor([0.8, 0.1, 0.1]), atol=0.02)
    assert torch.allclose(view.image[2, 2], torch.ones(3))  # white off the object


def test_gaussians_take_the_photo_colour_they_project_onto():
    mesh = _l_shape()
    image, mask = _photo_of(mesh, 45.0, 20.0)
    image = image.copy()
    image[mask] = (0.1, 0.7, 0.2)
    view = fitted_view(image, mask, mesh, ViewFitConfig(appearance_weight=0.0))
    points = volume_samples(mesh, 500, np.random.default_rng(0))
    colors = photo_colors(points, view)
    assert np.abs(colors - np.array([0.1, 0.7, 0.2])).max(axis=1).mean() < 0.1


def test_densify_clones_small_splits_large_and_prunes_transparent_gaussians():
    points = np.array([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]], np.float32)
    model = GaussianModel.from_points(points, np.full((4, 3), 0.5, np.float32), scale=0.01)
    with torch.no_grad():
        model.log_scales[1] = np.log(0.1)  # large: split
        model.opacity_logits[3] = -10.0  # transparent: pruned
    model.grad_sum[:] = torch.tensor([1.0, 1.0, 0.0, 0.0])  # 0 (small) and 1 (large) are hot
    model.grad_count[:] = 1
    counts = model.densify_and_prune(DensifyConfig(split_scale=0.03), torch.Generator().manual_seed(0))
    assert counts == {"cloned": 1, "split": 1, "pruned": 1, "gaussians": 5}
    # Kept: 0, 2 and the clone of 0; the parent 1 became two children 1.6x smaller.
    scales = torch.exp(model.log_scales).max(dim=1).values
    assert sorted(scales.tolist()) == pytest.approx([0.01, 0.01, 0.01, 0.1 / 1.6, 0.1 / 1.6], rel=1e-4)
    assert all(p.requires_grad and p.is_leaf for p in model.parameters())


def test_the_density_mesh_of_gaussians_on_a_sphere_is_that_sphere():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=(3000, 3))
    points = 0.6 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    model = GaussianModel.from_points(points.astype(np.float32), np.tile([[0.9, 0.2, 0.1]], (3000, 1)), opacity=0.9)
    params = model.detached()
    mesh = validate_mesh(density_mesh(params, MeshExtractConfig(resolution=48)))
    radius = np.linalg.norm(mesh.vertices, axis=1)
    scale = float(params["scales"].mean())  # the level set sits about a Gaussian's size outside the centres
    assert 0.6 < np.median(radius) < 0.6 + 2.5 * scale and radius.std() < 0.05
    colors = gaussian_colors(mesh.vertices, params)
    assert np.allclose(colors, [0.9, 0.2, 0.1], atol=0.02)


def test_a_small_reconstruction_from_a_world_photo_makes_a_textured_mesh():
    from backend.world.views import render_photo

    shape = make_shape(3, "mug")
    photo = render_photo(shape, 96, torch.Generator().manual_seed(0))
    config = ReconstructConfig(init="sphere", gaussians=500, view=ViewFitConfig(size=48),
                               fit=GaussianFitConfig(steps=30, preview_every=10),
                               mesh=MeshExtractConfig(resolution=32, texture_size=64, refine_steps=3))
    previews, stages = [], set()
    result = reconstruct(photo.image.numpy(), photo.mask.numpy(), load_clip("tiny"), config,
                         preview=lambda step, image: previews.append((step, tuple(image.shape))),
                         progress=lambda step, total, stage="", **m: stages.add(stage))
    assert previews == [(10, (48, 48, 3)), (20, (48, 48, 3)), (30, (48, 48, 3))]
    assert {"prior", "gaussians", "mesh", "texture"} <= stages
    losses = result.fit.losses
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    mesh = validate_mesh(result.mesh)
    assert mesh.uv is not None and mesh.texture.shape == (64, 64, 3) and mesh.texture.dtype == np.uint8
    assert np.abs(mesh.vertices).max() <= 1.0 + 1e-5
    # The mesh seen from the reference camera covers the object's mask.
    renderer = MeshRenderer(RenderConfig(size=48))
    alpha = renderer.render(torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces).int(),
                            result.reference.camera).alpha[0, ..., 0] > 0.5
    target = result.reference.mask > 0.5
    assert float((alpha & target).sum() / (alpha | target).sum()) > 0.5


@pytest.mark.parametrize("mask_kind, words", [
    ("empty", "the mask is empty"),
    ("full", "covers the whole photo"),
])
def test_a_mask_with_nothing_to_reconstruct_is_refused(mask_kind, words):
    image = np.full((64, 64, 3), 0.5, np.float32)
    mask = np.zeros((64, 64), bool) if mask_kind == "empty" else np.ones((64, 64), bool)
    with pytest.raises(InvalidInputError, match=words) as info:
        reconstruct(image, mask, load_clip("tiny"), ReconstructConfig(init="sphere"))
    assert info.value.hint


@pytest.mark.parametrize("changes, words", [
    ({"init": "dream"}, "init must be one of"),
    ({"gaussians": 4}, "initial Gaussians"),
    ({"fit": GaussianFitConfig(steps=0)}, "Gaussian steps"),
    ({"view": ViewFitConfig(size=8)}, "view size"),
    ({"mesh": MeshExtractConfig(level=0.0)}, "density levels"),
    ({"mesh": MeshExtractConfig(levels=())}, "density levels"),
])
def test_bad_reconstruction_configs_name_the_fix(changes, words):
    with pytest.raises(InvalidInputError, match=words) as info:
        ReconstructConfig(**changes).check()
    assert info.value.hint


def test_a_retrieval_prior_needs_a_library():
    image = np.full((64, 64, 3), 0.5, np.float32)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    with pytest.raises(InvalidInputError, match="needs a library database"):
        reconstruct(image, mask, load_clip("tiny"), ReconstructConfig(init="retrieve"))


def test_shape_scores_find_the_yaw_and_tell_shapes_apart():
    from backend.reconstruct.shape_metrics import _yaw, aligned_shape_scores

    chair, mug = make_shape(3, "chair").mesh, make_shape(3, "mug").mesh
    turned = chair.copy(vertices=_yaw(chair.vertices, 90.0).astype(np.float32))
    same = aligned_shape_scores(turned, chair)
    assert same["voxel_iou"] > 0.97 and same["chamfer"] < 0.03 and same["yaw"] == 270.0
    other = aligned_shape_scores(mug, chair)
    assert other["voxel_iou"] < 0.5 and other["chamfer"] > 0.1
