"""Which levels of the style texture a render can show, texel by texel (a static mipmap choice).

Where a chart of the UV layout is dense (many texels on one rendered pixel: the middle of Suzanne's face, the
inside of her ears), the renderer's bilinear lookup reads only a few of the texels under each pixel, so the
finest levels of the style texture get sparse, aliased gradients there and Adam turns them into speckle and
blocks. A texel of level l (size T / 2^l) covers 2^l texels of the finest; it shows as a pixel of its own when
k / 2^l <= 1, k being the finest texels per rendered pixel (linear). Each level is weighted per texel by
clamp(1 + l - log2 k, 0, 1): fully on where it is coarse enough, fading out over one octave, and the coarsest
level always on. k comes from the ratio of each face's UV area (in texels) to its surface area (in pixels, at
the distance the cameras stand), spread to the vertices and baked into the texture's own layout.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from backend.render.camera import fit_distance
from backend.stylize.bake import bake_vertex_values


def pixels_per_unit(render_size: int, fov_deg: float, pattern_scale: float) -> float:
    """Rendered pixels per world unit at the centre of a unit-sphere mesh, for the restyle cameras."""
    distance = fit_distance(fov_deg) * pattern_scale
    return render_size / (2.0 * distance * math.tan(math.radians(fov_deg) / 2.0))


def log2_texels_per_pixel(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, texture_size: int,
                          pixel_density: float) -> np.ndarray:
    """Per vertex, log2 of the finest texels per rendered pixel (linear), averaged over its faces by area.

    vertices: [N, 3] of the normalised mesh; faces: [F, 3]; uv: [N, 2]; pixel_density: `pixels_per_unit`."""
    corners = vertices[faces]
    surface = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    uv_corners = uv[faces] * texture_size
    e1, e2 = uv_corners[:, 1] - uv_corners[:, 0], uv_corners[:, 2] - uv_corners[:, 0]
    texels = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    pixels = surface * pixel_density**2
    per_face = 0.5 * np.log2(np.maximum(texels, 1e-12) / np.maximum(pixels, 1e-12))
    weight = np.repeat(surface, 3)
    total = np.bincount(faces.reshape(-1), weights=weight * np.repeat(per_face, 3), minlength=len(vertices))
    count = np.bincount(faces.reshape(-1), weights=weight, minlength=len(vertices))
    return np.where(count > 0, total / np.maximum(count, 1e-30), 0.0).astype(np.float32)


def level_weights(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, texture_size: int, levels: int,
                  pixel_density: float, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """Per level (finest first), its weight per texel [T, T, 1] in [0, 1]; the coarsest level's is all ones."""
    density = log2_texels_per_pixel(vertices, faces, uv, texture_size, pixel_density)
    texel_map = bake_vertex_values(uv, faces, density[:, None], texture_size, padding=4, device=device)
    weights = [(1.0 + level - texel_map).clamp(0.0, 1.0) for level in range(levels - 1)]
    return weights + [torch.ones_like(texel_map)]
