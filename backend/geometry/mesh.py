"""The in-memory triangle mesh every stage passes around.

Coordinate frame: the backend works in glTF's frame (Y up, metres). Meshes arriving from Blender
(Z up, object-local) are converted with `blender_to_gltf` at the job boundary and results are
converted back with `gltf_to_blender`, so GLB export needs no further change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# Blender (x, y, z), Z up  ->  glTF (x, z, -y), Y up.  The inverse is its transpose.
BLENDER_TO_GLTF = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float32)


def blender_to_gltf(points: np.ndarray) -> np.ndarray:
    """points: [..., 3] in Blender's Z-up frame -> the same points in glTF's Y-up frame."""
    return (points @ BLENDER_TO_GLTF.T).astype(np.float32)


def gltf_to_blender(points: np.ndarray) -> np.ndarray:
    """points: [..., 3] in glTF's Y-up frame -> Blender's Z-up frame."""
    return (points @ BLENDER_TO_GLTF).astype(np.float32)


@dataclass
class Mesh:
    """A triangle mesh with optional per-vertex UVs, colours and one base-colour texture."""

    vertices: np.ndarray
    """[N, 3] float32 positions."""
    faces: np.ndarray
    """[F, 3] int32 vertex indices, counter-clockwise seen from outside."""
    uv: np.ndarray | None = None
    """[N, 2] float32 texture coordinates, glTF convention: (0, 0) is the top-left of the texture image."""
    vertex_colors: np.ndarray | None = None
    """[N, 3 or 4] float32 linear colours in [0, 1]."""
    texture: np.ndarray | None = None
    """[H, W, 3 or 4] uint8 base-colour image, row 0 at the top."""
    name: str = ""
    """A display name (file stem or Blender object name)."""
    metadata: dict = field(default_factory=dict)
    """Free-form facts carried along (source path, category, ...)."""

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def copy(self, **changes) -> "Mesh":
        """A shallow copy with some fields replaced."""
        return replace(self, **changes)
