"""The `fetch_shape` job: one library shape's mesh as GLB, so a client on another machine can import it.

params: db: str (required): the database folder on the server; shape_id: int >= 1 (from a search hit); store:
        "embedded" (default) | "milvus" (db: a Milvus Lite file or server URL).
result: blobs {"mesh": GLB of the shape's file as loaded (its own frame and units; glTF files: Y up, metres),
        with its texture or vertex colours}; fields shape_id, name, path (relative to the library), category,
        faces, vertices, changed (true when the file changed since it was indexed: re-index to update the
        search), thumbnail: "thumbnail"; blob "thumbnail": the PNG thumbnail.
"""

from __future__ import annotations

from backend.server.context import JobContext, JobOutput
from backend.server.params import check_known, int_param, str_param

PARAMS = ("db", "shape_id", "store")


def run(ctx: JobContext) -> JobOutput:
    from backend.retrieve.service import open_cached, shape_glb
    from backend.retrieve.stores import STORES

    check_known(ctx.params, PARAMS, "fetch_shape")
    db_dir = str_param(ctx.params, "db", None)
    shape_id = int_param(ctx.params, "shape_id", 1, 2**62)
    db = open_cached(db_dir, str_param(ctx.params, "store", "embedded", STORES))
    glb, record, changed = shape_glb(db, shape_id)
    fields = {"shape_id": record.id, "name": record.name, "path": record.relpath, "category": record.category,
              "faces": record.faces, "vertices": record.vertices, "changed": changed, "thumbnail": "thumbnail"}
    return JobOutput(fields=fields, blobs={"mesh": glb, "thumbnail": record.thumbnail})
