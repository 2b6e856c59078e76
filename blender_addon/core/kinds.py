"""The job kinds this add-on has wired: a plain registry, name -> `JobKind`. No bpy.

Wiring a new backend job kind (search, generate, segment, ...) is one entry here plus:
its params builder below, an operator in `operators.py` (subclass `JobOperator`), an importer in
`importers.py` (`IMPORTERS[name]`), and a panel in `panels.py`. A kind the backend does not offer yet is
not listed: the tests check that this registry equals the `job_kinds` a backend announces in `welcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath

from .errors import AddonError
from .protocol import ParamError, limits, requests


@dataclass(frozen=True)
class JobKind:
    """One wired job kind."""

    name: str
    """The backend's job kind (`submit.kind`)."""
    label: str
    """What the panel and the job list call it."""
    operator: str | None
    """bl_idname of the operator that submits it; None: wired without a UI yet (submitted from code with
    `session.get_runtime().submit(kind, params, label=...)`)."""
    panel: str | None
    """bl_idname of its panel in the 3D Viewport sidebar; None: no panel yet."""
    needs_mesh: bool
    """Whether it sends the selected object's mesh."""


def build_registry(kinds: list[JobKind]) -> dict[str, JobKind]:
    """name -> kind; a repeated name is an error, not a silent override."""
    registry: dict[str, JobKind] = {}
    for kind in kinds:
        if kind.name in registry:
            raise ValueError(f"job kind {kind.name!r} is wired twice")
        registry[kind.name] = kind
    return registry


JOB_KINDS: dict[str, JobKind] = build_registry([
    JobKind("render", "Render views", "atelier.render_views", "ATELIER_PT_render", needs_mesh=True),
    JobKind("stylize", "Stylize", "atelier.stylize", "ATELIER_PT_stylize", needs_mesh=True),
    JobKind("restyle", "Restyle", "atelier.restyle", "ATELIER_PT_restyle", needs_mesh=True),
    # Shape library retrieval: the "Search Library" panel (fetch_shape: a hit's Import button).
    JobKind("index", "Index library", "atelier.index_library", "ATELIER_PT_library", needs_mesh=False),
    JobKind("search", "Search library", "atelier.search_library", "ATELIER_PT_library", needs_mesh=False),
    JobKind("fetch_shape", "Import library shape", "atelier.import_hit", "ATELIER_PT_library", needs_mesh=False),
    # Text-guided photo segmentation: the "Segment Photo" panel (its cut-out: a search query or a style image).
    JobKind("segment", "Segment photo", "atelier.segment_photo", "ATELIER_PT_segment", needs_mesh=False),
    JobKind("photo_to_3d", "Photo to 3D", "atelier.photo_to_3d", "ATELIER_PT_segment", needs_mesh=False),
    # Text to shape (CLIP-Forge, optional ISS refinement and Text2Mesh style): the "Generate" panel.
    JobKind("generate", "Generate", "atelier.generate", "ATELIER_PT_generate", needs_mesh=False),
])

PARAMS_ONLY_KINDS = ("generate", "fetch_shape")
"""Kinds whose stored params alone run the job again ("Run Again" / "Variation" from a result): no source mesh, no
files. The mesh kinds need their source object; restyle re-reads its style images; the others are not re-run."""

QUALITIES = limits.QUALITIES
"""The stylize and restyle jobs' presets. stylize: draft 150 steps, standard 500, high 1500 (the paper); restyle:
draft 150 steps, standard 400, high 1000."""
MAX_SEED = limits.MAX_SEED
MAX_STEPS = limits.MAX_JOB_STEPS
"""The largest step count a job takes; 0 in the panel: the quality preset's."""


def _request(cls, **values):
    """The job's request (`shared_protocol.requests`) from the panel's values: the checks and messages the
    backend applies, raised here as AddonError before anything is sent."""
    try:
        return cls(**values)
    except ParamError as exc:
        raise AddonError(exc.message, exc.hint) from exc


def _prompt(prompt: str, empty_hint: str, code: str = "invalid_input") -> str:
    """The stripped prompt; AddonError when it is empty (saying `empty_hint`) or over the protocol's limit."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise AddonError("the prompt is empty", empty_hint, code=code)
    return _text_within_limit(prompt, "the prompt")


def _text_within_limit(text: str, what: str) -> str:
    if len(text) > limits.MAX_PROMPT_CHARS:
        raise AddonError(f"{what} has {len(text)} characters, over the {limits.MAX_PROMPT_CHARS} limit", "shorten it")
    return text


def _check_quality(quality: str, what: str = "quality") -> None:
    if quality not in QUALITIES:
        raise AddonError(f"{what} must be one of {', '.join(QUALITIES)}, got {quality!r}")


def _check_steps(steps: int, what: str = "steps") -> None:
    if not 0 <= int(steps) <= MAX_STEPS:
        raise AddonError(f"{what} must be in [1, {MAX_STEPS}] (0: the quality preset's), got {steps}")


def _check_seed(seed: int) -> None:
    if not 0 <= int(seed) <= MAX_SEED:
        raise AddonError(f"seed must be in [0, {MAX_SEED}], got {seed}")


def read_input_file(path_text: str, name: str, hint: str, missing_code: str, code_prefix: str,
                    too_large_hint: str = "use a smaller image") -> bytes:
    """An input file's bytes (an absolute path; an empty one is the caller's check); AddonError, before anything
    is sent, for a folder, a missing, empty, unreadable or over-large file. `name` starts each message ("the
    photo"); codes: `missing_code` for a folder or a missing file, else `code_prefix` + _unreadable/_too_large."""
    path = Path(path_text)
    if path.is_dir():
        raise AddonError(f"{name} ({path}) is a folder, not an image file", hint, code=missing_code)
    if not path.is_file():
        raise AddonError(f"{name} ({path}) does not exist", hint, code=missing_code)
    try:
        size = path.stat().st_size
        if size == 0:
            raise AddonError(f"{name} ({path}) is empty (0 bytes)", hint, code=f"{code_prefix}_unreadable")
        if size > limits.MAX_BLOB_BYTES:
            raise AddonError(f"{name} ({path}) is {size >> 20} MiB, over the {limits.MAX_BLOB_BYTES >> 20} MiB limit",
                             too_large_hint, code=f"{code_prefix}_too_large")
        return path.read_bytes()
    except OSError as exc:
        raise AddonError(f"{name} ({path}) cannot be read: {exc.strerror or exc}", hint,
                         code=f"{code_prefix}_unreadable") from exc


def stylize_params(prompt: str, quality: str = "standard", steps: int = 0, seed: int = 0, clip: str = "",
                   subdivide: bool = False, bake_texture: bool = False) -> dict:
    """The `stylize` job's params from the panel's fields (`StylizeRequest`); AddonError for a bad value.

    steps 0 means the quality preset's; clip "" means the backend's default (ViT-B-32:openai).
    """
    return _request(requests.StylizeRequest, prompt=prompt or "", quality=quality, steps=int(steps), seed=int(seed),
                    clip=(clip or "").strip(), subdivide=bool(subdivide), bake_texture=bool(bake_texture)).to_params()


def render_params(views: int = 8, size: int = 256) -> dict:
    """The `render` job's params (`RenderRequest`); AddonError outside the protocol's ranges."""
    return _request(requests.RenderRequest, views=int(views), size=int(size)).to_params()


# -- restyle ----------------------------------------------------------------------------------------------

MAX_STYLES = limits.MAX_STYLE_IMAGES
"""Style images a restyle job takes (backend: blobs style_0 .. style_15)."""
_RESTYLE_SPECS = requests.RestyleRequest.specs()
PATTERN_SCALE_RANGE = (_RESTYLE_SPECS["pattern_scale"].lo, _RESTYLE_SPECS["pattern_scale"].hi)
"""The restyle job's `pattern_scale` range (1: the default camera distance; smaller: finer patterns)."""
TEXTURE_SIZE_RANGE = limits.TEXTURE_SIZE_RANGE
"""The restyle job's `texture_size` range in pixels (0 in the panel: the quality preset's)."""
def palette_param(text: str) -> str:
    """The panel's palette text -> the `palette` param: "auto", "none" or "#rrggbb,#rrggbb,..." (lower case,
    #rgb expanded); AddonError naming the bad colour. Empty text means "auto"."""
    return _request(requests.RestyleRequest, palette=text or "").palette


def restyle_params(quality: str = "standard", steps: int = 0, seed: int = 0, palette: str = "auto",
                   pattern_scale: float = 1.0, texture_size: int = 0, clip: str = "") -> dict:
    """The `restyle` job's params from the panel's fields (`RestyleRequest`); AddonError for a value the backend
    would refuse. steps 0 and texture_size 0 mean the quality preset's; clip "" means the backend's default
    (RN50:openai). The style images travel as blobs (`read_style_images`), not params.
    """
    return _request(requests.RestyleRequest, quality=quality, steps=int(steps), seed=int(seed), palette=palette or "",
                    pattern_scale=round(float(pattern_scale), 4), texture_size=int(texture_size),
                    clip=(clip or "").strip()).to_params()


def read_style_images(paths: list[str]) -> dict[str, bytes]:
    """The style image files (absolute paths, in list order) -> blobs {"style_0": bytes, ...}.

    AddonError, before anything is sent, for no images, more than MAX_STYLES, an empty path, a missing or
    empty file, a folder, a file over the protocol's blob limit or one that cannot be read. Whether the bytes
    are an image the backend can decode is the backend's check (it names the image by its index).
    """
    if not paths:
        raise AddonError("no style images are listed",
                         f"add 1 to {MAX_STYLES} images with + in the Restyle panel", code="no_style_images")
    if len(paths) > MAX_STYLES:
        raise AddonError(f"{len(paths)} style images are listed, over the {MAX_STYLES} limit",
                         "remove some from the list in the Restyle panel", code="too_many_styles")
    blobs = {}
    for index, text in enumerate(paths):
        where = f"style image {index + 1} of {len(paths)}"
        if not (text or "").strip():
            raise AddonError(f"{where} has no file path", "pick a file for it or remove it from the list",
                             code="style_missing")
        blobs[f"style_{index}"] = read_input_file(
            text, where, "fix the path or remove the image from the list in the Restyle panel", "style_missing",
            "style", too_large_hint="use a smaller image (a few megapixels is plenty)")
    return blobs


# -- shape library ----------------------------------------------------------------------------------------

SEARCH_MAX_K = limits.SEARCH_MAX_K
"""Most hits a search job returns (each with a thumbnail)."""


def _check_k(k: int) -> None:
    if not 1 <= int(k) <= SEARCH_MAX_K:
        raise AddonError(f"the number of results must be in [1, {SEARCH_MAX_K}], got {k}")


def _server_path(value: str, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise AddonError(f"the {what} folder is empty", f"type the {what} folder's path on the backend's machine")
    if len(value) > limits.MAX_STRING:
        raise AddonError(f"the {what} path is over {limits.MAX_STRING} characters")
    return value


INDEX_MAX_WORKERS = limits.MAX_BLENDER_WORKERS
"""Most Blender worker processes the panel asks an index job for."""


def index_params(library: str, db: str, clip: str = "", views: int = 0, blend_objects: str = "assets",
                 workers: int = 0, descriptor: str = "views") -> dict:
    """The `index` job's params: folders on the backend's machine; views 0 means the default (6). `blend_objects`
    ("assets": what is marked as an asset, "all": every mesh object), `workers` (Blender worker processes, 0: the
    backend's choice) and `descriptor` ("views", "points" or "both") are sent only when not the default, so an older
    backend still takes the job (an existing index keeps its own descriptor when none is sent)."""
    params = {"library": _server_path(library, "library"), "db": _server_path(db, "database")}
    if clip.strip():
        params["clip"] = clip.strip()
    if views:
        if not 1 <= int(views) <= 24:
            raise AddonError(f"views must be in [1, 24], got {views}")
        params["views"] = int(views)
    if blend_objects not in ("assets", "all"):
        raise AddonError(f"blend_objects must be 'assets' or 'all', got {blend_objects!r}")
    if blend_objects != "assets":
        params["blend_objects"] = blend_objects
    if workers:
        if not 1 <= int(workers) <= INDEX_MAX_WORKERS:
            raise AddonError(f"workers must be in [1, {INDEX_MAX_WORKERS}], got {workers}")
        params["workers"] = int(workers)
    if descriptor not in limits.DESCRIPTORS:
        raise AddonError(f"descriptor must be one of {', '.join(limits.DESCRIPTORS)}, got {descriptor!r}")
    if descriptor != "views":
        params["descriptor"] = descriptor
    return params


def _store(params: dict, store: str) -> dict:
    """Adds `store` when it is not the embedded default (older backends know no store param)."""
    if store not in ("", *limits.STORES):
        raise AddonError(f"store must be 'embedded' or 'milvus', got {store!r}")
    if store == "milvus":
        params["store"] = store
    return params


def search_params(db: str, text: str = "", k: int = 10, category: str = "",
                  strokes: list | None = None, catalog: str = "", tag: str = "", store: str = "") -> dict:
    """The `search` job's params (a sketch PNG or a photo travels as blob "sketch" / "photo" instead);
    AddonError for an empty query, an over-long text or k outside [1, SEARCH_MAX_K]. store "milvus": `db` is the
    team library's Milvus URI."""
    params: dict = _store({"db": _server_path(db, "database"), "k": int(k)}, store)
    _check_k(k)
    text = _text_within_limit((text or "").strip(), "the search text")
    if text:
        params["text"] = text
    if category.strip():
        params["category"] = category.strip()
    for name, value in (("catalog", catalog), ("tag", tag)):  # sent only when set: older backends lack them
        value = _text_within_limit((value or "").strip().strip("/"), f"the {name} filter")
        if value:
            params[name] = value
    if strokes is not None:
        if not strokes:
            raise AddonError("the sketch has no strokes", "draw something first")
        params["strokes"] = [[[float(x), float(y)] for x, y in line] for line in strokes]
    return params


SEARCH_IMAGE_MODES = ("TEXT", "SKETCH", "PHOTO")
"""The Search Library panel's query modes: text only, a sketch image (plus an optional text), a photo."""


def read_query_image(path_text: str, what: str) -> bytes:
    """The search's sketch or photo file (an absolute path) -> its bytes; AddonError, before anything is sent, for
    no path, a missing, empty, unreadable or over-large file or a folder. Decoding it is the backend's check."""
    hint = f"pick the {what} image file in the Search Library panel, or search by text only"
    if not (path_text or "").strip():
        raise AddonError(f"no {what} image is chosen", hint, code="search_image_missing")
    return read_input_file(path_text, f"the {what} image", hint, "search_image_missing", "search_image")


def library_search_request(db: str, text: str = "", mode: str = "TEXT", image_path: str = "", k: int = 10,
                           category: str = "", strokes: list | None = None, catalog: str = "",
                           tag: str = "", store: str = "", photo: bytes | None = None, prompt: str = "",
                           raw_photo: bool = False) -> tuple[dict, dict[str, bytes]]:
    """The Search Library panel's fields -> the `search` job's (params, blobs): a text, a sketch (blob "sketch",
    or `strokes`: polylines in [0, 1]², y down, from `sketch.py`; optionally with a text) or a photo (blob "photo":
    `photo`'s bytes when given, an image open in Blender, else the file at `image_path`; no text). A photo's object
    is cut out before it is embedded: the one `prompt` names ("the red chair"), else the one that stands out;
    `raw_photo` embeds the whole photo (both sent only when set, and only with a photo). AddonError, before
    anything is sent, for no database, an empty query, a photo with a text, a prompt with the raw-photo option, a
    sketch with no strokes, or a bad image file."""
    if mode not in SEARCH_IMAGE_MODES:
        raise AddonError(f"the search mode must be one of {', '.join(SEARCH_IMAGE_MODES)}, got {mode!r}")
    if strokes is not None and mode != "SKETCH":
        raise AddonError(f"strokes are a sketch, not a {mode.lower()} query")
    params = search_params(db, text, k, category, strokes, catalog, tag, store)
    if strokes is not None:
        return params, {}
    if mode == "TEXT":
        if "text" not in params:
            raise AddonError("the search query is empty", "type what to look for, e.g. 'a wooden chair', or pick a "
                             "sketch or photo mode and an image", code="empty_query")
        return params, {}
    if mode == "PHOTO":
        if "text" in params:
            raise AddonError("a photo search takes no text", "clear the search text (name the object to cut out "
                             "in the photo's prompt instead), or use Sketch mode for a drawing with a text")
        prompt = _text_within_limit((prompt or "").strip(), "the photo prompt")
        if prompt and raw_photo:
            raise AddonError("a photo prompt was given with the whole-photo option, which ignores it",
                             "clear the prompt, or untick Whole Photo to cut out what it names")
        if prompt:
            params["prompt"] = prompt
        if raw_photo:
            params["raw_photo"] = True
        if photo is not None:
            return params, {"photo": bytes(photo)}
    what = mode.lower()
    return params, {what: read_query_image(image_path, what)}


def fetch_shape_params(db: str, shape_id: int, store: str = "") -> dict:
    """The `fetch_shape` job's params: a search hit's `shape_id` in that database (store as the search's)."""
    if int(shape_id) < 1:
        raise AddonError(f"shape_id must be a positive integer, got {shape_id}")
    return _store({"db": _server_path(db, "database"), "shape_id": int(shape_id)}, store)


# -- segment ----------------------------------------------------------------------------------------------

SAM_TYPES = ("vit_b", "vit_l", "vit_h")
"""The Segment Anything checkpoints the backend knows (backend `sam.SAM_TYPES`)."""
SEGMENT_MAX_POINTS = 64
"""Point prompts one segment job takes (backend `segment.MAX_POINTS`)."""


def image_editor_pixel(u: float, v: float, width: int, height: int) -> tuple[float, float]:
    """A point clicked in Blender's Image Editor, in its image coordinates (u, v in [0, 1], origin at the bottom
    left), -> the photo's pixel coordinates (x, y), row 0 at the top, pixel centres at whole numbers, clamped to
    the photo: what the segment job's `points` and `box` take."""
    x = min(max(u * width - 0.5, 0.0), width - 1.0)
    y = min(max((1.0 - v) * height - 0.5, 0.0), height - 1.0)
    return x, y


SEGMENT_PROPOSERS = ("auto", "sam", "superpixels")
"""Where the segment job's candidate masks come from (backend `segment.PROPOSERS`): auto is SAM when its weights
are given or cached, else superpixels."""


def segment_params(prompt: str, clip: str = "", sam_checkpoint: str = "", sam_type: str = "",
                   points: list | None = None, box: list | None = None, proposer: str = "auto") -> dict:
    """The `segment` job's params (the photo travels as blob "image"); AddonError for a bad prompt, point or box.

    points: [(x, y, positive), ...] and box: (x0, y0, x1, y1) in the photo's pixels (`image_editor_pixel`);
    clip "" means the backend's default, sam_checkpoint "" the weights in the backend's cache (superpixels when
    it has none), sam_type "" any cached SAM; proposer "auto" is left to the backend.
    """
    params: dict = {"prompt": _prompt(prompt, "name what to cut out of the photo, e.g. 'the red chair'")}
    if clip.strip():
        params["clip"] = clip.strip()
    if sam_checkpoint.strip():
        params["sam_checkpoint"] = _server_path(sam_checkpoint, "SAM checkpoint")
    if sam_type:
        if sam_type not in SAM_TYPES:
            raise AddonError(f"SAM type must be one of {', '.join(SAM_TYPES)}, got {sam_type!r}")
        params["sam_type"] = sam_type
    if points:
        if len(points) > SEGMENT_MAX_POINTS:
            raise AddonError(f"{len(points)} points are placed, over the {SEGMENT_MAX_POINTS} limit",
                             "remove some points")
        params["points"] = [[round(float(x), 2), round(float(y), 2), 1 if positive else 0]
                            for x, y, positive in points]
    if box is not None:
        x0, y0, x1, y1 = (round(float(v), 2) for v in box)
        if not (x0 < x1 and y0 < y1):
            raise AddonError("the box is empty", "drag a box around the object")
        params["box"] = [x0, y0, x1, y1]
    if proposer != "auto":
        if proposer not in SEGMENT_PROPOSERS:
            raise AddonError(f"the mask proposer must be one of {', '.join(SEGMENT_PROPOSERS)}, got {proposer!r}")
        params["proposer"] = proposer
    return params


PHOTO_TO_3D_METHODS = limits.PHOTO_TO_3D_METHODS
"""retrieve: the library's closest shape restyled after the photo; reconstruct: 3D Gaussians fitted to the photo,
then a textured mesh; auto: reconstruct starting from the retrieved shape."""
RECONSTRUCT_INITS = limits.RECONSTRUCT_INITS
"""Where a reconstruction starts: sphere, retrieve (the library's match), generate (the generator's shape), best."""
RECONSTRUCT_GUIDANCES = limits.RECONSTRUCT_GUIDANCES
"""A reconstruction's novel-view guidance: clip, or zero123 (its weights on the backend's machine)."""


def photo_to_3d_needs_db(method: str, init: str = "") -> str:
    """Why the Photo to 3D job needs a library database ("" when it does not): retrieve and auto search the library,
    and so does reconstruct from init retrieve or best."""
    if method == "retrieve":
        return "Photo to 3D by Retrieve searches the library for the closest shape"
    if method == "auto":
        return "Photo to 3D by Auto starts from the library's closest shape"
    if init in ("retrieve", "best"):
        return f"Reconstruct from init {init} searches the library for a starting shape"
    return ""


def photo_to_3d_params(prompt: str, db: str, k: int = 5, category: str = "", quality: str = "draft",
                       steps: int = 0, seed: int = 0, proposer: str = "auto", store: str = "",
                       method: str = "retrieve", init: str = "sphere", texture_steps: int = -1,
                       guidance: str = "clip", zero123_model: str = "", allow_clip_fallback: bool = False,
                       preview_every: int = 0, clip: str = "") -> dict:
    """The `photo_to_3d` job's params (the photo travels as blob "image"); AddonError, before anything is sent, for
    a bad prompt or value, or no database where the method needs one (`photo_to_3d_needs_db`).

    method "retrieve": segment the prompt's object, search the database for it, restyle the best of the k hits after
    the photo (quality, steps: the restyle's; steps 0 means the quality preset's); no `method` key is sent, so an
    older backend takes it. "reconstruct" (from `init`) or "auto" (from the retrieved match; `init` is not sent):
    fit 3D Gaussians to the photo for `steps` (0: the backend's 300), then a mesh whose baked texture is refined for
    `texture_steps` (-1: the backend's 60); the database, when given, also supplies the CLIP. guidance "zero123"
    sends `zero123_model` (a folder on the backend's machine; "": its cache) and `allow_clip_fallback`.
    preview_every 0: the backend's preview interval. clip: the CLIP without a database ("": the backend's default;
    with a database, the database's CLIP is used and a different one is refused)."""
    if method not in PHOTO_TO_3D_METHODS:
        raise AddonError(f"the Photo to 3D method must be one of {', '.join(PHOTO_TO_3D_METHODS)}, got {method!r}")
    params = segment_params(prompt, clip="" if (db or "").strip() else clip, proposer=proposer)
    db = (db or "").strip()
    why = photo_to_3d_needs_db(method, init if method == "reconstruct" else "")
    if why and not db:
        raise AddonError(f"the database folder is empty: {why}", "set the Search Library panel's Database "
                         "folder (or pick an asset library to search), or choose Method Reconstruct with Init Sphere "
                         "or Generate", code="no_database")
    _check_steps(steps)
    _check_seed(seed)
    if db:
        params["db"] = _server_path(db, "database")
        _store(params, store)
        _check_k(k)
        params["k"] = int(k)
    if method == "retrieve":
        _check_quality(quality)
        params.update(quality=quality, seed=int(seed))
        if steps:
            params["steps"] = int(steps)
        if category.strip():
            params["category"] = category.strip()
        return params
    if init not in RECONSTRUCT_INITS:
        raise AddonError(f"the reconstruction's init must be one of {', '.join(RECONSTRUCT_INITS)}, got {init!r}")
    if guidance not in RECONSTRUCT_GUIDANCES:
        raise AddonError(f"the guidance must be one of {', '.join(RECONSTRUCT_GUIDANCES)}, got {guidance!r}")
    if not -1 <= int(texture_steps) <= MAX_STEPS:
        raise AddonError(f"texture steps must be in [0, {MAX_STEPS}] (-1: the backend's 60), got {texture_steps}")
    if not 0 <= int(preview_every) <= 10_000:
        raise AddonError(f"preview every must be in [1, 10000] steps (0: the backend's), got {preview_every}")
    params["method"] = method
    if method == "reconstruct":
        params["init"] = init
    params["seed"] = int(seed)
    if steps:
        params["steps"] = int(steps)
    if int(texture_steps) >= 0:
        params["texture_steps"] = int(texture_steps)
    if guidance == "zero123":
        params["guidance"] = guidance
        zero123_model = (zero123_model or "").strip()
        if zero123_model:
            params["zero123_model"] = _server_path(zero123_model, "Zero123 weights")
        if allow_clip_fallback:
            params["allow_clip_fallback"] = True
    if preview_every:
        params["preview_every"] = int(preview_every)
    if category.strip():
        params["category"] = category.strip()
    return params


# -- generate ---------------------------------------------------------------------------------------------

GENERATE_MAX_SAMPLES = 16
"""Shapes one generate job draws (backend `generate` param `samples`: 1 to 16)."""
GENERATE_MAX_REFINE = 500
"""ISS refinement steps per sample a generate job takes (backend param `refine`: 0 to 500)."""
GENERATE_RESOLUTION_RANGE = (32, 256)
"""The decoding grid's cells per axis (decoded coarse to fine)."""
GENERATE_THRESHOLD_RANGE = (0.01, 0.99)
"""The occupancy probability of the surface."""
GENERATE_TEMPERATURE_RANGE = (0.0, 3.0)
"""The flow's sampling temperature (below 1: typical shapes; above: variety)."""


GENERATE_FROM = ("TEXT", "PICTURE")
"""What the Generate panel conditions the shapes on: the prompt, or a picture of the shape (blob "image")."""


def generate_params(prompt: str, checkpoint: str, samples: int = 1, refine: int = 0, style: bool = False,
                    style_text: str = "", style_quality: str = "draft", style_steps: int = 0, resolution: int = 64,
                    threshold: float = 0.5, temperature: float = 0.5, seed: int = 0, clip: str = "",
                    picture: bool = False) -> dict:
    """The `generate` job's params from the Generate panel's fields; AddonError, before anything is sent, for an
    empty (without a picture) or over-long prompt, an over-long checkpoint path, "auto" style with no prompt, or a
    number outside the backend's range.

    checkpoint: a generator file on the backend's machine (whether it exists is the backend's check: it may be
    remote); "" sends none, and the backend uses its shipped generator. style False: plain shapes; True: stylized after `style_text`, or, when that is empty, "auto" (the
    backend splits "a chair made of oak" into the shape "a chair" and the whole prompt as the style). style_steps 0
    means the style quality preset's; clip "" means the CLIP the checkpoint records (another one is refused).
    picture True: a picture of the shape goes with the job as blob "image" (`read_generate_picture`) and conditions
    it instead of the prompt; the prompt may then be empty (it is left out of the params).
    """
    if picture and not (prompt or "").strip():
        prompt = ""
    else:
        prompt = _prompt(prompt, "type the shape to make, e.g. 'a chair', or with Style it on 'a chair made of oak'",
                         code="empty_prompt")
    checkpoint = (checkpoint or "").strip()
    if len(checkpoint) > limits.MAX_STRING:
        raise AddonError(f"the generator checkpoint path is over {limits.MAX_STRING} characters",
                         "shorten it, or leave Generator checkpoint empty for the backend's shipped generator")
    if not 1 <= int(samples) <= GENERATE_MAX_SAMPLES:
        raise AddonError(f"samples must be in [1, {GENERATE_MAX_SAMPLES}], got {samples}",
                         "each sample is one shape to choose from")
    if not 0 <= int(refine) <= GENERATE_MAX_REFINE:
        raise AddonError(f"refine steps must be in [0, {GENERATE_MAX_REFINE}], got {refine}",
                         "0 turns refinement off; 20 to 100 is typical")
    low, high = GENERATE_RESOLUTION_RANGE
    if not low <= int(resolution) <= high:
        raise AddonError(f"resolution must be in [{low}, {high}], got {resolution}")
    low, high = GENERATE_THRESHOLD_RANGE
    if not low <= float(threshold) <= high:
        raise AddonError(f"threshold must be in [{low}, {high}], got {threshold}",
                         "lower it when the shapes come out empty or thin")
    low, high = GENERATE_TEMPERATURE_RANGE
    if not low <= float(temperature) <= high:
        raise AddonError(f"temperature must be in [{low}, {high}], got {temperature}")
    _check_seed(seed)
    params: dict = {"prompt": prompt, "checkpoint": checkpoint, "samples": int(samples), "refine": int(refine),
                    "resolution": int(resolution), "threshold": round(float(threshold), 4),
                    "temperature": round(float(temperature), 4), "seed": int(seed)}
    if not prompt:
        del params["prompt"]
    if not checkpoint:
        del params["checkpoint"]  # none named: the backend's shipped generator
    if style:
        style_text = _text_within_limit((style_text or "").strip(), "the style text")
        if not style_text and not prompt:
            raise AddonError("Style it with no style text splits the prompt, and there is none",
                             "type a style text (e.g. 'made of oak'), or a prompt to split", code="empty_style")
        _check_quality(style_quality, "style quality")
        _check_steps(style_steps, "style steps")
        params["style"] = style_text or "auto"
        params["style_quality"] = style_quality
        if style_steps:
            params["style_steps"] = int(style_steps)
    clip = (clip or "").strip()
    if clip:
        params["clip"] = clip
    return params


def read_generate_picture(path_text: str) -> bytes:
    """The Generate panel's picture file (an absolute path) -> its bytes; AddonError, before anything is sent, for
    no path, a folder, a missing, empty, unreadable or over-large file. Decoding it is the backend's check."""
    hint = "pick a picture of the shape in the Generate panel (a file, or an image open in Blender)"
    if not (path_text or "").strip():
        raise AddonError("no picture is chosen", hint, code="no_picture")
    return read_input_file(path_text, "the picture", hint, "no_picture", "picture")


def picture_name(picture: dict | None) -> str:
    """What a generate job's picture is called: the file's or the Blender image's name without its extension
    ("" for none). picture: {"file": absolute path} or {"image": Blender image name}, as the job's meta keeps it."""
    picture = picture or {}
    name = str(picture.get("file") or picture.get("image") or "").strip()
    return PurePath(name.replace("\\", "/")).stem if name else ""


def generate_label(prompt: str, picture: str = "") -> str:
    """What the job list calls a generate job: "Generate 'a chair'" (a long prompt cut to 40 characters), "Generate
    from chair" for a picture (`picture_name`) alone, "Generate 'a chair' from chair" for both."""
    prompt = (prompt or "").strip()
    source = f" from {picture}" if picture else ""
    if not prompt:
        return f"Generate{source}"
    shown = prompt if len(prompt) <= 40 else prompt[:37] + "..."
    return f"Generate {shown!r}{source}"
