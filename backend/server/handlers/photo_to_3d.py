"""The `photo_to_3d` job: segment the object a prompt names in a photo, then either find it in a shape library and
restyle the best match's texture after the photo (method retrieve, `backend.segment.photo_to_3d`), or reconstruct
it by 3D Gaussians and a textured mesh (method reconstruct, or auto: reconstruct from the retrieved match;
`backend.reconstruct`).

blobs:  "image": the encoded photo (PNG, JPEG, ...; any mode, 16-bit, EXIF rotation honoured).
params: `shared_protocol.requests.PhotoTo3DRequest`: prompt (required); method: retrieve | reconstruct | auto;
        db: a library database folder on the server (needed by retrieve, auto and init retrieve/best; its CLIP
        supplies the relevance map, the search and the guidance); clip (without a db: the CLIP of the relevance
        map and the guidance; default: the backend's default CLIP); store; k; pick; category; quality, steps (the
        restyle's, or reconstruct's Gaussian steps); seed; proposer; sam_checkpoint; sam_type; init (sphere,
        retrieve, generate, best); generator; texture_steps; guidance (clip | zero123); zero123_model;
        allow_clip_fallback; preview_every.
progress: stage "segment", then "restyle" (loss, eta_s) for retrieve; "prior", "gaussians" (loss, gaussians, eta_s,
        a PNG preview of the reference view every preview_every steps), "mesh", "texture" (loss) to reconstruct.
result: blobs {"mesh": GLB (the restyled match, or the reconstruction with its baked texture), "mask": the object's
        mask PNG, "cutout": RGBA PNG; retrieve also "style_texture" and "thumb_000", ...: the hits' thumbnails};
        fields: method, segmentation (method, proposals, iou_merge, rule, note), clip, seconds and, for retrieve,
        hits, chosen, category, steps, loss_first, loss_last; for reconstruct the reconstruction's report
        (`backend.reconstruct.service.result_fields`).
"""

from __future__ import annotations

from backend.server.context import JobContext, JobOutput
from backend.server.params import read_request
from shared_protocol.requests import PhotoTo3DRequest


def run(ctx: JobContext) -> JobOutput:
    from backend.images import load_image
    from backend.segment.photo_query import load_photo
    from backend.segment.sam import SamConfig
    from backend.segment.segment import SegmentConfig, encode_mask_png, encode_rgba_png, segment

    request = read_request(PhotoTo3DRequest, ctx)
    seg_config = SegmentConfig(proposer=request.proposer,
                               sam=SamConfig(checkpoint=request.sam_checkpoint or None,
                                             sam_type=request.sam_type or None))
    seg_config.check()
    if request.method == "retrieve":
        retrieve = _retrieve_config(request)
    else:
        from backend.reconstruct.service import reconstruct_config

        recon = reconstruct_config(request.method, request.init or None, request.steps or None,
                                   None if request.texture_steps < 0 else request.texture_steps, request.guidance,
                                   request.zero123_model or None, request.allow_clip_fallback,
                                   request.preview_every or None, request.category or None, request.seed)
    image = load_image(ctx.blobs["image"], what="photo", keep_alpha=True)
    load_photo(image)  # a blank photo (one colour) has no object: refused here, before any model loads
    ctx.progress(0, 1, stage="load")
    db, encoder = _library(request, ctx)

    def seg_progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="segment", **metrics)

    seg = segment(image, request.prompt, encoder.clip, seg_config, progress=seg_progress, cancel=ctx.cancel,
                  device=ctx.device)
    fields = {"method": request.method, "segmentation": seg.method, "proposals": seg.proposals,
              "iou_merge": seg.iou_merge, "rule": seg.rule, "note": seg.note, "clip": encoder.spec}
    blobs = {"mask": encode_mask_png(seg.mask), "cutout": encode_rgba_png(seg.cutout)}
    if request.method == "retrieve":
        out_fields, out_blobs = _run_retrieve(ctx, image, seg.mask, db, encoder, retrieve)
    else:
        out_fields, out_blobs = _run_reconstruct(ctx, request, image, seg.mask, db, encoder, recon)
    return JobOutput(fields={**fields, **out_fields}, blobs={**blobs, **out_blobs})


def _retrieve_config(request: PhotoTo3DRequest):
    from backend.segment.photo_to_3d import PhotoTo3DConfig
    from backend.stylize.restyle import preset

    restyle_config = preset(request.quality, steps=request.steps or None, seed=request.seed)
    restyle_config.check()
    return PhotoTo3DConfig(k=request.k, pick=request.pick, category=request.category or None, restyle=restyle_config)


def _library(request: PhotoTo3DRequest, ctx: JobContext):
    """(db or None, encoder): the CLIP asked for, else the library's, else the default CLIP."""
    from backend.retrieve.service import load_encoder, open_cached

    db = open_cached(request.db, request.store) if request.db else None
    return db, load_encoder(clip=request.clip or None, db=db, device=ctx.device)


def _run_retrieve(ctx: JobContext, image, mask, db, encoder, config) -> tuple[dict, dict]:
    from backend.segment.photo_to_3d import photo_to_3d
    from backend.stylize.output import export_restyled

    def restyle_progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="restyle", **metrics)

    result = photo_to_3d(image, mask, db, encoder, encoder.clip, config, device=ctx.device,
                         progress=restyle_progress, cancel=ctx.cancel)
    ctx.cancel.check()
    glb, style_png = export_restyled(result.restyled, name=result.chosen.name)
    thumbs = {f"thumb_{i:03d}": hit.thumbnail for i, hit in enumerate(result.hits)}
    restyled = result.restyled
    fields = {
        "hits": [{**hit.as_dict(), "thumbnail": name} for hit, name in zip(result.hits, thumbs)],
        "chosen": result.chosen.as_dict(), "category": result.chosen.category, "steps": restyled.steps,
        "loss_first": restyled.losses[0], "loss_last": restyled.losses[-1], "seconds": round(restyled.seconds, 3),
    }
    return fields, {"mesh": glb, "style_texture": style_png, **thumbs}


def _run_reconstruct(ctx: JobContext, request: PhotoTo3DRequest, image, mask, db, encoder, config) -> tuple[dict, dict]:
    from backend.reconstruct.reconstruct import reconstruct
    from backend.reconstruct.service import preview_png, prior_generator, result_fields, result_glb

    generator = prior_generator(config, request.generator or None, ctx.device)
    pending: dict[str, bytes] = {}

    def preview(step: int, image_now) -> None:
        pending["png"] = preview_png(image_now)

    def progress(step: int, total: int, stage: str = "", **metrics: float) -> None:
        ctx.progress(step, total, stage=stage, preview_png=pending.pop("png", None), **metrics)

    result = reconstruct(image, mask, encoder.clip, config, db=db, encoder=encoder, generator=generator,
                         device=ctx.device, progress=progress, preview=preview, cancel=ctx.cancel)
    ctx.cancel.check()
    return result_fields(result), {"mesh": result_glb(result)}
