"""Getting a user mesh ready for per-vertex stylization: size limits, optional subdivision, welding.

Stylization predicts one colour and one displacement per vertex, so detail is bounded by the vertex
count (a 12-triangle cube cannot show bricks: subdivide it) and cost grows with it (a million faces
would crawl on a CPU: refuse it with the fix instead of hanging).

Meshes arrive split along UV seams and hard edges (Blender's loops, glTF's per-vertex attributes): the
copies of one point must move together or the surface tears, so the optimisation runs on the *welded*
mesh (one vertex per distinct position) and results are copied back to every split vertex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.normals import vertex_normals


def check_size(mesh, max_faces: int) -> None:
    """Refuses a mesh (anything with `.faces`) with more than `max_faces` triangles, with the fix, before
    any heavy work."""
    faces = int(np.shape(mesh.faces)[0]) if np.ndim(mesh.faces) >= 1 else 0
    if faces > max_faces:
        ratio = max_faces / faces
        raise InvalidInputError(
            f"the mesh has {faces} faces; stylization handles at most {max_faces} "
            "(each step renders every face several times)",
            hint=f"decimate it first (Blender: Decimate modifier, ratio {ratio:.2f} or lower)")


def subdivide_to(mesh: Mesh, min_vertices: int, max_faces: int) -> tuple[Mesh, int]:
    """Splits every triangle into four (midpoint subdivision, shape unchanged) until the mesh has at least
    `min_vertices` vertices, never exceeding `max_faces` faces.

    UVs and vertex colours are interpolated at the new vertices; the texture is kept. The result has new
    vertices, so metadata["source_vertex"] is dropped (the caller replaces the mesh instead of mapping
    values back). Returns (mesh, number of subdivision levels applied).
    """
    from trimesh.remesh import subdivide

    levels = 0
    while mesh.num_vertices < min_vertices and 4 * mesh.num_faces <= max_faces:
        # A dummy attribute keeps trimesh's return shape fixed (it returns two arrays without attributes).
        attributes = {"_index": np.zeros((mesh.num_vertices, 1), dtype=np.float32)}
        if mesh.uv is not None:
            attributes["uv"] = mesh.uv
        if mesh.vertex_colors is not None:
            attributes["colors"] = mesh.vertex_colors
        vertices, faces, new = subdivide(mesh.vertices, mesh.faces, vertex_attributes=attributes)
        metadata = {k: v for k, v in mesh.metadata.items() if k != "source_vertex"}
        mesh = mesh.copy(vertices=np.ascontiguousarray(vertices, dtype=np.float32),
                         faces=np.ascontiguousarray(faces, dtype=np.int32),
                         uv=None if "uv" not in new else np.ascontiguousarray(new["uv"], dtype=np.float32),
                         vertex_colors=(None if "colors" not in new
                                        else np.ascontiguousarray(new["colors"], dtype=np.float32)),
                         metadata=metadata)
        levels += 1
    return mesh, levels


@dataclass
class WeldedSurface:
    """The mesh with coincident vertices merged: what the style field is optimised on."""

    vertices: np.ndarray
    """[M, 3] float32 distinct positions."""
    faces: np.ndarray
    """[F, 3] int32 indices into `vertices` (the input's faces, re-indexed)."""
    normals: np.ndarray
    """[M, 3] float32 unit area-weighted normals of the welded surface: the displacement directions."""
    inverse: np.ndarray
    """[N] int64: input vertex i is welded vertex inverse[i] (copy results back with `values[inverse]`)."""


def weld(vertices: np.ndarray, faces: np.ndarray) -> WeldedSurface:
    """Merges vertices at exactly equal positions. vertices: [N, 3] float32; faces: [F, 3] int."""
    unique, inverse = np.unique(np.asarray(vertices, dtype=np.float32), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    welded_faces = inverse[np.asarray(faces, dtype=np.int64)].astype(np.int32)
    normals = vertex_normals(unique, welded_faces)
    return WeldedSurface(vertices=np.ascontiguousarray(unique, dtype=np.float32), faces=welded_faces,
                         normals=normals, inverse=inverse)
