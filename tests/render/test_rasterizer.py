"""The pure-PyTorch rasterizer against analytic answers and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend import external
from backend.render import raster_torch
from backend.render.camera import look_at, orbit_cameras, perspective, to_clip
from backend.render.rasterizer import RasterizerConfig, make_rasterizer

TRI = torch.tensor([[0, 1, 2]], dtype=torch.int32)


def _pixel_centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width]
    return (xs + 0.5) / width * 2 - 1, (ys + 0.5) / height * 2 - 1


def _inside(px, py, verts2d) -> np.ndarray:
    (x0, y0), (x1, y1), (x2, y2) = verts2d
    e0 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    e1 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    e2 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
    return ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))


def test_coverage_and_depth_of_a_known_triangle():
    # A tilted triangle with w = 1: coverage is exactly the set of pixel centres inside it and
    # z/w is the plane through its vertices.
    pos = torch.tensor([[-0.7, -0.6, -0.5, 1.0], [0.8, -0.2, 0.1, 1.0], [-0.1, 0.9, 0.6, 1.0]])
    rast = raster_torch.rasterize(pos, TRI, (48, 64))
    px, py = _pixel_centres(48, 64)
    expected = _inside(px, py, pos[:, :2].numpy())
    covered = rast[0, ..., 3].numpy() > 0
    assert covered.sum() > 500
    assert (covered == expected).all()
    # Depth: solve the plane z = a x + b y + c through the three vertices.
    a, b, c = np.linalg.solve(np.c_[pos[:, :2].numpy(), np.ones(3)], pos[:, 2].numpy())
    np.testing.assert_allclose(rast[0, ..., 2].numpy()[covered], (a * px + b * py + c)[covered], atol=1e-5)
    assert (rast[0, ..., 3].numpy()[covered] == 1).all()


def test_depth_test_keeps_the_nearer_triangle_and_both_windings():
    near = [[-0.9, -0.9, 0.2, 1.0], [0.9, -0.9, 0.2, 1.0], [0.0, 0.9, 0.2, 1.0]]
    far = [[-0.9, 0.9, 0.5, 1.0], [0.9, 0.9, 0.5, 1.0], [0.0, -0.9, 0.5, 1.0]]  # clockwise
    pos = torch.tensor(near + far)
    tri = torch.tensor([[3, 4, 5], [0, 1, 2]], dtype=torch.int32)
    rast = raster_torch.rasterize(pos, tri, (32, 32))
    ids = rast[0, ..., 3]
    px, py = _pixel_centres(32, 32)
    in_near = _inside(px, py, np.array(near)[:, :2])
    in_far = _inside(px, py, np.array(far)[:, :2])
    assert (ids.numpy()[in_near] == 2).all()
    assert (ids.numpy()[in_far & ~in_near] == 1).all()
    assert (ids.numpy()[~in_far & ~in_near] == 0).all()


def test_perspective_correct_interpolation_recovers_world_positions():
    # Interpolating world positions must give points on the true surface (the ray-plane hit).
    cams = orbit_cameras(torch.tensor([30.0]), torch.tensor([20.0]), 3.0, fov_deg=50.0)
    verts = torch.tensor([[-1.0, -0.5, -1.0], [1.2, -0.5, -0.8], [0.0, -0.3, 1.5]])
    clip = to_clip(verts, cams)
    rast = raster_torch.rasterize(clip, TRI, (40, 40))
    world = raster_torch.interpolate(verts, rast, TRI)[0]
    covered = rast[0, ..., 3] > 0
    assert covered.sum() > 100
    # Reproject the interpolated points: they must land on their own pixel centres.
    homo = torch.nn.functional.pad(world[covered], (0, 1), value=1.0) @ cams.mvp[0].T
    ndc = homo[:, :2] / homo[:, 3:]
    px, py = _pixel_centres(40, 40)
    centres = torch.tensor(np.stack([px, py], -1), dtype=torch.float32)[covered]
    torch.testing.assert_close(ndc, centres, atol=1e-4, rtol=0)


def test_barycentric_gradients_match_finite_differences():
    pos = torch.tensor([[-0.62, -0.51, 0.1, 1.1], [0.73, -0.24, 0.2, 0.9], [0.05, 0.77, 0.3, 1.3]],
                       dtype=torch.float64, requires_grad=True)

    def f(p):
        return raster_torch.rasterize(p, TRI, (12, 12))[..., :3]

    assert torch.autograd.gradcheck(f, (pos,), eps=1e-6, atol=1e-5)


def test_interpolate_and_texture_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(0)
    pos = torch.tensor([[-0.8, -0.8, 0.0, 1.0], [0.9, -0.7, 0.0, 1.0], [0.0, 0.9, 0.0, 1.0]], dtype=torch.float64)
    rast = raster_torch.rasterize(pos, TRI, (8, 8))
    attr = torch.rand(3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: raster_torch.interpolate(a, rast, TRI), (attr,))
    tex = torch.rand(1, 5, 7, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    # UVs away from texel centres so the bilinear cell does not change under the perturbation.
    uv = (torch.rand(1, 4, 4, 2, generator=gen, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    for mode in ("wrap", "clamp"):
        assert torch.autograd.gradcheck(lambda t, u: raster_torch.texture(t, u, mode), (tex, uv), eps=1e-7, atol=1e-5)


def test_texture_lookup_hits_texel_centres_and_wraps():
    tex = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4, 1)
    uv = torch.tensor([[[[0.125, 1 / 6], [0.625, 0.5], [1.125, 1 / 6]]]])
    out = raster_torch.texture(tex, uv, "wrap")[0, 0, :, 0]
    torch.testing.assert_close(out, torch.tensor([0.0, 6.0, 0.0]))


@pytest.mark.parametrize("vertex", [0, 1, 2])
def test_silhouette_gradient_matches_area_derivative(vertex: int):
    # d(sum of antialiased coverage)/d(vertex) must match the analytic derivative of the
    # triangle's area in pixels (within 10%).
    size = 64
    pos = torch.tensor([[-0.6, -0.5, 0.1, 1.0], [0.7, -0.3, 0.2, 1.0], [0.1, 0.8, 0.3, 1.0]], requires_grad=True)
    rast = raster_torch.rasterize(pos, TRI, (size, size))
    coverage = (rast[..., 3:4] > 0).float()
    raster_torch.antialias(coverage, rast, pos, TRI).sum().backward()
    screen = ((pos.detach()[:, :2] + 1) * size / 2).clone().requires_grad_(True)
    (x0, y0), (x1, y1), (x2, y2) = screen
    area = 0.5 * ((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0))
    area.backward()
    analytic = screen.grad[vertex] * size / 2  # d area / d clip-space x, y
    measured = pos.grad[vertex, :2]
    for axis in range(2):
        rel = abs(measured[axis] - analytic[axis]) / abs(analytic[axis])
        assert rel < 0.10, f"vertex {vertex} axis {axis}: {measured[axis]:.2f} vs {analytic[axis]:.2f}"


def test_antialias_leaves_interior_edges_alone():
    # Two coplanar triangles sharing an edge: the shared edge is no silhouette, so a constant image stays constant.
    pos = torch.tensor([[-0.8, -0.8, 0, 1.0], [0.8, -0.8, 0, 1.0], [0.8, 0.8, 0, 1.0], [-0.8, 0.8, 0, 1.0]])
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    rast = raster_torch.rasterize(pos, tri, (32, 32))
    covered = (rast[..., 3:4] > 0).float()
    out = raster_torch.antialias(covered, rast, pos, tri)
    inside = rast[0, ..., 3] > 0
    # Pixels whose four neighbours are covered too: away from the outer silhouette.
    interior = inside[1:-1, 1:-1] & inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
    diagonal = rast[0, 1:-1, 1:-1, 3] != rast[0, 2:, 1:-1, 3]
    assert (interior & diagonal).any(), "the shared edge must cross the interior"
    torch.testing.assert_close(out[0, 1:-1, 1:-1, 0][interior], torch.ones(int(interior.sum())))


def test_edge_topology_pairs_shared_edges():
    tri = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]], dtype=torch.int32)
    topo = raster_torch.edge_topology(tri)
    assert topo[0].tolist() == [-1, -1, 1]  # edge (2, 0) is shared with triangle 1
    assert topo[1].tolist() == [0, -1, -1]
    assert topo[2].tolist() == [-1, -1, -1]


def test_chunking_changes_nothing_and_batches_are_independent():
    from backend.geometry.primitives import icosphere

    mesh = icosphere(3)
    cams = orbit_cameras(torch.tensor([0.0, 70.0, 200.0]), torch.tensor([10.0, 40.0, -20.0]), 3.0)
    clip = to_clip(torch.tensor(mesh.vertices), cams)
    faces = torch.tensor(mesh.faces)
    big = raster_torch.rasterize(clip, faces, (64, 64))
    small = raster_torch.rasterize(clip, faces, (64, 64), max_pairs=97)
    torch.testing.assert_close(big, small)
    one = raster_torch.rasterize(clip[1:2], faces, (64, 64))
    torch.testing.assert_close(big[1:2], one)


def test_camera_look_at_and_projection_conventions():
    eye = torch.tensor([[0.0, 0.0, 3.0]])
    view = look_at(eye, torch.zeros(1, 3))
    origin = view[0] @ torch.tensor([0.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(origin, torch.tensor([0.0, 0.0, -3.0, 1.0]))
    clip = perspective(1.0, near=0.1, far=10.0) @ torch.tensor([0.0, 0.0, -0.1, 1.0])
    assert abs(clip[2] / clip[3] + 1) < 1e-5  # near plane maps to NDC -1


def test_unknown_implementation_is_a_clear_error():
    with pytest.raises(ValueError, match="implementation must be one of"):
        make_rasterizer(RasterizerConfig(implementation="opengl"))


@pytest.mark.skipif(external.HAS_NVDIFFRAST, reason="nvdiffrast is installed here")
def test_nvdiffrast_missing_says_how_to_fix():
    from backend.errors import DependencyMissingError

    with pytest.raises(DependencyMissingError, match="nvdiffrast is not installed") as info:
        make_rasterizer(RasterizerConfig(implementation="nvdiffrast"))
    assert "implementation='torch'" in info.value.hint


@pytest.mark.cuda
@pytest.mark.skipif(not (torch.cuda.is_available() and external.HAS_NVDIFFRAST), reason="needs CUDA and nvdiffrast")
def test_torch_and_nvdiffrast_agree():
    from backend.geometry.primitives import icosphere

    mesh = icosphere(4)
    cams = orbit_cameras(torch.arange(5.0) * 72, torch.full((5,), 25.0), 3.0, device="cuda")
    clip = to_clip(torch.tensor(mesh.vertices, device="cuda"), cams).contiguous()
    faces = torch.tensor(mesh.faces, device="cuda")
    attr = torch.rand(mesh.num_vertices, 3, device="cuda")
    results = {}
    for impl in ("torch", "nvdiffrast"):
        r = make_rasterizer(RasterizerConfig(implementation=impl), "cuda")
        rast = r.rasterize(clip, faces, (256, 256))
        results[impl] = (rast, r.interpolate(attr, rast, faces))
    (rt, it), (rn, inv) = results["torch"], results["nvdiffrast"]
    same = (rt[..., 3] == rn[..., 3]).float().mean().item()
    assert same >= 0.99, f"triangle ids agree on {same:.4f} of pixels"
    both = (rt[..., 3] > 0) & (rt[..., 3] == rn[..., 3])
    torch.testing.assert_close(it[both], inv[both], atol=1e-3, rtol=1e-3)


def test_antialias_topology_cache_follows_the_faces_not_their_address():
    # A renderer reused across meshes must not apply one mesh's edge adjacency to another.
    from backend.geometry.primitives import icosphere
    from backend.render.rasterizer import TorchRasterizer

    mesh = icosphere(2)
    cams = orbit_cameras(torch.tensor([30.0]), torch.tensor([20.0]), 3.0)
    clip = to_clip(torch.tensor(mesh.vertices), cams)
    reused = TorchRasterizer(RasterizerConfig(), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        faces = torch.tensor(mesh.faces)[torch.randperm(mesh.num_faces, generator=gen)]
        rast = reused.rasterize(clip, faces, (48, 48))
        color = torch.rand(1, 48, 48, 3, generator=gen)
        fresh = raster_torch.antialias(color, rast, clip, faces)
        torch.testing.assert_close(reused.antialias(color, rast, clip, faces), fresh)
        del faces
