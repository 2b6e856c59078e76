"""The `index` job: index (or update) a shape library database from a folder of meshes on the server.

params: library: str (required): the mesh folder, a path on the server; db: str (required): the database
        folder on the server (created when missing); clip: CLIP spec (default: the database's recorded one,
        else "ViT-B-32:openai"); checkpoint: a TASK-former checkpoint path on the server (optional);
        views: int in [1, 24] (default 6; an existing database keeps its own); rehash: bool (default false);
        blend_objects: "assets" (a .blend's asset-marked objects and collections, default) | "all" (also every
        mesh object); workers: Blender worker processes, 0-64 (default 0: one per core). The Blender that reads
        .blend, FBX, USD and Alembic files is the server's (`atelier serve --blender PATH`), never a param;
        store: "embedded" (default: db is a folder) | "milvus" (db is a Milvus Lite file or a server URL);
        descriptor: "views" | "points" | "both" (default: the database's, else views; `backend.retrieve.descriptors`);
        points_encoder: a point encoder checkpoint path on the server (default: the database's, else the one shipped
        for the CLIP).
        A server started with `--ray ADDRESS` shards the loose meshes over that Ray cluster.
progress: stage "index", after each file that needed work: shapes_per_s.
result: fields shapes, files, indexed, skipped, removed, moved, failed ([{"path", "reason"}], paths relative
        to the library), warnings, seconds, shapes_per_s, extracted_files, extract_seconds, clip, encoder, views,
        descriptor, points_encoder.
"""

from __future__ import annotations

import os

from backend.server.context import JobContext, JobOutput
from backend.server.params import bool_param, check_known, int_param, str_param
from shared_protocol import limits

PARAMS = ("library", "db", "clip", "checkpoint", "views", "rehash", "blend_objects", "workers", "store", "descriptor",
          "points_encoder")


def run(ctx: JobContext) -> JobOutput:
    from backend.retrieve.descriptors import DESCRIPTORS
    from backend.retrieve.stores import STORES
    from backend.retrieve.indexer import IndexConfig, index_library
    from backend.retrieve.service import close_cached, index_settings, load_encoder
    from backend.retrieve.views import MAX_VIEWS, MIN_VIEWS

    check_known(ctx.params, PARAMS, "index")
    library = str_param(ctx.params, "library", None)
    db_dir = str_param(ctx.params, "db", None)
    clip = ctx.params.get("clip") and str_param(ctx.params, "clip", None)
    checkpoint = ctx.params.get("checkpoint") and str_param(ctx.params, "checkpoint", None)
    views_count = int_param(ctx.params, "views", MIN_VIEWS, MAX_VIEWS, default=0) or None
    rehash = bool_param(ctx.params, "rehash", False)
    blend_objects = str_param(ctx.params, "blend_objects", "assets", ("assets", "all"))
    workers = int_param(ctx.params, "workers", 0, limits.MAX_BLENDER_WORKERS, default=0)
    store = str_param(ctx.params, "store", "embedded", STORES)
    descriptor = ctx.params.get("descriptor") and str_param(ctx.params, "descriptor", None, DESCRIPTORS)
    points_encoder = ctx.params.get("points_encoder") and str_param(ctx.params, "points_encoder", None)

    close_cached()  # searches reopen the library afresh after it changed (and a Milvus Lite file has one user)
    settings = index_settings(db_dir, store, views_count, descriptor, points_encoder)
    views = settings.views
    ctx.progress(0, 1, stage="load")
    encoder = load_encoder(clip or settings.clip, checkpoint, ctx.device, descriptor=settings.descriptor,
                           points_encoder=settings.points_encoder)

    def progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="index", **metrics)

    config = IndexConfig(views=views, rehash=rehash, blend_objects=blend_objects, workers=workers, store=store,
                         ray=os.environ.get("ATELIER_INDEX_RAY") or None)
    report = index_library(library, db_dir, encoder, config, progress=progress, cancel=ctx.cancel, device=ctx.device)
    fields = report.as_dict()
    fields.update(clip=encoder.spec, encoder=encoder.encoder_id, views=views.views, descriptor=encoder.descriptor,
                  points_encoder=encoder.points_encoder_id)
    return JobOutput(fields=fields)
