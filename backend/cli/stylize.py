"""`atelier stylize` (Text2Mesh) and `atelier restyle` (NNFM texture transfer)."""

from __future__ import annotations

import argparse
import sys

from pathlib import Path

from backend.cli.common import LazyBar, Report, command, resolve
from backend.cli.request_flags import add_request_flags, request_from_args
from shared_protocol.requests import RestyleRequest, StylizeRequest


# ---------------------------------------------------------------------------------------- stylize
# Params, defaults and bounds come from the job's request (shared_protocol.requests), as for the add-on and the
# server; --seed and --clip are every command's.
STYLIZE_FLAGS = ("prompt", "quality", "steps", "subdivide", "subdivide_vertices", "bake_texture", "texture_size")
RESTYLE_FLAGS = ("palette", "steps", "quality", "palette_weight", "pattern_scale", "texture_size", "features")


@command("stylize", "Text2Mesh: colour and displace a mesh from a text prompt, written as GLB with a shape key")
def _stylize_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help="obj, ply, stl, off, glb or gltf file")
    parser.add_argument("--out", required=True, help="output .glb (vertex colours + shape key 'Text2Mesh')")
    add_request_flags(parser, StylizeRequest, STYLIZE_FLAGS)
    parser.add_argument("--renderer", choices=("auto", "nvdiffrast", "torch"), default="auto")


@_stylize_args.run
def _stylize(args, report: Report) -> None:
    from backend.geometry.load import load_mesh
    from backend.render.rasterizer import renderer_name
    from backend.stylize.service import run_stylize

    request = request_from_args(StylizeRequest, args, STYLIZE_FLAGS, seed=args.seed, clip=args.clip)
    device = resolve(args, report)
    report["renderer"] = renderer_name(device, args.renderer)
    mesh = load_mesh(args.mesh)
    progress = LazyBar("stylize")
    try:
        outcome = run_stylize(request, mesh, device, renderer=args.renderer, allow_download=args.allow_download,
                              progress=progress)
    finally:
        progress.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(outcome.files["mesh"])
    report.update(outcome.fields, out=str(args.out))
    fields = outcome.fields
    print(f"wrote {args.out} (loss {fields['loss_first']:.4f} -> {fields['loss_last']:.4f} in {fields['steps']} steps)")


# ---------------------------------------------------------------------------------------- restyle
@command("restyle", "restyle a mesh's texture after style images (CLIP nearest-neighbour feature matching)")
def _restyle_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help="obj, ply, stl, off, glb or gltf file (unwrapped automatically without UVs)")
    parser.add_argument("--style", nargs="+", required=True, metavar="IMG", help="1-16 style images")
    parser.add_argument("--out", required=True, help="output .glb (its _style.png, the style texture alone, beside it)")
    add_request_flags(parser, RestyleRequest, RESTYLE_FLAGS)
    parser.add_argument("--renderer", choices=("auto", "nvdiffrast", "torch"), default="auto")


@_restyle_args.run
def _restyle(args, report: Report) -> None:
    from backend.geometry.load import load_mesh
    from backend.images import load_image
    from backend.render.rasterizer import renderer_name
    from backend.stylize.output import style_path
    from backend.stylize.service import run_restyle

    request = request_from_args(RestyleRequest, args, RESTYLE_FLAGS, blobs=[f"style_{i}" for i in range(len(args.style))],
                                seed=args.seed, clip=args.clip)
    styles = [load_image(path, what="style image") for path in args.style]
    device = resolve(args, report)
    report["renderer"] = renderer_name(device, args.renderer)
    mesh = load_mesh(args.mesh)
    progress = LazyBar("restyle")
    try:
        outcome = run_restyle(request, mesh, styles, device, renderer=args.renderer,
                              allow_download=args.allow_download, progress=progress)
    finally:
        progress.close()
    if outcome.fields["unwrapped"]:
        print("the mesh had no UVs: it was unwrapped automatically (xatlas)", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(outcome.files["mesh"])
    style_path(out).write_bytes(outcome.files["style_texture"])
    report.update(outcome.fields, out=str(out), style_texture=str(style_path(out)))
    fields = outcome.fields
    print(f"wrote {out} and {style_path(out)} "
          f"(loss {fields['loss_first']:.4g} -> {fields['loss_last']:.4g} in {fields['steps']} steps)")
