"""The `search` job: the top k shapes of a library database for a text, sketch, photo, or sketch + text.

params: db: str (required): the database folder on the server; text: str (1-500 characters); k: int in
        [1, 100] (default 10); category: str (only shapes of it); catalog: str (only assets of that Blender
        catalog or below it); tag: str; format: str (file extension); keyword_weight: number in [0, 10]
        (what a full keyword match adds to the CLIP score; default 0.5, 0: CLIP only); store: "embedded" |
        "milvus" (db: a Milvus Lite file or server URL); mode: "text" | "sketch" | "photo" |
        "sketch+text" (optional: checked against what the query holds); strokes: the sketch as polylines
        [[[x, y], ...], ...] in [0, 1]² (y down), instead of a sketch blob; clip: CLIP spec (default: the
        database's); checkpoint: a TASK-former checkpoint path on the server (the one the database was
        indexed with); prompt: str (with a photo: what to cut out of it, e.g. "the red chair"; default: the object
        that stands out from the background); raw_photo: bool (with a photo: embed it whole; default false).
blobs:  "sketch": an encoded drawing (PNG, dark strokes on white, any size); "photo": an encoded photo.
result: fields {"hits": [{"shape_id", "path", "name", "category", "score", "clip_score", "keyword_score",
        "format", "catalog", "tags", "description", "author", "license", "source", "thumbnail": blob name}],
        "mode", "clip", "k"}, best first; `source` is null, or for a .blend asset {"file": the .blend's absolute
        path on the server, "datablock": "Object" | "Collection", "name"} (for append/link when the client sees
        the same file); blobs "thumb_000", "thumb_001", ...: PNG thumbnails (128 px) of the hits.
        `path` is relative to the library folder; fetch the mesh itself with the `fetch_shape` job. A photo query
        also has "cut": {"method": "prompt" | "saliency" | "raw", "box": [x0, y0, x1, y1] in the photo's pixels or
        null, "area_fraction", "segmenter", "note"} (`backend.segment.photo_query`: what was embedded).
"""

from __future__ import annotations

from backend.errors import InvalidInputError
from backend.server.context import JobContext, JobOutput
from backend.server.hooks import register_release_hook
from backend.server.params import bool_param, check_known, float_param, int_param, str_param

PARAMS = ("db", "text", "k", "category", "catalog", "tag", "format", "keyword_weight", "mode", "strokes", "clip",
          "checkpoint", "store", "prompt", "raw_photo")
BLOBS = ("sketch", "photo")


def _close_databases() -> None:
    from backend.retrieve.service import close_cached

    close_cached()


# `release` also closes the databases searches keep open (and their FAISS indexes in memory).
register_release_hook("retrieve.databases", _close_databases)


def run(ctx: JobContext) -> JobOutput:
    from backend.retrieve.query import MODES, query_mode
    from backend.retrieve.search import KEYWORD_WEIGHT, MAX_K, search, search_photo
    from backend.retrieve.service import load_encoder, open_cached
    from backend.retrieve.stores import STORES

    check_known(ctx.params, PARAMS, "search")
    unknown = sorted(set(ctx.blobs) - set(BLOBS))
    if unknown:
        raise InvalidInputError(f"the search job takes no blob {unknown[0]!r}",
                                hint="send the drawing as blob 'sketch' or the photo as blob 'photo'")
    db_dir = str_param(ctx.params, "db", None)
    k = int_param(ctx.params, "k", 1, MAX_K, default=10)
    text = ctx.params.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidInputError(f"param 'text' must be a string, got {text!r:.40}")
    category = ctx.params.get("category")
    filters = {name: ctx.params.get(name) for name in ("catalog", "tag", "format")}
    keyword_weight = float_param(ctx.params, "keyword_weight", 0.0, 10.0, default=KEYWORD_WEIGHT)
    mode = str_param(ctx.params, "mode", "", MODES + ("",)) or None
    clip = ctx.params.get("clip") and str_param(ctx.params, "clip", None)
    checkpoint = ctx.params.get("checkpoint") and str_param(ctx.params, "checkpoint", None)
    sketch = ctx.blobs.get("sketch")
    if "strokes" in ctx.params:
        if sketch is not None:
            raise InvalidInputError("the search job got both a sketch blob and strokes",
                                    hint="send one drawing: the PNG or the polylines")
        sketch = ctx.params["strokes"]
        if not isinstance(sketch, list):
            raise InvalidInputError("param 'strokes' must be a list of polylines [[[x, y], ...], ...]")
    photo = ctx.blobs.get("photo")
    query_mode(text, sketch, photo)  # an empty or mixed-up query fails before anything loads
    prompt = str_param(ctx.params, "prompt", "") or None
    raw_photo = bool_param(ctx.params, "raw_photo", False)
    if photo is None and (prompt is not None or raw_photo):
        raise InvalidInputError(f"param {'prompt' if prompt is not None else 'raw_photo'!r} applies to a photo query",
                                hint="send the photo as blob 'photo'")

    db = open_cached(db_dir, str_param(ctx.params, "store", "embedded", STORES))
    ctx.progress(0, 1, stage="load")
    encoder = load_encoder(clip, checkpoint, ctx.device, db=db)
    cut = None
    if photo is not None and text is None and sketch is None and mode in (None, "photo"):
        hits, cut = search_photo(db, encoder, photo, prompt=prompt, raw=raw_photo, k=k, device=ctx.device,
                                 category=category, keyword_weight=keyword_weight, **filters)
    else:
        hits = search(db, encoder, text=text, sketch=sketch, photo=photo, k=k, category=category, mode=mode,
                      keyword_weight=keyword_weight, **filters)
    fields, blobs = [], {}
    for rank, hit in enumerate(hits):
        name = f"thumb_{rank:03d}"
        blobs[name] = hit.thumbnail
        fields.append({**hit.as_dict(), "thumbnail": name})
    found = query_mode(text, sketch, photo)
    extra = {"cut": cut.as_dict()} if cut is not None else {}
    return JobOutput(fields={"hits": fields, "mode": found, "clip": encoder.spec, "k": k, **extra}, blobs=blobs)
