"""Images of any mesh for the index, the generator's library and the world: shaded views and line drawings.

`shaded_images` and `line_drawings` render a `Mesh` normalised to the unit sphere from given cameras, batched,
top row first, float32 in [0, 1]. Every random choice (stroke damage, widths, jitter) comes from a
`torch.Generator`, so a (mesh, cameras, seed) triple always gives the same pixels on one device. The indexer
(`retrieve/views.py`) and the generator's library render through here; the procedural world (`world/views.py`)
builds its random viewpoints, sketches and photos on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from backend.geometry.mesh import Mesh
from backend.geometry.normals import vertex_normals
from backend.render.camera import Cameras
from backend.render.lines import LineConfig, render_lines
from backend.render.renderer import MeshRenderer, RenderConfig
from backend.render.shading import ShadingConfig


@dataclass
class SketchConfig:
    """How line drawings are made from a render's depth and normal edges, then roughened."""

    supersample: int = 2
    """Lines are found at this multiple of the output size, then averaged down (grey antialiased strokes)."""
    crease_deg: float = 35.0
    """Neighbouring faces meeting at more than this angle draw a crease line."""
    depth_jump: float = 0.04
    """Depth discontinuity (fraction of the eye distance) that draws an occluding contour."""
    piece_px: float = 8.0
    """Strokes are cut into pieces by a randomly offset grid of this cell size (output pixels); each
    piece is a connected line component inside one cell."""
    drop_fraction: tuple[float, float] = (0.0, 0.25)
    """Fraction of stroke pieces removed per sketch, drawn uniformly."""
    width_px: tuple[float, float] = (0.5, 1.3)
    """Base stroke width in output pixels, drawn per sketch; some pieces are drawn one step thicker."""
    thick_fraction: float = 0.3
    """Fraction of pieces drawn thicker than the base width."""
    jitter_px: tuple[float, float] = (0.3, 1.2)
    """Amplitude of the smooth random warp, in output pixels, drawn per sketch."""
    jitter_cells: int = 5
    """The warp is a random displacement on this many grid cells across, smoothly interpolated."""
    ink: tuple[float, float] = (0.75, 1.0)
    """Ink darkness (1 = black), drawn per sketch."""


@dataclass
class Drawable:
    """Render-ready tensors of a mesh normalised to the unit sphere (texture, vertex colours or neither)."""

    vertices: torch.Tensor  # [V, 3] float32
    faces: torch.Tensor  # [F, 3] int32
    normals: torch.Tensor  # [V, 3] float32
    uv: torch.Tensor | None = None  # [V, 2] float32, with texture
    texture: torch.Tensor | None = None  # [T, T, 3] float32 in [0, 1]
    vertex_colors: torch.Tensor | None = None  # [V, 3] float32 in [0, 1], when there is no texture

    def kwargs(self) -> dict:
        out = {"vertices": self.vertices, "faces": self.faces, "normals": self.normals}
        if self.texture is not None:
            out.update(uv=self.uv, texture=self.texture)
        elif self.vertex_colors is not None:
            out["vertex_colors"] = self.vertex_colors
        return out

    def placed(self, scale: float, offset: torch.Tensor, turn_deg: float) -> "Drawable":
        """Scaled, turned about +Y and moved (a distractor in the photo's scene)."""
        a = math.radians(turn_deg)
        rot = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]],
                           dtype=torch.float32, device=self.vertices.device)
        return Drawable(self.vertices @ rot.T * scale + offset, self.faces, self.normals @ rot.T, self.uv,
                         self.texture, self.vertex_colors)


def unit_drawable(mesh: Mesh, device: torch.device | str) -> Drawable:
    """Any `Mesh` normalised to the unit sphere (bounding-box centre, farthest vertex at 1). Shading normals
    come from metadata["normals"] when present (world shapes), else area-weighted vertex normals; a mesh
    with neither texture nor vertex colours renders in the renderer's default grey."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    centre = 0.5 * (low + high)
    radius = max(float(np.linalg.norm(vertices - centre, axis=1).max()), 1e-12)
    normals = mesh.metadata.get("normals")
    if normals is None:
        normals = vertex_normals(mesh.vertices, mesh.faces)
    drawable = Drawable(
        vertices=torch.as_tensor(((vertices - centre) / radius).astype(np.float32), device=device),
        faces=torch.as_tensor(np.asarray(mesh.faces, dtype=np.int32), device=device),
        normals=torch.as_tensor(np.asarray(normals, dtype=np.float32), device=device),
    )
    if mesh.texture is not None and mesh.uv is not None:
        drawable.uv = torch.as_tensor(np.asarray(mesh.uv, dtype=np.float32), device=device)
        drawable.texture = torch.as_tensor(np.asarray(mesh.texture[..., :3], dtype=np.float32) / 255.0, device=device)
    elif mesh.vertex_colors is not None:
        drawable.vertex_colors = torch.as_tensor(np.asarray(mesh.vertex_colors[:, :3], dtype=np.float32), device=device)
    return drawable


def view_renderer(size: int, device: str, ambient: float, background: tuple[float, float, float]) -> MeshRenderer:
    # A fresh renderer per call, never a cached one: the rasterizer caches edge topology keyed by the
    # faces tensor's address, and a freed faces tensor's memory is reused by the next shape's.
    shading = ShadingConfig(ambient=ambient, diffuse=1.0 - ambient, specular=0.12)
    return MeshRenderer(RenderConfig(size=size, background=background, shading=shading), device)


def uniform_draws(count: int, bounds: tuple[float, float], generator: torch.Generator | None) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(count, generator=generator)


@torch.no_grad()
def shaded_images(mesh: Mesh, cameras: Cameras, lights: torch.Tensor, size: int, device: torch.device | str = "cpu",
                  ambient: float = 0.45, exposure: torch.Tensor | None = None) -> torch.Tensor:
    """Shaded renders of any `Mesh` (normalised to the unit sphere) over white, from given cameras.

    cameras: B cameras looking at the origin; lights: [B, 3] point-light positions; exposure: [B] brightness
    factors applied to the object, not the background (None: 1). Returns [B, size, size, 3] float32 in
    [0, 1] on `device`, top row first.
    """
    renderer = view_renderer(int(size), str(torch.device(device)), ambient, (1.0, 1.0, 1.0))
    out = renderer.render(cameras=cameras, lights=lights.to(renderer.device),
                          **unit_drawable(mesh, renderer.device).kwargs())
    if exposure is None:
        return out.image.clamp(0, 1)
    # Exposure scales the object, not the white background.
    exposure = exposure.to(renderer.device)
    image = out.image * (1 - out.alpha) + (out.image * exposure[:, None, None, None]).clamp(0, 1) * out.alpha
    return image.clamp(0, 1)


def _connected_pieces(ink: torch.Tensor, cell: torch.Tensor, max_iterations: int) -> torch.Tensor:
    """Labels [B, H, W] int64 of 8-connected ink components within each grid cell (0 = no ink).

    ink: [B, H, W] bool; cell: [B, H, W] int64 cell id. A label is the largest pixel index of its
    piece, found by propagating maxima between neighbouring ink pixels of the same cell.
    """
    b, h, w = ink.shape
    index = torch.arange(1, h * w + 1, device=ink.device, dtype=torch.int32).view(1, h, w).expand(b, h, w)
    label = torch.where(ink, index, torch.zeros_like(index))
    # For each neighbour offset: the destination and source windows, and where a step may pass
    # (both pixels inked, same cell).
    steps = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            dst = (slice(None), slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
            src = (slice(None), slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))
            steps.append((dst, src, (cell[dst] == cell[src]) & ink[dst] & ink[src]))
    for _ in range(max_iterations):
        best = label.clone()
        for dst, src, passable in steps:
            best[dst] = torch.maximum(best[dst], torch.where(passable, label[src], 0))
        if torch.equal(best, label):
            break
        label = best
    return label.long()


@torch.no_grad()
def line_drawings(mesh: Mesh, cameras: Cameras, size: int, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu", config: SketchConfig | None = None) -> torch.Tensor:
    """Line drawings of any `Mesh` (normalised to the unit sphere) from given cameras, damaged as `config` says
    (a config with no drop, jitter or thick pieces and a fixed width and ink gives clean drawings).

    Returns [B, size, size] float32 in [0, 1], 1 = paper, 0 = full ink, top row first.
    """
    config = config or SketchConfig()
    count = len(cameras)
    ss = max(1, int(config.supersample))
    big = int(size) * ss
    renderer = view_renderer(big, str(torch.device(device)), 0.45, (1.0, 1.0, 1.0))
    dev = renderer.device
    cameras = cameras.to(dev)
    drawable = unit_drawable(mesh, dev)
    lines = render_lines(renderer, drawable.vertices, drawable.faces, cameras,
                         LineConfig(depth_jump=config.depth_jump, crease_deg=config.crease_deg, thickness=0))
    ink = lines < 0.5  # [B, S, S]

    # Cut strokes into pieces: connected components inside the cells of a randomly offset grid.
    cell_px = max(2.0, config.piece_px * ss)
    offset = torch.rand(count, 2, generator=generator) * cell_px
    ys = torch.arange(big, dtype=torch.float32).view(1, big, 1)
    xs = torch.arange(big, dtype=torch.float32).view(1, 1, big)
    cols = int(math.ceil(big / cell_px)) + 2
    cell = (torch.floor((ys + offset[:, 0, None, None]) / cell_px) * cols
            + torch.floor((xs + offset[:, 1, None, None]) / cell_px)).long().to(dev)
    damaged = tuple(config.drop_fraction) != (0.0, 0.0) or config.thick_fraction > 0
    # Undamaged drawings keep every piece at one width: the pieces need not be found (the draws below still
    # happen, so a generator advances the same way either way).
    pieces = (_connected_pieces(ink, cell, max_iterations=int(4 * cell_px)) if damaged
              else torch.zeros(ink.shape, dtype=torch.long, device=dev))

    # Per-piece random draws are looked up by piece label (a pixel index).
    drop = uniform_draws(count, config.drop_fraction, generator).to(dev)
    piece_keep = torch.rand(count, big * big + 1, generator=generator).to(dev)
    piece_thick = torch.rand(count, big * big + 1, generator=generator).to(dev)
    flat = pieces.view(count, -1)
    kept = (torch.gather(piece_keep, 1, flat) >= drop[:, None]).view_as(pieces) & ink
    thick = (torch.gather(piece_thick, 1, flat) < config.thick_fraction).view_as(pieces) & kept

    # Widths: a per-sketch base width, one step more for the thick pieces (max-pool dilation at the
    # supersampled size; widths are in output pixels).
    width = uniform_draws(count, config.width_px, generator)
    strokes = torch.zeros(count, big, big, device=dev)
    for i in range(count):
        base = max(1, int(round(float(width[i]) * ss)))
        for source, extra in ((kept[i], 0), (thick[i], ss)):
            k = base + extra
            layer = source.float()[None, None]
            if k > 1:
                layer = F.max_pool2d(F.pad(layer, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)), k, stride=1)
            strokes[i] = torch.maximum(strokes[i], layer[0, 0])

    # Jitter: a smooth random warp of the whole drawing.
    amplitude = uniform_draws(count, config.jitter_px, generator) * 2.0 / size  # output px -> [-1, 1] units
    g = max(2, int(config.jitter_cells))
    coarse = torch.randn(count, 2, g, g, generator=generator) * amplitude[:, None, None, None]
    flow = F.interpolate(coarse, size=(big, big), mode="bicubic", align_corners=True).permute(0, 2, 3, 1).to(dev)
    lin = (torch.arange(big, dtype=torch.float32, device=dev) + 0.5) / big * 2 - 1
    grid_y, grid_x = torch.meshgrid(lin, lin, indexing="ij")
    grid = torch.stack([grid_x, grid_y], -1)[None] + flow
    warped = F.grid_sample(strokes[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    small = F.avg_pool2d(warped, ss) if ss > 1 else warped
    darkness = uniform_draws(count, config.ink, generator).to(dev)
    return (1.0 - small[:, 0].clamp(0, 1) * darkness[:, None, None]).clamp(0, 1)
