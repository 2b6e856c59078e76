"""Gaussian splatting: gradients against finite differences, fitting a known scene, the mesh renderer's pixel
convention, depth order, the density field against a brute-force sum, gsplat parity on CUDA, and input errors."""

from __future__ import annotations

import math

import pytest
import torch

from backend import external
from backend.errors import DependencyMissingError, InvalidInputError
from backend.render import splat
from backend.render.camera import orbit_cameras
from backend.render.splat import SplatConfig, gaussian_density, render_gaussians

TORCH = SplatConfig(implementation="torch")
needs_gsplat = pytest.mark.skipif(not (torch.cuda.is_available() and external.HAS_GSPLAT),
                                  reason="needs CUDA and gsplat (pip install -e '.[gsplat]' on a CUDA machine)")


def random_scene(count: int, seed: int, dtype=torch.float32, spread: float = 0.5):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(count, 3, generator=g, dtype=dtype) - 0.5) * 2 * spread
    scales = 0.05 + 0.15 * torch.rand(count, 3, generator=g, dtype=dtype)
    quats = torch.randn(count, 4, generator=g, dtype=dtype)
    opacities = 0.3 + 0.6 * torch.rand(count, generator=g, dtype=dtype)
    colors = torch.rand(count, 3, generator=g, dtype=dtype)
    return means, scales, quats, opacities, colors


def test_gradients_match_finite_differences():
    # float64, tiny scene over several tiles. min_alpha is so small that no pixel's alpha crosses it, opacities stay
    # below max_alpha, and every Gaussian's radius covers the image: a perturbation crosses no threshold.
    params = [t.requires_grad_() for t in random_scene(3, seed=1, dtype=torch.float64, spread=0.3)]
    cameras = orbit_cameras(torch.tensor([20.0, 150.0]), torch.tensor([10.0, -20.0]), 2.5)
    cameras.view, cameras.proj = cameras.view.double(), cameras.proj.double()
    config = SplatConfig(implementation="torch", tile=5, min_alpha=1e-30, max_alpha=0.999)
    weights = torch.randn(3, 2, 11, 12, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    background = torch.tensor([0.2, 0.5, 0.1], dtype=torch.float64)

    def projections(*gaussians):
        out = render_gaussians(*gaussians, cameras, (11, 12), background=background, config=config)
        stacked = torch.cat([out.image, out.alpha[..., None], out.depth[..., None]], -1)
        return (weights * stacked).flatten(1).sum(1)

    assert torch.autograd.gradcheck(projections, params, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_fits_eight_known_gaussians():
    torch.manual_seed(0)
    target = random_scene(8, seed=2)
    cameras = orbit_cameras(torch.tensor([0.0, 120.0, 240.0]), torch.tensor([15.0, -10.0, 30.0]), 3.2)
    size = 40
    with torch.no_grad():
        reference = render_gaussians(*target, cameras, size, config=TORCH).image
    means, scales, quats, opacities, colors = target
    g = torch.Generator().manual_seed(3)
    params = {
        "means": (means + 0.08 * torch.randn(means.shape, generator=g)).requires_grad_(),
        "log_scales": (scales.log() + 0.3 * torch.randn(scales.shape, generator=g)).requires_grad_(),
        "quats": (quats + 0.3 * torch.randn(quats.shape, generator=g)).requires_grad_(),
        "logit_opacities": torch.logit(opacities).detach().add(0.5).requires_grad_(),
        "colors": torch.rand(colors.shape, generator=g).requires_grad_(),
    }
    optimizer = torch.optim.Adam(params.values(), lr=0.02)

    def loss_now():
        image = render_gaussians(params["means"], params["log_scales"].exp(), params["quats"],
                                 torch.sigmoid(params["logit_opacities"]), params["colors"], cameras, size,
                                 config=TORCH).image
        return ((image - reference) ** 2).mean(), image

    first = float(loss_now()[0].detach())
    for _ in range(250):
        optimizer.zero_grad()
        loss, _ = loss_now()
        loss.backward()
        optimizer.step()
    last, image = (t.detach() for t in loss_now())
    assert float(last) < first / 10, (first, float(last))
    assert float((image - reference).abs().max()) < 0.1


def test_same_pixel_as_the_mesh_renderer():
    from backend.geometry.primitives import icosphere
    from backend.render.rasterizer import RasterizerConfig
    from backend.render.renderer import MeshRenderer, RenderConfig

    size, centre = 48, torch.tensor([0.45, -0.3, 0.2])
    cameras = orbit_cameras(torch.tensor([35.0, -60.0]), torch.tensor([25.0, -15.0]), 3.0)
    mesh = icosphere(3, radius=0.2)
    renderer = MeshRenderer(RenderConfig(size=size, background=(0.0, 0.0, 0.0), antialias=False,
                                         rasterizer=RasterizerConfig(implementation="torch", kernel="pure")))
    vertices = torch.tensor(mesh.vertices, dtype=torch.float32) + centre
    faces = torch.tensor(mesh.faces, dtype=torch.int32)
    mesh_alpha = renderer.render(vertices, faces, cameras, shade=False).alpha[..., 0]
    splat_alpha = render_gaussians(centre[None], torch.full((1, 3), 0.04), torch.tensor([[1.0, 0, 0, 0]]),
                                   torch.tensor([0.9]), torch.ones(1, 3), cameras, size, config=TORCH).alpha
    rows, cols = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    for view in range(len(cameras)):
        centroids = [torch.stack([(a * rows).sum() / a.sum(), (a * cols).sum() / a.sum()])
                     for a in (mesh_alpha[view], splat_alpha[view])]
        assert mesh_alpha[view].sum() > 40  # the sphere covers a disc of pixels, not one
        # Measured within 0.06 px; half a pixel off (another pixel-centre convention) fails.
        assert torch.allclose(centroids[0], centroids[1], atol=0.15), centroids
        peak = divmod(int(splat_alpha[view].argmax()), size)
        assert mesh_alpha[view][peak] == 1  # the Gaussian's brightest pixel is covered by the sphere


def test_front_gaussian_hides_the_back_one():
    cameras = orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), 3.0)  # eye on +Z looking at the origin
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    scales, quats = torch.full((2, 3), 0.2), torch.tensor([[1.0, 0, 0, 0]] * 2)
    opacities = torch.tensor([0.95, 0.95])
    for red_z, expect in ((0.4, 0), (-0.4, 2)):
        means = torch.tensor([[0.0, 0.0, red_z], [0.0, 0.0, -red_z]])
        out = render_gaussians(means, scales, quats, opacities, colors, cameras, 24, config=TORCH)
        pixel = out.image[0, 12, 12]
        assert int(pixel.argmax()) == expect and pixel[expect] > 0.9, pixel
        assert abs(float(out.depth[0, 12, 12]) - (3.0 - 0.4)) < 0.1  # mostly the front one's depth


@pytest.mark.parametrize("grid_entries", [None, 20000])  # 20000: the grid's cells must grow to fit
def test_density_matches_brute_force(grid_entries, monkeypatch):
    if grid_entries:
        monkeypatch.setattr(splat, "_DENSITY_GRID_ENTRIES", grid_entries)
    means, scales, quats, opacities, _ = random_scene(300, seed=4)
    scales = scales * torch.tensor([1.0, 0.3, 2.0])  # anisotropic, rotated
    points = (torch.rand(4000, 3, generator=torch.Generator().manual_seed(5)) - 0.5) * 1.6
    fast = gaussian_density(points, means, scales, quats, opacities, chunk=5000)
    from backend.render.splat_torch import quat_to_rotmat
    local = torch.einsum("nji,mnj->mni", quat_to_rotmat(quats), points[:, None] - means[None]) / scales
    m2 = (local ** 2).sum(-1)
    brute = torch.where(m2 <= 9, opacities * torch.exp(-0.5 * m2), 0.0).sum(1)
    assert brute.max() > 0.5 and (brute > 0).float().mean() > 0.5  # the points do sit inside the Gaussians
    assert torch.allclose(fast, brute, atol=1e-5)
    outside = gaussian_density(torch.tensor([[9.0, 9.0, 9.0]]), means, scales, quats, opacities)
    assert outside.tolist() == [0.0]


@pytest.mark.cuda
@needs_gsplat
def test_gsplat_agrees_with_torch():
    scene = [t.cuda() for t in random_scene(40, seed=6)]
    cameras = orbit_cameras(torch.tensor([10.0, 200.0]), torch.tensor([20.0, -5.0]), 3.0, device="cuda")
    background = torch.tensor([0.1, 0.2, 0.3], device="cuda")
    ours = render_gaussians(*scene, cameras, (48, 56), background=background, config=TORCH)
    theirs = render_gaussians(*scene, cameras, (48, 56), background=background,
                              config=SplatConfig(implementation="gsplat"))
    assert float((ours.image - theirs.image).abs().max()) < 0.02
    assert float((ours.alpha - theirs.alpha).abs().max()) < 0.02
    covered = ours.alpha > 0.5
    assert float((ours.depth - theirs.depth)[covered].abs().max()) < 0.02


@pytest.mark.skipif(external.HAS_GSPLAT and torch.cuda.is_available(), reason="gsplat and CUDA are both here")
def test_gsplat_without_it_or_without_cuda_says_the_fix():
    scene = random_scene(2, seed=7)
    cameras = orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), 3.0)
    with pytest.raises(DependencyMissingError) as caught:
        render_gaussians(*scene, cameras, 16, config=SplatConfig(implementation="gsplat"))
    assert "implementation='torch'" in caught.value.hint
    # auto falls back to the PyTorch path.
    assert render_gaussians(*scene, cameras, 16).image.shape == (1, 16, 16, 3)


@pytest.mark.parametrize("bad, needle", [
    ({"scales": torch.full((3, 3), 0.1)}, "scales must be"),
    ({"colors": torch.rand(2, 4)}, "colors must be"),
    ({"opacities": torch.rand(2, 1)}, "opacities must be"),
    ({"scales": torch.tensor([[0.1, 0.0, 0.1], [0.1, 0.1, 0.1]])}, "positive"),
    ({"quats": torch.zeros(2, 4)}, "quaternion"),
    ({"size": 0}, "at least 1x1"),
    ({"size": (16, 0)}, "at least 1x1"),
    ({"background": torch.zeros(4)}, "background"),
])
def test_bad_inputs_say_the_fix(bad, needle):
    means, scales, quats, opacities, colors = random_scene(2, seed=8)
    args = {"means": means, "scales": scales, "quats": quats, "opacities": opacities, "colors": colors,
            "cameras": orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), 3.0), "size": 16} | bad
    with pytest.raises(InvalidInputError) as caught:
        render_gaussians(**args)
    assert needle in caught.value.message and caught.value.hint


@pytest.mark.parametrize("config, needle", [
    (SplatConfig(implementation="cuda"), "unknown splatting implementation"),
    (SplatConfig(tile=0), "tile"),
    (SplatConfig(near=0.0), "near"),
    (SplatConfig(blur=-1.0), "blur"),
    (SplatConfig(min_alpha=0.5, max_alpha=0.4), "min_alpha"),
])
def test_bad_configs_say_the_fix(config, needle):
    cameras = orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), 3.0)
    with pytest.raises(InvalidInputError) as caught:
        render_gaussians(*random_scene(1, seed=9), cameras, 8, config=config)
    assert needle in caught.value.message and caught.value.hint


def test_density_rejects_bad_points():
    with pytest.raises(InvalidInputError, match="points must be"):
        gaussian_density(torch.zeros(4, 2), *random_scene(2, seed=9)[:4])


def test_empty_scene_shows_the_background():
    cameras = orbit_cameras(torch.tensor([0.0]), torch.tensor([0.0]), 3.0)
    empty = render_gaussians(*random_scene(0, seed=9), cameras, 8, background=torch.tensor([0.0, 1.0, 0.0]),
                             config=TORCH)
    assert torch.equal(empty.image[0, 3, 3], torch.tensor([0.0, 1.0, 0.0])) and float(empty.alpha.sum()) == 0
    assert math.isfinite(float(empty.depth.sum()))
