"""One library entry's mesh into what the index stores: its vectors, thumbnail and geometry figures."""

from __future__ import annotations

from backend.errors import AtelierError
from backend.retrieve.query import QueryEncoder
from backend.retrieve.views import IndexViewConfig, render_index_views, render_thumbnail


def reason(exc: BaseException) -> str:
    """One readable line for why a file could not be indexed."""
    if isinstance(exc, AtelierError):
        return exc.message
    if isinstance(exc, OSError):
        return f"cannot read the file: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def embed_mesh(mesh, encoder: QueryEncoder, views: IndexViewConfig, device) -> tuple[dict, bytes, dict]:
    """(vectors of the encoder's descriptor's kinds: "shaded" and "lines" [K, D], "points" [1, D]; thumbnail
    PNG; geometry fields of a ShapeRecord) of a validated mesh. The points descriptor renders only the
    thumbnail."""
    if encoder.descriptor == "points":
        vectors, thumbnail = {}, render_thumbnail(mesh, views, device)
    else:
        pictured = render_index_views(mesh, views, device)
        vectors, thumbnail = encoder.encode_views(pictured.shaded, pictured.lines), pictured.thumbnail
    if encoder.descriptor != "views":
        vectors["points"] = encoder.points.embed(mesh)
    low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    geometry = {"faces": mesh.num_faces, "vertices": mesh.num_vertices,
                "bbox": [[float(v) for v in low], [float(v) for v in high]]}
    return vectors, thumbnail, geometry
