"""Coloured surface samples of a mesh: the input of the point-cloud shape encoder (issue 23).

A shape becomes [count, 6] rows (x, y, z, r, g, b): positions in the unit sphere frame of
`normalize_to_unit_sphere`, colours as the views show them (the texture, else the vertex colours, else the
renderer's default grey), so that an encoder trained against CLIP's embeddings of rendered views sees the same
surface the teacher saw.
"""

from __future__ import annotations

import numpy as np

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.normalize import normalize_to_unit_sphere

DEFAULT_GREY = (0.7, 0.7, 0.7)
"""The colour of a mesh with neither texture nor vertex colours (the renderer's `default_color`)."""


def sample_faces(vertices: np.ndarray, faces: np.ndarray, count: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted faces [count] int64 and barycentric weights [count, 3] float64 (uniform on each triangle).
    InvalidInputError when the faces have no area."""
    corners = vertices[faces]  # [F, 3, 3]
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0.0:
        raise InvalidInputError("the mesh has zero surface area: there is nothing to sample",
                                hint="check that it has non-degenerate faces")
    picked = rng.choice(len(faces), size=count, p=areas / total)
    # sqrt(u) folds the unit square onto the triangle uniformly (Osada et al. 2002).
    u, v = rng.random((2, count))
    root = np.sqrt(u)
    weights = np.stack([1.0 - root, root * (1.0 - v), root * v], axis=1)
    return picked, weights


def _texture_colours(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear, repeating lookup of `texture` ([H, W, C] uint8, row 0 at the top) at glTF uv ([P, 2]: (0, 0) is
    the top-left corner, texel centres at ((i + 0.5) / W, (j + 0.5) / H)), as the renderer samples it. [P, 3]
    float64 in [0, 1]."""
    image = np.asarray(texture, dtype=np.float64)[..., :3] / 255.0
    height, width = image.shape[:2]
    x = uv[:, 0] * width - 0.5
    y = uv[:, 1] * height - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)

    def fetch(row: np.ndarray, col: np.ndarray) -> np.ndarray:
        return image[np.mod(row, height), np.mod(col, width)]

    top = fetch(y0, x0) * (1 - fx) + fetch(y0, x0 + 1) * fx
    bottom = fetch(y0 + 1, x0) * (1 - fx) + fetch(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def _corner_values(values: np.ndarray, faces: np.ndarray, n_vertices: int, picked: np.ndarray,
                   what: str) -> np.ndarray:
    """The three corners' rows of a per-vertex [N, K] (Mesh's convention) or per-corner [3F, K] (the protocol
    allows both) attribute for each picked face: [count, 3, K]."""
    values = np.asarray(values, dtype=np.float64)
    rows = values.shape[0] if values.ndim == 2 else -1
    if rows == n_vertices:
        return values[faces[picked]]
    if rows == 3 * len(faces):
        return values.reshape(len(faces), 3, -1)[picked]
    raise InvalidInputError(f"the mesh's {what} has shape {values.shape} for {n_vertices} vertices and "
                            f"{len(faces)} faces", hint=f"give one {what} row per vertex (or per face corner), or none")


def coloured_points(mesh: Mesh, count: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """`count` area-weighted samples of the surface with their colours: [count, 6] float32 (x, y, z, r, g, b).

    mesh: vertices [N, 3], faces [F, 3]; optional uv [N, 2] with texture [H, W, 3|4] uint8, or vertex_colors
    [N, 3|4] in [0, 1]. xyz are in the unit sphere frame (`normalize_to_unit_sphere`: bounding-box centre at the
    origin, farthest vertex at radius 1). rgb in [0, 1]: the texture at the interpolated uv (bilinear, repeating,
    glTF's top-left origin), else the interpolated vertex colours, else grey 0.7. rng: the randomness (default:
    seed 0, so a call is reproducible). InvalidInputError for count < 1, a mesh with no faces or no area, or uv /
    colours that do not fit the vertices.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise InvalidInputError(f"the point count must be a positive integer, got {count!r}",
                                hint="ask for e.g. 1024 points")
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] == 0:
        raise InvalidInputError(f"the mesh has no triangles to sample (faces of shape {faces.shape})",
                                hint="give a mesh with [F, 3] faces, F >= 1")
    rng = np.random.default_rng(0) if rng is None else rng
    unit, _ = normalize_to_unit_sphere(mesh)
    vertices = np.asarray(unit.vertices, dtype=np.float64)
    if faces.max() >= len(vertices) or faces.min() < 0:
        raise InvalidInputError(f"the mesh's faces index vertices outside 0..{len(vertices) - 1}",
                                hint="check the faces array (indices are 0-based)")
    picked, weights = sample_faces(vertices, faces, int(count), rng)
    xyz = np.einsum("pk,pkd->pd", weights, vertices[faces[picked]])
    if mesh.texture is not None and mesh.uv is not None:
        uv = np.einsum("pk,pkd->pd", weights, _corner_values(mesh.uv, faces, len(vertices), picked, "uv"))
        rgb = _texture_colours(mesh.texture, uv)
    elif mesh.vertex_colors is not None:
        corners = _corner_values(mesh.vertex_colors, faces, len(vertices), picked, "vertex colours")[..., :3]
        rgb = np.einsum("pk,pkd->pd", weights, corners)
    else:
        rgb = np.broadcast_to(np.asarray(DEFAULT_GREY, dtype=np.float64), (int(count), 3))
    return np.concatenate([xyz, np.clip(rgb, 0.0, 1.0)], axis=1).astype(np.float32)
