"""Line drawings of meshes: silhouettes and creases from depth and normal discontinuities.

This is the sketch domain: retrieval indexes line drawings of library shapes and matches users'
sketches against them. Black strokes on white, like a drawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from backend.render.camera import Cameras
from backend.render.renderer import MeshRenderer
from backend.render.shading import face_normals


@dataclass
class LineConfig:
    """Which discontinuities become lines."""

    depth_jump: float = 0.04
    """A neighbour farther by more than this fraction of the eye distance draws a line (occluding contours)."""
    crease_deg: float = 40.0
    """Neighbouring faces whose normals differ by more than this angle draw a crease line."""
    thickness: int = 1
    """Stroke half-width in pixels (0 = single-pixel lines)."""


@torch.no_grad()
def render_lines(renderer: MeshRenderer, vertices: torch.Tensor, faces: torch.Tensor, cameras: Cameras,
                 config: LineConfig | None = None) -> torch.Tensor:
    """Line drawings [B, H, W] float32: 0 = ink, 1 = paper.

    vertices: [V, 3] world positions; faces: [F, 3] int32.
    """
    config = config or LineConfig()
    out = renderer.render(vertices, faces, cameras, shade=False)
    face_id = out.face_id  # [B, H, W]
    covered = face_id >= 0
    eye = cameras.eye.to(out.position.device)
    distance = (out.position - eye[:, None, None, :]).norm(dim=-1)
    fn = torch.nn.functional.normalize(face_normals(vertices.to(renderer.device), faces.to(renderer.device)), dim=-1)
    pixel_normal = fn[face_id.clamp(min=0)] * covered.unsqueeze(-1)
    cos_crease = math.cos(math.radians(config.crease_deg))
    scale = eye.norm(dim=-1)[:, None, None]
    edge = torch.zeros_like(covered)
    for dy, dx in ((0, 1), (1, 0)):
        a = (slice(None), slice(0, covered.shape[1] - dy), slice(0, covered.shape[2] - dx))
        b = (slice(None), slice(dy, None), slice(dx, None))
        silhouette = covered[a] != covered[b]
        both = covered[a] & covered[b]
        jump = both & ((distance[a] - distance[b]).abs() > config.depth_jump * scale[:, :1, :1].expand_as(distance[a]))
        different = face_id[a] != face_id[b]
        crease = both & different & ((pixel_normal[a] * pixel_normal[b]).sum(-1) < cos_crease)
        line = silhouette | jump | crease
        edge[a] |= line
        edge[b] |= line
    ink = edge.float().unsqueeze(1)
    if config.thickness > 0:
        k = 2 * config.thickness + 1
        ink = torch.nn.functional.max_pool2d(ink, k, stride=1, padding=config.thickness)
    return 1.0 - ink.squeeze(1)
