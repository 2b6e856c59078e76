"""The rasterizer's analytic backward against its former autograd implementation and finite differences.

The `ref_*` functions are the differentiable parts of `raster_torch` as they were before the analytic
backward (autograd through small ops), kept verbatim as the reference. Visibility (which triangle wins
each pixel) has no gradient and is shared.
"""

from __future__ import annotations

import pytest
import torch

from backend.render import raster_torch
from backend.render.camera import fit_distance, orbit_cameras, to_clip



def ref_rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int], max_pairs: int = 1 << 22) -> torch.Tensor:
    """Rasterizes triangles.

    pos: [B, V, 4] (or [V, 4]) float32 clip-space positions; differentiable.
    tri: [F, 3] int32 vertex indices.
    resolution: (height, width) in pixels.
    Returns rast: [B, H, W, 4] float32 (u, v, z/w, triangle_id + 1), row 0 at the bottom.
    """
    pos = raster_torch._as_batched(pos)
    tri = tri.long()
    height, width = int(resolution[0]), int(resolution[1])
    batch = pos.shape[0]
    ids = raster_torch._visibility(pos.detach(), tri, height, width, max_pairs)
    covered = torch.nonzero(ids).squeeze(1)
    out = pos.new_zeros(batch * height * width, 4)
    if covered.numel() == 0:
        return out.reshape(batch, height, width, 4)
    face = ids[covered] - 1
    b = torch.div(covered, height * width, rounding_mode="floor")
    rem = covered - b * height * width
    py = torch.div(rem, width, rounding_mode="floor")
    px = rem - py * width
    # Differentiable recomputation of the barycentrics for the visible triangle only.
    verts = pos[b.unsqueeze(1), tri[face]]  # [P, 3, 4]
    w = verts[..., 3]
    nx = verts[..., 0] / w
    ny = verts[..., 1] / w
    cx = (px.to(pos.dtype) + 0.5) / width * 2.0 - 1.0
    cy = (py.to(pos.dtype) + 0.5) / height * 2.0 - 1.0
    area = (nx[:, 1] - nx[:, 0]) * (ny[:, 2] - ny[:, 0]) - (nx[:, 2] - nx[:, 0]) * (ny[:, 1] - ny[:, 0])
    s0 = ((nx[:, 1] - cx) * (ny[:, 2] - cy) - (nx[:, 2] - cx) * (ny[:, 1] - cy)) / area
    s1 = ((nx[:, 2] - cx) * (ny[:, 0] - cy) - (nx[:, 0] - cx) * (ny[:, 2] - cy)) / area
    s2 = 1.0 - s0 - s1
    zw = s0 * verts[:, 0, 2] / w[:, 0] + s1 * verts[:, 1, 2] / w[:, 1] + s2 * verts[:, 2, 2] / w[:, 2]
    # Perspective correction: weights proportional to screen barycentric / w.
    p0, p1, p2 = s0 / w[:, 0], s1 / w[:, 1], s2 / w[:, 2]
    norm = p0 + p1 + p2
    values = torch.stack([p0 / norm, p1 / norm, zw, face.to(pos.dtype) + 1.0], dim=1)
    out = out.index_put((covered,), values)
    return out.reshape(batch, height, width, 4)


def ref_interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Interpolates vertex attributes over the pixels.

    attr: [V, C] or [B, V, C] float32 per-vertex attributes.
    rast: [B, H, W, 4] output of `rasterize`.
    tri: [F, 3] int32.
    Returns [B, H, W, C]; zero where no triangle covers the pixel.
    """
    batch, height, width, _ = rast.shape
    channels = attr.shape[-1]
    flat = rast.reshape(-1, 4)
    covered = torch.nonzero(flat[:, 3] > 0).squeeze(1)  # work on covered pixels only
    face = flat[covered, 3].long() - 1
    corner = tri.long().index_select(0, face)  # [P, 3]
    if attr.dim() == 3:
        num_vertices = attr.shape[1]
        b = torch.div(covered, height * width, rounding_mode="floor")
        corner = corner + (b * num_vertices).unsqueeze(1)
        attr = attr.reshape(-1, channels)
    corners = attr.index_select(0, corner.reshape(-1)).reshape(-1, 3, channels)
    uv = flat.index_select(0, covered)
    u, v = uv[:, 0:1], uv[:, 1:2]
    values = corners[:, 2] + u * (corners[:, 0] - corners[:, 2]) + v * (corners[:, 1] - corners[:, 2])
    out = attr.new_zeros(batch * height * width, channels).index_copy(0, covered, values.to(attr.dtype))
    return out.reshape(batch, height, width, channels)


def ref_antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor,
              topology: torch.Tensor | None = None) -> torch.Tensor:
    """Analytic antialiasing of silhouette edges; gives gradients w.r.t. vertex positions.

    color: [B, H, W, C] float32 shaded image (same orientation as rast).
    rast: [B, H, W, 4] from `rasterize(pos, tri, ...)`.
    pos: [B, V, 4] or [V, 4] clip-space positions used for `rast`.
    tri: [F, 3] int32.
    topology: `raster_torch.edge_topology(tri)`, computed here if not given.
    Returns [B, H, W, C]: for each pair of neighbouring pixels covered by different triangles (or
    one by none), the silhouette edge between them moves colour across the pair in proportion to
    where it crosses the segment joining the pixel centres.
    """
    pos = raster_torch._as_batched(pos)
    tri = tri.long()
    if topology is None:
        topology = raster_torch.edge_topology(tri)
    batch, height, width, channels = color.shape
    if pos.shape[0] == 1 and batch > 1:
        pos = pos.expand(batch, -1, -1)
    sx, sy, _ = raster_torch._screen(pos, height, width)
    with torch.no_grad():
        fx, fy = sx[:, tri], sy[:, tri]
        facing = torch.sign((fx[..., 1] - fx[..., 0]) * (fy[..., 2] - fy[..., 0])
                            - (fx[..., 2] - fx[..., 0]) * (fy[..., 1] - fy[..., 0]))  # [B, F]
        # Only triangles with a silhouette edge in this view can move colour: skip the rest early.
        opp = topology.unsqueeze(0).expand(batch, -1, -1)
        opp_facing = torch.gather(facing, 1, opp.clamp(min=0).reshape(batch, -1)).reshape(opp.shape)
        has_silhouette = ((opp < 0) | (opp_facing != facing.unsqueeze(-1))).any(-1)  # [B, F]
        has_silhouette = torch.nn.functional.pad(has_silhouette, (1, 0)).reshape(-1)  # index (b, id + 1)
    ids = rast[..., 3].long().reshape(-1)  # triangle id + 1
    depth = rast[..., 2].reshape(-1)
    flat_color = color.reshape(-1, channels)
    targets: list[torch.Tensor] = []
    changes: list[torch.Tensor] = []
    pixel = torch.arange(batch * height * width, device=color.device).reshape(batch, height, width)
    for horizontal in (True, False):
        if horizontal:
            p, q = pixel[:, :, :-1].reshape(-1), pixel[:, :, 1:].reshape(-1)
        else:
            p, q = pixel[:, :-1, :].reshape(-1), pixel[:, 1:, :].reshape(-1)
        differ = ids[p] != ids[q]
        p, q = p[differ], q[differ]
        b_of = torch.div(p, height * width, rounding_mode="floor") * (tri.shape[0] + 1)
        keep = has_silhouette[b_of + ids[p]] | has_silhouette[b_of + ids[q]]
        p, q = p[keep], q[keep]
        if p.numel() == 0:
            continue
        # Try the nearer side's triangle first; fall back to the other side's.
        p_front = (ids[q] == 0) | ((ids[p] != 0) & (depth[p] <= depth[q]))
        t_a, ok_a = _ref_crossing(p, q, ids, sx, sy, tri, topology, facing, height, width, horizontal)
        t_b, ok_b = _ref_crossing(q, p, ids, sx, sy, tri, topology, facing, height, width, horizontal)
        use_a = ok_a & (p_front | ~ok_b)
        use_b = ok_b & ~use_a
        for use, own, other, t in ((use_a, p, q, t_a), (use_b, q, p, t_b)):
            own, other, t = own[use], other[use], t[use]
            # Edge beyond the midpoint: the other pixel is partly covered by this triangle.
            spill = (t - 0.5).clamp(min=0).unsqueeze(1)
            # Edge before the midpoint: this pixel is partly uncovered.
            recede = (0.5 - t).clamp(min=0).unsqueeze(1)
            diff = flat_color[own] - flat_color[other]
            targets += [other, own]
            changes += [spill * diff, -recede * diff]
    if not targets:
        return color
    # One scatter for every pair (an out-of-place index_add per pair direction would copy the image each time).
    out = flat_color.index_add(0, torch.cat(targets), torch.cat(changes))
    return out.reshape(batch, height, width, channels)


def _ref_crossing(own: torch.Tensor, other: torch.Tensor, ids: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor,
              tri: torch.Tensor, topology: torch.Tensor, facing: torch.Tensor, height: int, width: int,
              horizontal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a silhouette edge of the triangle at `own` crosses the segment own -> other.

    Returns t in [0, 1] (0 at own's centre; differentiable w.r.t. positions) and a validity mask.
    """
    face = ids[own] - 1
    valid = face >= 0
    face = face.clamp(min=0)
    hw = height * width
    b = torch.div(own, hw, rounding_mode="floor")
    rem_own = own - b * hw
    rem_other = other - b * hw
    ox = (rem_own % width).to(sx.dtype) + 0.5
    oy = torch.div(rem_own, width, rounding_mode="floor").to(sx.dtype) + 0.5
    qx = (rem_other % width).to(sx.dtype) + 0.5
    qy = torch.div(rem_other, width, rounding_mode="floor").to(sx.dtype) + 0.5
    corner = tri[face]  # [P, 3]
    vx = sx[b.unsqueeze(1), corner]  # [P, 3]
    vy = sy[b.unsqueeze(1), corner]
    ax, ay = vx, vy
    bx, by = vx.roll(-1, dims=1), vy.roll(-1, dims=1)
    orient = facing[b, face].unsqueeze(1)
    # Edge functions, positive inside the triangle whatever its winding.
    e_own = ((bx - ax) * (oy.unsqueeze(1) - ay) - (by - ay) * (ox.unsqueeze(1) - ax)) * orient
    e_other = ((bx - ax) * (qy.unsqueeze(1) - ay) - (by - ay) * (qx.unsqueeze(1) - ax)) * orient
    opp = topology[face]  # [P, 3]
    opp_facing = facing[b.unsqueeze(1), opp.clamp(min=0)]
    silhouette = (opp < 0) | (opp_facing != orient)
    dx, dy = (bx - ax).detach().abs(), (by - ay).detach().abs()
    # Each edge is handled by one pair direction only, so its length is counted once.
    steep = dy >= dx if horizontal else dx > dy
    crosses = (e_other < 0) & (e_own.detach() >= 0) & silhouette & steep
    t = e_own / (e_own - e_other).where(crosses, torch.ones_like(e_own))
    t = torch.where(crosses, t, torch.full_like(t, 2.0))
    t_min, _ = t.min(dim=1)
    valid = valid & (t_min <= 1.0)
    return t_min.clamp(0.0, 1.0), valid


# ---- tests -------------------------------------------------------------------------------------


def _soup(faces: int, seed: int, back_faces: bool, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Random triangles in clip space, some crossing the image edge, one batch of 2 views; with
    `back_faces` False every triangle is wound counter-clockwise on screen."""
    gen = torch.Generator().manual_seed(seed)
    centre = (torch.rand(faces, 1, 2, generator=gen, dtype=dtype) * 2.4 - 1.2)  # some beyond [-1, 1]
    xy = centre + (torch.rand(faces, 3, 2, generator=gen, dtype=dtype) - 0.5) * 0.9
    if not back_faces:
        d1, d2 = xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0]
        cw = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]) < 0
        xy[cw] = xy[cw][:, [0, 2, 1]]
    w = 1.0 + torch.rand(faces, 3, 1, generator=gen, dtype=dtype)
    z = torch.rand(faces, 3, 1, generator=gen, dtype=dtype) * 1.6 - 0.8
    pos = torch.cat([xy * w, z * w, w], dim=-1).reshape(1, -1, 4)
    pos = torch.cat([pos, pos * torch.tensor([0.9, 1.1, 1.0, 1.0], dtype=dtype)])  # a second view
    return pos, torch.arange(faces * 3, dtype=torch.int32).reshape(faces, 3)


@pytest.mark.parametrize("faces", [1, 100])
@pytest.mark.parametrize("back_faces", [False, True])
def test_rasterize_interpolate_antialias_match_the_autograd_reference(faces: int, back_faces: bool):
    pos, tri = _soup(faces, seed=faces, back_faces=back_faces)
    gen = torch.Generator().manual_seed(1)
    attr = torch.rand(pos.shape[1], 3, generator=gen, dtype=torch.float64)
    grads = []
    for rasterize, interpolate, antialias in ((raster_torch.rasterize, raster_torch.interpolate, raster_torch.antialias),
                                              (ref_rasterize, ref_interpolate, ref_antialias)):
        p, a = pos.clone().requires_grad_(True), attr.clone().requires_grad_(True)
        rast = rasterize(p, tri, (24, 20))
        color = antialias(interpolate(a, rast, tri).contiguous(), rast, p, tri)
        weights = torch.rand(rast.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        loss = (rast[..., :3] * weights[..., :3]).sum() + (color * weights[..., :3]).sum()
        grads.append((rast.detach(), color.detach(), *torch.autograd.grad(loss, (p, a))))
    assert (grads[0][0][..., 3] > 0).any() and grads[0][2].abs().sum() > 0
    for new, old in zip(grads[0], grads[1]):
        torch.testing.assert_close(new, old, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("faces", [1, 100])
@pytest.mark.parametrize("back_faces", [False, True])
def test_barycentric_and_interpolate_gradients_match_finite_differences(faces: int, back_faces: bool):
    pos, tri = _soup(faces, seed=10 + faces, back_faces=back_faces)
    pos = pos[:1].clone().requires_grad_(True)
    attr = torch.rand(pos.shape[1], 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64,
                      requires_grad=True)

    def f(p, a):
        rast = raster_torch.rasterize(p, tri, (10, 12))
        return rast[..., :3], raster_torch.interpolate(a, rast, tri)

    assert (raster_torch.rasterize(pos, tri, (10, 12))[..., 3] > 0).any()
    assert torch.autograd.gradcheck(f, (pos, attr), eps=1e-7, atol=1e-5)


def test_batched_attributes_and_vertices_behind_the_eye_match_the_reference():
    pos, tri = _soup(40, seed=5, back_faces=True)
    pos = pos.clone()
    pos[0, 0:6, 3] = -0.5  # two triangles of view 0 behind the eye: skipped, no gradient
    attr = torch.rand(2, pos.shape[1], 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    grads = []
    for rasterize, interpolate in ((raster_torch.rasterize, raster_torch.interpolate), (ref_rasterize, ref_interpolate)):
        p, a = pos.clone().requires_grad_(True), attr.clone().requires_grad_(True)
        rast = rasterize(p, tri, (16, 16))
        grads.append(torch.autograd.grad((interpolate(a, rast, tri) ** 2).sum() + rast[..., :3].sum(), (p, a)))
    assert grads[0][0][0, 0:6].abs().max() == 0
    for new, old in zip(grads[0], grads[1]):
        torch.testing.assert_close(new, old, rtol=1e-9, atol=1e-9)


def bumpy_sphere_80k(trimesh, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A UV sphere of ~80k faces with fixed sinusoidal bumps: vertices [V, 3] in `dtype`, faces [F, 3] int32."""
    mesh = trimesh.creation.uv_sphere(radius=1.0, count=[141, 141])
    vertices = torch.tensor(mesh.vertices, dtype=dtype)
    vertices = vertices * (1 + 0.05 * torch.sin(7 * vertices[:, :1]) * torch.cos(5 * vertices[:, 1:2]))
    return vertices, torch.tensor(mesh.faces, dtype=torch.int32)


def test_an_80k_face_mesh_matches_the_reference_and_a_directional_difference():
    """A cheap check at scale: a bumpy sphere of ~80k faces at 96 px, both windings drawn."""
    trimesh = pytest.importorskip("trimesh")
    vertices, tri = bumpy_sphere_80k(trimesh, torch.float64)
    assert tri.shape[0] > 75_000
    cams = orbit_cameras(torch.tensor([15.0]), torch.tensor([20.0]), fit_distance(40.0), 40.0)
    clip = to_clip(vertices.float(), cams).double()
    weights = torch.rand(1, 96, 96, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    grads = []
    for rasterize in (raster_torch.rasterize, ref_rasterize):
        p = clip.clone().requires_grad_(True)
        grads.append(torch.autograd.grad((rasterize(p, tri, (96, 96))[..., :3] * weights).sum(), p)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)
    direction = torch.randn(clip.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    eps = 1e-7

    def loss(p):
        return (raster_torch.rasterize(p, tri, (96, 96))[..., :3] * weights).sum()

    numeric = (loss(clip + eps * direction) - loss(clip - eps * direction)) / (2 * eps)
    assert torch.allclose(numeric, (grads[0] * direction).sum(), rtol=1e-4)


# ---- the compiled CPU kernel (backend/render/kernel.py) against the pure-PyTorch path ------------------

from backend.errors import DependencyMissingError  # noqa: E402
from backend.render import kernel as kernel_module, raster_compiled  # noqa: E402
from backend.render.rasterizer import RasterizerConfig, make_rasterizer  # noqa: E402


@pytest.fixture(scope="module")
def kernel():
    """The compiled kernel; built here if `python build.py setup` has not warmed it. A machine with a C++
    compiler must build it (a build error fails these tests); only a machine without one skips them."""
    import shutil

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the rasterizer runs pure PyTorch here (tested above)")
    return kernel_module.load_kernel("compiled")


def _both_paths(kernel, pos, tri, attr, size, weights_seed=2):
    """rast, antialiased colour and the gradients of one loss, by the pure and the compiled path."""
    results = []
    for path in ("pure", "compiled"):
        p, a = pos.clone().requires_grad_(True), attr.clone().requires_grad_(True)
        if path == "pure":
            rast = raster_torch.rasterize(p, tri, size)
            color = raster_torch.antialias(raster_torch.interpolate(a, rast, tri).contiguous(), rast, p, tri)
        else:
            rast = raster_compiled.rasterize(kernel, p, tri, size)
            color = raster_compiled.antialias(kernel, raster_compiled.interpolate(kernel, a, rast, tri).contiguous(),
                                              rast, p, tri)
        weights = torch.rand(rast.shape, generator=torch.Generator().manual_seed(weights_seed), dtype=pos.dtype)
        loss = (rast[..., :3] * weights[..., :3]).sum() + (color * weights[..., :3]).sum()
        results.append((rast.detach(), color.detach(), *torch.autograd.grad(loss, (p, a))))
    return results


@pytest.mark.parametrize("faces", [1, 100])
@pytest.mark.parametrize("back_faces", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_kernel_matches_the_pure_path(kernel, faces: int, back_faces: bool, dtype):
    """Same winning triangle at every pixel (the soup crosses the image edge), same values and gradients."""
    pos, tri = _soup(faces, seed=faces, back_faces=back_faces, dtype=dtype)
    attr = torch.rand(pos.shape[1], 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    pure, compiled = _both_paths(kernel, pos, tri, attr, (24, 20))
    assert torch.equal(pure[0][..., 3], compiled[0][..., 3])
    assert (compiled[0][..., 3] > 0).any() and compiled[2].abs().sum() > 0
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    for new, old in zip(compiled, pure):
        torch.testing.assert_close(new, old, rtol=tol, atol=tol)


@pytest.mark.parametrize("faces", [1, 100])
@pytest.mark.parametrize("back_faces", [False, True])
def test_compiled_gradients_match_finite_differences(kernel, faces: int, back_faces: bool):
    pos, tri = _soup(faces, seed=10 + faces, back_faces=back_faces)
    pos = pos[:1].clone().requires_grad_(True)
    attr = torch.rand(pos.shape[1], 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64,
                      requires_grad=True)

    def f(p, a):
        rast = raster_compiled.rasterize(kernel, p, tri, (10, 12))
        return rast[..., :3], raster_compiled.interpolate(kernel, a, rast, tri)

    assert (raster_compiled.rasterize(kernel, pos, tri, (10, 12))[..., 3] > 0).any()
    assert torch.autograd.gradcheck(f, (pos, attr), eps=1e-7, atol=1e-5)


def test_compiled_antialias_and_phong_match_finite_differences(kernel):
    """Antialias's crossing parameter and blend, and the fused Phong, against central differences (the
    silhouette stays put for steps this small, so the image is smooth in the positions)."""
    from backend.render.shading import ShadingConfig

    pos = torch.tensor([[-0.6, -0.5, 0.1, 1.0], [0.7, -0.3, 0.2, 1.0], [0.1, 0.8, 0.3, 1.0]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast = raster_compiled.rasterize(kernel, pos, tri, (16, 16)).detach()
    color = torch.rand(1, 16, 16, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p, c: raster_compiled.antialias(kernel, c, rast, p, tri),
                                    (pos.clone().requires_grad_(True), color.requires_grad_(True)), eps=1e-7, atol=1e-5)
    values = (torch.rand(40, 9, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 2 - 1)
    eye = torch.tensor([[0.0, 0.0, 3.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    light = torch.tensor([[0.0, 2.0, 3.0], [3.0, 1.0, 0.0]], dtype=torch.float64)
    view_of = torch.arange(40) % 2
    config = ShadingConfig(shininess=3.0)  # low enough that finite differences resolve the highlight
    assert torch.autograd.gradcheck(lambda v: raster_compiled.phong(kernel, v, 0, 3, 6, eye, light, view_of, config),
                                    (values.requires_grad_(True),), eps=1e-7, atol=1e-5)


def test_compiled_phong_matches_shading_phong(kernel):
    from backend.render.shading import ShadingConfig, phong

    values = (torch.rand(500, 9, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 2 - 1)
    eye = torch.tensor([[0.0, 0.0, 3.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    light = torch.tensor([[0.0, 2.0, 3.0], [3.0, 1.0, 0.0]], dtype=torch.float64)
    view_of = torch.arange(500) % 2
    weights = torch.rand(500, 3, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    for config, clamp in ((ShadingConfig(), False), (ShadingConfig(ambient=0.9), True),
                          (ShadingConfig(specular=0.0, two_sided=False), False)):
        results = []
        for compiled in (False, True):
            v = values.clone().requires_grad_(True)
            if compiled:
                out = raster_compiled.phong(kernel, v, 0, 3, 6, eye, light, view_of, config, clamp=clamp)
            else:
                out = phong(v[:, 6:9], v[:, 0:3], v[:, 3:6], eye[view_of], light[view_of], config)
                out = out.clamp(0, 1) if clamp else out
            results.append((out.detach(), torch.autograd.grad((out * weights).sum(), v)[0]))
        assert not clamp or ((results[0][0] == 0) | (results[0][0] == 1)).any()  # the clamp is exercised
        for new, old in zip(*results):
            torch.testing.assert_close(new, old, rtol=1e-9, atol=1e-9)


def test_compiled_vertex_normals_match_shading_and_finite_differences(kernel):
    from backend.geometry.primitives import icosphere
    from backend.render.shading import vertex_normals

    mesh = icosphere(1)
    faces = torch.tensor(mesh.faces)
    gen = torch.Generator().manual_seed(13)
    noise = torch.rand(2, len(mesh.vertices), 3, generator=gen, dtype=torch.float64)
    vertices = torch.tensor(mesh.vertices, dtype=torch.float64) + 0.1 * noise
    weights = torch.rand(vertices.shape, generator=gen, dtype=torch.float64)
    results = []
    for fn in (vertex_normals, lambda v, f: raster_compiled.vertex_normals(kernel, v, f)):
        v = vertices.clone().requires_grad_(True)
        out = fn(v, faces)
        results.append((out.detach(), torch.autograd.grad((out * weights).sum(), v)[0]))
    for new, old in zip(results[1], results[0]):
        torch.testing.assert_close(new, old, rtol=1e-9, atol=1e-9)
    assert torch.autograd.gradcheck(lambda v: raster_compiled.vertex_normals(kernel, v, faces),
                                    (vertices[0].clone().requires_grad_(True),), eps=1e-7, atol=1e-5)


def test_compiled_kernel_on_an_80k_face_mesh_matches_the_pure_path(kernel):
    """At scale, both windings drawn, batched views: the whole renderer, compiled against pure PyTorch."""
    trimesh = pytest.importorskip("trimesh")
    from backend.render.renderer import MeshRenderer, RenderConfig

    vertices, faces = bumpy_sphere_80k(trimesh, torch.float32)
    assert faces.shape[0] > 75_000
    cams = orbit_cameras(torch.tensor([15.0, 200.0]), torch.tensor([20.0, -30.0]), fit_distance(40.0) * 0.8, 40.0)
    colors = torch.rand(len(vertices), 3, generator=torch.Generator().manual_seed(11))
    weights = torch.rand(2, 96, 96, 3, generator=torch.Generator().manual_seed(12))
    results = []
    for path in ("pure", "compiled"):
        renderer = MeshRenderer(RenderConfig(size=96, rasterizer=RasterizerConfig(kernel=path)))
        assert renderer.rasterizer.kernel_path == path
        v, c = vertices.clone().requires_grad_(True), colors.clone().requires_grad_(True)
        out = renderer.render(v, faces, cams, vertex_colors=c)
        loss = (out.image * weights).sum() + out.alpha.sum()
        results.append((out.image.detach(), out.alpha.detach(), out.normal.detach(), out.face_id,
                        *torch.autograd.grad(loss, (v, c))))
    assert torch.equal(results[0][3], results[1][3])  # identical visibility
    for new, old in zip(results[1], results[0]):  # float32 sums in another order: relative to the largest entry
        torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-5 * float(old.abs().max()))


def test_compiled_rasterize_on_an_80k_face_mesh_matches_a_directional_difference(kernel):
    """As the pure path's 80k-face check above: a bumpy sphere at 96 px in float64, both windings drawn."""
    trimesh = pytest.importorskip("trimesh")
    vertices, tri = bumpy_sphere_80k(trimesh, torch.float64)
    cams = orbit_cameras(torch.tensor([15.0]), torch.tensor([20.0]), fit_distance(40.0), 40.0)
    clip = to_clip(vertices.float(), cams).double()
    weights = torch.rand(1, 96, 96, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def loss(p):
        return (raster_compiled.rasterize(kernel, p, tri, (96, 96))[..., :3] * weights).sum()

    p = clip.clone().requires_grad_(True)
    grad = torch.autograd.grad(loss(p), p)[0]
    direction = torch.randn(clip.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    eps = 1e-7
    numeric = (loss(clip + eps * direction) - loss(clip - eps * direction)) / (2 * eps)
    assert grad.abs().sum() > 0 and torch.allclose(numeric, (grad * direction).sum(), rtol=1e-4)


def test_compiled_textured_render_matches_the_pure_path(kernel):
    """The texture branch of the renderer: albedo from a texture lookup, not from the interpolated values."""
    from backend.geometry.primitives import icosphere
    from backend.render.renderer import MeshRenderer, RenderConfig

    mesh = icosphere(2)
    vertices = torch.tensor(mesh.vertices, dtype=torch.float32)
    faces = torch.tensor(mesh.faces)
    uv = (vertices[:, :2] * 0.5 + 0.5).contiguous()
    texture = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(14))
    cams = orbit_cameras(torch.tensor([30.0, 150.0]), torch.tensor([10.0, 40.0]), 3.0)
    weights = torch.rand(2, 32, 32, 3, generator=torch.Generator().manual_seed(15))
    results = []
    for path in ("pure", "compiled"):
        renderer = MeshRenderer(RenderConfig(size=32, rasterizer=RasterizerConfig(kernel=path)))
        v, tex = vertices.clone().requires_grad_(True), texture.clone().requires_grad_(True)
        out = renderer.render(v, faces, cams, uv=uv, texture=tex)
        results.append((out.image.detach(), *torch.autograd.grad((out.image * weights).sum(), (v, tex))))
    assert results[1][2].abs().sum() > 0
    for new, old in zip(results[1], results[0]):
        torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-5 * float(old.abs().max()))


def test_forcing_the_pure_path_by_config_or_environment(kernel, monkeypatch):
    assert make_rasterizer(RasterizerConfig(kernel="pure")).kernel is None
    assert make_rasterizer(RasterizerConfig()).kernel_path == "compiled"
    monkeypatch.setenv("ATELIER_RASTER_KERNEL", "pure")
    assert make_rasterizer(RasterizerConfig(kernel="compiled")).kernel_path == "pure"
    monkeypatch.setenv("ATELIER_RASTER_KERNEL", "fast")
    with pytest.raises(ValueError, match="ATELIER_RASTER_KERNEL must be one of"):
        make_rasterizer(RasterizerConfig())
    monkeypatch.delenv("ATELIER_RASTER_KERNEL")
    with pytest.raises(ValueError, match="kernel must be one of"):
        make_rasterizer(RasterizerConfig(kernel="fast"))


def test_a_failed_build_falls_back_with_one_line_or_is_a_clear_error(tmp_path, monkeypatch, caplog):
    """A source that does not compile: `auto` logs which path runs and returns None; `compiled` says the fix."""
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path))
    broken = tmp_path / "broken.cpp"
    broken.write_text("#error this kernel does not compile\n")
    with caplog.at_level("WARNING", logger="atelier.render"):
        assert kernel_module.load_kernel("auto", source=broken) is None
    assert [r.getMessage() for r in caplog.records if "pure-PyTorch path" in r.getMessage()]
    with pytest.raises(DependencyMissingError, match="cannot be used") as info:
        kernel_module.load_kernel("compiled", source=broken)
    assert "g++" in info.value.hint and "ATELIER_RASTER_KERNEL=pure" in info.value.hint
    assert kernel_module.load_kernel("pure", source=broken) is None


def test_the_build_cache_ignores_a_test_s_atelier_home(tmp_path, monkeypatch):
    """Tests and jobs point $ATELIER_HOME at temporary folders: the build must not follow them (a fresh build
    per process would cost a minute each)."""
    default = kernel_module.cache_dir()
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert kernel_module.cache_dir() == default
    monkeypatch.setenv("ATELIER_RASTER_KERNEL_CACHE", str(tmp_path / "kernels"))
    assert kernel_module.cache_dir().parent == tmp_path / "kernels"


def test_a_missing_source_is_named(tmp_path):
    with pytest.raises(DependencyMissingError, match="source .* is missing"):
        kernel_module.build_kernel(tmp_path / "gone.cpp")


def test_missing_ninja_is_named_with_its_fix(tmp_path, monkeypatch):
    from torch.utils import cpp_extension

    def no_ninja():
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(cpp_extension, "verify_ninja_availability", no_ninja)
    source = tmp_path / "kernel.cpp"
    source.write_text("// never compiled\n")
    with pytest.raises(DependencyMissingError, match="ninja is not installed") as info:
        kernel_module.build_kernel(source)
    assert "pip install ninja" in info.value.hint
