"""One request dataclass per job kind: its params' defaults, bounds and checks, written once.

The add-on builds these from its panels (and sends `to_params()`), the server reads them with `from_params`,
the CLI turns their fields into flags. `REQUESTS` maps a job kind to its class. What a param does in a job is
documented on the backend's handler and service; the field's spec `help` is the one-line version.

Standard library only (the add-on imports this module).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from shared_protocol import limits
from shared_protocol.errors import ParamError
from shared_protocol.params import (Bool, Choice, Color, Float, Int, JobRequest, JsonList, Palette, Text,
                                    param, unset_unless)

_QUALITY_HELP = "draft, standard or high (the paper's setting)"
_STEPS = Int(1, limits.MAX_JOB_STEPS, unset=0, help="optimisation steps (not given: the quality preset's)")
_SEED = Int(0, limits.MAX_SEED, help="random seed")
_CLIP = Text(unset="", path="clip", help="CLIP spec, e.g. ViT-B-32:openai, domain, or a checkpoint path (default: the job's)")
_PREVIEW = Int(1, 10_000, unset=0, help="steps between preview images (0: the preset's)")
_TEXTURE_SIZE = Int(*limits.TEXTURE_SIZE_RANGE, help="texture side in pixels")


def _prompt(empty_hint: str, required: bool = True) -> Text:
    return Text(max_chars=limits.MAX_PROMPT_CHARS, required=required, **unset_unless(required, ""),
                what="the prompt", empty_hint=empty_hint, help="the text prompt")


def _server_path(what: str, required: bool = True) -> Text:
    return Text(required=required, **unset_unless(required, ""), what=f"the {what} path", path="file",
                empty_hint=f"type the {what}'s path on the backend's machine",
                help=f"the {what}, a path on the backend's machine")


_BLEND_OBJECTS = Choice(choices=("assets", "all"),
                        help="a .blend's entries: its asset-marked objects and collections, or every mesh object too")
_STORE = Choice(choices=limits.STORES, help="where the library lives: embedded (SQLite + FAISS) or milvus")


def _registry(*classes: type[JobRequest]) -> dict[str, type[JobRequest]]:
    registry: dict[str, type[JobRequest]] = {}
    for cls in classes:
        if cls.KIND in registry:
            raise ValueError(f"job kind {cls.KIND!r} has two request classes")
        registry[cls.KIND] = cls
    return registry


@dataclass(kw_only=True)
class RenderRequest(JobRequest):
    """`render`: shaded views of the submitted mesh."""

    KIND = "render"
    views: int = param(Int(limits.RENDER_MIN_VIEWS, limits.RENDER_MAX_VIEWS, help="number of views"), 8)
    size: int = param(Int(limits.RENDER_MIN_SIZE, limits.RENDER_MAX_SIZE, help="image side in pixels"), 256)
    background: list = param(Color(help="background colour [r, g, b] in [0, 1]"), [1.0, 1.0, 1.0])


@dataclass(kw_only=True)
class StylizeRequest(JobRequest):
    """`stylize`: Text2Mesh colour and displacement of the submitted mesh from a prompt."""

    KIND = "stylize"
    prompt: str = param(_prompt("type what the object should look like, e.g. 'a wooden chair'"))
    quality: str = param(Choice(choices=limits.QUALITIES, help=_QUALITY_HELP), "standard")
    steps: int = param(_STEPS, 0)
    seed: int = param(_SEED, 0)
    subdivide: bool = param(Bool(help="subdivide sparse meshes first"), False)
    subdivide_vertices: int = param(Int(100, 200_000, help="the vertex count subdivision aims for"), 10_000)
    bake_texture: bool = param(Bool(help="also paint the colours into a UV texture"), False)
    texture_size: int = param(_TEXTURE_SIZE, 1024)
    clip: str = param(_CLIP, "")
    preview_every: int = param(_PREVIEW, 0)


@dataclass(kw_only=True)
class RestyleRequest(JobRequest):
    """`restyle`: NNFM texture style transfer onto the submitted mesh from style images (blobs style_0, ...)."""

    KIND = "restyle"
    BLOBS = ("style_",)
    quality: str = param(Choice(choices=limits.QUALITIES, help=_QUALITY_HELP), "standard")
    steps: int = param(_STEPS, 0)
    seed: int = param(_SEED, 0)
    palette: str = param(Palette(max_colors=limits.MAX_PALETTE_COLORS,
                                 help="'auto' (the style images' colours), 'none', or '#rrggbb,#rrggbb,...'"), "auto")
    palette_weight: float = param(Float(0.0, 1e6, help="the palette loss weight at the first step (the paper: 2000)"),
                                  2000.0)
    pattern_scale: float = param(Float(0.25, 8.0, help="camera distance in mesh sizes: smaller, finer patterns"), 1.0)
    texture_size: int = param(Int(*limits.TEXTURE_SIZE_RANGE, unset=0,
                                  help="style texture side in pixels (0: the quality preset's)"), 0)
    features: str = param(Choice(choices=("clip", "vgg16"), help="the feature network: the CLIP image tower or "
                                 "VGG-16"), "clip")
    clip: str = param(_CLIP, "")
    preview_every: int = param(_PREVIEW, 0)

    def check_blobs(self, blobs: Collection[str]) -> None:
        """Left to `requires`, which names every blob the job expects."""

    def requires(self, blobs: Collection[str]) -> None:
        names = sorted(blobs, key=lambda n: (len(n), n))
        expected = [f"style_{i}" for i in range(len(names))]
        if not names:
            raise ParamError("the restyle job needs at least one style image",
                             hint="send the images as blobs style_0, style_1, ...")
        if names != expected:
            raise ParamError(f"unexpected blob names {names}; expected {expected}",
                             hint="send the style images as blobs style_0, style_1, ... without gaps")
        if len(names) > limits.MAX_STYLE_IMAGES:
            raise ParamError(f"{len(names)} style images were given; at most {limits.MAX_STYLE_IMAGES} are used",
                             hint=f"send 1 to {limits.MAX_STYLE_IMAGES} style images")


@dataclass(kw_only=True)
class IndexRequest(JobRequest):
    """`index`: index (or update) a shape library database from a folder on the backend's machine."""

    KIND = "index"
    library: str = param(_server_path("library folder"))
    db: str = param(_server_path("database folder"))
    clip: str = param(_CLIP, "")
    checkpoint: str = param(_server_path("TASK-former checkpoint", required=False), "")
    views: int = param(Int(*limits.INDEX_VIEWS_RANGE, unset=0, help="views per shape (0: 6, or the database's)"), 0)
    rehash: bool = param(Bool(help="hash every file again instead of trusting sizes and times"), False)
    blend_objects: str = param(_BLEND_OBJECTS, "assets")
    workers: int = param(Int(0, limits.MAX_BLENDER_WORKERS, help="Blender worker processes (0: one per core)"), 0)
    store: str = param(_STORE, "embedded")
    descriptor: str = param(Choice(choices=("", *limits.DESCRIPTORS), unset="",
                                   help="views, points or both (default: the database's, else views)"), "")
    points_encoder: str = param(_server_path("point encoder checkpoint", required=False), "")


@dataclass(kw_only=True)
class SearchRequest(JobRequest):
    """`search`: the top k shapes of a database for a text, a sketch (blob or strokes), a photo, or sketch + text."""

    KIND = "search"
    BLOBS = ("sketch", "photo")
    db: str = param(_server_path("database folder"))
    text: str = param(Text(max_chars=limits.MAX_PROMPT_CHARS, unset="", what="the search text",
                           help="what to look for"), "")
    k: int = param(Int(1, limits.SEARCH_MAX_K, help="number of results"), 10)
    category: str = param(Text(unset="", help="only shapes of this category"), "")
    catalog: str = param(Text(unset="", help="only assets of this Blender catalog or below it"), "")
    tag: str = param(Text(unset="", help="only assets with this tag"), "")
    format: str = param(Text(unset="", help="only entries from files of this format (blend, fbx, obj, ...)"), "")
    keyword_weight: float = param(Float(0.0, 10.0, help="what a full keyword match adds to the CLIP score"), 0.5)
    store: str = param(_STORE, "embedded")
    mode: str = param(Choice(choices=("", "text", "sketch", "photo", "sketch+text"), unset="",
                             help="the query's mode, checked against what it holds"), "")
    strokes: list = param(JsonList(shape="polylines [[[x, y], ...], ...] in [0, 1]² (y down)", unset=None,
                                   help="the sketch as polylines"), None)
    clip: str = param(_CLIP, "")
    checkpoint: str = param(_server_path("TASK-former checkpoint", required=False), "")
    prompt: str = param(_prompt("name what to cut out of the photo, e.g. 'the red chair', or leave it out",
                                required=False), "")
    raw_photo: bool = param(Bool(help="embed the whole photo, not its cut-out object"), False)

    def requires(self, blobs: Collection[str]) -> None:
        if (self.prompt or self.raw_photo) and "photo" not in blobs:
            raise ParamError(f"{'prompt' if self.prompt else 'raw_photo'} applies to a photo query",
                             hint="send the photo as blob 'photo'")
        if self.strokes is not None and "sketch" in blobs:
            raise ParamError("the search job got both a sketch blob and strokes",
                             hint="send one drawing: the PNG or the polylines")
        if self.strokes is not None and not self.strokes:
            raise ParamError("the sketch has no strokes", hint="draw something first")


@dataclass(kw_only=True)
class FetchShapeRequest(JobRequest):
    """`fetch_shape`: one library shape (a search hit) as a mesh."""

    KIND = "fetch_shape"
    db: str = param(_server_path("database folder"))
    shape_id: int = param(Int(1, 2**62, help="a search hit's shape_id"))
    store: str = param(_STORE, "embedded")


_SEGMENT_PROMPT = "name what to cut out of the photo, e.g. 'the red chair'"
_PROPOSER = Choice(choices=("auto", "sam", "superpixels"),
                   help="where the candidate masks come from (auto: SAM when its weights are there)")


@dataclass(kw_only=True)
class SegmentRequest(JobRequest):
    """`segment`: the object a prompt names in a photo (blob "image"), as a mask and a cut-out."""

    KIND = "segment"
    BLOBS = ("image",)
    prompt: str = param(_prompt(_SEGMENT_PROMPT))
    clip: str = param(_CLIP, "")
    relevance: str = param(Choice(choices=("auto", "clipseg", "dense-clip"), help="the text relevance map"), "auto")
    proposer: str = param(_PROPOSER, "auto")
    sam_checkpoint: str = param(_server_path("SAM checkpoint", required=False), "")
    sam_type: str = param(Choice(choices=("",) + limits.SAM_TYPES, unset="", help="the SAM model type"), "")
    points_per_side: int = param(Int(1, 128, help="SAM's grid of point prompts per side"), 32)
    pred_iou_thresh: float = param(Float(0.0, 1.0, help="SAM drops masks whose predicted IoU is lower"), 0.86)
    stability_score_thresh: float = param(Float(0.0, 1.0, help="SAM drops masks less stable than this"), 0.92)
    points: list = param(JsonList(shape="[[x, y, label], ...]", max_items=limits.SEGMENT_MAX_POINTS, unset=None,
                                  help="point prompts in the photo's pixels (label 1 on the object)"), None)
    box: list = param(JsonList(shape="[x0, y0, x1, y1]", max_items=4, unset=None,
                               help="a box around the object in the photo's pixels"), None)
    relevance_threshold: float = param(Float(0.0, 1.0, help="R is where the relevance reaches this share of its "
                                                            "maximum"), 0.5)
    iou_threshold: float = param(Float(0.0, 1.0, help="masks with more of themselves inside R are merged"), 0.5)
    max_side: int = param(Int(32, 8192, help="the working size in pixels"), 1024)

    def requires(self, blobs: Collection[str]) -> None:
        if "image" not in blobs:
            raise ParamError("the segment job needs a photo", hint="send it as blob 'image' (PNG or JPEG)")


@dataclass(kw_only=True)
class PhotoTo3DRequest(JobRequest):
    """`photo_to_3d`: segment a photo's object (blob "image"), then retrieve the library's best match and restyle
    it (method retrieve), or reconstruct it by Gaussians (reconstruct: from `init`; auto: from the retrieved
    match)."""

    KIND = "photo_to_3d"
    BLOBS = ("image",)
    prompt: str = param(_prompt(_SEGMENT_PROMPT))
    method: str = param(Choice(choices=limits.PHOTO_TO_3D_METHODS,
                               help="retrieve (and restyle), reconstruct (Gaussians), auto (reconstruct from the "
                                    "retrieved match)"), "retrieve")
    db: str = param(_server_path("database folder", required=False), "")
    clip: str = param(_CLIP, "")
    init: str = param(Choice(choices=("",) + limits.RECONSTRUCT_INITS, unset="",
                             help="where reconstruct starts: sphere, retrieve, generate or best (default: sphere; "
                                  "auto: retrieve)"), "")
    generator: str = param(Text(unset="", what="the generator checkpoint path", path="file",
                                help="the generator for init generate or best (default: the shipped one)"), "")
    texture_steps: int = param(Int(0, limits.MAX_JOB_STEPS, unset=-1,
                                   help="reconstruct: texture refinement steps (not given: 60)"), -1)
    guidance: str = param(Choice(choices=limits.RECONSTRUCT_GUIDANCES,
                                 help="reconstruct's novel-view guidance: clip, or zero123 (its weights needed)"),
                          "clip")
    zero123_model: str = param(_server_path("Zero123 weights folder", required=False), "")
    allow_clip_fallback: bool = param(Bool(help="zero123 without its weights: use CLIP instead of failing"), False)
    preview_every: int = param(_PREVIEW, 0)
    store: str = param(_STORE, "embedded")
    k: int = param(Int(1, limits.SEARCH_MAX_K, help="library matches to find"), 5)
    pick: int = param(Int(0, limits.SEARCH_MAX_K - 1, help="which match to restyle (0: the best)"), 0)
    category: str = param(Text(unset="", help="only shapes of this category"), "")
    quality: str = param(Choice(choices=limits.QUALITIES, help=_QUALITY_HELP), "draft")
    steps: int = param(_STEPS, 0)
    seed: int = param(_SEED, 0)
    proposer: str = param(_PROPOSER, "auto")
    sam_checkpoint: str = param(_server_path("SAM checkpoint", required=False), "")
    sam_type: str = param(Choice(choices=("",) + limits.SAM_TYPES, unset="", help="the SAM model type"), "")

    def requires(self, blobs: Collection[str]) -> None:
        if "image" not in blobs:
            raise ParamError("the photo_to_3d job needs a photo", hint="send it as blob 'image' (PNG or JPEG)")
        uses_library = self.method in ("retrieve", "auto") or self.init in ("retrieve", "best")
        if uses_library and not self.db:
            raise ParamError(f"method {self.method}{' with init ' + self.init if self.init else ''} searches a "
                             "library, and no database was given", hint="type the library database's path, or "
                             "reconstruct with init sphere or generate", param="db")
        if self.method == "retrieve" and self.init:
            raise ParamError(f"init {self.init} is for reconstruction, not retrieval",
                             hint="choose method reconstruct, or leave init empty", param="init")
        if self.pick >= self.k:
            raise ParamError(f"pick {self.pick} is not among the {self.k} matches", hint="pick a number below k")


@dataclass(kw_only=True)
class GenerateRequest(JobRequest):
    """`generate`: CLIP-Forge shapes from a prompt or a picture (blob "image"), refined and styled on request."""

    KIND = "generate"
    BLOBS = ("image",)
    prompt: str = param(_prompt("type the shape to make, e.g. 'a chair', or with a style 'a chair made of oak'",
                                required=False), "")
    checkpoint: str = param(Text(unset="", what="the generator checkpoint path", path="file",
                                 help="a generator file on the backend's machine (default: the backend's shipped "
                                      "generator)"), "")
    samples: int = param(Int(1, limits.GENERATE_MAX_SAMPLES, help="shapes to draw"), 1)
    refine: int = param(Int(0, limits.GENERATE_MAX_REFINE, help="ISS refinement steps per sample (0: off)"), 0)
    style: str = param(Text(max_chars=limits.MAX_PROMPT_CHARS, unset="", what="the style text",
                            help="'' none, 'auto' (split the prompt), or a style text"), "")
    style_quality: str = param(Choice(choices=limits.QUALITIES, help=_QUALITY_HELP), "draft")
    style_steps: int = param(_STEPS, 0)
    resolution: int = param(Int(32, 256, help="decoding grid cells per axis"), 64)
    threshold: float = param(Float(0.01, 0.99, help="occupancy probability of the surface"), 0.5)
    temperature: float = param(Float(0.0, 3.0, help="the flow's sampling temperature"), 0.5)
    seed: int = param(_SEED, 0)
    clip: str = param(_CLIP, "")

    def requires(self, blobs: Collection[str]) -> None:
        if not self.prompt and "image" not in blobs:
            raise ParamError("the prompt is empty", hint=self.specs()["prompt"].empty_hint, param="prompt")
        if self.style == "auto" and not self.prompt:
            raise ParamError("the 'auto' style splits the prompt, and there is none",
                             hint="send a style text (e.g. 'made of oak'), or a prompt to split", param="style")


REQUESTS: dict[str, type[JobRequest]] = _registry(
    RenderRequest, StylizeRequest, RestyleRequest, IndexRequest, SearchRequest, FetchShapeRequest, SegmentRequest,
    PhotoTo3DRequest, GenerateRequest)
"""Job kind -> its request class."""
