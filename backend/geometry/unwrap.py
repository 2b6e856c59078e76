"""UV unwrapping with xatlas, for meshes that arrive without UVs (texture stylisation needs them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.errors import DependencyMissingError, InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.validate import check_mesh_arrays

try:
    import xatlas

    HAS_XATLAS = True
except ImportError as _exc:  # xatlas is a dependency; this only guards a broken install
    xatlas = None
    HAS_XATLAS = False
    _XATLAS_ERROR: ImportError | None = _exc
else:
    _XATLAS_ERROR = None


@dataclass
class UnwrapConfig:
    """How xatlas packs the charts into the unit square."""

    resolution: int = 1024
    """Texture size (pixels) the packing is planned for; padding is measured at this size."""
    padding: int = 4
    """Pixels between charts at `resolution`, so texture filtering and mipmaps do not bleed across seams."""
    bilinear: bool = True
    """Leave room around charts for bilinear filtering."""
    rotate_charts: bool = True
    """Allow charts to be rotated for a tighter packing."""


def ensure_uv(mesh: Mesh, config: UnwrapConfig | None = None) -> tuple[Mesh, bool]:
    """Return (mesh with per-vertex UVs, whether it had to be unwrapped).

    A mesh that has UVs comes back unchanged with False. Otherwise xatlas cuts it into charts and
    packs them into [0, 1]^2: vertices on chart seams are split, so the result has N' >= N vertices
    and F faces in the same order. Vertex colours are carried along, and metadata["source_vertex"]
    ([N'] int32) maps each new vertex to the vertex of the *original* input (composed with any
    mapping the mesh already had). UVs are in glTF convention (v down); on a fresh unwrap the
    orientation is arbitrary anyway.
    Raises InvalidInputError for a malformed mesh, DependencyMissingError if xatlas is not installed.
    """
    if mesh.uv is not None:
        return mesh, False
    if not HAS_XATLAS:
        raise DependencyMissingError(
            "UV unwrapping needs the xatlas package, which is not installed",
            "pip install xatlas (it is a dependency of the backend: reinstall with `python build.py`)",
        ) from _XATLAS_ERROR
    if mesh.texture is not None:
        raise InvalidInputError(
            "the mesh has a texture but no UVs, so the texture cannot be mapped",
            "unwrap the mesh (Blender: Smart UV Project) or send it without the texture",
        )
    mesh = check_mesh_arrays(mesh)
    config = config or UnwrapConfig()
    atlas = xatlas.Atlas()
    atlas.add_mesh(mesh.vertices, mesh.faces.astype(np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(config.resolution)
    pack.padding = int(config.padding)
    pack.bilinear = bool(config.bilinear)
    pack.rotate_charts = bool(config.rotate_charts)
    atlas.generate(xatlas.ChartOptions(), pack)
    vmapping, indices, uv = atlas[0]
    vmapping = vmapping.astype(np.int64)
    previous = mesh.metadata.get("source_vertex")
    source = vmapping if previous is None else np.asarray(previous)[vmapping]
    metadata = dict(mesh.metadata)
    metadata["source_vertex"] = source.astype(np.int32)
    unwrapped = mesh.copy(
        vertices=np.ascontiguousarray(mesh.vertices[vmapping]),
        faces=indices.astype(np.int32),
        uv=np.ascontiguousarray(uv, dtype=np.float32),
        vertex_colors=None if mesh.vertex_colors is None else np.ascontiguousarray(mesh.vertex_colors[vmapping]),
        metadata=metadata,
    )
    return unwrapped, True
