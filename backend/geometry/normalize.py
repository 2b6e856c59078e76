"""Normalising a mesh into the unit sphere, and undoing it before export.

Jobs work on meshes centred at the origin with radius 1 (cameras, losses and learning rates assume
that size) but results go back in the source object's local space (DESIGN §2), so the similarity is
kept and inverted on the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh


@dataclass(frozen=True)
class Similarity:
    """A uniform scale followed by a translation: `apply(p) = p * scale + translation`."""

    scale: float
    """Uniform scale factor, > 0."""
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.float64))
    """[3] float64 offset added after scaling."""

    def apply(self, points: np.ndarray) -> np.ndarray:
        """points: [..., 3] in the source frame -> [..., 3] float32 in the normalised frame."""
        return (np.asarray(points, dtype=np.float64) * self.scale + self.translation).astype(np.float32)

    def invert(self, points: np.ndarray) -> np.ndarray:
        """points: [..., 3] in the normalised frame -> [..., 3] float32 in the source frame."""
        return ((np.asarray(points, dtype=np.float64) - self.translation) / self.scale).astype(np.float32)

    def invert_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Displacements (e.g. morph-target deltas) [..., 3]: only the scale applies, not the translation."""
        return (np.asarray(vectors, dtype=np.float64) / self.scale).astype(np.float32)

    def invert_mesh(self, mesh: Mesh) -> Mesh:
        """A copy of a normalised mesh moved back to the source frame (faces and attributes shared)."""
        return mesh.copy(vertices=self.invert(mesh.vertices))

    def matrix(self) -> np.ndarray:
        """[4, 4] float64 homogeneous matrix of `apply` (column vectors: M @ [x, y, z, 1])."""
        out = np.eye(4)
        out[:3, :3] *= self.scale
        out[:3, 3] = self.translation
        return out


def normalize_to_unit_sphere(mesh: Mesh) -> tuple[Mesh, Similarity]:
    """Centre a mesh at its bounding-box centre and scale it so the farthest vertex is at radius 1.

    mesh.vertices: [N, 3]. Returns (a copy with float32 vertices, the Similarity that maps source
    positions to normalised ones; `similarity.invert` maps results back). The bounding-box centre,
    not the centroid, so a dense patch of vertices does not pull the shape off-centre.
    Raises InvalidInputError when all vertices coincide (nothing to scale).
    """
    points = np.asarray(mesh.vertices, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] != 3:
        raise InvalidInputError(
            f"cannot normalise vertices of shape {tuple(points.shape)}", "send positions as an (N, 3) float32 array"
        )
    centre = 0.5 * (points.min(axis=0) + points.max(axis=0))
    radius = float(np.linalg.norm(points - centre, axis=1).max())
    if not np.isfinite(radius) or radius <= 0.0:
        raise InvalidInputError(
            "cannot normalise a mesh whose vertices all lie at one point",
            "check the object's scale and that the mesh has geometry",
        )
    scale = 1.0 / radius
    similarity = Similarity(scale=scale, translation=-centre * scale)
    return mesh.copy(vertices=similarity.apply(points), metadata=dict(mesh.metadata)), similarity
