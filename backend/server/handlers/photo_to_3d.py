"""The `photo_to_3d` job: segment the object a prompt names in a photo, find it in a shape library and restyle
the best match's texture after the photo (`backend.segment.photo_to_3d`).

blobs:  "image": the encoded photo (PNG, JPEG, ...; any mode, 16-bit, EXIF rotation honoured).
params: prompt: str (required); db: str (required): a library database folder on the server (its CLIP supplies
        the relevance map, the search and the restyle's features); store: "embedded" (default) | "milvus" (db is
        then a Milvus Lite file or server URL); k: int in [1, 100] (default 5); pick: int (default
        0: restyle the best match; the user may pick another of the k); category: str; quality: "draft" |
        "standard" | "high" (default "draft"); steps: int (default: the preset's); seed: int; proposer: "auto" |
        "sam" | "superpixels"; sam_checkpoint: a SAM checkpoint path on the server; sam_type: "vit_b" | "vit_l" |
        "vit_h".
progress: stage "segment", then "restyle" (loss, eta_s).
result: blobs {"mesh": GLB of the chosen shape with the restyled base colour texture, "style_texture": PNG of the
        style texture alone (128 = no change), "mask": the object's mask PNG, "cutout": RGBA PNG, "thumb_000",
        ...: the hits' thumbnails}; fields: hits [{"shape_id", "path", "name", "category", "score", "thumbnail"}],
        chosen, category, method, proposals, iou_merge, rule, note, clip, steps, loss_first, loss_last, seconds.
"""

from __future__ import annotations

from backend.errors import InvalidInputError
from backend.server.context import JobContext, JobOutput
from backend.server.params import check_known, int_param, str_param
from shared_protocol import limits

PARAMS = ("prompt", "db", "k", "pick", "category", "quality", "steps", "seed", "proposer", "sam_checkpoint",
          "sam_type", "store")


def run(ctx: JobContext) -> JobOutput:
    from backend.images import load_image
    from backend.retrieve.service import load_encoder, open_cached
    from backend.segment.photo_to_3d import PhotoTo3DConfig, photo_to_3d
    from backend.segment.sam import SAM_TYPES, SamConfig
    from backend.segment.segment import PROPOSERS, SegmentConfig, check_prompt, encode_mask_png, encode_rgba_png, \
        segment
    from backend.stylize.output import export_restyled
    from backend.stylize.restyle import MAX_STEPS, QUALITY_PRESETS, preset

    check_known(ctx.params, PARAMS, "photo_to_3d")
    if set(ctx.blobs) != {"image"}:
        raise InvalidInputError(f"the photo_to_3d job takes one blob 'image', got {sorted(ctx.blobs)}",
                                hint="send the photo as blob 'image' (PNG or JPEG)")
    prompt = check_prompt(ctx.params.get("prompt"))
    db_dir = str_param(ctx.params, "db", None)
    sam_checkpoint = ctx.params.get("sam_checkpoint") and str_param(ctx.params, "sam_checkpoint", None)
    sam_type = ctx.params.get("sam_type") and str_param(ctx.params, "sam_type", None, SAM_TYPES)
    seg_config = SegmentConfig(proposer=str_param(ctx.params, "proposer", "auto", PROPOSERS),
                               sam=SamConfig(checkpoint=sam_checkpoint or None, sam_type=sam_type or None))
    seg_config.check()
    restyle_config = preset(str_param(ctx.params, "quality", "draft", tuple(QUALITY_PRESETS)),
                            steps=int_param(ctx.params, "steps", 1, MAX_STEPS, default=0) or None,
                            seed=int_param(ctx.params, "seed", 0, 2**31 - 1, default=0))
    restyle_config.check()
    category = ctx.params.get("category") and str_param(ctx.params, "category", None)
    config = PhotoTo3DConfig(k=int_param(ctx.params, "k", 1, 100, default=5),
                             pick=int_param(ctx.params, "pick", 0, 99, default=0), category=category or None,
                             restyle=restyle_config)
    image = load_image(ctx.blobs["image"], what="photo", keep_alpha=True)
    db = open_cached(db_dir, str_param(ctx.params, "store", "embedded", limits.STORES))
    ctx.progress(0, 1, stage="load")
    encoder = load_encoder(db=db, device=ctx.device)

    def seg_progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="segment", **metrics)

    def restyle_progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="restyle", **metrics)

    seg = segment(image, prompt, encoder.clip, seg_config, progress=seg_progress, cancel=ctx.cancel, device=ctx.device)
    result = photo_to_3d(image, seg.mask, db, encoder, encoder.clip, config, device=ctx.device,
                         progress=restyle_progress, cancel=ctx.cancel)
    ctx.cancel.check()
    glb, style_png = export_restyled(result.restyled, name=result.chosen.name)
    thumbs = {f"thumb_{i:03d}": hit.thumbnail for i, hit in enumerate(result.hits)}
    restyled = result.restyled
    fields = {
        "hits": [{**hit.as_dict(), "thumbnail": name} for hit, name in zip(result.hits, thumbs)],
        "chosen": result.chosen.as_dict(), "category": result.chosen.category, "method": seg.method,
        "proposals": seg.proposals, "iou_merge": seg.iou_merge, "rule": seg.rule, "note": seg.note,
        "clip": encoder.spec, "steps": restyled.steps, "loss_first": restyled.losses[0],
        "loss_last": restyled.losses[-1], "seconds": round(restyled.seconds, 3),
    }
    return JobOutput(fields=fields, blobs={"mesh": glb, "style_texture": style_png, "mask": encode_mask_png(seg.mask),
                                           "cutout": encode_rgba_png(seg.cutout), **thumbs})
