"""`atelier stylize` (Text2Mesh) and `atelier restyle` (NNFM texture transfer)."""

from __future__ import annotations

import argparse
import sys

from backend.cli.common import Report, command, progress_bar, resolve


# ---------------------------------------------------------------------------------------- stylize
STYLIZE_DEFAULT_CLIP = "ViT-B-32:openai"
"""The CLIP `atelier stylize` uses without --clip (the paper's)."""


@command("stylize", "Text2Mesh: colour and displace a mesh from a text prompt, written as GLB with a shape key")
def _stylize_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help="obj, ply, stl, off, glb or gltf file")
    parser.add_argument("--prompt", required=True, help="the style, e.g. 'a chair made of red brick'")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the quality preset's)")
    parser.add_argument("--out", required=True, help="output .glb (vertex colours + shape key 'Text2Mesh')")
    parser.add_argument("--quality", choices=("draft", "standard", "high"), default="standard",
                        help="draft: 150 steps, 3 views, half-width network; standard: 500 steps; "
                             "high: the paper (1500 steps)")
    parser.add_argument("--subdivide", action="store_true", help="subdivide sparse meshes (< 10k vertices) first")
    parser.add_argument("--bake-texture", action="store_true", help="also paint the colours into a UV texture")
    parser.add_argument("--texture-size", type=int, default=1024, help="baked texture side in pixels")
    parser.add_argument("--renderer", choices=("auto", "nvdiffrast", "torch"), default="auto")


@_stylize_args.run
def _stylize(args, report: Report) -> None:
    from backend.errors import InvalidInputError
    from backend.geometry.load import load_mesh
    from backend.models.clip import load_clip
    from backend.render.rasterizer import renderer_name
    from backend.stylize.losses import check_prompt
    from backend.stylize.output import export_stylized_glb
    from backend.stylize.text2mesh import preset, stylize

    check_prompt(args.prompt)
    if not 64 <= args.texture_size <= 4096:
        raise InvalidInputError(f"--texture-size must be between 64 and 4096 pixels, got {args.texture_size}")
    config = preset(args.quality, steps=args.steps, seed=args.seed, subdivide=args.subdivide, renderer=args.renderer)
    config.check()  # bad --steps fails before the model loads
    device = resolve(args, report)
    report["renderer"] = renderer_name(device, args.renderer)
    mesh = load_mesh(args.mesh)
    clip = load_clip(args.clip or STYLIZE_DEFAULT_CLIP, device, allow_download=args.allow_download)
    progress, bar = progress_bar(config.steps, "stylize")
    try:
        result = stylize(mesh, args.prompt, clip, config, device=device, progress=progress)
    finally:
        bar.close()
    export_stylized_glb(result, args.out, bake_texture=args.bake_texture, texture_size=args.texture_size)
    report.update(loss_first=result.losses[0], loss_last=result.losses[-1], steps=result.steps,
                  seconds_per_step=result.seconds / result.steps, quality=args.quality, clip=clip.spec,
                  prompt=result.prompt, vertices=result.mesh.num_vertices, faces=result.mesh.num_faces,
                  subdivided=result.subdivision_levels > 0, out=str(args.out))
    print(f"wrote {args.out} (loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f} in {result.steps} steps)")


# ---------------------------------------------------------------------------------------- restyle
RESTYLE_DEFAULT_CLIP = "RN50:openai"
"""The CLIP whose image-tower features `atelier restyle` matches without --clip (the paper's)."""


@command("restyle", "restyle a mesh's texture after style images (CLIP nearest-neighbour feature matching)")
def _restyle_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help="obj, ply, stl, off, glb or gltf file (unwrapped automatically without UVs)")
    parser.add_argument("--style", nargs="+", required=True, metavar="IMG", help="1-16 style images")
    parser.add_argument("--palette", default="auto",
                        help="'auto' (k-means colours of the style images), 'none', or '#rrggbb,#rrggbb,...'")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the quality preset's)")
    parser.add_argument("--out", required=True, help="output .glb (its _style.png, the style texture alone, beside it)")
    parser.add_argument("--quality", choices=("draft", "standard", "high"), default="standard",
                        help="draft: 150 steps of 2 views at 256 px; standard: 400 of 4 at 384 px; "
                             "high: the paper (1000 of 8 at 512 px)")
    parser.add_argument("--palette-weight", type=float, default=None,
                        help="the palette loss weight at the first step (default 2000, the paper's); raise it when "
                             "colours drift from the palette")
    parser.add_argument("--pattern-scale", type=float, default=1.0,
                        help="camera distance in mesh sizes: smaller gives finer patterns (default 1)")
    parser.add_argument("--texture-size", type=int, default=None, help="style texture side in pixels")
    parser.add_argument("--features", choices=("clip", "vgg16"), default="clip",
                        help="the feature network: the CLIP image tower (--clip) or VGG-16 (ImageNet weights)")
    parser.add_argument("--renderer", choices=("auto", "nvdiffrast", "torch"), default="auto")


@_restyle_args.run
def _restyle(args, report: Report) -> None:
    from backend.geometry.load import load_mesh
    from backend.images import load_image
    from backend.models.clip import load_clip
    from backend.render.rasterizer import renderer_name
    from backend.stylize.features import FeatureConfig
    from backend.stylize.output import export_restyled, style_path
    from backend.stylize.palette import parse_palette, to_hex
    from backend.stylize.restyle import preset, restyle

    use_palette = args.palette.strip().lower() != "none"
    palette = parse_palette(args.palette) if use_palette else None
    config = preset(args.quality, steps=args.steps, seed=args.seed, pattern_scale=args.pattern_scale,
                    texture_size=args.texture_size, renderer=args.renderer, palette_weight=args.palette_weight,
                    features=FeatureConfig(extractor=args.features))
    config.check()  # bad settings fail before anything loads
    styles = [load_image(path, what="style image") for path in args.style]
    device = resolve(args, report)
    report["renderer"] = renderer_name(device, args.renderer)
    mesh = load_mesh(args.mesh)
    clip = None
    if args.features == "clip":
        clip = load_clip(args.clip or RESTYLE_DEFAULT_CLIP, device, allow_download=args.allow_download)
    progress, bar = progress_bar(config.steps, "restyle")
    try:
        result = restyle(mesh, styles, clip, config, palette=palette, use_palette=use_palette, device=device,
                         progress=progress)
    finally:
        bar.close()
    if result.unwrapped:
        print("the mesh had no UVs: it was unwrapped automatically (xatlas)", file=sys.stderr)
    export_restyled(result, args.out)
    report.update(loss_first=result.losses[0], loss_last=result.losses[-1], steps=result.steps,
                  loss_style_first=result.metrics_first["loss_style"],
                  loss_style_last=result.metrics_last["loss_style"],
                  seconds_per_step=result.seconds / result.steps, quality=args.quality,
                  clip=clip.spec if clip else None, extractor=result.extractor, styles=len(styles),
                  palette=[] if result.palette is None else to_hex(result.palette),
                  palette_source=result.palette_source, neighbour_share=result.neighbour_share,
                  unwrapped=result.unwrapped, base_source=result.base_source, out=str(args.out),
                  style_texture=str(style_path(args.out)))
    print(f"wrote {args.out} and {style_path(args.out)} "
          f"(loss {result.losses[0]:.4g} -> {result.losses[-1]:.4g} in {result.steps} steps)")
