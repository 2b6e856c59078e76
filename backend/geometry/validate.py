"""Checking meshes that arrive from users before any stage touches them.

Two levels:
- `check_mesh_arrays` checks structure only (shapes, dtypes, finite values, index ranges) and never
  changes the mesh; the GLB writer uses it so exports are exactly what the caller built.
- `validate_mesh` adds the policy for user input: size limits and dropping degenerate faces.

Dtypes are checked by kind, not exactly: any real float array is accepted for positions, UVs and
colours and any integer array for faces, and they come back as float32 / int32. A bool, complex,
string or object array, or float face indices, is rejected: those are mistakes, not precision choices.
"""

from __future__ import annotations

import numpy as np

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh

MAX_VERTICES = 2_000_000
"""Default vertex limit for user meshes: beyond this renders and CLIP losses run out of memory."""
MAX_FACES = 4_000_000
"""Default triangle limit for user meshes."""
DEGENERATE_AREA_TOLERANCE = 1e-12
"""A face whose area is below this fraction of the squared bounding-box diagonal counts as zero-area."""

_DECIMATE_HINT = (
    "decimate the mesh first (Blender: Decimate modifier) or raise the limit in the backend settings"
)


def _as_float_array(value, what: str, hint: str) -> np.ndarray:
    """Any real-float (or integer) array-like -> float32; anything else is rejected."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} must be an array of real numbers, got dtype {array.dtype}", hint)
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_finite(array: np.ndarray, what: str, hint: str) -> None:
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array).all(axis=-1)))
        raise InvalidInputError(f"{what} contain NaN or infinite values ({bad} rows)", hint)


def check_vertices(vertices) -> np.ndarray:
    """vertices: array-like [N, 3] real -> [N, 3] float32, finite, N >= 1."""
    array = _as_float_array(vertices, "vertices", "send positions as an (N, 3) float32 array")
    if array.ndim != 2 or array.shape[1] != 3:
        raise InvalidInputError(
            f"vertices must have shape (N, 3), got {tuple(array.shape)}",
            "send positions as an (N, 3) float32 array",
        )
    if array.shape[0] == 0:
        raise InvalidInputError("the mesh is empty: it has no vertices", "select a mesh object with geometry")
    _check_finite(array, "vertices", "apply or remove the modifier that produced them, or clean up the mesh")
    return array


def check_faces(faces, num_vertices: int) -> np.ndarray:
    """faces: array-like [F, 3] integer indices into N = num_vertices vertices -> [F, 3] int32, F >= 1."""
    array = np.asarray(faces)
    if array.dtype.kind not in "iu":
        raise InvalidInputError(
            f"faces must be integer vertex indices, got dtype {array.dtype}",
            "send faces as an (F, 3) int32 array",
        )
    if array.ndim != 2 or array.shape[1] != 3:
        raise InvalidInputError(
            f"faces must be triangles (F, 3), got shape {tuple(array.shape)}",
            "triangulate the mesh first (Blender: Triangulate modifier or Ctrl+T in edit mode)",
        )
    if array.shape[0] == 0:
        raise InvalidInputError(
            "the mesh has no faces", "send a surface mesh; point clouds and wire edges are not supported"
        )
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise InvalidInputError(
            f"face indices must not be negative, found {low}", "indices are 0-based positions in the vertex array"
        )
    if high >= num_vertices:
        raise InvalidInputError(
            f"face index {high} is out of range for {num_vertices} vertices",
            "indices are 0-based positions in the vertex array; re-export the mesh",
        )
    return np.ascontiguousarray(array, dtype=np.int32)


def check_uv(uv, num_vertices: int) -> np.ndarray:
    """uv: array-like [N, 2] real, glTF convention -> [N, 2] float32, finite (values may leave [0, 1]: tiling)."""
    hint = "send one (u, v) pair per vertex as an (N, 2) float32 array"
    array = _as_float_array(uv, "uv", hint)
    if array.ndim != 2 or array.shape != (num_vertices, 2):
        raise InvalidInputError(
            f"uv must have shape ({num_vertices}, 2) to match the vertices, got {tuple(array.shape)}", hint
        )
    _check_finite(array, "uv", "re-unwrap the mesh or drop its UVs")
    return array


def check_vertex_colors(colors, num_vertices: int) -> np.ndarray:
    """colors: array-like [N, 3|4] real linear in [0, 1] -> [N, 3|4] float32."""
    hint = "send one linear RGB or RGBA colour per vertex as an (N, 3) or (N, 4) float32 array"
    array = _as_float_array(colors, "vertex_colors", hint)
    if array.ndim != 2 or array.shape[0] != num_vertices or array.shape[1] not in (3, 4):
        raise InvalidInputError(
            f"vertex_colors must have shape ({num_vertices}, 3) or ({num_vertices}, 4), got {tuple(array.shape)}", hint
        )
    _check_finite(array, "vertex_colors", hint)
    # The most common mistake is sending 8-bit values: catch it instead of clipping everything to white.
    if array.min() < 0.0 or array.max() > 1.0:
        raise InvalidInputError(
            f"vertex_colors must lie in [0, 1], found values in [{array.min():g}, {array.max():g}]",
            "send linear float colours; divide 8-bit colours by 255",
        )
    return array


def check_texture(texture) -> np.ndarray:
    """texture: [H, W, 3|4] uint8, row 0 at the top."""
    array = np.asarray(texture)
    hint = "send the base-colour image as a PNG (RGB or RGBA, 8 bits per channel)"
    if array.dtype != np.uint8:
        raise InvalidInputError(f"texture must be uint8, got dtype {array.dtype}", hint)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(f"texture must have shape (H, W, 3) or (H, W, 4), got {tuple(array.shape)}", hint)
    return np.ascontiguousarray(array)


def check_mesh_arrays(mesh: Mesh) -> Mesh:
    """Structural checks only; returns a copy with arrays coerced to the `Mesh` dtypes, faces unchanged.

    Raises InvalidInputError for an empty mesh, wrong shapes or dtypes, NaN/inf values, face indices
    out of range, attribute rows that do not match the vertices, or a texture without UVs.
    """
    vertices = check_vertices(mesh.vertices)
    n = vertices.shape[0]
    faces = check_faces(mesh.faces, n)
    uv = None if mesh.uv is None else check_uv(mesh.uv, n)
    colors = None if mesh.vertex_colors is None else check_vertex_colors(mesh.vertex_colors, n)
    texture = None if mesh.texture is None else check_texture(mesh.texture)
    if texture is not None and uv is None:
        raise InvalidInputError(
            "the mesh has a texture but no UVs, so the texture cannot be mapped",
            "unwrap the mesh (Blender: Smart UV Project) or send it without the texture",
        )
    return mesh.copy(vertices=vertices, faces=faces, uv=uv, vertex_colors=colors, texture=texture,
                     metadata=dict(mesh.metadata))


def degenerate_faces(
    vertices: np.ndarray, faces: np.ndarray, tolerance: float = DEGENERATE_AREA_TOLERANCE
) -> np.ndarray:
    """Which faces are degenerate: a repeated vertex index or (near-)zero area.

    vertices: [N, 3] float; faces: [F, 3] int. Returns [F] bool.
    Zero area is judged relative to the mesh size (tolerance * squared bbox diagonal) so the test
    means the same for a model in millimetres and one in kilometres.
    """
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    # float64: float32 cross products of nearly collinear edges lose the digits that decide this.
    corners = vertices.astype(np.float64)[faces]
    doubled_area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    used = vertices[np.unique(faces)].astype(np.float64)
    diagonal_sq = float(np.sum((used.max(axis=0) - used.min(axis=0)) ** 2))
    return repeated | (0.5 * doubled_area <= tolerance * diagonal_sq)


def validate_mesh(mesh: Mesh, max_vertices: int | None = MAX_VERTICES, max_faces: int | None = MAX_FACES) -> Mesh:
    """Check a user mesh and return a clean copy (float32 / int32 arrays, degenerate faces removed).

    Raises InvalidInputError for everything `check_mesh_arrays` rejects, for a mesh larger than
    max_vertices / max_faces (None: no limit), and for a mesh whose faces are all degenerate.
    Degenerate faces (repeated index or zero area) are dropped; their count is recorded in
    metadata["dropped_degenerate_faces"]. Vertices are never removed or reordered, so indices and
    metadata["source_vertex"] stay valid.
    """
    # Size first: the structural checks below cost memory proportional to the size.
    n = int(np.shape(mesh.vertices)[0]) if np.ndim(mesh.vertices) >= 1 else 0
    f = int(np.shape(mesh.faces)[0]) if np.ndim(mesh.faces) >= 1 else 0
    if max_vertices is not None and n > max_vertices:
        raise InvalidInputError(f"the mesh has {n} vertices, more than the limit of {max_vertices}", _DECIMATE_HINT)
    if max_faces is not None and f > max_faces:
        raise InvalidInputError(f"the mesh has {f} faces, more than the limit of {max_faces}", _DECIMATE_HINT)

    checked = check_mesh_arrays(mesh)
    bad = degenerate_faces(checked.vertices, checked.faces)
    if bad.all():
        raise InvalidInputError(
            f"all {bad.size} faces of the mesh are degenerate (zero area or a repeated vertex)",
            "send a mesh with a surface; check that it is not flattened to a line or a point (scale 0)",
        )
    dropped = int(bad.sum())
    checked.metadata["dropped_degenerate_faces"] = dropped
    if dropped:
        checked.faces = np.ascontiguousarray(checked.faces[~bad])
    return checked
