"""The `segment` job: the object a text prompt names in a photo, as a mask and an RGBA cut-out (seed 004).

blobs:  "image": the encoded photo (PNG, JPEG, ...; any mode, 16-bit, EXIF rotation honoured; 8-8192 px a side).
params: prompt: str (required, 1-500 characters); clip: CLIP spec for the dense-CLIP relevance map (default
        "ViT-B-16:openai"; unused when CLIPSeg runs); relevance: "auto" | "clipseg" | "dense-clip" (default
        "auto": CLIPSeg when installed and cached); proposer: "auto" | "sam" | "superpixels" (default "auto": SAM
        when weights are given or cached, else superpixels, labelled so); sam_checkpoint: a SAM checkpoint path
        on the server (a path that does not exist is an error); sam_type: "vit_b" | "vit_l" | "vit_h";
        points_per_side: int in [1, 128] (default 32); pred_iou_thresh, stability_score_thresh: numbers in
        [0, 1] (defaults 0.86 and 0.92: SAM drops masks scoring lower; 0 keeps all); points: [[x, y, label], ...]
        (label 1 on the object, 0 not) and box: [x0, y0, x1, y1], pixel coordinates of the original photo,
        refining the result through SAM's predictor; relevance_threshold: number in [0, 1] (default 0.5: R is
        where the relevance reaches half its maximum); iou_threshold: number in [0, 1] (default 0.5, the seed's);
        max_side: int in [32, 8192] (default 1024: the working size).
progress: stage "segment": the relevance map, one step per batch of SAM prompts, the finish.
result: blobs {"mask": grayscale PNG at the photo's size (255 on the object), "cutout": RGBA PNG (the photo with
        alpha = mask)}; fields: method ("<proposer> + <relevance>"), proposer, relevance, fallback (bool: superpixels
        stood in for missing SAM weights), note, proposals, iou_merge (constrained IoUs of the merged masks, highest
        first), rule, area (the mask's share of the photo), width, height, work_size, clip, sam_checkpoint, seconds.
"No mask found" is an error (invalid_input) with a hint, never an empty mask.
"""

from __future__ import annotations

from backend.errors import InvalidInputError
from backend.server.context import JobContext, JobOutput
from backend.server.hooks import register_release_hook
from backend.server.params import check_known, float_param, int_param, str_param

PARAMS = ("prompt", "clip", "relevance", "proposer", "sam_checkpoint", "sam_type", "points_per_side",
          "pred_iou_thresh", "stability_score_thresh", "points", "box", "relevance_threshold", "iou_threshold",
          "max_side")
BLOBS = ("image",)


def _release_models() -> None:
    from backend.segment.relevance import release_clipseg
    from backend.segment.sam import release_sam

    release_sam()
    release_clipseg()


# `release` drops the cached SAM models and CLIPSeg.
register_release_hook("segment.models", _release_models)


def run(ctx: JobContext) -> JobOutput:
    # Heavy imports here, not at server start-up.
    from backend.images import load_image
    from backend.models.clip import load_clip
    from backend.segment.merge import MergeConfig
    from backend.segment.relevance import RelevanceConfig
    from backend.segment.sam import SAM_TYPES, SamConfig
    from backend.segment.segment import DEFAULT_CLIP, PROPOSERS, SegmentConfig, check_prompt, encode_mask_png, \
        encode_rgba_png, segment

    check_known(ctx.params, PARAMS, "segment")
    unknown = sorted(set(ctx.blobs) - set(BLOBS))
    if unknown:
        raise InvalidInputError(f"the segment job takes no blob {unknown[0]!r}", hint="send the photo as blob 'image'")
    if "image" not in ctx.blobs:
        raise InvalidInputError("the segment job needs a photo", hint="send it as blob 'image' (PNG or JPEG)")
    prompt = check_prompt(ctx.params.get("prompt"))
    sam_checkpoint = ctx.params.get("sam_checkpoint") and str_param(ctx.params, "sam_checkpoint", None)
    sam_type = ctx.params.get("sam_type") and str_param(ctx.params, "sam_type", None, SAM_TYPES)
    sam = SamConfig(
        checkpoint=sam_checkpoint or None, sam_type=sam_type or None,
        points_per_side=int_param(ctx.params, "points_per_side", 1, 128, default=SamConfig.points_per_side),
        pred_iou_thresh=float_param(ctx.params, "pred_iou_thresh", 0.0, 1.0, default=SamConfig.pred_iou_thresh),
        stability_score_thresh=float_param(ctx.params, "stability_score_thresh", 0.0, 1.0,
                                           default=SamConfig.stability_score_thresh))
    merge = MergeConfig(
        relevance_threshold=float_param(ctx.params, "relevance_threshold", 0.0, 1.0,
                                        default=MergeConfig.relevance_threshold),
        iou_threshold=float_param(ctx.params, "iou_threshold", 0.0, 1.0, default=MergeConfig.iou_threshold))
    config = SegmentConfig(
        proposer=str_param(ctx.params, "proposer", "auto", PROPOSERS), sam=sam, merge=merge,
        relevance=RelevanceConfig(method=str_param(ctx.params, "relevance", "auto", ("auto", "clipseg", "dense-clip"))),
        max_side=int_param(ctx.params, "max_side", 32, 8192, default=SegmentConfig.max_side))
    points, box = ctx.params.get("points"), ctx.params.get("box")
    if points is not None and not isinstance(points, list):
        raise InvalidInputError(f"param 'points' must be a list of [x, y, label], got {points!r:.60}",
                                hint="send points as [[x, y, label], ...] in the photo's pixels, label 1 on the "
                                     "object, 0 not on it")
    if box is not None and not isinstance(box, list):
        raise InvalidInputError(f"param 'box' must be [x0, y0, x1, y1], got {box!r:.60}",
                                hint="send the box in the photo's pixels, x0 < x1 and y0 < y1")
    config.check()
    method = config.relevance_method()  # an explicit clipseg without its weights fails before the photo decodes
    image = load_image(ctx.blobs["image"], what="photo", keep_alpha=True)
    spec = str_param(ctx.params, "clip", DEFAULT_CLIP)
    ctx.progress(0, 1, stage="load")
    clip = load_clip(spec, ctx.device) if method == "dense-clip" else None

    def progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="segment", **metrics)

    result = segment(image, prompt, clip, config, points=points, box=box, progress=progress, cancel=ctx.cancel,
                     device=ctx.device)
    ctx.cancel.check()
    height, width = result.mask.shape
    if result.note:
        ctx.log.info("segment job %s: %s", ctx.job, result.note)
    fields = {
        "method": result.method, "proposer": result.proposer, "relevance": result.relevance_method,
        "fallback": result.fallback, "note": result.note, "proposals": result.proposals,
        "iou_merge": result.iou_merge, "rule": result.rule, "area": round(result.area, 6), "width": width,
        "height": height, "work_size": list(result.work_size), "clip": clip.spec if clip is not None else None,
        "sam_checkpoint": result.sam_checkpoint, "seconds": result.seconds,
    }
    return JobOutput(fields=fields, blobs={"mask": encode_mask_png(result.mask),
                                           "cutout": encode_rgba_png(result.cutout)})
