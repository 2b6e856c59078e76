"""Baking per-vertex colours into a UV texture (rasterised in UV space with the renderer's rasterizer)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backend.errors import InvalidInputError
from backend.render.rasterizer import RasterizerConfig, make_rasterizer


def uv_in_unit_square(uv: np.ndarray | None) -> bool:
    """Whether UVs [N, 2] can address one texture without tiling (all in [0, 1])."""
    return uv is not None and bool(np.all((uv >= 0.0) & (uv <= 1.0)))


@torch.no_grad()
def bake_vertex_colors(uv: np.ndarray, faces: np.ndarray, colors: np.ndarray, size: int = 1024,
                       padding: int = 4, device: torch.device | str = "cpu",
                       implementation: str = "auto") -> np.ndarray:
    """Paints each triangle's interpolated vertex colours into its UV footprint.

    uv: [N, 2] float32 in [0, 1], glTF convention (v = 0 is the image's top row); faces: [F, 3] int32;
    colors: [N, 3] float in [0, 1], the values to store (sRGB-encoded for a glTF base-colour texture);
    size: texture side in pixels; padding: texels the charts are grown by so filtering and mipmaps do not
    pull in the background across seams. Returns [size, size, 3] uint8, row 0 at the top. Texels no chart
    reaches get the mean colour. Where charts overlap (mirrored UVs), one of them wins.
    """
    if not 8 <= size <= 8192:
        raise InvalidInputError(f"the baked texture size must be in [8, 8192] pixels, got {size}",
                                hint="1024 or 2048 suit most objects")
    if not uv_in_unit_square(uv):
        raise InvalidInputError("baking needs UVs inside [0, 1]", hint="unwrap the mesh first (ensure_uv)")
    values = bake_vertex_values(uv, faces, np.asarray(colors, dtype=np.float32)[:, :3], size, padding, device,
                                implementation)
    return (values.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def bake_vertex_values(uv: np.ndarray, faces: np.ndarray, values: np.ndarray, size: int, padding: int = 4,
                       device: torch.device | str = "cpu", implementation: str = "auto") -> torch.Tensor:
    """`bake_vertex_colors` for any per-vertex values [N, C] (float): [size, size, C] float32, row 0 at v = 0,
    charts grown by `padding` texels, the texels no chart reaches set to the mean value."""
    device = torch.device(device)
    rasterizer = make_rasterizer(RasterizerConfig(implementation=implementation), device)
    uv_t = torch.as_tensor(np.asarray(uv, dtype=np.float32), device=device)
    # Clip-space y = 2v - 1 puts v = 0 on the rasterizer's first row, which is the image's top row here.
    pos = torch.cat([uv_t * 2.0 - 1.0, torch.zeros_like(uv_t[:, :1]), torch.ones_like(uv_t[:, :1])], dim=1)
    tri = torch.as_tensor(np.asarray(faces, dtype=np.int32), device=device)
    rast = rasterizer.rasterize(pos[None].contiguous(), tri, (size, size))
    attr = torch.as_tensor(np.asarray(values, dtype=np.float32), device=device)
    image = rasterizer.interpolate(attr[None].contiguous(), rast, tri)[0]  # [S, S, C]
    covered = (rast[0, ..., 3] > 0).to(image.dtype)[..., None]
    image, reached = _dilate(image * covered, covered, padding)
    return torch.where(reached > 0, image, attr.mean(dim=0))


def _dilate(image: torch.Tensor, covered: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grows coloured regions by `steps` texels: empty texels take the mean of their covered neighbours.

    image: [S, S, C]; covered: [S, S, 1] in {0, 1}. Returns (image, coverage after growing), same shapes."""
    kernel = torch.ones(1, 1, 3, 3, dtype=image.dtype, device=image.device)
    colour = image.permute(2, 0, 1)[None]  # [1, C, S, S]
    mask = covered.permute(2, 0, 1)[None]  # [1, 1, S, S]
    for _ in range(steps):
        total = F.conv2d(colour, kernel.expand(colour.shape[1], 1, 3, 3), padding=1,
                         groups=colour.shape[1])
        count = F.conv2d(mask, kernel, padding=1)
        grown = (count > 0).to(image.dtype)
        colour = torch.where(mask > 0, colour, total / count.clamp(min=1.0))
        mask = torch.maximum(mask, grown)
    return colour[0].permute(1, 2, 0), mask[0].permute(1, 2, 0)
