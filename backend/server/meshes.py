"""Mesh payloads at the job boundary: protocol arrays -> numpy -> `backend.geometry.mesh.Mesh`.

The wire carries Blender's conventions (Z up, UV origin bottom-left, UVs per corner or per vertex);
the backend works in glTF's (Y up, UV origin top-left, UVs per vertex). The conversion lives here,
once, so every job kind gets it right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.geometry.load import mesh_from_arrays
from backend.geometry.mesh import Mesh, blender_to_gltf, gltf_to_blender
from backend.geometry.png import encode_png
from backend.server.arrays import from_numpy, to_numpy
from shared_protocol import MeshPayload


@dataclass
class MeshArrays:
    """A decoded `MeshPayload`, still in Blender's conventions."""

    vertices: np.ndarray
    """[N, 3] float32, object-local, Z up."""
    faces: np.ndarray
    """[F, 3] int32."""
    uv: np.ndarray | None
    """[N, 2] (uv_domain "vertex") or [3F, 2] (uv_domain "corner") float32, origin bottom-left."""
    uv_domain: str
    """"vertex" | "corner"."""
    vertex_colors: np.ndarray | None
    """[N, 3 or 4] float32 linear in [0, 1]."""
    texture_png: bytes | None
    """Base-colour image, PNG bytes."""
    transform: np.ndarray
    """[4, 4] float32 object-to-world, row-major."""


def decode_mesh(payload: MeshPayload) -> MeshArrays:
    """Protocol payload -> numpy arrays (copies, writable)."""
    return MeshArrays(
        vertices=to_numpy(payload.vertices),
        faces=to_numpy(payload.faces),
        uv=None if payload.uv is None else to_numpy(payload.uv),
        uv_domain=payload.uv_domain,
        vertex_colors=None if payload.vertex_colors is None else to_numpy(payload.vertex_colors),
        texture_png=payload.texture,
        transform=np.asarray(payload.transform, dtype=np.float32).reshape(4, 4),
    )


def to_backend_mesh(arrays: MeshArrays, name: str = "") -> Mesh:
    """Blender-convention arrays -> a glTF-frame `Mesh` (not yet validated: call `validate_mesh`).

    Per-corner UVs become per-vertex UVs by splitting vertices at UV seams only;
    metadata["source_vertex"] maps every backend vertex to the vertex it came from.
    V is flipped (v -> 1 - v) because Blender's UV origin is the image's bottom-left, glTF's its top-left.
    """
    uv = arrays.uv
    if uv is not None:
        uv = np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1).astype(np.float32)
    return mesh_from_arrays(blender_to_gltf(arrays.vertices), arrays.faces, uv=uv, vertex_colors=arrays.vertex_colors,
                            texture_png=arrays.texture_png, name=name, uv_domain=arrays.uv_domain)


def payload_from_mesh(mesh: Mesh, corner_uv: bool = False) -> MeshPayload:
    """A backend (glTF-frame) mesh -> the payload Blender would send (Z up, UV origin bottom-left).

    The inverse of `to_backend_mesh`; the demo, benchmarks and tests use it to act as the add-on.
    """
    uv = None
    if mesh.uv is not None:
        blender_uv = np.stack([mesh.uv[:, 0], 1.0 - mesh.uv[:, 1]], axis=1).astype(np.float32)
        uv = blender_uv[mesh.faces.reshape(-1)] if corner_uv else blender_uv
    return MeshPayload(
        vertices=from_numpy(gltf_to_blender(mesh.vertices)), faces=from_numpy(mesh.faces.astype(np.int32)),
        uv=None if uv is None else from_numpy(uv), uv_domain="corner" if corner_uv else "vertex",
        vertex_colors=None if mesh.vertex_colors is None else from_numpy(mesh.vertex_colors.astype(np.float32)),
        texture=None if mesh.texture is None else encode_png(mesh.texture))
