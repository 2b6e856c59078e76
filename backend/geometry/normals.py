"""Vertex normals for export and shading."""

from __future__ import annotations

import numpy as np

FALLBACK_NORMAL = np.array([0.0, 1.0, 0.0], dtype=np.float32)
"""Given to vertices no face with area touches: glTF requires unit normals, and +Y is glTF's up."""


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit face normals (counter-clockwise winding faces outward).

    vertices: [N, 3] float; faces: [F, 3] int. Returns [F, 3] float32; zero-area faces get FALLBACK_NORMAL.
    """
    corners = vertices.astype(np.float64)[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return _unit(cross)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals.

    vertices: [N, 3] float; faces: [F, 3] int (CCW seen from outside). Returns [N, 3] float32 unit
    vectors. Each face adds its cross product, whose length is twice its area, to its three corners,
    so large faces dominate and slivers barely count. Vertices with no area around them get
    FALLBACK_NORMAL.
    """
    corners = vertices.astype(np.float64)[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    summed = np.zeros((vertices.shape[0], 3), dtype=np.float64)
    for k in range(3):
        np.add.at(summed, faces[:, k], cross)
    return _unit(summed)


def _unit(vectors: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    scale = np.max(length) if length.size else 0.0
    # Relative threshold: an absolute one would flag every vertex of a millimetre-sized model.
    ok = length[:, 0] > max(scale, 1e-300) * 1e-12
    out = np.tile(FALLBACK_NORMAL.astype(np.float64), (vectors.shape[0], 1))
    out[ok] = vectors[ok] / length[ok]
    return out.astype(np.float32)
