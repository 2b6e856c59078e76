"""`atelier segment` (text-guided segmentation) and `atelier photo-to-3d` (segment, then retrieve and restyle, or
reconstruct by Gaussians)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.cli.common import Report, command, progress_bar, resolve
from backend.errors import AtelierError


# ---------------------------------------------------------------------------------------- segment
@command("segment", "text-guided segmentation: the object a prompt names in a photo, as a mask PNG and an RGBA "
                    "cut-out (SAM masks + text relevance, constrained-IoU merge)")
def _segment_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="the photo (PNG, JPEG, ...; any mode, 16-bit, EXIF rotation honoured)")
    parser.add_argument("--prompt", required=True, help="what to cut out, e.g. 'the red chair'")
    parser.add_argument("--out", required=True, help="the mask PNG to write (the photo's size, 255 on the object)")
    parser.add_argument("--cutout", default=None, help="also write the photo with alpha = mask as an RGBA PNG")
    parser.add_argument("--sam-checkpoint", default=None, metavar="PTH",
                        help="a SAM checkpoint file (default: the cached sam_vit_b/l/h; without any, superpixels "
                             "stand in and the report says so)")
    parser.add_argument("--sam-type", choices=("vit_b", "vit_l", "vit_h"), default=None,
                        help="the SAM architecture (default: read from the checkpoint; without a checkpoint, "
                             "this type must be in the cache: `atelier models pull sam_vit_b`)")
    parser.add_argument("--proposer", choices=("auto", "sam", "superpixels"), default="auto",
                        help="auto: SAM when weights are here, else superpixels; sam: SAM or an error")
    parser.add_argument("--relevance", choices=("auto", "clipseg", "dense-clip"), default="auto",
                        help="the text relevance map: CLIPSeg when installed and cached (auto), else dense CLIP "
                             "features of --clip (default ViT-B-16:openai)")
    parser.add_argument("--point", nargs=3, type=float, action="append", default=None, metavar=("X", "Y", "LABEL"),
                        help="a point prompt in the photo's pixels: LABEL 1 on the object, 0 not on it (repeatable)")
    parser.add_argument("--box", nargs=4, type=float, default=None, metavar=("X0", "Y0", "X1", "Y1"),
                        help="a box prompt in the photo's pixels")
    parser.add_argument("--points-per-side", type=int, default=32, help="SAM's automatic prompt grid (default 32)")
    parser.add_argument("--pred-iou-thresh", type=float, default=0.86,
                        help="SAM drops masks whose own predicted IoU is not above this (default 0.86; 0 keeps all)")
    parser.add_argument("--stability-thresh", type=float, default=0.92,
                        help="SAM drops masks less stable than this (default 0.92; 0 keeps all)")
    parser.add_argument("--relevance-threshold", type=float, default=0.5,
                        help="the relevance region is where the map reaches this fraction of its maximum (0.5)")
    parser.add_argument("--iou-threshold", type=float, default=0.5,
                        help="masks with |S ∩ R| / |S| above this are merged (0.5, the seed's)")
    parser.add_argument("--max-side", type=int, default=1024, help="the models' working size (longer side, px)")


@_segment_args.run
def _segment(args, report: Report) -> None:
    from backend.images import load_image
    from backend.models.clip import load_clip
    from backend.segment.merge import MergeConfig
    from backend.segment.relevance import RelevanceConfig
    from backend.segment.sam import SamConfig
    from backend.segment.segment import (
        DEFAULT_CLIP, SegmentConfig, check_prompt, encode_mask_png, encode_rgba_png, segment,
    )

    prompt = check_prompt(args.prompt)
    config = SegmentConfig(
        proposer=args.proposer, relevance=RelevanceConfig(method=args.relevance), max_side=args.max_side,
        sam=SamConfig(checkpoint=args.sam_checkpoint, sam_type=args.sam_type, points_per_side=args.points_per_side,
                      pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_thresh),
        merge=MergeConfig(relevance_threshold=args.relevance_threshold, iou_threshold=args.iou_threshold))
    config.check()  # bad settings fail before anything loads
    outputs = [Path(args.out)] + ([Path(args.cutout)] if args.cutout else [])
    for path in outputs:
        if path.is_dir():
            raise AtelierError(f"{path} is a folder", hint="give a file name ending in .png")
    method = config.relevance_method()
    image = load_image(args.image, what="photo", keep_alpha=True)
    device = resolve(args, report)
    clip = load_clip(args.clip or DEFAULT_CLIP, device, allow_download=args.allow_download) \
        if method == "dense-clip" else None
    progress, bar = progress_bar(1, "segment", delay=0.5)
    try:
        result = segment(image, prompt, clip, config, points=args.point, box=args.box, progress=progress,
                         device=device)
    finally:
        bar.close()
    if result.note:
        print(result.note, file=sys.stderr)
    for path, data in ((outputs[0], encode_mask_png(result.mask)),
                       *(((outputs[1], encode_rgba_png(result.cutout)),) if args.cutout else ())):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    height, width = result.mask.shape
    report.update(method=result.method, iou_merge=result.iou_merge, proposals=result.proposals,
                  proposer=result.proposer, relevance=result.relevance_method, fallback=result.fallback,
                  note=result.note, rule=result.rule, area=round(result.area, 6), width=width, height=height,
                  work_size=list(result.work_size), clip=clip.spec if clip is not None else None,
                  sam_checkpoint=result.sam_checkpoint, stage_seconds=result.seconds, out=str(outputs[0]),
                  cutout=str(outputs[1]) if args.cutout else None)
    print(f"wrote {outputs[0]}" + (f" and {outputs[1]}" if args.cutout else "")
          + f" ({width}x{height}, {100 * result.area:.1f}% of the photo; {result.method}, "
            f"{len(result.iou_merge)} of {result.proposals} proposals merged)")


# ------------------------------------------------------------------------------------ photo-to-3d
@command("photo-to-3d", "segment the object a prompt names in a photo, then find it in a shape library and restyle "
                        "the best match after the photo (--method retrieve) or reconstruct it by 3D Gaussians "
                        "(--method reconstruct, or auto: from the retrieved match)")
def _photo_to_3d_args(parser: argparse.ArgumentParser) -> None:
    from shared_protocol import limits

    parser.add_argument("image", help="the photo (PNG, JPEG, ...; any mode, 16-bit, EXIF rotation honoured)")
    parser.add_argument("--prompt", required=True, help="what to look for in the photo, e.g. 'the red chair'")
    parser.add_argument("--method", choices=limits.PHOTO_TO_3D_METHODS, default="retrieve",
                        help="retrieve (default): the library's best match, restyled; reconstruct: 3D Gaussians "
                             "fitted to the photo, then a textured mesh; auto: reconstruct from the retrieved match")
    parser.add_argument("--db", default=None, help="a library database made by `atelier index` (its CLIP is used); "
                                                   "needed by retrieve, auto and --init retrieve/best")
    parser.add_argument("--out", required=True, help="output .glb (retrieve: its _style.png, the style texture alone, "
                                                     "beside it)")
    parser.add_argument("-k", type=int, default=5, help="shapes retrieved (listed in the report; default 5)")
    parser.add_argument("--pick", type=int, default=0, help="which of the k to restyle (0: the best match)")
    parser.add_argument("--category", default=None, help="only retrieve shapes of this category")
    parser.add_argument("--quality", choices=("draft", "standard", "high"), default="draft",
                        help="the restyle preset (default draft)")
    parser.add_argument("--steps", type=int, default=None,
                        help="restyle steps (default: the preset's), or reconstruct's Gaussian steps (default 300)")
    parser.add_argument("--init", choices=limits.RECONSTRUCT_INITS, default=None,
                        help="where reconstruct's Gaussians start (default sphere; auto: retrieve)")
    parser.add_argument("--texture-steps", type=int, default=None, help="reconstruct's texture refinement steps "
                                                                        "(default 60)")
    parser.add_argument("--guidance", choices=limits.RECONSTRUCT_GUIDANCES, default="clip",
                        help="reconstruct's novel-view guidance: clip (default) or zero123 (its weights needed)")
    parser.add_argument("--zero123-model", default=None, metavar="DIR", help="a local diffusers Zero123 folder")
    parser.add_argument("--allow-clip-fallback", action="store_true",
                        help="with --guidance zero123: use CLIP when its weights are missing instead of failing")
    parser.add_argument("--generator", default=None, help="the generator for --init generate/best (default: the "
                                                          "shipped one)")
    parser.add_argument("--previews", default=None, metavar="DIR",
                        help="reconstruct: write a preview PNG of the reference view every 25 steps into DIR")
    parser.add_argument("--cutout", default=None, help="also write the segmented object as an RGBA PNG")
    parser.add_argument("--sam-checkpoint", default=None, metavar="PTH",
                        help="a SAM checkpoint (default: a cached one; without any, superpixels stand in)")
    parser.add_argument("--sam-type", choices=("vit_b", "vit_l", "vit_h"), default=None)
    parser.add_argument("--proposer", choices=("auto", "sam", "superpixels"), default="auto")


@_photo_to_3d_args.run
def _photo_to_3d(args, report: Report) -> None:
    from backend.errors import InvalidInputError
    from backend.images import load_image
    from backend.retrieve.service import load_encoder, open_cached
    from backend.segment.sam import SamConfig
    from backend.segment.segment import SegmentConfig, check_prompt, encode_rgba_png, segment

    prompt = check_prompt(args.prompt)
    seg_config = SegmentConfig(proposer=args.proposer,
                               sam=SamConfig(checkpoint=args.sam_checkpoint, sam_type=args.sam_type))
    seg_config.check()
    if args.method == "retrieve":
        from backend.segment.photo_to_3d import PhotoTo3DConfig
        from backend.stylize.restyle import preset

        if args.init:
            raise InvalidInputError(f"--init {args.init} is for reconstruction", hint="add --method reconstruct")
        restyle_config = preset(args.quality, steps=args.steps, seed=args.seed)
        restyle_config.check()
        config = PhotoTo3DConfig(k=args.k, pick=args.pick, category=args.category, restyle=restyle_config)
    else:
        from backend.reconstruct.service import needs_library, reconstruct_config

        config = reconstruct_config(args.method, args.init, args.steps, args.texture_steps, args.guidance,
                                    args.zero123_model, args.allow_clip_fallback, category=args.category,
                                    seed=args.seed)
    if (args.method == "retrieve" or needs_library(config)) and not args.db:
        raise InvalidInputError(f"--method {args.method} searches a library: --db is missing",
                                hint="pass --db DB (made by `atelier index`), or --method reconstruct --init sphere")
    image = load_image(args.image, what="photo", keep_alpha=True)
    device = resolve(args, report)
    db = open_cached(args.db) if args.db else None
    encoder = load_encoder(clip=args.clip, db=db, device=device, allow_download=args.allow_download)
    seg = segment(image, prompt, encoder.clip, seg_config, device=device)
    if seg.note:
        print(seg.note, file=sys.stderr)
    report.update(method=args.method, segmentation=seg.method, proposals=seg.proposals, iou_merge=seg.iou_merge,
                  rule=seg.rule, clip=encoder.spec, out=str(args.out))
    if args.cutout:
        Path(args.cutout).write_bytes(encode_rgba_png(seg.cutout))
    if args.method == "retrieve":
        _retrieve(args, report, image, seg, db, encoder, config, device)
    else:
        _reconstruct(args, report, image, seg, db, encoder, config, device)


def _retrieve(args, report: Report, image, seg, db, encoder, config, device) -> None:
    from backend.segment.photo_to_3d import photo_to_3d
    from backend.stylize.output import export_restyled, style_path

    progress, bar = progress_bar(config.restyle.steps, "restyle")
    try:
        result = photo_to_3d(image, seg.mask, db, encoder, encoder.clip, config, device=device, progress=progress)
    finally:
        bar.close()
    export_restyled(result.restyled, args.out, name=result.chosen.name)
    restyled = result.restyled
    report.update(hits=[h.as_dict() for h in result.hits], chosen=result.chosen.as_dict(),
                  category=result.chosen.category, loss_first=restyled.losses[0], loss_last=restyled.losses[-1],
                  steps=restyled.steps, style_texture=str(style_path(args.out)))
    print(f"wrote {args.out}: {result.chosen.name} ({result.chosen.category or 'no category'}, score "
          f"{result.chosen.score:.3f}) restyled after the photo (loss {restyled.losses[0]:.4g} -> "
          f"{restyled.losses[-1]:.4g}); segmented with {seg.method}")


def _reconstruct(args, report: Report, image, seg, db, encoder, config, device) -> None:
    from backend.reconstruct.reconstruct import reconstruct
    from backend.reconstruct.service import preview_png, prior_generator, result_fields, result_glb

    generator = prior_generator(config, args.generator, device)
    preview = None
    if args.previews:
        folder = Path(args.previews)
        folder.mkdir(parents=True, exist_ok=True)

        def preview(step: int, image_now) -> None:
            (folder / f"preview_{step:05d}.png").write_bytes(preview_png(image_now))
    progress, bar = progress_bar(config.fit.steps, "reconstruct")
    try:
        result = reconstruct(image, seg.mask, encoder.clip, config, db=db, encoder=encoder, generator=generator,
                             device=device, progress=progress, preview=preview)
    finally:
        bar.close()
    Path(args.out).write_bytes(result_glb(result))
    fields = result_fields(result)
    report.update(**fields)
    for note in result.notes:
        print(note, file=sys.stderr)
    print(f"wrote {args.out}: reconstructed from {fields['init']}"
          f"{' (' + fields['prior'] + ')' if fields['prior'] else ''} by {fields['gaussians']} Gaussians, "
          f"{fields['faces']} faces; segmented with {seg.method}; {fields['seconds']['total']:.1f} s")
