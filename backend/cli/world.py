"""`atelier world`: a procedural library and dataset.

A tool entry, not the product's path: the procedural world is test data (tests, benchmarks, the domain
CLIP's trainer), so `backend.world` is imported inside the command, and only here (tests/house checks it)."""

from __future__ import annotations

import argparse

from backend.cli.common import Report, command, progress_bar, resolve


# ------------------------------------------------------------------------------------------ world
@command("world", "write a procedural library and dataset (meshes, categories, captions, views, sketches, photos)")
def _world_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="output folder")
    parser.add_argument("--shapes", type=int, default=48, help="number of shapes")
    parser.add_argument("--size", type=int, default=128, help="image size in pixels")
    parser.add_argument("--views", type=int, default=4, help="views (and sketches) per shape")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in DIR")


@_world_args.run
def _world(args, report: Report) -> None:
    from backend.world.dataset import world_command

    device = resolve(args, report)
    progress, bar = progress_bar(args.shapes, "world")
    figures = world_command(args.dir, args.shapes, seed=args.seed, size=args.size, views=args.views,
                            progress=progress, device=device, overwrite=args.overwrite)
    bar.close()
    report.update(figures)
    print(f"wrote {figures['shapes']} shapes to {args.dir} (library: {figures['library']})")
