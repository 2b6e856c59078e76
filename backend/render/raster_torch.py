"""A pure-PyTorch differentiable rasterizer with nvdiffrast's contract (CPU or GPU).

Conventions, as nvdiffrast (OpenGL):
- `pos` is clip space; pixel (x, y) has its centre at NDC ((x + 0.5) / W * 2 - 1, (y + 0.5) / H * 2 - 1),
  so image row 0 is the *bottom* row (NDC y = -1). Flip vertically to get a top-down picture.
- `rast[..., 0:2]` = perspective-correct barycentrics (u, v) of the triangle's vertices 0 and 1
  (vertex 2 has 1 - u - v); `rast[..., 2]` = z / w (NDC depth); `rast[..., 3]` = triangle id + 1,
  0 where no triangle covers the pixel centre.
- Both windings are drawn; triangles with a vertex at w <= 0 (behind the eye) are skipped rather than
  clipped, and pixels whose depth falls outside [-1, 1] are not covered.

How: visibility is found without gradients by enumerating (triangle, pixel) pairs inside each
triangle's pixel bounding box, in chunks of at most `max_pairs` (never pixels x triangles), and a
depth test done as one `scatter_reduce(amin)` over keys packing (depth, triangle id). The
barycentrics of the winning triangle are then recomputed from `pos` for the covered pixels only, in
an autograd Function with an analytic backward (`_Barycentrics`; `_Interpolate` likewise), which is
several times cheaper than autograd through the many small ops it takes. Silhouette
gradients come from `antialias`, which blends colours across silhouette edges by how far along the
pixel-to-pixel segment the edge crosses (nvdiffrast's analytic antialiasing).

On the CPU, `raster_compiled` runs the same contract through a compiled C++ kernel (several times faster;
`RasterizerConfig.kernel`); this module stays the reference it is tested against and the fallback where no
compiler is present.
"""

from __future__ import annotations

import math

import torch

_NO_HIT = torch.iinfo(torch.int64).max


def _as_batched(pos: torch.Tensor) -> torch.Tensor:
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    if pos.dim() != 3 or pos.shape[-1] != 4:
        raise ValueError(f"pos must be [B, V, 4] or [V, 4] clip-space, got {tuple(pos.shape)}")
    return pos


def _check_tri(tri: torch.Tensor, num_vertices: int) -> torch.Tensor:
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"tri must be [F, 3] int32, got {tuple(tri.shape)}")
    return tri.long()


def _screen(pos: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clip [B, V, 4] -> pixel x, pixel y, ndc depth, each [B, V] (pixel units, origin bottom-left)."""
    w = pos[..., 3]
    x = (pos[..., 0] / w + 1.0) * (0.5 * width)
    y = (pos[..., 1] / w + 1.0) * (0.5 * height)
    return x, y, pos[..., 2] / w


@torch.no_grad()
def _visibility(pos: torch.Tensor, tri: torch.Tensor, height: int, width: int, max_pairs: int) -> torch.Tensor:
    """Per-pixel winning triangle id + 1 (0 = empty), [B * H * W] int64."""
    batch = pos.shape[0]
    device = pos.device
    sx, sy, sz = _screen(pos.float(), height, width)
    num_faces = tri.shape[0]
    # One gather of every corner's (x, y, z, w), laid out so each corner's component is a contiguous [B, F].
    rows_of = (tri.reshape(1, -1) + (torch.arange(batch, device=device) * pos.shape[1]).unsqueeze(1)).reshape(-1)
    corners = torch.stack([sx, sy, sz, pos[..., 3].float()], dim=-1).reshape(-1, 4).index_select(0, rows_of)
    corners = corners.reshape(batch, num_faces, 3, 4).permute(3, 2, 0, 1).contiguous()  # [4, 3, B, F]
    (fx0, fx1, fx2), (fy0, fy1, fy2), (fz0, fz1, fz2), (fw0, fw1, fw2) = corners
    dx1, dx2 = fx1 - fx0, fx2 - fx0
    dy1, dy2 = fy1 - fy0, fy2 - fy0
    area = dx1 * dy2 - dx2 * dy1
    x0 = torch.ceil(torch.minimum(torch.minimum(fx0, fx1), fx2) - 0.5).clamp(min=0)
    x1 = torch.floor(torch.maximum(torch.maximum(fx0, fx1), fx2) - 0.5).clamp(max=width - 1)
    y0 = torch.ceil(torch.minimum(torch.minimum(fy0, fy1), fy2) - 0.5).clamp(min=0)
    y1 = torch.floor(torch.maximum(torch.maximum(fy0, fy1), fy2) - 0.5).clamp(max=height - 1)
    cols = (x1 - x0 + 1).clamp(min=0)
    rows = (y1 - y0 + 1).clamp(min=0)
    ok = ((fw0 > 0) & (fw1 > 0) & (fw2 > 0) & (area.abs() > 1e-12) & ((fz0 > -1) | (fz1 > -1) | (fz2 > -1))
          & ((fz0 < 1) | (fz1 < 1) | (fz2 < 1)) & torch.isfinite(area))
    counts = torch.where(ok, cols * rows, torch.zeros_like(cols)).long().flatten()  # [B * F]
    depth_keys = torch.full((batch * height * width,), _NO_HIT, dtype=torch.int64, device=device)
    live = torch.nonzero(counts > 0).squeeze(1)
    if live.numel() == 0:
        return torch.zeros_like(depth_keys)
    counts = counts[live]

    # Each live triangle becomes planes in pixel coordinates: barycentrics b0, b1 and depth z/w are
    # affine in screen space, so a candidate pixel costs three multiply-adds each.
    inv = 1.0 / area

    def plane(a, b, v0):  # a * x + b * y + c through value v0 at corner 0, given (a, b) before scaling
        a, b = a * inv, b * inv
        return a, b, v0 - a * fx0 - b * fy0

    b0 = plane(dy1 - dy2, dx2 - dx1, 1.0)  # the barycentric of corner 0: values (1, 0, 0)
    b1 = plane(dy2, -dx2, 0.0)  # corner 1: values (0, 1, 0)
    dz1, dz2 = fz1 - fz0, fz2 - fz0
    zp = plane(dz1 * dy2 - dz2 * dy1, dz2 * dx1 - dz1 * dx2, fz0)
    face_index = torch.arange(num_faces, device=device, dtype=torch.float32).expand(batch, -1)
    pixel_base = (torch.arange(batch, device=device, dtype=torch.float32) * (height * width)).unsqueeze(1).expand(-1, num_faces)
    # One row per live triangle; float32 holds the integers exactly (all < 2^24).
    # Rows are triangles, so gathering a triangle's fields copies one contiguous row (index_select).
    table = torch.stack([*b0, *b1, *zp, x0, y0, cols, face_index, pixel_base], dim=-1).reshape(-1, 14).index_select(0, live)

    # Small triangles (most of them in a dense mesh) test a fixed grid of pixels around their bounding
    # box's corner, with no per-candidate gathers; the rest enumerate their exact boxes in chunks.
    cols_l = table[:, 11]
    rows_l = counts.float() / cols_l  # box heights
    rest = torch.ones_like(counts, dtype=torch.bool)
    for side in _GRID_SIDES:
        fits = rest & (cols_l <= side) & (rows_l <= side)
        rest &= ~fits
        chosen = torch.nonzero(fits).squeeze(1)
        for chunk in chosen.split(max(1, max_pairs // (side * side))):
            _grid_candidates(table.index_select(0, chunk), side, rows_l[chunk], width, depth_keys)
    rest = torch.nonzero(rest).squeeze(1)
    table, counts = table.index_select(0, rest), counts[rest]
    ends = torch.cumsum(counts, 0)
    start = 0
    while start < rest.numel():  # chunks of at most max_pairs candidates (or one big triangle)
        base = ends[start - 1] if start > 0 else ends.new_zeros(())
        stop = max(int(torch.searchsorted(ends, base + max_pairs, right=True)), start + 1)
        _box_candidates(table[start:stop], counts[start:stop], width, depth_keys)
        start = stop

    hit = depth_keys != _NO_HIT
    return torch.where(hit, (depth_keys & 0xFFFFFFFF) + 1, torch.zeros_like(depth_keys))


_GRID_SIDES = (2, 3, 4, 6, 8, 12)
"""Pixel grids (side x side) for triangles whose bounding box fits them."""


def _grid_candidates(table: torch.Tensor, side: int, rows: torch.Tensor, width: int, depth_keys: torch.Tensor) -> None:
    """Tests a side x side pixel grid at each triangle's box corner. table: [T, 14] (see `_visibility`)."""
    offset = torch.arange(side, device=table.device, dtype=torch.float32)
    ox = offset.repeat(side)  # [S = side * side]
    oy = offset.repeat_interleave(side)
    f = table.T.unsqueeze(-1)  # [14, T, 1] broadcasts against the grid
    cx = f[9] + (ox + 0.5)
    cy = f[10] + (oy + 0.5)
    # In place: the [T, S] temporaries are large, and fresh allocations cost page faults.
    w0 = torch.mul(f[0], cx).add_(torch.mul(f[1], cy)).add_(f[2])
    w1 = cx.mul_(f[3]).add_(cy.mul_(f[4])).add_(f[5])
    inside = (w0 >= 0).logical_and_(w1 >= 0).logical_and_(w0.add_(w1) <= 1)
    inside.logical_and_(ox < f[11]).logical_and_(oy < rows.unsqueeze(-1))
    hit = torch.nonzero(inside.reshape(-1)).squeeze(1)
    t = torch.div(hit, side * side, rounding_mode="floor")
    cell = hit - t * (side * side)
    hit_fields = table.index_select(0, t)
    row = torch.div(cell, side, rounding_mode="floor")  # cell = row * side + column (ox, oy above)
    _depth_test(hit_fields, hit_fields[:, 9] + (cell - row * side), hit_fields[:, 10] + row, width, depth_keys)


def _box_candidates(table: torch.Tensor, counts: torch.Tensor, width: int, depth_keys: torch.Tensor) -> None:
    """Tests every pixel of each triangle's exact bounding box. table: [T, 14]; counts: [T] box areas."""
    table = table.T.contiguous()  # per-candidate gathers read one field at a time
    inst = torch.repeat_interleave(torch.arange(counts.numel(), device=table.device), counts)
    offsets = (torch.cumsum(counts, 0) - counts).float()
    local = torch.arange(inst.numel(), device=table.device, dtype=torch.float32) - offsets[inst]
    cols = table[11][inst]
    ry = torch.floor(local / cols)
    cx = table[9][inst] + (local - ry * cols) + 0.5
    cy = table[10][inst] + ry + 0.5
    w0 = table[0][inst] * cx + table[1][inst] * cy + table[2][inst]
    w1 = table[3][inst] * cx + table[4][inst] * cy + table[5][inst]
    hit = torch.nonzero((w0 >= 0) & (w1 >= 0) & (w0 + w1 <= 1)).squeeze(1)
    hit_fields = table.T.index_select(0, inst[hit])
    _depth_test(hit_fields, cx[hit] - 0.5, cy[hit] - 0.5, width, depth_keys)


def _depth_test(fields: torch.Tensor, px: torch.Tensor, py: torch.Tensor, width: int, depth_keys: torch.Tensor) -> None:
    """Covered pixels (px, py) of triangles `fields` [P, 14]: outside the depth range they are dropped
    (their key stays empty), then one scatter_reduce(amin) over keys packing (depth, triangle id) does
    the depth test for all of them."""
    z = fields[:, 6] * (px + 0.5) + fields[:, 7] * (py + 0.5) + fields[:, 8]
    # Bits of a non-negative float32 are ordered like the floats: pack (depth, id) into one int64.
    zbits = (z + 1.0).clamp(min=0).view(torch.int32).long()
    key = torch.where((z >= -1) & (z <= 1), (zbits << 32) | fields[:, 12].long(), _NO_HIT)
    pixel = fields[:, 13].long() + py.long() * width + px.long()
    depth_keys.scatter_reduce_(0, pixel, key, reduce="amin", include_self=True)


def rasterize(pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int], max_pairs: int = 1 << 22) -> torch.Tensor:
    """Rasterizes triangles.

    pos: [B, V, 4] (or [V, 4]) float32 clip-space positions; differentiable.
    tri: [F, 3] int32 vertex indices.
    resolution: (height, width) in pixels.
    Returns rast: [B, H, W, 4] float32 (u, v, z/w, triangle_id + 1), row 0 at the bottom.
    """
    pos = _as_batched(pos)
    tri = _check_tri(tri, pos.shape[1])
    height, width = int(resolution[0]), int(resolution[1])
    batch = pos.shape[0]
    ids = _visibility(pos.detach(), tri, height, width, max_pairs)
    covered = torch.nonzero(ids).squeeze(1)
    if covered.numel() == 0:
        return pos.new_zeros(batch, height, width, 4)
    face = ids[covered] - 1
    b = torch.div(covered, height * width, rounding_mode="floor")
    rem = covered - b * height * width
    py = torch.div(rem, width, rounding_mode="floor")
    px = rem - py * width
    corner = tri.index_select(0, face) + (b * pos.shape[1]).unsqueeze(1)  # [P, 3] rows of pos.reshape(-1, 4)
    cx = (px.to(pos.dtype) + 0.5) / width * 2.0 - 1.0
    cy = (py.to(pos.dtype) + 0.5) / height * 2.0 - 1.0
    out = _Barycentrics.apply(pos, corner, covered, cx, cy, face.to(pos.dtype) + 1.0, batch * height * width)
    return out.reshape(batch, height, width, 4)


class _Barycentrics(torch.autograd.Function):
    """Perspective-correct barycentrics and depth of the visible triangle at each covered pixel, with an
    analytic backward (autograd through the many small ops it takes was most of the rasterizer's cost).

    forward(pos [B, V, 4], corner [P, 3] rows of pos.reshape(-1, 4), covered [P] pixel indices,
    cx, cy [P] pixel centres in NDC, ids [P] triangle id + 1, total pixels) -> rast [total, 4].
    """

    @staticmethod
    def forward(ctx, pos, corner, covered, cx, cy, ids, total):
        flat = pos.detach().reshape(-1, 4)
        # [4, 3, P]: each corner's component a contiguous vector.
        verts = flat.index_select(0, corner.reshape(-1)).reshape(-1, 3, 4).permute(2, 1, 0).contiguous()
        w = verts[3]
        nx, ny, z = verts[0] / w, verts[1] / w, verts[2] / w  # [3, P]
        dx, dy = nx - cx, ny - cy
        area = (nx[1] - nx[0]) * (ny[2] - ny[0]) - (nx[2] - nx[0]) * (ny[1] - ny[0])
        s0 = (dx[1] * dy[2] - dx[2] * dy[1]) / area
        s1 = (dx[2] * dy[0] - dx[0] * dy[2]) / area
        s = torch.stack([s0, s1, 1.0 - s0 - s1])  # [3, P] screen barycentrics
        zw = (s * z).sum(0)
        p = s / w
        norm = p.sum(0)
        u, v = p[0] / norm, p[1] / norm
        out = flat.new_zeros(total, 4)
        out.index_copy_(0, covered, torch.stack([u, v, zw, ids], dim=1))
        ctx.save_for_backward(corner, covered, nx, ny, z, w, s, area, norm, u, v)
        ctx.num_rows = flat.shape[0]
        ctx.pos_shape = pos.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        corner, covered, nx, ny, z, w, s, area, norm, u, v = ctx.saved_tensors
        g = grad_out.index_select(0, covered).T  # [4, P]
        gu, gv, gz = g[0], g[1], g[2]
        # u = p0 / N, v = p1 / N with p_k = s_k / w_k and N = sum p_k.
        common = -(gu * u + gv * v)
        gp = torch.stack([common + gu, common + gv, common]) / norm  # [3, P]
        gs = gp / w + gz * z
        # Screen barycentric s_k has gradient grad_k w.r.t. the pixel centre; moving corner j by d
        # changes s_k by -s_j grad_k . d.
        sum_x = (gs[0] * (ny[1] - ny[2]) + gs[1] * (ny[2] - ny[0]) + gs[2] * (ny[0] - ny[1])) / area
        sum_y = (gs[0] * (nx[2] - nx[1]) + gs[1] * (nx[0] - nx[2]) + gs[2] * (nx[1] - nx[0])) / area
        g_nx = -s * sum_x
        g_ny = -s * sum_y
        g_z = gz * s
        inv_w = 1.0 / w
        g_vert = torch.stack([g_nx * inv_w, g_ny * inv_w, g_z * inv_w,
                              -(g_nx * nx + g_ny * ny + g_z * z + gp * s * inv_w) * inv_w])  # [4, 3, P]
        g_vert = g_vert.permute(2, 1, 0).reshape(-1, 4)
        grad_pos = g_vert.new_zeros(ctx.num_rows, 4).index_add_(0, corner.reshape(-1), g_vert)
        return grad_pos.reshape(ctx.pos_shape), None, None, None, None, None, None


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Interpolates vertex attributes over the pixels.

    attr: [V, C] or [B, V, C] float32 per-vertex attributes.
    rast: [B, H, W, 4] output of `rasterize`.
    tri: [F, 3] int32.
    Returns [B, H, W, C]; zero where no triangle covers the pixel.
    """
    batch, height, width, _ = rast.shape
    channels = attr.shape[-1]
    covered = torch.nonzero(rast.detach()[..., 3].reshape(-1) > 0).squeeze(1)  # work on covered pixels only
    values = interpolate_pixels(attr, rast, tri, covered)
    out = values.new_zeros(batch * height * width, channels).index_copy(0, covered, values)
    return out.reshape(batch, height, width, channels)


def interpolate_pixels(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """`interpolate` at a list of covered pixels only: [P, C] for `pixels` [P], indices into the
    flattened [B * H * W] image, every one covered (rast id > 0). Skips the dense image both ways."""
    batch, height, width, _ = rast.shape
    face = rast.detach().reshape(-1, 4)[:, 3].index_select(0, pixels).long() - 1
    corner = tri.long().index_select(0, face)  # [P, 3]
    if attr.dim() == 3:
        num_vertices = attr.shape[1]
        b = torch.div(pixels, height * width, rounding_mode="floor")
        corner = corner + (b * num_vertices).unsqueeze(1)
    return _Interpolate.apply(attr, rast, corner, pixels)


class _Interpolate(torch.autograd.Function):
    """attr's values at the covered pixels from their barycentrics, with an analytic backward.

    forward(attr [V, C] or [B, V, C], rast [B, H, W, 4], corner [P, 3] rows of attr.reshape(-1, C),
    covered [P] pixel indices) -> [P, C].
    """

    @staticmethod
    def forward(ctx, attr, rast, corner, covered):
        channels = attr.shape[-1]
        flat_attr = attr.detach().reshape(-1, channels)
        corners = flat_attr.index_select(0, corner.reshape(-1)).reshape(-1, 3, channels)
        uv = rast.detach().reshape(-1, 4).index_select(0, covered)[:, :2].to(attr.dtype)
        u, v = uv[:, 0:1], uv[:, 1:2]
        d0 = corners[:, 0] - corners[:, 2]
        d1 = corners[:, 1] - corners[:, 2]
        values = corners[:, 2] + u * d0 + v * d1
        ctx.save_for_backward(corner, covered, uv, d0, d1)
        ctx.attr_shape, ctx.rast_shape, ctx.rast_dtype = attr.shape, rast.shape, rast.dtype
        return values

    @staticmethod
    def backward(ctx, grad_out):
        corner, covered, uv, d0, d1 = ctx.saved_tensors
        g = grad_out  # [P, C]
        grad_attr = grad_rast = None
        if ctx.needs_input_grad[0]:
            u, v = uv[:, 0:1], uv[:, 1:2]
            grad_attr = g.new_zeros(math.prod(ctx.attr_shape[:-1]), g.shape[1])
            corner = corner.T.contiguous()
            # One scatter per corner: a [P, 3, C] broadcast product was slower than the scatters.
            grad_attr.index_add_(0, corner[0], g * u)
            grad_attr.index_add_(0, corner[1], g * v)
            grad_attr.index_add_(0, corner[2], g * (1.0 - u - v))
            grad_attr = grad_attr.reshape(ctx.attr_shape)
        if ctx.needs_input_grad[1]:
            guv = torch.stack([(g * d0).sum(1), (g * d1).sum(1)], dim=1).to(ctx.rast_dtype)
            grad_rast = guv.new_zeros(math.prod(ctx.rast_shape[:-1]), 4)
            grad_rast[:, :2].index_copy_(0, covered, guv)
            grad_rast = grad_rast.reshape(ctx.rast_shape)
        return grad_attr, grad_rast, None, None


def texture(tex: torch.Tensor, uv: torch.Tensor, boundary_mode: str = "wrap") -> torch.Tensor:
    """Bilinear texture lookup.

    tex: [B or 1, Ht, Wt, C] float32 texture, row 0 addressed by v = 0 (as nvdiffrast).
    uv: [B, H, W, 2] float32 texture coordinates; texel centres at ((i + 0.5) / Wt, (j + 0.5) / Ht).
    boundary_mode: "wrap" (repeat) or "clamp".
    Returns [B, H, W, C]; differentiable w.r.t. tex and uv.
    """
    if boundary_mode not in ("wrap", "clamp"):
        raise ValueError(f"boundary_mode must be 'wrap' or 'clamp', got {boundary_mode!r}")
    batch, height, width, _ = uv.shape
    tb, th, tw, channels = tex.shape
    x = uv[..., 0] * tw - 0.5
    y = uv[..., 1] * th - 0.5
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    fx = (x - x0).unsqueeze(-1)
    fy = (y - y0).unsqueeze(-1)
    x0 = x0.long()
    y0 = y0.long()

    def wrap(i: torch.Tensor, n: int) -> torch.Tensor:
        return torch.remainder(i, n) if boundary_mode == "wrap" else i.clamp(0, n - 1)

    flat = tex.reshape(tb, th * tw, channels)
    if tb == 1 and batch > 1:
        flat = flat.expand(batch, -1, -1)

    def fetch(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        index = (wrap(yi, th) * tw + wrap(xi, tw)).reshape(batch, -1, 1).expand(-1, -1, channels)
        return torch.gather(flat, 1, index).reshape(batch, height, width, channels)

    top = fetch(y0, x0) * (1 - fx) + fetch(y0, x0 + 1) * fx
    bottom = fetch(y0 + 1, x0) * (1 - fx) + fetch(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def edge_topology(tri: torch.Tensor) -> torch.Tensor:
    """For each triangle edge k = (tri[f, k], tri[f, (k + 1) % 3]), the other triangle sharing it.

    tri: [F, 3] int32. Returns [F, 3] int64, -1 for boundary and non-manifold edges.
    Depends only on `tri`: compute once per mesh and pass to `antialias` (nvdiffrast's topology hash).
    """
    tri = tri.long()
    num_faces = tri.shape[0]
    a = tri
    b = tri.roll(-1, dims=1)
    lo = torch.minimum(a, b).flatten()
    hi = torch.maximum(a, b).flatten()
    key = lo * (int(tri.max()) + 1 if num_faces else 1) + hi
    order = torch.argsort(key)
    sorted_key = key[order]
    opposite = torch.full((num_faces * 3,), -1, dtype=torch.long, device=tri.device)
    if num_faces == 0:
        return opposite.reshape(0, 3)
    same_next = torch.zeros_like(sorted_key, dtype=torch.bool)
    same_next[:-1] = sorted_key[1:] == sorted_key[:-1]
    same_prev = torch.zeros_like(same_next)
    same_prev[1:] = same_next[:-1]
    # An edge is manifold when exactly two entries share its key.
    run_start = ~same_prev
    run_id = torch.cumsum(run_start.long(), 0) - 1
    run_len = torch.bincount(run_id)
    pair = run_len[run_id] == 2
    first = pair & same_next
    i = order[first]
    j = order[torch.nonzero(first).squeeze(1) + 1]
    opposite[i] = torch.div(j, 3, rounding_mode="floor")
    opposite[j] = torch.div(i, 3, rounding_mode="floor")
    return opposite.reshape(num_faces, 3)


def antialias_inputs(color: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor, topology: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What both antialias paths start from: tri as int64, its edge topology (computed when None), and the pixel
    x and y [B, V] of `pos` (one view's positions serve every image of `color` [B, H, W, C])."""
    pos = _as_batched(pos)
    tri = tri.long()
    if topology is None:
        topology = edge_topology(tri)
    batch, height, width, _ = color.shape
    if pos.shape[0] == 1 and batch > 1:
        pos = pos.expand(batch, -1, -1)
    sx, sy, _ = _screen(pos, height, width)
    return tri, topology, sx, sy


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor,
              topology: torch.Tensor | None = None) -> torch.Tensor:
    """Analytic antialiasing of silhouette edges; gives gradients w.r.t. vertex positions.

    color: [B, H, W, C] float32 shaded image (same orientation as rast).
    rast: [B, H, W, 4] from `rasterize(pos, tri, ...)`.
    pos: [B, V, 4] or [V, 4] clip-space positions used for `rast`.
    tri: [F, 3] int32.
    topology: `edge_topology(tri)`, computed here if not given.
    Returns [B, H, W, C]: for each pair of neighbouring pixels covered by different triangles (or
    one by none), the silhouette edge between them moves colour across the pair in proportion to
    where it crosses the segment joining the pixel centres.
    """
    tri, topology, sx, sy = antialias_inputs(color, pos, tri, topology)
    batch, height, width, channels = color.shape
    with torch.no_grad():
        num_faces = tri.shape[0]
        rows_of = (tri.reshape(1, -1) + (torch.arange(batch, device=tri.device) * sx.shape[1]).unsqueeze(1)).reshape(-1)
        corners = torch.stack([sx, sy], dim=-1).reshape(-1, 2).index_select(0, rows_of)
        (fx0, fx1, fx2), (fy0, fy1, fy2) = corners.reshape(batch, num_faces, 3, 2).permute(3, 2, 0, 1).contiguous()
        facing = torch.sign((fx1 - fx0) * (fy2 - fy0) - (fx2 - fx0) * (fy1 - fy0))  # [B, F]
        # Only triangles with a silhouette edge in this view can move colour: skip the rest early.
        opp = topology.unsqueeze(0).expand(batch, -1, -1)
        opp_facing = torch.gather(facing, 1, opp.clamp(min=0).reshape(batch, -1)).reshape(opp.shape)
        has_silhouette = ((opp < 0) | (opp_facing != facing.unsqueeze(-1))).any(-1)  # [B, F]
        has_silhouette = torch.nn.functional.pad(has_silhouette, (1, 0)).reshape(-1)  # index (b, id + 1)
    ids = rast[..., 3].long().reshape(-1)  # triangle id + 1
    depth = rast[..., 2].reshape(-1)
    flat_color = color.reshape(-1, channels)
    pairs_p: list[torch.Tensor] = []
    pairs_q: list[torch.Tensor] = []
    pairs_horizontal: list[torch.Tensor] = []
    pixel = torch.arange(batch * height * width, device=color.device).reshape(batch, height, width)
    id_image = ids.reshape(batch, height, width)
    for horizontal in (True, False):
        # Neighbours with different ids, found on shifted views of the id image (no gathers).
        if horizontal:
            differ = id_image[:, :, :-1] != id_image[:, :, 1:]
            p = pixel[:, :, :-1][differ]
            q = p + 1
        else:
            differ = id_image[:, :-1, :] != id_image[:, 1:, :]
            p = pixel[:, :-1, :][differ]
            q = p + width
        b_of = torch.div(p, height * width, rounding_mode="floor") * (tri.shape[0] + 1)
        keep = has_silhouette[b_of + ids[p]] | has_silhouette[b_of + ids[q]]
        pairs_p.append(p[keep])
        pairs_q.append(q[keep])
        pairs_horizontal.append(torch.full_like(pairs_p[-1], horizontal, dtype=torch.bool))
    p, q, horizontal = torch.cat(pairs_p), torch.cat(pairs_q), torch.cat(pairs_horizontal)
    if p.numel() == 0:
        return color
    # Try the nearer side's triangle first; fall back to the other side's. Both sides of every
    # pair (both directions) go through one `_crossing` call: fewer, larger ops.
    p_front = (ids[q] == 0) | ((ids[p] != 0) & (depth[p] <= depth[q]))
    count = p.numel()
    t_ab, ok_ab = _crossing(torch.cat([p, q]), torch.cat([q, p]), ids, sx, sy, tri, topology, facing, height,
                            width, torch.cat([horizontal, horizontal]))
    t_a, t_b = t_ab[:count], t_ab[count:]
    ok_a, ok_b = ok_ab[:count], ok_ab[count:]
    use_a = ok_a & (p_front | ~ok_b)
    use_b = ok_b & ~use_a
    own = torch.cat([p[use_a], q[use_b]])
    other = torch.cat([q[use_a], p[use_b]])
    t = torch.cat([t_a[use_a], t_b[use_b]]).unsqueeze(1)
    # Edge beyond the midpoint: the other pixel is partly covered by this triangle.
    spill = (t - 0.5).clamp(min=0)
    # Edge before the midpoint: this pixel is partly uncovered.
    recede = (0.5 - t).clamp(min=0)
    diff = flat_color.index_select(0, own) - flat_color.index_select(0, other)
    # One scatter for every pair (an out-of-place index_add per pair would copy the image each time).
    out = flat_color.index_add(0, torch.cat([other, own]), torch.cat([spill * diff, -recede * diff]))
    return out.reshape(batch, height, width, channels)


def _crossing(own: torch.Tensor, other: torch.Tensor, ids: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor,
              tri: torch.Tensor, topology: torch.Tensor, facing: torch.Tensor, height: int, width: int,
              horizontal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a silhouette edge of the triangle at `own` crosses the segment own -> other.

    horizontal: [P] bool, whether each pair is left-right neighbours (else bottom-top).
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
    corner = (tri.index_select(0, face) + (b * sx.shape[1]).unsqueeze(1)).reshape(-1)  # rows of sx.reshape(-1)
    vx = sx.reshape(-1).index_select(0, corner).reshape(-1, 3)  # [P, 3]
    vy = sy.reshape(-1).index_select(0, corner).reshape(-1, 3)
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
    steep = torch.where(horizontal.unsqueeze(1), dy >= dx, dx > dy)
    crosses = (e_other < 0) & (e_own.detach() >= 0) & silhouette & steep
    t = e_own / (e_own - e_other).where(crosses, torch.ones_like(e_own))
    t = torch.where(crosses, t, torch.full_like(t, 2.0))
    t_min, _ = t.min(dim=1)
    valid = valid & (t_min <= 1.0)
    return t_min.clamp(0.0, 1.0), valid
