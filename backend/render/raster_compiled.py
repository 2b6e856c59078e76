"""`raster_torch`'s rasterize / interpolate / antialias, and the renderer's Phong shading and vertex normals,
with their hot loops in the compiled CPU kernel (`kernels/raster_cpu.cpp`, loaded by `backend.render.kernel`).

Same contract, same results: visibility is bit-identical (same float32 operations), barycentrics,
interpolation and their backward passes are `raster_torch._Barycentrics` / `_Interpolate` formula for
formula, antialias finds its silhouette crossings in C++ then computes the crossing parameter with autograd
exactly as `raster_torch._crossing` does, and Phong and the normals are `shading.phong` / `vertex_normals`
with hand-written backward passes. CPU tensors only (TorchRasterizer sends anything else to `raster_torch`).
`kernel` is the module `backend.render.kernel.load_kernel` returns.
"""

from __future__ import annotations

from types import ModuleType

import torch

from backend.render import raster_torch


def rasterize(kernel: ModuleType, pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """As `raster_torch.rasterize`: pos [B, V, 4] or [V, 4] clip; tri [F, 3] -> rast [B, H, W, 4]."""
    pos = raster_torch._as_batched(pos)
    tri = raster_torch._check_tri(tri, pos.shape[1]).contiguous()
    height, width = int(resolution[0]), int(resolution[1])
    ids = kernel.visibility(pos.detach().float().contiguous(), tri, height, width)
    return _Rasterize.apply(pos, tri, ids, kernel)


class _Rasterize(torch.autograd.Function):
    """forward(pos [B, V, 4], tri [F, 3] int64, ids [B, H, W] winning id + 1, kernel) -> rast [B, H, W, 4]."""

    @staticmethod
    def forward(ctx, pos, tri, ids, kernel):
        pos = pos.detach().contiguous()
        rast = kernel.barycentrics_forward(pos, tri, ids)
        ctx.save_for_backward(pos, tri, rast)
        ctx.kernel = kernel
        return rast

    @staticmethod
    def backward(ctx, grad_rast):
        pos, tri, rast = ctx.saved_tensors
        grad_pos = ctx.kernel.barycentrics_backward(pos, tri, rast, grad_rast.contiguous())
        return grad_pos, None, None, None


def interpolate(kernel: ModuleType, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """As `raster_torch.interpolate`: attr [V, C] or [B, V, C] -> [B, H, W, C], zero where uncovered."""
    batch, height, width, _ = rast.shape
    covered = torch.nonzero(rast.detach()[..., 3].reshape(-1) > 0).squeeze(1)
    values = interpolate_pixels(kernel, attr, rast, tri, covered)
    out = values.new_zeros(batch * height * width, attr.shape[-1]).index_copy(0, covered, values)
    return out.reshape(batch, height, width, attr.shape[-1])


def interpolate_pixels(kernel: ModuleType, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor,
                       pixels: torch.Tensor) -> torch.Tensor:
    """As `raster_torch.interpolate_pixels`: [P, C] at `pixels` [P] (covered, into the flat B * H * W image)."""
    return _Interpolate.apply(attr, rast, tri.long().contiguous(), pixels.long().contiguous(), kernel)


class _Interpolate(torch.autograd.Function):
    """forward(attr [V, C] or [B, V, C], rast [B, H, W, 4], tri [F, 3] int64, pixels [P], kernel) -> [P, C]."""

    @staticmethod
    def forward(ctx, attr, rast, tri, pixels, kernel):
        per_view = attr.dim() == 3
        flat = attr.detach().reshape(-1, attr.shape[-1]).contiguous()
        uv_rast = rast.detach().to(attr.dtype).contiguous()
        num_vertices = attr.shape[-2]
        values = kernel.interpolate_forward(flat, uv_rast, tri, pixels, num_vertices, per_view)
        ctx.save_for_backward(flat, uv_rast, tri, pixels)
        ctx.kernel, ctx.num_vertices, ctx.per_view = kernel, num_vertices, per_view
        ctx.attr_shape, ctx.rast_shape, ctx.rast_dtype = attr.shape, rast.shape, rast.dtype
        return values

    @staticmethod
    def backward(ctx, grad_out):
        flat, uv_rast, tri, pixels = ctx.saved_tensors
        need_attr, need_rast = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_attr, grad_rast = ctx.kernel.interpolate_backward(flat, uv_rast, tri, pixels, grad_out.contiguous(),
                                                               ctx.num_vertices, ctx.per_view, need_attr, need_rast)
        grad_rast = grad_rast.to(ctx.rast_dtype) if need_rast else None
        return (grad_attr.reshape(ctx.attr_shape) if need_attr else None), grad_rast, None, None, None


def antialias(kernel: ModuleType, color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, tri: torch.Tensor,
              topology: torch.Tensor | None = None) -> torch.Tensor:
    """As `raster_torch.antialias`: color [B, H, W, C], rast, pos [B, V, 4] or [V, 4], tri [F, 3] -> [B, H, W, C]."""
    tri, topology, sx, sy = raster_torch.antialias_inputs(color, pos, tri, topology)
    tri = tri.contiguous()
    height, width = color.shape[1:3]
    own, other, face, edge, orient = kernel.antialias_pairs(sx.detach().contiguous(), sy.detach().contiguous(), tri,
                                                            topology.long().contiguous(), rast.detach().contiguous())
    if own.numel() == 0:
        return color
    # t where the chosen edge crosses own -> other, with autograd: raster_torch._crossing's formula.
    hw = height * width
    b = torch.div(own, hw, rounding_mode="floor")
    rem_own, rem_other = own - b * hw, other - b * hw
    ox = (rem_own % width).to(sx.dtype) + 0.5
    oy = torch.div(rem_own, width, rounding_mode="floor").to(sx.dtype) + 0.5
    qx = (rem_other % width).to(sx.dtype) + 0.5
    qy = torch.div(rem_other, width, rounding_mode="floor").to(sx.dtype) + 0.5
    row = b * sx.shape[1]
    corner_a = tri[face, edge] + row
    corner_b = tri[face, (edge + 1) % 3] + row
    flat_x, flat_y = sx.reshape(-1), sy.reshape(-1)
    ax, ay = flat_x[corner_a], flat_y[corner_a]
    bx, by = flat_x[corner_b], flat_y[corner_b]
    e_own = ((bx - ax) * (oy - ay) - (by - ay) * (ox - ax)) * orient
    e_other = ((bx - ax) * (qy - ay) - (by - ay) * (qx - ax)) * orient
    t = (e_own / (e_own - e_other)).clamp(0.0, 1.0)
    return _Blend.apply(color, t.to(color.dtype), own, other, kernel)


class _Blend(torch.autograd.Function):
    """raster_torch.antialias's colour transfer across each pair, in one pass each way: the edge beyond the
    midpoint (t > 0.5) spills own's colour into other; before it, own recedes towards other's colour.
    forward(color [B, H, W, C], t [M], own [M], other [M], kernel) -> [B, H, W, C]."""

    @staticmethod
    def forward(ctx, color, t, own, other, kernel):
        flat = color.detach().reshape(-1, color.shape[-1]).contiguous()
        t = t.detach().contiguous()
        ctx.save_for_backward(flat, t, own, other)
        ctx.kernel, ctx.shape = kernel, color.shape
        return kernel.antialias_blend_forward(flat, own, other, t).reshape(color.shape)

    @staticmethod
    def backward(ctx, grad):
        flat, t, own, other = ctx.saved_tensors
        grad_color, grad_t = ctx.kernel.antialias_blend_backward(grad.reshape(flat.shape), flat, own, other, t)
        return grad_color.reshape(ctx.shape), grad_t, None, None, None


def phong(kernel: ModuleType, values: torch.Tensor, position_col: int, normal_col: int, albedo: torch.Tensor | int,
          eye: torch.Tensor, light: torch.Tensor, view_of: torch.Tensor, config, clamp: bool = False) -> torch.Tensor:
    """`shading.phong` of P pixels in one pass, with its analytic backward (autograd through its ~40 small
    ops was most of a CPU render's time).

    values: [P, C] interpolated attributes holding position and normal at columns position_col and
    normal_col (3 each); albedo: the column of the albedo in values, or a [P, 3] tensor; eye, light: [B, 3]
    per view, not differentiated; view_of: [P] view index; config: ShadingConfig; clamp: the result is
    `.clamp(0, 1)`-ed in the same pass (and its gradient masked as torch.clamp's). Returns [P, 3].
    """
    if isinstance(albedo, int):
        return _PhongValues.apply(values, None, (position_col, normal_col, albedo), eye, light, view_of, kernel, config,
                                  clamp)
    return _PhongValues.apply(values, albedo, (position_col, normal_col, -1), eye, light, view_of, kernel, config,
                              clamp)


class _PhongValues(torch.autograd.Function):
    """forward(values [P, C], albedo [P, 3] or None (then in values), cols (position, normal, albedo or -1)
    column offsets into values, eye [B, 3], light [B, 3], view_of [P], kernel, config, clamp) -> [P, 3]."""

    @staticmethod
    def forward(ctx, values, albedo, cols, eye, light, view_of, kernel, config, clamp):
        values = values.detach()
        albedo = values[:, cols[2]:cols[2] + 3] if albedo is None else albedo.detach()
        albedo = albedo if albedo.stride(-1) == 1 else albedo.contiguous()
        eye = eye.detach().to(values.dtype).contiguous()
        light = light.detach().to(values.dtype).contiguous()
        view_of = view_of.long().contiguous()
        params = (float(config.ambient), float(config.diffuse), float(config.specular), float(config.shininess),
                  bool(config.two_sided), bool(clamp))
        out = values.new_empty(values.shape[0], 3)
        empty = values.new_empty(0)
        kernel.phong(albedo, values[:, cols[0]:cols[0] + 3], values[:, cols[1]:cols[1] + 3], eye, light, view_of,
                     *params, out, empty, empty, empty, empty)
        ctx.save_for_backward(values, albedo, eye, light, view_of)
        ctx.kernel, ctx.params, ctx.cols = kernel, params, cols
        return out

    @staticmethod
    def backward(ctx, grad):
        values, albedo, eye, light, view_of = ctx.saved_tensors
        cols = ctx.cols
        g_values = torch.zeros_like(values)
        g_albedo = g_values[:, cols[2]:cols[2] + 3] if cols[2] >= 0 else torch.empty_like(albedo)
        ctx.kernel.phong(albedo, values[:, cols[0]:cols[0] + 3], values[:, cols[1]:cols[1] + 3], eye, light, view_of,
                         *ctx.params, values.new_empty(0), grad.contiguous(), g_albedo,
                         g_values[:, cols[0]:cols[0] + 3], g_values[:, cols[1]:cols[1] + 3])
        return g_values, (g_albedo if cols[2] < 0 else None), None, None, None, None, None, None, None


def vertex_normals(kernel: ModuleType, vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """`shading.vertex_normals` in one pass each way: vertices [V, 3] or [B, V, 3], faces [F, 3] -> unit
    area-weighted vertex normals, same shape."""
    return _VertexNormals.apply(vertices, faces.long().contiguous(), kernel)


class _VertexNormals(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vertices, faces, kernel):
        batched = vertices.detach().reshape(-1, vertices.shape[-2], 3).contiguous()
        none = batched.new_empty(0)
        unit, sums = kernel.vertex_normals(batched, faces, none, none, none)
        ctx.save_for_backward(batched, faces, sums, unit)
        ctx.kernel, ctx.shape = kernel, vertices.shape
        return unit.reshape(vertices.shape)

    @staticmethod
    def backward(ctx, grad):
        batched, faces, sums, unit = ctx.saved_tensors
        (grad_v,) = ctx.kernel.vertex_normals(batched, faces, sums, unit, grad.reshape(batched.shape).contiguous())
        return grad_v.reshape(ctx.shape), None, None
