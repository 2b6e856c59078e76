"""`atelier render`: shaded views of a mesh as PNGs (the renderer, end to end)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from backend.cli.common import Report, command, progress_bar, resolve


# ----------------------------------------------------------------------------------------- render
@command("render", "shaded views of a mesh as PNGs (the renderer, end to end)")
def _render_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mesh", help="obj, ply, stl, off, glb or gltf file")
    parser.add_argument("--views", type=int, default=8, help="number of views around the mesh")
    parser.add_argument("--size", type=int, default=256, help="image size in pixels")
    parser.add_argument("--out", required=True, help="output folder for view_NNN.png")
    parser.add_argument("--renderer", choices=("auto", "nvdiffrast", "torch"), default="auto")


@_render_args.run
def _render(args, report: Report) -> None:
    from PIL import Image

    from backend.errors import InvalidInputError
    from backend.geometry.load import load_mesh
    from backend.geometry.validate import validate_mesh
    from backend.render.rasterizer import RasterizerConfig
    from backend.render.renderer import RenderConfig
    from backend.render.turntable import render_turntable

    if not 1 <= args.views <= 360:
        raise InvalidInputError(f"--views must be between 1 and 360, got {args.views}")
    if not 16 <= args.size <= 4096:
        raise InvalidInputError(f"--size must be between 16 and 4096 pixels, got {args.size}")
    device = resolve(args, report)
    mesh = validate_mesh(load_mesh(args.mesh))
    config = RenderConfig(rasterizer=RasterizerConfig(implementation=args.renderer))
    progress, bar = progress_bar(args.views, "render")
    start = time.perf_counter()
    images = render_turntable(mesh, views=args.views, size=args.size, device=device, progress=progress, config=config)
    bar.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = out / f"view_{i:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    from backend.render.rasterizer import renderer_name

    report.update(renderer=renderer_name(device, args.renderer), views=args.views, size=args.size,
                  faces=mesh.num_faces, vertices=mesh.num_vertices, images=paths,
                  seconds_per_view=(time.perf_counter() - start) / args.views)
    print(f"wrote {len(paths)} views to {out}")
