"""One library entry's mesh into what the index stores: its vectors, thumbnail and geometry figures."""

from __future__ import annotations

from backend.errors import AtelierError
from backend.retrieve.query import QueryEncoder
from backend.retrieve.views import IndexViewConfig, render_index_views


def reason(exc: BaseException) -> str:
    """One readable line for why a file could not be indexed."""
    if isinstance(exc, AtelierError):
        return exc.message
    if isinstance(exc, OSError):
        return f"cannot read the file: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def embed_mesh(mesh, encoder: QueryEncoder, views: IndexViewConfig, device) -> tuple[dict, bytes, dict]:
    """(vectors {"shaded", "lines"}, thumbnail PNG, geometry fields of a ShapeRecord) of a validated mesh."""
    pictured = render_index_views(mesh, views, device)
    vectors = encoder.encode_views(pictured.shaded, pictured.lines)
    low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    geometry = {"faces": mesh.num_faces, "vertices": mesh.num_vertices,
                "bbox": [[float(v) for v in low], [float(v) for v in high]]}
    return vectors, pictured.thumbnail, geometry
